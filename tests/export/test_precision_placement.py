"""Where precision goes: residual Q/DQ on every conv-fed Add (incl. ResNet's [Conv, Conv] downsample Add), fp16
outside the quantized ops, fp32 for L2 norms and the tail after the head concatenation — on a tiny graph with the
same structures as SSD300-ResNet50 / -VGG16 (bottlenecks, L2Norm, heads → Concat → decode + softmax), so it runs in
seconds; `tests/export/test_matrix_lint.py` checks the full presets."""

from __future__ import annotations

import io

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto, numpy_helper
from torch import nn
from torchvision.models.resnet import Bottleneck

import ssdtrt.export.precision as precision
from ssdtrt.core.config import get_preset
from ssdtrt.export.calibration import CalibrationConfig
from ssdtrt.export.graph_regions import GraphIndex, head_concats
from ssdtrt.export.lint import lint_onnx
from ssdtrt.export.precision import convert_fp16, quantize_int8

SPEC = get_preset("ssd-small")  # 160 px preprocess: the calibration images


class TinySSD(nn.Module):
    """stem → bottleneck with downsample ([Conv, Conv] Add) → bottleneck (identity Add) → two heads, one on an
    L2-normalized map (VGG's conv4_3) → Concat → box decode against constant priors + softmax."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, stride=4, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        down = nn.Sequential(nn.Conv2d(16, 32, 1, stride=2, bias=False), nn.BatchNorm2d(32))
        self.blocks = nn.Sequential(Bottleneck(16, 8, stride=2, downsample=down), Bottleneck(32, 8))
        self.scale = nn.Parameter(torch.full((32,), 20.0))
        self.loc = nn.ModuleList([nn.Conv2d(32, 4, 3, padding=1), nn.Conv2d(32, 4, 3, padding=1)])
        self.conf = nn.ModuleList([nn.Conv2d(32, 3, 3, padding=1), nn.Conv2d(32, 3, 3, padding=1)])
        self.register_buffer("priors", torch.rand(2 * 20 * 20, 4) * 0.5 + 0.25)
        for m in self.modules():  # non-trivial BN statistics, so folding gives real conv biases
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                nn.init.uniform_(m.weight, 0.5, 1.5)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.blocks(self.stem(x))
        maps = [self.scale.view(1, -1, 1, 1) * F.normalize(f), f]
        n = x.shape[0]
        locs = torch.cat([h(m).permute(0, 2, 3, 1).reshape(n, -1, 4) for h, m in zip(self.loc, maps)], 1)
        logits = torch.cat([h(m).permute(0, 2, 3, 1).reshape(n, -1, 3) for h, m in zip(self.conf, maps)], 1)
        p = self.priors
        cxcy = p[:, :2] + locs[..., :2] * 0.1 * p[:, 2:]
        wh = torch.exp(locs[..., 2:] * 0.2) * p[:, 2:]
        return torch.cat([cxcy - wh / 2, cxcy + wh / 2], -1), torch.softmax(logits, -1)


@pytest.fixture(scope="module")
def tiny() -> onnx.ModelProto:
    torch.manual_seed(3)
    model = TinySSD().eval()
    buf = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(model, (torch.zeros(1, 3, 160, 160),), buf, dynamo=False, opset_version=17,
                          input_names=["images"], output_names=["boxes", "scores"])
    return onnx.load_from_string(buf.getvalue())


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((1, 3, 160, 160)).astype(np.float32)


def _run(proto: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"],
                                disabled_optimizers=["WeightBiasQuantization"])  # see onnxruntime_runner
    return sess.run(None, {"images": x})


def _types(proto: onnx.ModelProto) -> dict[str, int]:
    g = onnx.shape_inference.infer_shapes(proto).graph
    types = {v.name: v.type.tensor_type.elem_type for v in (*g.value_info, *g.input, *g.output)}
    return types | {t.name: t.data_type for t in g.initializer}


def _nodes(proto: onnx.ModelProto, op: str) -> list[onnx.NodeProto]:
    return [n for n in proto.graph.node if n.op_type == op]


def _check_fp32_tail_and_norm(proto: onnx.ModelProto) -> None:
    """ReduceL2 and the Div it feeds read fp32; everything after the head Concats computes in fp32 (one Cast per
    head boundary, no round trip); the priors stay fp32."""
    types = _types(proto)
    (norm,) = _nodes(proto, "ReduceL2")
    assert types[norm.input[0]] == TensorProto.FLOAT
    assert all(types[i] == TensorProto.FLOAT for n in _nodes(proto, "Div") for i in n.input)
    index = GraphIndex.of(proto)
    concats = head_concats(index)
    assert len(concats) == 2 and all(types[c.output[0]] == TensorProto.FLOAT16 for c in concats)
    casts = [u for c in concats for u in index.consumers[c.output[0]]]
    assert [u.op_type for u in casts] == ["Cast", "Cast"]  # the one boundary per head
    for op in ("Softmax", "Exp", "Mul", "Add", "Sub"):
        tail = [n for n in _nodes(proto, op) if not n.name.startswith("/blocks") and not n.name.startswith("/stem")
                and n.name != "/Mul"]  # /Mul = scale · normalize (fp16 is fine: |x| ≤ 20)
        assert tail and all(types.get(i, TensorProto.FLOAT) == TensorProto.FLOAT for n in tail for i in n.input), op
    priors = [t for t in proto.graph.initializer if t.dims and t.dims[0] == 800]  # folded slices of the priors
    priors += [a.t for n in _nodes(proto, "Constant") for a in n.attribute if a.t.dims and a.t.dims[0] == 800]
    assert priors and all(t.data_type == TensorProto.FLOAT for t in priors)


def test_fp16_keeps_l2norm_and_tail_fp32(tiny, images) -> None:
    fp16 = convert_fp16(onnx.load_from_string(tiny.SerializeToString()))
    _check_fp32_tail_and_norm(fp16)
    report = lint_onnx(fp16)
    assert report.ok and not report.issues, [str(i) for i in report.issues]
    ref, out = _run(tiny, images), _run(fp16, images)
    assert np.abs(out[0] - ref[0]).max() < 2e-3 and np.abs(out[1] - ref[1]).max() < 2e-3


def test_the_old_fp16_conversion_is_flagged(tiny) -> None:
    """What `convert_fp16` did before (only Softmax/Exp kept fp32): lint names the fp16 L2 norm and the round trip."""
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    old = convert_float_to_float16(onnx.load_from_string(tiny.SerializeToString()), keep_io_types=True,
                                   op_block_list=[*DEFAULT_OP_BLOCK_LIST, "Softmax", "Exp"])
    issues = lint_onnx(precision.topological_sort(old)).issues
    assert any(i.op_type == "ReduceL2" and i.severity == "error" for i in issues)
    assert any(i.op_type == "Cast" and "round trip" in i.message for i in issues)


def _int8(tiny, tmp_path, **cfg) -> tuple[onnx.ModelProto, dict]:
    config = CalibrationConfig("synthetic", num_images=4, batch_size=2, cache_dir=tmp_path / "calib", **cfg)
    return quantize_int8(onnx.load_from_string(tiny.SerializeToString()), SPEC, config)


def test_int8_quantizes_every_residual_add_and_runs_fp16_between(tiny, images, tmp_path) -> None:
    proto, record = _int8(tiny, tmp_path)
    assert record["calibration"]["residual_adds"] == 1  # the downsample Add; the identity Add was already DQ-fed
    producer = {o: n for n in proto.graph.node for o in n.output}
    residual_adds = [n for n in _nodes(proto, "Add") if any(producer[i].op_type == "Conv" for i in n.input
                                                                 if i in producer)]
    assert len(residual_adds) == 2
    for add in residual_adds:
        assert sorted(producer[i].op_type for i in add.input) == ["Conv", "DequantizeLinear"], add.name
    # fp16 between the int8 ops: every Q/DQ scale is fp16 (opset 19), so DQ outputs and conv outputs are fp16
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 19
    inits = {t.name: t for t in proto.graph.initializer}
    scales = [inits[n.input[1]] for n in (*_nodes(proto, "QuantizeLinear"), *_nodes(proto, "DequantizeLinear"))]
    assert scales and all(s.data_type == TensorProto.FLOAT16 for s in scales)
    types = _types(proto)
    assert all(types[c.output[0]] == TensorProto.FLOAT16 for c in _nodes(proto, "Conv"))
    _check_fp32_tail_and_norm(proto)
    report = lint_onnx(proto)
    assert report.ok and not report.issues, [str(i) for i in report.issues]
    ref, out = _run(tiny, images), _run(proto, images)
    assert np.abs(out[1] - ref[1]).mean() < 0.02 and np.abs(out[0] - ref[0]).mean() < 0.02


def test_int8_fp32_float_parts_keep_fp32_scales(tiny, tmp_path) -> None:
    proto, record = _int8(tiny, tmp_path, high_precision="fp32")
    assert record["calibration"]["high_precision"] == "fp32" and record["calibration"]["residual_adds"] == 1
    inits = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    assert all(inits[n.input[1]].dtype == np.float32 for n in _nodes(proto, "DequantizeLinear"))
    report = lint_onnx(proto)
    assert report.ok and not report.issues, [str(i) for i in report.issues]


def test_without_the_residual_pass_lint_names_the_downsample_add(tiny, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(precision, "quantize_residuals", lambda proto, ranges: [])  # the pre-fix quantizer
    proto, _ = _int8(tiny, tmp_path)
    flagged = [i for i in lint_onnx(proto).issues if i.op_type == "Add"]
    assert len(flagged) == 1 and "/blocks/blocks.0/Add" == flagged[0].node and "residual" in flagged[0].message


def test_cli_int8_float_choice_reaches_the_graph(tmp_path, monkeypatch) -> None:
    """`ssdtrt export --precision int8 --int8-float fp32|fp16`: manifest and Q/DQ scale types follow; bad value exits."""
    import ssdtrt.cli.app as cli
    from ssdtrt.core.manifest import read_manifest
    from ssdtrt.model.checkpoint import save_checkpoint
    from ssdtrt.model.ssd import build_model

    monkeypatch.setattr(cli, "COMMAND_MODULES", ("export",))
    torch.manual_seed(4)
    ckpt = tmp_path / "small.pt"
    save_checkpoint(ckpt, build_model("ssd-small"))
    for float_type, scale_type in (("fp32", TensorProto.FLOAT), ("fp16", TensorProto.FLOAT16)):
        out = tmp_path / f"m_{float_type}.onnx"
        code = cli.main(["export", str(ckpt), "--out", str(out), "--precision", "int8", "--calib-data", "synthetic",
                         "--calib-images", "4", "--int8-float", float_type])
        assert code in (0, None)
        assert read_manifest(out).source["calibration"]["high_precision"] == float_type
        proto = onnx.load(out)
        inits = {t.name: t for t in proto.graph.initializer}
        assert {inits[n.input[1]].data_type for n in _nodes(proto, "DequantizeLinear")} == {scale_type}
    assert cli.main(["export", str(ckpt), "--precision", "int8", "--calib-data", "synthetic", "--int8-float",
                     "bf16"]) not in (0, None)
