"""Preprocess inside the OpenVINO graph (`PrePostProcessor`): the engine takes what the image reader decoded —
uint8, NHWC, the reader's channel order (RGB) — and converts type, layout, colour and normalization itself; the
steps are saved in the IR.

    from ssdtrt.runtime.openvino_runner import openvino_core  # the process's one ov.Core (it says why)

    model = add_uint8_input(openvino_core().read_model("m_raw.xml"), spec.preprocess)

Normalization is a custom step with `ssdtrt.preprocess.host.normalize_batch`'s constants and operations
(x * (1 / (255 std)) - mean / std in float32); the CPU plugin may fuse them into the first layer, so the heads
differ from the host-normalized path by float rounding (fp32 demo model: <= 8e-7; parity of the detections in
`benchmarks/postprocess/placement-parity-*.md`, bounded in `tests/engines/test_openvino_graph.py`). Resize stays on the host by default (`resize=False`: the input is the network
size); `resize=True` adds PrePostProcessor's linear resize from any H x W. Measured against cv2.resize
(`benchmarks/postprocess/placement-parity-*.md`): OpenCV's and OpenVINO's bilinear kernels differ at pixel level, so
almost every detection moves by more than the parity tolerance (demo: 242 of 3,542 match) and it was not faster —
resize stays on the host (`ssdtrt.preprocess.stages.EnginePreprocess`).
"""

from __future__ import annotations

from typing import Any

from ssdtrt.core.config import Preprocess
from ssdtrt.preprocess.host import normalization_constants

#: The reader's channel order (`ssdtrt.io.images` decodes to RGB).
READER_ORDER = "RGB"


def add_uint8_input(model: Any, spec: Preprocess, *, resize: bool = False, reader_order: str = READER_ORDER) -> Any:
    """The model with its one image input turned into uint8 NHWC in `reader_order` (the model's NCHW float input,
    normalized per `spec`, is computed in the graph). `resize`: accept any H x W and resize linearly in the graph."""
    import openvino as ov
    import openvino.opset8 as ops
    from openvino.preprocess import ColorFormat, PrePostProcessor, ResizeAlgorithm

    ppp = PrePostProcessor(model)
    inp = ppp.input()
    inp.tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC")).set_color_format(_color(ColorFormat, reader_order))
    if resize:
        inp.tensor().set_spatial_dynamic_shape()
    inp.model().set_layout(ov.Layout("NCHW"))
    steps = inp.preprocess()
    if spec.channel_order != reader_order:
        steps.convert_color(_color(ColorFormat, spec.channel_order))
    if resize:
        steps.resize(ResizeAlgorithm.RESIZE_LINEAR, spec.height, spec.width)
    # NHWC -> NCHW on the uint8 pixels, then convert and normalize per channel plane (as `normalize_batch` does):
    # a 3-wide per-channel broadcast over NHWC floats cost the CPU plugin 0.61 ms per 8 demo images (one thread),
    # transposing the bytes first 0.45 ms (PERF_COUNT, `benchmarks/latency/placement-variants.txt`); the values are
    # the same float32 operations
    steps.convert_layout(ov.Layout("NCHW"))
    steps.convert_element_type(ov.Type.f32)
    scale, shift = normalization_constants(spec)
    steps.custom(lambda node: ops.subtract(ops.multiply(node, scale[:, None, None]), shift[:, None, None]).output(0))
    return ppp.build()


def _color(color_format: Any, order: str) -> Any:
    return {"RGB": color_format.RGB, "BGR": color_format.BGR}[order]
