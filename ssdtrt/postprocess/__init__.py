"""Postprocessing stages: network outputs → Detections.

`host_numpy` (torch-free) and `host_torch` run on the host or a torch device; `onnx_nms` builds the same work into an
ONNX graph tail (placement "engine"). `stages` wraps each placement as a `Postprocessor` stage (host-numpy,
host-torch, engine) and picks one per export mode; `settings` holds the override keys and the constants all of them
share.
"""
