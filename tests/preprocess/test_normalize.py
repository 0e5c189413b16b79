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


@pytest.mark.parametrize("interpolation", ["linear", "area", "nearest"])
def test_resize_batch_equals_cv2_resize_per_image(interpolation: str) -> None:
    """Resizing straight into the batch rows gives cv2.resize's pixels exactly, for any input sizes (one already at
    the network size is copied as it is)."""
    import cv2

    from ssdtrt.preprocess.host import resize_batch

    spec = Preprocess(24, 32, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), interpolation=interpolation)
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, shape, dtype=np.uint8) for shape in ((48, 64, 3), (24, 32, 3), (17, 90, 3))]
    batch = resize_batch(images, spec)
    assert batch.shape == (3, 24, 32, 3) and batch.dtype == np.uint8 and batch.flags.c_contiguous
    flag = {"linear": cv2.INTER_LINEAR, "area": cv2.INTER_AREA, "nearest": cv2.INTER_NEAREST}[interpolation]
    for row, image in zip(batch, images):
        expected = image if image.shape[:2] == (24, 32) else cv2.resize(image, (32, 24), interpolation=flag)
        np.testing.assert_array_equal(row, expected)
