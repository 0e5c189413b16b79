"""Checkpoints: one torch.save'd dict carrying the weights and everything needed to rebuild the model.

Format (version 1): {"format": "ssdtrt-checkpoint", "version": 1, "preset": name, "spec": ModelSpec.to_dict(),
"num_classes", "class_names", "category_ids", "model": state_dict, "optimizer", "epoch", "metrics", "extra"}.
`category_ids` (optional, None or absent when the data has none): the dataset's id of label L at index L-1, e.g. COCO's
1..90 with gaps, taken from `model.category_ids`; loading sets it back on the model, so exports carry it on.
Written atomically; read with `weights_only=True` (no arbitrary unpickling) and validated, so a bad file fails with
a CheckpointError naming the file and the problem rather than a torch traceback.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ssdtrt.core.errors import CheckpointError, ClassCountMismatchError
from ssdtrt.io.files import atomic_path

if TYPE_CHECKING:
    import torch

    from ssdtrt.model.ssd import SSD

CHECKPOINT_FORMAT = "ssdtrt-checkpoint"
CHECKPOINT_VERSION = 1
_REQUIRED_KEYS = ("spec", "num_classes", "class_names", "model")


def save_checkpoint(
    path: str | os.PathLike[str],
    model: SSD,
    *,
    optimizer: torch.optim.Optimizer | Mapping[str, Any] | None = None,
    epoch: int | None = None,
    metrics: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write `model` (and optionally optimizer state, epoch, metrics, extra) atomically to `path`; returns the path.

    A DistributedDataParallel / compiled wrapper is unwrapped; tensors are moved to CPU so the file loads anywhere.
    `metrics` and `extra` must hold plain types (numbers, strings, lists, dicts, tensors): the file is read back
    with `weights_only=True`.
    """
    import torch

    model = _unwrap(model)
    opt_state = optimizer.state_dict() if hasattr(optimizer, "state_dict") else optimizer
    ckpt = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "preset": model.spec.name,
        "spec": model.spec.to_dict(),
        "num_classes": int(model.num_classes),
        "class_names": list(model.class_names),
        "category_ids": _checked_category_ids(getattr(model, "category_ids", None), model.num_classes, "model"),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": opt_state,
        "epoch": epoch,
        "metrics": dict(metrics) if metrics is not None else None,
        "extra": dict(extra) if extra is not None else None,
        "torch_version": str(torch.__version__),
    }
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(ckpt, tmp)
    return path


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read and validate a checkpoint written by `save_checkpoint`; raises CheckpointError naming file and problem."""
    path = Path(path)
    ckpt = read_torch_file(path, map_location=map_location)
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        hint = ""
        if isinstance(ckpt, dict) and ("model" in ckpt or any(isinstance(k, str) and "." in k for k in ckpt)):
            hint = " (looks like a foreign state dict: convert it with `ssdtrt import-weights`)"
        raise CheckpointError(f"{path}: not an ssdtrt checkpoint (no format={CHECKPOINT_FORMAT!r} marker){hint}")
    version = ckpt.get("version")
    if not isinstance(version, int) or version > CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path}: unsupported checkpoint version {version!r} (this ssdtrt reads <= {CHECKPOINT_VERSION})"
        )
    missing = [k for k in _REQUIRED_KEYS if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {', '.join(missing)}")
    if not isinstance(ckpt["model"], Mapping):
        raise CheckpointError(f"{path}: 'model' is a {type(ckpt['model']).__name__}, not a state dict")
    return ckpt


def read_torch_file(path: Path, map_location: str | torch.device = "cpu") -> Any:
    """torch.load with weights_only=True; every failure becomes a CheckpointError naming the file."""
    import pickle
    import warnings
    import zipfile

    import torch

    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if not path.is_file():
        raise CheckpointError(f"{path}: not a file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: empty file")
    with open(path, "rb") as f:
        magic = f.read(4)
    is_zip = magic == b"PK\x03\x04"  # torch.save's default (zip) format
    if not is_zip and not magic.startswith(b"\x80"):  # legacy torch.save / plain pickle start with PROTO
        raise CheckpointError(f"{path}: not a PyTorch checkpoint (neither a torch zip archive nor a pickle)")
    if is_zip:
        _check_zip_crc(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pickle-protocol chatter from the weights-only unpickler
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(f"{path}: not a loadable checkpoint ({_first_line(err)})") from err
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, KeyError, OSError, AttributeError) as err:
        what = "truncated or corrupt zip archive" if is_zip else "truncated or corrupt pickle"
        raise CheckpointError(f"{path}: {what} ({_first_line(err)})") from err


def _check_zip_crc(path: Path) -> None:
    """torch.load does not check the archive's CRC-32s, so flipped bytes inside a tensor load as wrong weights;
    zipfile checks every member (~0.1 s per 100 MB here). A damaged archive raises CheckpointError."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as err:
        raise CheckpointError(f"{path}: truncated or corrupt zip archive ({_first_line(err)})") from err
    if bad is not None:
        raise CheckpointError(f"{path}: corrupt zip archive (CRC mismatch in {bad}): the file was damaged after saving")


def _first_line(err: BaseException) -> str:
    """The informative line of a torch.load error (its weights-only errors open with a long generic preamble)."""
    import re

    text = re.sub(r"\x1b\[[0-9;]*m", "", str(err)).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in lines:
        if ln.startswith("WeightsUnpickler error:"):
            return ln.removeprefix("WeightsUnpickler error:").strip()
    if not lines:
        return type(err).__name__
    return lines[0].split(". This is an internal")[0].split(". In PyTorch 2.6")[0][:160]


def model_from_checkpoint(
    ckpt: Mapping[str, Any],
    *,
    source: str | os.PathLike[str] = "<checkpoint>",
    class_names: Sequence[str] | None = None,
) -> SSD:
    """Rebuild the SSD of a validated checkpoint dict and load its weights (strict)."""
    from ssdtrt.core.config import ModelSpec
    from ssdtrt.model.ssd import SSD, _count_outputs

    try:
        spec = ModelSpec.from_dict(ckpt["spec"])
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{source}: malformed model spec in checkpoint ({err})") from err
    num_classes = int(ckpt["num_classes"])
    names = list(ckpt["class_names"]) if class_names is None else list(class_names)
    if len(names) != num_classes - 1:
        what = "given" if class_names is not None else "stored"
        raise ClassCountMismatchError(
            f"{source}: the checkpoint has {num_classes} classes ({num_classes - 1} + background) but "
            f"{len(names)} class names are {what}"
        )
    try:
        model = SSD(spec, num_classes, names)
        _count_outputs(model)  # raises if the backbone's maps and the stored PriorSpec disagree
    except ValueError as err:
        raise CheckpointError(f"{source}: cannot build the model it describes ({err})") from err
    _load_state(model, ckpt["model"], source)
    model.category_ids = _checked_category_ids(ckpt.get("category_ids"), num_classes, source)
    return model


def _checked_category_ids(ids: Any, num_classes: int, source: str | os.PathLike[str]) -> list[int] | None:
    """Category ids as plain ints (one per class, background excluded), or None; a wrong count is a CheckpointError."""
    if ids is None:
        return None
    try:
        out = [int(i) for i in ids]
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{source}: category_ids must be integers ({err})") from err
    if len(out) != num_classes - 1:
        raise CheckpointError(f"{source}: {len(out)} category ids for {num_classes - 1} classes (background excluded)")
    return out


def _load_state(model: SSD, state: Mapping[str, Any], source: str | os.PathLike[str]) -> None:
    """Strict load with a readable summary of missing / unexpected / mis-shaped keys."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and hasattr(state[k], "shape") and tuple(state[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or shapes:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", shapes)):
            if keys:
                parts.append(f"{len(keys)} {label} (e.g. {', '.join(keys[:3])})")
        raise CheckpointError(f"{source}: weights do not fit the model: {'; '.join(parts)}")
    _check_finite(state, source)
    model.load_state_dict(state, strict=True)


def _check_finite(state: Mapping[str, Any], source: str | os.PathLike[str]) -> None:
    """NaN / inf weights (a diverged run, a corrupted file) make every score NaN: refuse them by name."""
    import torch

    bad = [k for k, v in state.items() if torch.is_tensor(v) and v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise CheckpointError(f"{source}: {len(bad)} weight tensor(s) hold NaN or inf (e.g. {', '.join(bad[:3])})")


def load_model(
    path: str | os.PathLike[str], device: str | torch.device = "cpu", class_names: Sequence[str] | None = None
) -> SSD:
    """The SSD stored at `path`, on `device`, in eval mode (`model.preset`, `num_classes`, `class_names` set).

    `class_names` overrides the stored names; a count that disagrees raises ClassCountMismatchError.
    """
    ckpt = load_checkpoint(path)
    model = model_from_checkpoint(ckpt, source=path, class_names=class_names)
    return model.to(device).eval()


def _unwrap(model: Any) -> SSD:
    for attr in ("module", "_orig_mod"):  # DDP / DataParallel, torch.compile
        while hasattr(model, attr) and not hasattr(model, "spec"):
            model = getattr(model, attr)
    if not hasattr(model, "spec") or not hasattr(model, "num_classes"):
        raise TypeError(f"save_checkpoint expects an ssdtrt SSD model, got {type(model).__name__}")
    return model
