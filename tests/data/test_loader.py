"""torch loader: normalization identical to ssdtrt.preprocess.host, collate shapes, reproducible per-sample RNG."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from ssdtrt.core.config import get_preset  # noqa: E402
from ssdtrt.data import EvalTransform, SyntheticShapes, TrainTransform, collate, make_loader  # noqa: E402
from ssdtrt.data.loader import TorchDetectionDataset  # noqa: E402
from ssdtrt.preprocess.host import normalize_batch, preprocess_images  # noqa: E402


@pytest.mark.parametrize("preset", ["ssd-small", "ssd300-vgg16"])
def test_normalization_equals_preprocess(preset: str) -> None:
    spec = get_preset(preset).preprocess
    ds = SyntheticShapes("val", size=4, image_size=200)
    tds = TorchDetectionDataset(ds, EvalTransform(spec))
    image, boxes, labels = tds[2]
    sample = ds[2]
    expected = preprocess_images([sample.image], spec)[0]
    assert image.dtype == torch.float32 and tuple(image.shape) == (3, spec.height, spec.width)
    np.testing.assert_array_equal(image.numpy(), expected)
    # an independent float64 reference of (x / 255 - mean) / std
    x = np.asarray(EvalTransform(spec)(sample.image, sample.boxes_xyxy, sample.labels)[0], np.float64) / 255.0
    ref = ((x - np.array(spec.mean)) / np.array(spec.std)).transpose(2, 0, 1)
    np.testing.assert_allclose(image.numpy(), ref, rtol=1e-5, atol=1e-4 * max(1.0, 1.0 / min(spec.std) / 255.0))
    np.testing.assert_allclose(boxes.numpy(), sample.boxes_xyxy / 200.0, atol=1e-7)
    assert labels.dtype == torch.int64 and labels.tolist() == sample.labels.tolist()


def test_train_items_reproducible_per_seed_epoch_index() -> None:
    spec = get_preset("ssd-small").preprocess
    ds = SyntheticShapes("train", size=8)
    a, b = TorchDetectionDataset(ds, TrainTransform(spec), seed=5), TorchDetectionDataset(ds, TrainTransform(spec), 5)
    for i in (0, 3, 7):
        assert all(torch.equal(x, y) for x, y in zip(a[i], b[i]))
    first = a[3]
    a.set_epoch(1)
    assert not torch.equal(a[3][0], first[0]), "a new epoch draws new augmentations"
    a.set_epoch(0)
    assert torch.equal(a[3][0], first[0])
    chw = first[0].numpy()
    assert np.isfinite(chw).all() and chw.shape == (3, 160, 160)


@pytest.mark.integration  # DataLoader worker processes
def test_collate_and_loader_workers_match_serial() -> None:
    spec = get_preset("ssd-small").preprocess
    ds = SyntheticShapes("train", size=10)
    batch = collate([TorchDetectionDataset(ds, EvalTransform(spec))[i] for i in range(3)])
    images, boxes, labels = batch
    assert tuple(images.shape) == (3, 3, 160, 160) and len(boxes) == len(labels) == 3
    assert all(b.shape == (len(lab), 4) for b, lab in zip(boxes, labels))

    def run(num_workers: int) -> list:
        loader = make_loader(ds, TrainTransform(spec), batch_size=4, shuffle=True, num_workers=num_workers, seed=3)
        loader.dataset.set_epoch(2)
        return list(loader)

    serial, parallel = run(0), run(2)
    assert len(serial) == 3 and tuple(serial[-1][0].shape) == (2, 3, 160, 160)
    for (xa, ba, la), (xb, bb, lb) in zip(serial, parallel):
        assert torch.equal(xa, xb)
        assert all(torch.equal(p, q) for p, q in zip(ba, bb)) and all(torch.equal(p, q) for p, q in zip(la, lb))
    # shuffling is seeded: the same seed gives the same permutation, and it is not the identity
    def permutation(seed: int) -> list[int]:
        (images, _, _), = list(make_loader(ds, EvalTransform(spec), batch_size=10, shuffle=True, seed=seed))
        plain = torch.stack([TorchDetectionDataset(ds, EvalTransform(spec))[i][0] for i in range(10)])
        return [int(torch.argmin((plain - im).abs().flatten(1).sum(1))) for im in images]

    perm = permutation(11)
    assert sorted(perm) == list(range(10)) and perm != list(range(10)) and perm == permutation(11)
    sampler = torch.utils.data.SequentialSampler(range(10))
    loader = make_loader(ds, EvalTransform(spec), batch_size=5, shuffle=True, sampler=sampler)
    assert [len(b[1]) for b in loader] == [5, 5]
