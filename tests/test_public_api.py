"""The lazy public API: every name in `ssdtrt.__all__` resolves, whatever was imported before it."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import ssdtrt


@pytest.mark.parametrize("name", ssdtrt.__all__)
def test_every_public_name_resolves(name: str) -> None:
    assert getattr(ssdtrt, name) is not None


def test_postprocess_functions_resolve_after_the_subpackage_was_imported() -> None:
    """`ssdtrt.postprocess` is a package (stages live there): its functions are reachable the same way whether or not
    a submodule was imported first, and the torch and numpy functions agree on the same heads."""
    import torch

    import ssdtrt.postprocess.stages  # noqa: F401  (binds the subpackage as an attribute first)
    from ssdtrt.postprocess import postprocess, postprocess_numpy

    assert ssdtrt.postprocess.postprocess is postprocess
    rng = np.random.default_rng(0)
    priors = ssdtrt.default_boxes("ssd-small")
    locs = rng.normal(0, 0.5, (2, priors.shape[0], 4)).astype(np.float32)
    logits = rng.normal(0, 2.0, (2, priors.shape[0], 7)).astype(np.float32)
    a = postprocess(torch.from_numpy(locs), torch.from_numpy(logits), priors, score_threshold=0.3)
    b = postprocess_numpy(locs, logits, priors, score_threshold=0.3)
    for da, db in zip(a, b):
        np.testing.assert_allclose(da.numpy().boxes, db.boxes, atol=1e-5)
        np.testing.assert_array_equal(da.numpy().labels, db.labels)


def test_import_ssdtrt_imports_no_torch() -> None:
    code = "import sys, ssdtrt; ssdtrt.postprocess; ssdtrt.postprocess.postprocess_numpy; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"
