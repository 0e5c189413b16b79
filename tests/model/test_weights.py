"""Weights import against independent references: torchvision's ssd300_vgg16 and a transcription of seed 000.

Both references get random, non-trivial weights (random biases, BN statistics, L2Norm scales), are imported, and
must give the same head outputs (<= 1e-4) and the same detections as their own postprocessing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

import seed000_reference as seed000  # noqa: E402

from ssdtrt.core.boxes import cxcywh_to_xyxy  # noqa: E402
from ssdtrt.core.config import get_preset  # noqa: E402
from ssdtrt.core.errors import CheckpointError, ClassCountMismatchError  # noqa: E402
from ssdtrt.model.checkpoint import load_model  # noqa: E402
from ssdtrt.model.weights import UnknownWeightsSourceError, convert_weights, import_weights  # noqa: E402
from ssdtrt.postprocess.host_torch import postprocess_spec  # noqa: E402
from ssdtrt.core.priors import default_boxes  # noqa: E402

HEAD_ATOL = 1e-4


def canonical(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """Rows (score, label, box) sorted so exact score ties compare equal whatever order each side emits them in."""
    rows = torch.cat([scores[:, None].double(), labels[:, None].double(), boxes.double()], 1).numpy()
    return rows[np.lexsort(rows.T[::-1])]


def normalized_images(preset: str, n: int, seed: int) -> torch.Tensor:
    """Random [0, 1] RGB images normalized with the preset's mean/std (what the models expect)."""
    pre = get_preset(preset).preprocess
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, pre.height, pre.width, generator=g)
    mean, std = torch.tensor(pre.mean).view(1, 3, 1, 1), torch.tensor(pre.std).view(1, 3, 1, 1)
    return (x - mean) / std


def randomize_(model: torch.nn.Module, seed: int) -> None:
    """Make every bias, BN affine/statistic and L2Norm scale non-trivial (defaults are 0 / 1 / 20)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.copy_(torch.rand(p.shape, generator=g) * 0.2 - 0.1)
            elif name.endswith("scale_weight"):
                p.copy_(torch.rand(p.shape, generator=g) * 25 + 5)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) * 0.5 + 0.75)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) * 0.5 + 0.75)


# --------------------------------------------------------------------------------------------- torchvision / VGG16


@pytest.fixture(scope="module")
def torchvision_ssd(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, Path]:
    from torchvision.models.detection import ssd300_vgg16

    torch.manual_seed(0)
    model = ssd300_vgg16(weights=None, weights_backbone=None, num_classes=91).eval()
    randomize_(model, seed=1)
    path = tmp_path_factory.mktemp("tv") / "ssd300_vgg16.pth"
    torch.save(model.state_dict(), path)
    return model, path


@pytest.mark.slow
def test_torchvision_vgg16_heads_and_detections_match(torchvision_ssd) -> None:  # noqa: ANN001
    ref, path = torchvision_ssd
    result = import_weights(path, "torchvision")
    ours = result.model
    assert ours.preset == "ssd300-vgg16" and ours.num_classes == 91 and not ours.training
    assert result.source_num_classes == 91 and result.notes == []
    assert ours.class_names[0] == "person" and len(ours.class_names) == 90
    x = normalized_images("ssd300-vgg16", 1, seed=3)
    with torch.no_grad():
        feats = list(ref.backbone(x).values())  # bypass torchvision's resize/normalize transform
        ref_heads = ref.head(feats)
        locs, logits = ours(x)
    assert locs.shape == (1, 8732, 4) and logits.shape == (1, 8732, 91)
    assert (locs - ref_heads["bbox_regression"]).abs().max().item() <= HEAD_ATOL
    assert (logits - ref_heads["cls_logits"]).abs().max().item() <= HEAD_ATOL
    assert logits.std().item() > 0.1, "random logits must be spread enough to exercise the postprocess"

    priors = default_boxes("ssd300-vgg16")
    anchors = [cxcywh_to_xyxy(torch.from_numpy(priors)) * 300]
    ref_dets = ref.postprocess_detections(ref_heads, anchors, [(300, 300)])[0]
    our_dets = postprocess_spec(locs, logits, priors, get_preset("ssd300-vgg16").postprocess)[0]
    assert len(our_dets) == len(ref_dets["boxes"]) > 50
    np.testing.assert_allclose(
        canonical(our_dets.boxes * 300, our_dets.scores, our_dets.labels),
        canonical(ref_dets["boxes"], ref_dets["scores"], ref_dets["labels"]),
        atol=1e-3,  # pixels; scores and labels compare far tighter in practice
    )


@pytest.mark.slow
def test_torchvision_checkpoint_wrappers_and_new_class_count(torchvision_ssd, tmp_path: Path) -> None:  # noqa: ANN001
    ref, _ = torchvision_ssd
    wrapped = tmp_path / "wrapped.pth"  # torchvision references' train.py layout, saved from a DDP model
    torch.save({"model": {f"module.{k}": v for k, v in ref.state_dict().items()}, "epoch": 3}, wrapped)
    out = tmp_path / "voc.pt"
    result = convert_weights(wrapped, out, "torchvision", num_classes=21)
    assert result.source_num_classes == 91 and len(result.notes) == 1 and "re-initialised" in result.notes[0]
    model = load_model(out)
    assert model.num_classes == 21 and model.class_names == tuple(f"class{i}" for i in range(1, 21))
    ref_state = ref.state_dict()
    ours = model.state_dict()
    assert torch.equal(ours["backbone.features.0.weight"], ref_state["backbone.features.0.weight"])
    assert torch.equal(ours["loc.3.weight"], ref_state["head.regression_head.module_list.3.weight"])
    assert ours["conf.0.weight"].shape == (4 * 21, 512, 3, 3)
    with pytest.raises(ClassCountMismatchError, match="3 class names given for 21 classes"):
        import_weights(wrapped, "torchvision", num_classes=21, class_names=["a", "b", "c"])


# ------------------------------------------------------------------------------------------- NVIDIA / seed 000


def seed000_to_ours_permutation() -> np.ndarray:
    """perm with seed000_priors[perm] == ssdtrt priors, found by matching the box values (they must be unique)."""
    ref = seed000.dboxes300_coco()(order="xywh").numpy()
    ours = default_boxes("ssd300-resnet50")
    assert ref.shape == ours.shape == (8732, 4)
    assert len(np.unique(ours, axis=0)) == 8732, "priors must be distinct to define the permutation"
    ref_order, our_order = np.lexsort(ref.T[::-1]), np.lexsort(ours.T[::-1])
    np.testing.assert_allclose(ref[ref_order], ours[our_order], atol=1e-6)  # equal as sets
    perm = np.empty(8732, dtype=np.int64)
    perm[our_order] = ref_order
    np.testing.assert_allclose(ref[perm], ours, atol=1e-6)
    return perm


@pytest.fixture(scope="module")
def nvidia_ssd(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, Path]:
    torch.manual_seed(0)
    ref = seed000.SSD300(seed000.Backbone(), num_classes=81).eval()
    randomize_(ref, seed=2)
    with torch.no_grad():  # random BN statistics blow activations up: rescale the heads to a trained model's range
        locs, confs = ref.heads(normalized_images("ssd300-resnet50", 1, seed=4))
        for heads, std, target in ((ref.loc, locs.std(), 0.7), (ref.conf, confs.std(), 3.0)):
            for conv in heads:
                conv.weight.mul_(target / std)
                conv.bias.mul_(target / std)
        for conv, a in zip(ref.conf, ref.num_defaults):
            conv.bias[:a] += 6.0  # background (NVIDIA channels k*A + a, k = 0) likelier: fewer candidates, faster NMS
    path = tmp_path_factory.mktemp("nv") / "nvidia_ssd300.pt"
    state = {f"module.{k}": v for k, v in ref.state_dict().items()}  # NVIDIA trains under DDP
    label_map = {i: f"cat{i}" for i in range(1, 81)}
    torch.save({"epoch": 64, "iteration": 1000, "model": state, "label_map": label_map}, path)
    return ref, path


@pytest.mark.slow
def test_nvidia_resnet50_heads_and_detections_match(nvidia_ssd) -> None:  # noqa: ANN001
    ref, path = nvidia_ssd
    result = import_weights(path, "nvidia")
    ours = result.model
    assert ours.preset == "ssd300-resnet50" and ours.num_classes == 81
    assert ours.class_names == tuple(f"cat{i}" for i in range(1, 81))  # from the checkpoint's label_map
    perm = torch.from_numpy(seed000_to_ours_permutation())
    x = normalized_images("ssd300-resnet50", 1, seed=5)
    with torch.no_grad():
        ref_locs, ref_confs = ref.heads(x)  # [N, 4, 8732], [N, 81, 8732], shape-major priors
        locs, logits = ours(x)
    ref_locs_ours = ref_locs.permute(0, 2, 1)[:, perm]
    ref_logits_ours = ref_confs.permute(0, 2, 1)[:, perm]
    assert locs.shape == (1, 8732, 4) and logits.shape == (1, 8732, 81)
    assert (locs - ref_locs_ours).abs().max().item() <= HEAD_ATOL
    assert (logits - ref_logits_ours).abs().max().item() <= HEAD_ATOL

    spec = get_preset("ssd300-resnet50").postprocess
    settings = (spec.score_threshold, spec.iou_threshold, spec.topk_candidates, spec.max_detections, spec.min_size)
    assert settings == (0.05, 0.5, None, 100, 1 / 300)  # seed 000's decode_single_new
    ref_dets = ref.postprocess(ref_locs.clone(), ref_confs.clone())  # seed's decode_single_new (edits in place)
    our_dets = postprocess_spec(locs, logits, default_boxes("ssd300-resnet50"), spec)
    for (rb, rl, rs), o in zip(ref_dets, our_dets):
        assert len(o) == len(rb) > 20
        np.testing.assert_allclose(canonical(o.boxes, o.scores, o.labels), canonical(rb, rs, rl), atol=1e-5)


def test_nvidia_bare_state_dict_defaults_to_coco_names(nvidia_ssd, tmp_path: Path) -> None:  # noqa: ANN001
    ref, _ = nvidia_ssd
    bare = tmp_path / "bare.pt"
    torch.save(ref.state_dict(), bare)  # no 'model' key, no 'module.' prefix, no label_map
    model = import_weights(bare, "nvidia").model
    assert model.num_classes == 81 and model.class_names[:3] == ("person", "bicycle", "car")
    assert "N/A" not in model.class_names and len(model.class_names) == 80
    # head permutation, checked on the stored tensors: our channel a*K + k is NVIDIA's k*A + a
    a, k = 4, 81
    ref_w, our_w = ref.state_dict()["conf.0.weight"], model.state_dict()["conf.0.weight"]
    assert torch.equal(our_w[2 * k + 7], ref_w[7 * a + 2])
    assert torch.equal(model.state_dict()["loc.5.bias"][3 * 4 + 1], ref.state_dict()["loc.5.bias"][1 * 4 + 3])


def test_wrong_or_broken_sources_raise_clear_errors(
    torchvision_ssd, nvidia_ssd, tmp_path: Path  # noqa: ANN001
) -> None:
    _, tv_path = torchvision_ssd
    _, nv_path = nvidia_ssd
    with pytest.raises(CheckpointError, match="not an NVIDIA SSD300 checkpoint"):
        import_weights(tv_path, "nvidia")
    with pytest.raises(CheckpointError, match="not a torchvision ssd300_vgg16"):
        import_weights(nv_path, "torchvision")
    with pytest.raises(UnknownWeightsSourceError, match="choose one of: nvidia, torchvision"):
        import_weights(tv_path, "caffe")
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        import_weights(tmp_path / "missing.pth", "torchvision")
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(tv_path.read_bytes()[: 1 << 20])
    with pytest.raises(CheckpointError, match="truncated"):
        import_weights(truncated, "torchvision")
    partial = tmp_path / "partial.pth"
    torch.save({k: v for k, v in torch.load(tv_path).items() if "extra.3" not in k}, partial)
    with pytest.raises(CheckpointError, match="missing"):
        import_weights(partial, "torchvision")


# ------------------------------------------------------------------------------------------------------------ CLI


def test_cli_import_weights(
    torchvision_ssd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys  # noqa: ANN001
) -> None:
    import ssdtrt.cli.app as cli

    monkeypatch.setattr(cli, "COMMAND_MODULES", ("weights",))  # only this command group; others are tested apart
    _, tv_path = torchvision_ssd
    out = tmp_path / "out" / "vgg.pt"
    assert cli.main(["import-weights", str(tv_path), "--from", "torchvision", "--out", str(out)]) == 0
    assert out.is_file() and load_model(out).num_classes == 91
    capsys.readouterr()

    code = cli.main(["import-weights", str(tv_path), "--from", "caffe", "--out", str(tmp_path / "x.pt")])
    err = capsys.readouterr().err.strip()
    assert code != 0 and not (tmp_path / "x.pt").exists()
    assert err.count("\n") == 0 and "Traceback" not in err
    assert "caffe" in err and "nvidia" in err and "torchvision" in err

    code = cli.main(["import-weights", str(tmp_path / "nope.pth"), "--from", "nvidia", "--out", str(tmp_path / "y.pt")])
    err = capsys.readouterr().err.strip()
    assert code != 0 and err.count("\n") == 0 and "nope.pth" in err and "Traceback" not in err


def test_init_weights_writes_a_loadable_random_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ssdtrt.cli.app import main
    from ssdtrt.model.checkpoint import load_model

    out = tmp_path / "rand.pt"
    assert main(["init-weights", "--preset", "ssd-small", "--out", str(out), "--seed", "3", "--score-candidates", "0"]) == 0
    model = load_model(out)
    assert model.preset == "ssd-small"
    torch.manual_seed(3)
    from ssdtrt.model.ssd import build_model

    same = build_model("ssd-small")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), same.state_dict().values()))
    assert main(["init-weights", "--preset", "nope", "--out", str(tmp_path / "x.pt")]) == 1
    assert "unknown preset" in capsys.readouterr().err and not (tmp_path / "x.pt").exists()


def test_init_weights_score_candidates_give_a_detector_like_score_count(tmp_path: Path) -> None:
    """The calibrated heads pass about the asked number of scores per image (counted independently here), where
    plain random heads pass most of them; backbone and box heads stay the plain random ones."""
    from ssdtrt.cli.app import main
    from ssdtrt.compare import load_images
    from ssdtrt.model.checkpoint import load_model
    from ssdtrt.preprocess.host import preprocess_images

    plain, calibrated = tmp_path / "plain.pt", tmp_path / "cal.pt"
    assert main(["init-weights", "--preset", "ssd-small", "--out", str(plain), "--score-candidates", "0"]) == 0
    assert main(["init-weights", "--preset", "ssd-small", "--out", str(calibrated), "--score-candidates", "300"]) == 0
    m_plain, m_cal = load_model(plain), load_model(calibrated)
    x = torch.from_numpy(preprocess_images(load_images("synthetic", 4, split="train"), m_cal.spec.preprocess))
    threshold = m_cal.spec.postprocess.score_threshold

    def count(model: torch.nn.Module) -> float:
        with torch.no_grad():
            _, logits = model(x)
        return float((logits.softmax(-1)[..., 1:] > threshold).sum(dim=(1, 2)).double().mean())

    assert 270 <= count(m_cal) <= 330  # ±10%: the count is matched on these images, float rounding aside
    assert count(m_plain) > 3 * 300
    sd_plain, sd_cal = m_plain.state_dict(), m_cal.state_dict()
    assert all(torch.equal(sd_plain[k], sd_cal[k]) for k in sd_plain if not k.startswith("conf."))
    assert main(["init-weights", "--preset", "ssd-small", "--out", str(tmp_path / "x.pt"), "--score-candidates", "-1"]) != 0
