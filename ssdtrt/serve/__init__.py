"""Serving at scale on NVIDIA Triton: `ssdtrt serve` (PyTriton), `ssdtrt export-triton` (model repository with an
ensemble), `ssdtrt bench serve` (tritonclient load). Nothing heavy is imported here; pytriton and tritonclient load
inside the functions that need them."""
