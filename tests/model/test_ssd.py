"""SSD model: output shapes vs PriorSpecs, build-time checks, checkpoint round trip and checkpoint errors."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from ssdtrt.core.config import get_preset  # noqa: E402
from ssdtrt.core.errors import CheckpointError, ClassCountMismatchError  # noqa: E402
from ssdtrt.model.checkpoint import load_checkpoint, load_model, save_checkpoint  # noqa: E402
from ssdtrt.model.ssd import SSD, build_model  # noqa: E402
from ssdtrt.core.priors import default_boxes  # noqa: E402


def test_ssd_small_shapes_match_prior_spec() -> None:
    model = build_model("ssd-small").eval()
    spec = get_preset("ssd-small")
    assert model.num_classes == spec.default_num_classes and model.preset == "ssd-small"
    assert model.class_names == tuple(f"class{i}" for i in range(1, spec.default_num_classes))
    with torch.no_grad():
        locs, logits = model(torch.randn(2, 3, 160, 160))
    p = spec.priors.num_priors
    assert p == len(default_boxes("ssd-small")) == 2390
    assert locs.shape == (2, p, 4) and logits.shape == (2, p, spec.default_num_classes)
    assert [f.shape[-1] for f in model.backbone(torch.randn(1, 3, 160, 160))] == list(spec.priors.feature_maps)


def test_ssd300_resnet50_forward_gives_8732_priors() -> None:
    model = build_model("ssd300-resnet50", class_names=["cat", "dog"]).eval()
    assert model.num_classes == 3 and model.class_names == ("cat", "dog")
    meta = {k: v.to("meta") for k, v in (*model.backbone.named_parameters(), *model.backbone.named_buffers())}
    maps = torch.func.functional_call(model.backbone, meta, (torch.empty(1, 3, 300, 300, device="meta"),))
    with torch.no_grad():
        locs, logits = model(torch.randn(1, 3, 300, 300))
    assert [tuple(m.shape[1:]) for m in maps] == [
        (1024, 38, 38), (512, 19, 19), (512, 10, 10), (256, 5, 5), (256, 3, 3), (256, 1, 1)
    ]
    assert locs.shape == (1, 8732, 4) and logits.shape == (1, 8732, 3)


def test_ssd300_vgg16_structure_and_prior_count() -> None:
    model = build_model("ssd300-vgg16")  # forward + torchvision parity run in test_weights.py
    # build_model refuses a network whose head count differs from its PriorSpec (test_build_rejects_spec_...)
    assert model.num_classes == 91 and model.spec.priors.num_priors == 8732
    assert torch.equal(model.backbone.scale_weight.detach(), torch.full((512,), 20.0))  # L2Norm scale init
    assert sum(p.numel() for p in model.parameters()) == 35_641_826  # torchvision's ssd300_vgg16 meta num_params


def test_head_order_is_cell_major_like_the_priors() -> None:
    """A bias on one anchor slot of one map must light up exactly the priors of that slot in default_boxes order."""
    model = build_model("ssd-small", num_classes=3).eval()
    with torch.no_grad():
        for conv in model.loc:
            conv.weight.zero_()
            conv.bias.zero_()
        a = 2  # box shape 2 of map 1 (10x10, 6 shapes): channel a*4 + coord
        model.loc[1].bias[a * 4 + 2] = 1.0
        locs, _ = model(torch.randn(1, 3, 160, 160))
    hot = locs[0, :, 2].nonzero().squeeze(1)
    start = 20 * 20 * 4
    assert hot.tolist() == [start + cell * 6 + a for cell in range(100)]


def test_build_rejects_spec_whose_maps_disagree_with_backbone() -> None:
    spec = get_preset("ssd-small")
    bad_priors = dataclasses.replace(spec.priors, feature_maps=(19, 10, 5, 3, 1))
    with pytest.raises(ValueError, match="feature maps"):
        build_model(dataclasses.replace(spec, priors=bad_priors))
    with pytest.raises(ValueError, match="class names"):
        build_model("ssd-small", num_classes=4, class_names=["a"])


def test_checkpoint_round_trip_identical_outputs(tmp_path: Path) -> None:
    model = build_model("ssd-small", class_names=["circle", "square", "triangle"])
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x = torch.randn(2, 3, 160, 160)
    locs, logits = model(x)  # train mode: updates BN running stats, so they must round-trip too
    (locs.square().mean() + logits.square().mean()).backward()
    opt.step()
    path = save_checkpoint(tmp_path / "sub" / "ckpt.pt", model, optimizer=opt, epoch=4, metrics={"map50": 0.5})
    assert path.is_file() and not list(path.parent.glob("*.tmp"))
    loaded = load_model(path)
    assert isinstance(loaded, SSD) and not loaded.training
    assert loaded.preset == "ssd-small" and loaded.class_names == ("circle", "square", "triangle")
    model.eval()
    with torch.no_grad():
        a, b = model(x), loaded(x)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    ckpt = load_checkpoint(path)
    assert ckpt["format"] == "ssdtrt-checkpoint" and ckpt["version"] == 1 and ckpt["epoch"] == 4
    assert ckpt["metrics"] == {"map50": 0.5} and ckpt["num_classes"] == 4
    opt2 = torch.optim.SGD(loaded.parameters(), lr=0.1, momentum=0.9)
    opt2.load_state_dict(ckpt["optimizer"])  # resumable
    renamed = load_model(path, class_names=["c", "s", "t"])
    assert renamed.class_names == ("c", "s", "t")
    with pytest.raises(ClassCountMismatchError, match="4 classes"):
        load_model(path, class_names=["only-one"])


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_checkpoint(tmp_path_factory.mktemp("ck") / "good.pt", build_model("ssd-small"))


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("missing", "no such checkpoint file"),
        ("empty", "empty file"),
        ("truncated", "truncated or corrupt"),
        ("garbage", "not a PyTorch checkpoint"),
        ("plain_state_dict", "not an ssdtrt checkpoint"),
        ("pickle_code", "not a loadable checkpoint"),
        ("wrong_keys", "weights do not fit the model"),
        ("wrong_shapes", "shape mismatch"),
        ("future_version", "unsupported checkpoint version"),
    ],
)
def test_bad_checkpoints_raise_checkpoint_error(saved: Path, tmp_path: Path, kind: str, message: str) -> None:
    path = tmp_path / f"{kind}.pt"
    good = load_checkpoint(saved)
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        path.write_bytes(saved.read_bytes()[: saved.stat().st_size // 2])
    elif kind == "garbage":
        path.write_text("definitely not a checkpoint\n")
    elif kind == "plain_state_dict":
        torch.save(good["model"], path)
    elif kind == "pickle_code":
        torch.save({"format": "ssdtrt-checkpoint", "evil": Path("/etc/passwd")}, path)  # a non-allowlisted global
    elif kind == "wrong_keys":
        torch.save({**good, "model": {f"renamed.{k}": v for k, v in good["model"].items()}}, path)
    elif kind == "wrong_shapes":
        torch.save({**good, "num_classes": 5, "class_names": ["a", "b", "c", "d"]}, path)
    elif kind == "future_version":
        torch.save({**good, "version": 99}, path)
    with pytest.raises(CheckpointError, match=message) as info:
        load_model(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
