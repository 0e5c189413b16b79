"""normalize_batch against torchvision's to_tensor + normalize (the reference most training code uses)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.transforms import functional as F

from ssdtrt.core.config import Preprocess, get_preset
from ssdtrt.preprocess.host import normalize_batch, preprocess_images


@pytest.mark.parametrize("order", ["RGB", "BGR"])
def test_normalize_batch_matches_torchvision(order: str) -> None:
    base = get_preset("ssd300-resnet50").preprocess
    spec = Preprocess(37, 41, base.mean, base.std, channel_order=order)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 37, 41, 3), dtype=np.uint8)
    got = normalize_batch(images, spec)
    assert got.dtype == np.float32 and got.shape == (3, 3, 37, 41) and got.flags.c_contiguous
    src = images[..., ::-1] if order == "BGR" else images
    ref = torch.stack([F.normalize(F.to_tensor(np.ascontiguousarray(img)), spec.mean, spec.std) for img in src])
    np.testing.assert_allclose(got, ref.numpy(), rtol=0, atol=2e-6)


def test_preprocess_resizes_each_image_to_the_network_size() -> None:
    spec = get_preset("ssd-small").preprocess
    images = [np.full((48, 64, 3), 200, np.uint8), np.zeros((spec.height, spec.width, 3), np.uint8)]
    batch = preprocess_images(images, spec)
    assert batch.shape == (2, 3, spec.height, spec.width)
    expected = (200 / 255 - np.asarray(spec.mean)) / np.asarray(spec.std)
    np.testing.assert_allclose(batch[0, :, 5, 7], expected, atol=1e-5)
