"""One route from images to detections: stage protocol, batching, and the `Detector` that composes them.

    protocol.py   Preprocessor / Postprocessor (with a placement) and AsyncDetector (what the stream needs)
    batching.py   chunks, pad_to, unpad, run_in_batches, PaddedRequests: the one batching helper
    stages.py     ModelStages: a manifest's preprocess + postprocess + pixel scaling (also Triton's python models)
    detector.py   Detector = runner + ModelStages + batching (ssdtrt.Detector)

Every consumer (detect, eval, compare, stream, serve, the benches) goes through `Detector` or `ModelStages`.
"""
