"""Mixed INT8: float layers placed as `quantize_int8` places them, lint-clean for TensorRT 10 and 11, sensitivity
that finds a broken layer, and the fallback search that returns the smallest float count within the budget — on
the random-weight `ssd-small` (seconds), the demo-checkpoint run in `benchmarks/precision/`."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import numpy_helper

from ssdtrt.core.errors import ExportError
from ssdtrt.export.calibration import CalibrationConfig
from ssdtrt.export.float_search import search_float_count
from ssdtrt.export.float_variants import float_variant, head_graph, quantized_layers
from ssdtrt.export.graph_regions import GraphIndex, residual_input
from ssdtrt.export.lint import lint_onnx
from ssdtrt.export.precision import FLOAT_LAYERS_KEY, quantize_int8
from ssdtrt.export.sensitivity import HeadRunner, measure_sqnr, sqnr_db

torch = pytest.importorskip("torch")

#: A stem conv, a BasicBlock's second conv (its Add must read a float residual) and a head conv.
FLOAT = ("/model/backbone/stem/stem.0/stem.0.0/Conv", "/model/backbone/stage1/stage1.1/conv2/Conv", "/model/loc.0/Conv")


@pytest.fixture(scope="module")
def model():  # noqa: ANN201
    from ssdtrt.model.ssd import build_model

    torch.manual_seed(0)
    return build_model("ssd-small").eval()


@pytest.fixture(scope="module")
def body(model) -> onnx.ModelProto:  # noqa: ANN001
    from ssdtrt.export.onnx_export import export_body

    return export_body(model, mode="raw", dynamic_batch=True)


@pytest.fixture(scope="module")
def cfg(tmp_path_factory) -> CalibrationConfig:  # noqa: ANN001
    return CalibrationConfig("synthetic", 8, "minmax", cache_dir=tmp_path_factory.mktemp("calib"), high_precision="fp32")


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((2, 3, 160, 160)).astype(np.float32)


def test_float_variant_matches_requantized_graph(model, body, cfg, images) -> None:  # noqa: ANN001
    """Sensitivity's rewired variant computes what quantize_int8(float_layers=...) exports."""
    full, _ = quantize_int8(body, model.spec, cfg)
    mixed, record = quantize_int8(body, model.spec, dataclasses.replace(cfg, float_layers=FLOAT))
    assert record["calibration"]["float_layers"] == list(FLOAT)
    index = GraphIndex.of(mixed)
    for node in (n for n in index.nodes if n.op_type == "Conv"):
        srcs = {index.source_op(node.input[0]), index.source_op(node.input[1])}
        assert ("DequantizeLinear" not in srcs) if node.name in FLOAT else (srcs == {"DequantizeLinear"}), node.name
    adds = [n for n in index.nodes if n.op_type == "Add" and residual_input(index, n) is not None]
    assert len(adds) == 4
    for add in adds:  # float conv branch → float residual; quantized branch → DQ residual
        conv = next(index.producer[a] for a in add.input if index.source_op(a) == "Conv")
        dq = index.source_op(residual_input(index, add)) == "DequantizeLinear"
        assert dq == (conv.name not in FLOAT), add.name
    runner = HeadRunner(images)
    variant = runner.run(float_variant(head_graph(full), head_graph(body), FLOAT))
    exported = runner.run(head_graph(mixed))
    for a, b in zip(variant, exported):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-4 * float(np.abs(b).max()))
    assert sqnr_db(runner.run(head_graph(body)), exported) > sqnr_db(runner.run(head_graph(body)), runner.run(head_graph(full)))


def test_unknown_float_layer_is_an_error(model, body, cfg) -> None:  # noqa: ANN001
    with pytest.raises(ExportError, match="not in the graph"):
        quantize_int8(body, model.spec, dataclasses.replace(cfg, float_layers=("/model/nope/Conv",)))


@pytest.fixture(scope="module")
def mixed_nms(model, cfg, tmp_path_factory):  # noqa: ANN001, ANN201
    """The nms export with fp16 float parts and FLOAT left float, as `ssdtrt export --float-layer` writes it."""
    from ssdtrt.export.onnx_export import export_model

    out = tmp_path_factory.mktemp("mixed") / "mixed.onnx"
    calib = dataclasses.replace(cfg, high_precision="fp16", float_layers=FLOAT)
    return export_model(model, out, mode="nms", dynamic_batch=True, precision="int8", calibration=calib)


@pytest.mark.parametrize("trt", [10, 11])
def test_mixed_graph_lints_clean(mixed_nms, trt: int) -> None:  # noqa: ANN001
    report = lint_onnx(mixed_nms.onnx_path, trt_major=trt)
    assert report.ok and not report.issues, [str(i) for i in report.issues]
    assert mixed_nms.manifest.source["calibration"]["float_layers"] == list(FLOAT)


def test_lint_flags_undeclared_or_half_float_convs(mixed_nms) -> None:  # noqa: ANN001
    proto = onnx.load(str(mixed_nms.onnx_path))
    undeclared = onnx.ModelProto()
    undeclared.CopyFrom(proto)
    del undeclared.metadata_props[:]  # the same convs, no longer declared float: quantizer forgot them
    flagged = {i.node for i in lint_onnx(undeclared).warnings if "DequantizeLinear" in i.message}
    assert flagged == set(FLOAT)
    # a declared float conv that reads an INT8-rounded input (onnxruntime's rewiring, undone by unround_inputs)
    index = GraphIndex.of(proto)
    head = next(n for n in proto.graph.node if n.name == "/model/loc.0/Conv")
    q = next(c for c in index.consumers[head.input[0]] if c.op_type == "QuantizeLinear")
    head.input[0] = index.consumers[q.output[0]][0].output[0]
    assert json.loads(next(p.value for p in proto.metadata_props if p.key == FLOAT_LAYERS_KEY)) == sorted(FLOAT)
    assert [i.node for i in lint_onnx(proto).warnings] == ["/model/loc.0/Conv"]


def test_sensitivity_ranks_a_broken_layer_first(model, body, cfg, images) -> None:  # noqa: ANN001
    """A layer whose weight scales are 3× too large must come first in the ranking and gain most when left float."""
    full, _ = quantize_int8(body, model.spec, cfg)
    layers = quantized_layers(full)
    victim = layers[len(layers) // 2]
    index = GraphIndex.of(full)
    conv = next(n for n in full.graph.node if n.name == victim)
    scale_name = index.producer[conv.input[1]].input[1]
    init = next(t for t in full.graph.initializer if t.name == scale_name)
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * 3, scale_name))
    report = measure_sqnr(body, full, HeadRunner(images))
    assert len(report.layers) == len(layers) == 25
    assert report.ranking[0] == victim
    assert max(report.layers, key=lambda r: r.sqnr_float_gain_db).layer == victim
    assert [r.sqnr_alone_db for r in report.layers] == sorted(r.sqnr_alone_db for r in report.layers)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0, 20, allow_nan=False), min_size=1, max_size=70), st.floats(0, 20, allow_nan=False))
def test_search_finds_smallest_passing_count(steps: list[float], budget: float) -> None:
    """On any non-increasing drop(k), the search returns what a linear scan returns, in O(log n) evaluations."""
    drops = sorted(steps, reverse=True)  # drop(k) for k = 0..n
    n = len(drops) - 1
    calls: list[int] = []

    def drop_for(k: int) -> float:
        calls.append(k)
        return drops[k]

    expected = next((k for k, d in enumerate(drops) if d <= budget), None)
    if expected is None:
        with pytest.raises(ExportError, match=f"best drop reached is {min(drops):.2f}"):
            search_float_count(drop_for, n, budget)
    else:
        k, tried = search_float_count(drop_for, n, budget)
        assert k == expected and tried[k] == drops[k]
    assert len(calls) == len(set(calls)) <= 2 * math.ceil(math.log2(n + 1)) + 2


def test_fallback_export_records_drop_and_layers(model, cfg, tmp_path) -> None:  # noqa: ANN001
    from ssdtrt.core.manifest import read_manifest
    from ssdtrt.export.fallback import fallback_export

    out = tmp_path / "fb.onnx"
    result, fb = fallback_export(model, out, calibration=dataclasses.replace(cfg, high_precision="fp16"),
                                 eval_data="synthetic", eval_images=8, sqnr_images=2, max_drop_pts=100.0,
                                 mode="nms", dynamic_batch=True)
    assert fb.float_layers == [] and fb.tried == {0: fb.drop_pts} and len(fb.ranking) == 25
    recorded = read_manifest(out).source["fallback"]
    assert recorded["drop_pts"] == fb.drop_pts and recorded["float_layers"] == [] and recorded["max_drop_pts"] == 100.0
    assert lint_onnx(out, trt_major=11).ok and not lint_onnx(out, trt_major=11).issues


def test_cli_sensitivity_writes_sorted_table_and_plot(small_checkpoint, tmp_path, monkeypatch) -> None:  # noqa: ANN001
    from ssdtrt.cli.app import main

    monkeypatch.chdir(tmp_path)
    code = main(["sensitivity", str(small_checkpoint), "--calib-images", "8", "--sqnr-images", "2", "--map-images",
                 "4", "--top", "1", "--min-sqnr", "60", "--out", "sens"])
    assert code == 0
    data = json.loads((tmp_path / "sens" / "sensitivity.json").read_text())
    sqnr = [r["sqnr_alone_db"] for r in data["layers"]]
    assert len(sqnr) == 25 and sqnr == sorted(sqnr)
    assert data["layers"][0]["map_alone_drop_pts"] is not None and data["layers"][1]["map_alone_drop_pts"] is None
    fb = data["meta"]["sqnr_fallback"]
    assert fb["sqnr_db"] >= 60 and fb["float_layers"] == [r["layer"] for r in data["layers"][: len(fb["float_layers"])]]
    md = (tmp_path / "sens" / "sensitivity.md").read_text()
    assert md.count("| `/model/") == 25
    assert (tmp_path / "sens" / "sensitivity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_max_drop_needs_int8(small_checkpoint, tmp_path, capsys) -> None:  # noqa: ANN001
    from ssdtrt.cli.app import main

    assert main(["export", str(small_checkpoint), "--max-drop", "0.5", "--out", str(tmp_path / "x.onnx")]) == 1
    assert "--max-drop applies to --precision int8" in capsys.readouterr().err


def test_range_layers_take_the_other_methods_input_scale(model, body, cfg) -> None:  # noqa: ANN001
    """`range_layers` (the range fallback) keep every conv INT8 and give only those layers' inputs the other
    method's scale: a wrong merge (all tensors, or none) fails here."""
    layer, other = "/model/backbone/stem/stem.1/stem.1.0/Conv", "/model/backbone/stage2/stage2.0/stage2.0.0/Conv"

    def input_scale(proto: onnx.ModelProto, name: str) -> float:
        index = GraphIndex.of(proto)
        node = next(n for n in proto.graph.node if n.name == name)
        dq = index.producer[node.input[0]]
        return float(next(numpy_helper.to_array(t) for t in proto.graph.initializer if t.name == dq.input[1]))

    ent = dataclasses.replace(cfg, method="entropy")
    entropy, _ = quantize_int8(body, model.spec, ent)
    minmax, _ = quantize_int8(body, model.spec, cfg)
    mixed, record = quantize_int8(body, model.spec, dataclasses.replace(ent, range_layers=(layer,), range_method="minmax"))
    assert record["calibration"]["range_layers"] == {"method": "minmax", "layers": [layer]}
    assert input_scale(entropy, layer) < 0.9 * input_scale(minmax, layer)  # entropy clips this input
    assert input_scale(mixed, layer) == input_scale(minmax, layer)
    assert input_scale(mixed, other) == input_scale(entropy, other) != input_scale(minmax, other)
    assert len(quantized_layers(mixed)) == 25


@pytest.mark.slow
def test_fallback_on_the_demo_checkpoint_meets_the_budget(tmp_path) -> None:  # noqa: ANN001
    """Entropy calibration loses ~16 pts on the trained demo model: the fallback must return a prefix of the
    ranking to float, end within the budget, and stay lint-clean (needs `make demo`'s checkpoint)."""
    from pathlib import Path

    from ssdtrt.export.fallback import fallback_export
    from ssdtrt.model.checkpoint import load_model

    ckpt = Path(__file__).resolve().parents[2] / "runs" / "demo" / "train" / "best.pt"
    if not ckpt.is_file():
        pytest.skip(f"no demo checkpoint at {ckpt} (make demo)")
    calib = CalibrationConfig("synthetic", 64, "entropy", cache_dir=tmp_path / "calib")
    _, fb = fallback_export(load_model(ckpt, "cpu"), tmp_path / "fb.onnx", calibration=calib, eval_data="synthetic",
                            eval_images=50, sqnr_images=8, max_drop_pts=0.5, mode="nms", dynamic_batch=True)
    assert fb.tried[0] > 2.0 and fb.drop_pts <= 0.5
    assert fb.float_layers and fb.float_layers == fb.ranking[: len(fb.float_layers)]
    assert all(fb.tried[k] > 0.5 for k in fb.tried if k < len(fb.float_layers))  # nothing smaller passed
    for trt in (10, 11):
        report = lint_onnx(tmp_path / "fb.onnx", trt_major=trt)
        assert report.ok and not report.issues
