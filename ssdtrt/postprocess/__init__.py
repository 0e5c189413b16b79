"""Postprocessing stages: network outputs → Detections.

`host_numpy` (torch-free) and `host_torch` run on the host or a torch device; `onnx_nms` builds the same work into an
ONNX graph tail (placement "engine"). `settings` holds the constants and override keys all of them share.
"""
