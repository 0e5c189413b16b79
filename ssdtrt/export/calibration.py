"""INT8 calibration data: images from a dataset spec, preprocessed exactly as at inference, cached as .npz.

The cache key is (data spec, split, image count, preprocess spec), so quantizing again with another calibration
method — or another export mode of the same model — reuses the preprocessed tensors instead of re-reading images.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ssdtrt.core.config import Preprocess
from ssdtrt.core.errors import DatasetError, ExportError
from ssdtrt.io.files import atomic_path

CALIB_METHODS = ("minmax", "entropy", "percentile")
HIGH_PRECISIONS = ("fp16", "fp32")
DEFAULT_CACHE_DIR = Path("export") / ".calib"


@dataclass(frozen=True)
class CalibrationConfig:
    """Where calibration images come from and how ranges are computed (method: minmax | entropy | percentile)."""

    data: str
    num_images: int = 256
    method: str = "minmax"
    split: str = "train"
    batch_size: int = 8
    cache_dir: Path | None = DEFAULT_CACHE_DIR
    #: 7-bit weights (onnxruntime's reduce_range). CPUs without VNNI (AVX2 only) multiply u8×s8 pairs into 16-bit
    #: sums that saturate with full 8-bit weights: OpenVINO int8 drifts ~4× further from fp32 there (measured).
    reduce_range: bool = False
    #: Type of the non-quantized parts of the INT8 graph (modelopt's `high_precision_dtype`): fp16 is what TensorRT
    #: runs fastest under strong typing; fp32 keeps ONNX Runtime's CPU QLinearConv fusion (fp32 Q/DQ only).
    high_precision: str = "fp16"
    #: Conv node names left unquantized (in `high_precision`): the layers `ssdtrt export --max-drop` returns to
    #: float (`ssdtrt.export.fallback`). Calibration still covers them, so the ranges cache is shared.
    float_layers: tuple[str, ...] = ()
    #: Conv node names whose *input* range comes from `range_method` instead of `method` (every conv stays INT8):
    #: the cheaper fallback for a method that clips (entropy on this data), tried before float layers.
    range_layers: tuple[str, ...] = ()
    range_method: str = "percentile"
    #: (tensor name, |range|) pairs that override calibration (symmetric): the ranges a QAT checkpoint trained with.
    fixed_ranges: tuple[tuple[str, float], ...] = ()

    def __post_init__(self) -> None:
        if self.high_precision not in HIGH_PRECISIONS:
            choices = ", ".join(HIGH_PRECISIONS)
            raise ExportError(f"unknown INT8 float type {self.high_precision!r}; choose one of: {choices}")
        if self.method not in CALIB_METHODS:
            raise ExportError(f"unknown calibration method {self.method!r}; choose one of: {', '.join(CALIB_METHODS)}")
        if self.range_method not in CALIB_METHODS:
            raise ExportError(f"unknown range fallback method {self.range_method!r}; choose one of: "
                              f"{', '.join(CALIB_METHODS)}")
        if self.num_images < 1:
            raise ExportError(f"--calib-images must be >= 1, got {self.num_images}")


def _open_dataset(data: str, split: str) -> Any:
    """The dataset for a spec via `ssdtrt.data.open_dataset` (synthetic falls back to its class directly)."""
    try:
        from ssdtrt.data import open_dataset
    except ImportError:
        open_dataset = None
    if open_dataset is not None:
        return open_dataset(data, split)
    if data == "synthetic":
        from ssdtrt.data.synthetic import SyntheticShapes

        return SyntheticShapes(split)
    raise DatasetError(f"cannot open dataset {data!r} (ssdtrt.data.open_dataset is not available)")


def _data_key(cfg: CalibrationConfig, pre: Preprocess) -> str:
    blob = json.dumps({"data": cfg.data, "split": cfg.split, "n": cfg.num_images, "pre": asdict(pre)}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def calibration_tensors(cfg: CalibrationConfig, pre: Preprocess) -> tuple[np.ndarray, dict[str, Any]]:
    """[n, 3, H, W] float32 calibration inputs (from the .npz cache when present) and a description for manifests."""
    from ssdtrt.preprocess.host import preprocess_images

    key = _data_key(cfg, pre)
    cache = cfg.cache_dir / f"images-{key}.npz" if cfg.cache_dir is not None else None
    info = {"data": cfg.data, "split": cfg.split, "method": cfg.method, "key": key}
    if cache is not None and cache.is_file():
        with np.load(cache) as f:
            tensors = f["images"]
        return tensors, {**info, "num_images": int(tensors.shape[0]), "cached": True}
    try:
        dataset = _open_dataset(cfg.data, cfg.split)
        n = min(cfg.num_images, len(dataset))
        if n == 0:
            raise ExportError(f"calibration set {cfg.data!r} ({cfg.split}) is empty: INT8 needs at least one image")
        tensors = np.concatenate(
            [preprocess_images([dataset[i].image for i in range(s, min(s + 32, n))], pre) for s in range(0, n, 32)]
        )
    except (DatasetError, ExportError):
        raise
    except (OSError, ValueError) as err:
        raise ExportError(f"cannot read calibration data {cfg.data!r}: {err}") from err
    if cache is not None:
        try:
            with atomic_path(cache, suffix=".npz") as tmp:
                with open(tmp, "wb") as f:
                    np.savez(f, images=tensors)
        except OSError:
            pass  # a cache is an optimisation: an unwritable cache folder is not an error
    return tensors, {**info, "num_images": int(tensors.shape[0]), "cached": False}


def ranges_cache_path(cfg: CalibrationConfig, model_sha256: str, pre: Preprocess) -> Path | None:
    """JSON of the activation ranges ORT computed for (model, data, method): re-quantizing skips calibration."""
    if cfg.cache_dir is None:
        return None
    return cfg.cache_dir / f"ranges-{model_sha256[:16]}-{_data_key(cfg, pre)}-{cfg.method}.json"


class ArrayCalibrationReader:
    """onnxruntime CalibrationDataReader over an in-memory [n, 3, H, W] array, `batch_size` images at a time."""

    def __init__(self, tensors: np.ndarray, input_name: str, batch_size: int, fixed_batch: int | None) -> None:
        self.tensors = tensors
        self.input_name = input_name
        self.batch_size = fixed_batch or batch_size
        self.fixed = fixed_batch is not None
        self._it: Iterator[dict[str, np.ndarray]] | None = None

    def _batches(self) -> Iterator[dict[str, np.ndarray]]:
        n = self.tensors.shape[0]
        for s in range(0, n, self.batch_size):
            chunk = self.tensors[s : s + self.batch_size]
            if self.fixed and chunk.shape[0] < self.batch_size:  # static batch: drop a ragged tail unless it is all
                if s > 0:
                    return
                reps = -(-self.batch_size // chunk.shape[0])
                chunk = np.concatenate([chunk] * reps)[: self.batch_size]
            yield {self.input_name: np.ascontiguousarray(chunk)}

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._it is None:
            self._it = self._batches()
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = None

    def chunks(self, batches_per_chunk: int) -> Iterator[ArrayCalibrationReader]:
        """Readers over consecutive slices of `batches_per_chunk` batches (feeding a calibrator piece by piece)."""
        step = self.batch_size * max(1, batches_per_chunk)
        for s in range(0, self.tensors.shape[0], step):
            part = self.tensors[s : s + step]
            if self.fixed and s > 0 and part.shape[0] < self.batch_size:
                return  # as `_batches`: a static batch drops a ragged tail
            yield ArrayCalibrationReader(part, self.input_name, self.batch_size, self.batch_size if self.fixed else None)

    def __len__(self) -> int:
        return -(-self.tensors.shape[0] // self.batch_size)


def cache_dir_for(out: str | os.PathLike[str]) -> Path:
    """The default cache folder for an output path: `<out folder>/.calib`."""
    return Path(out).parent / ".calib"
