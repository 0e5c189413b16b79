"""Import foreign SSD300 weights: torchvision `ssd300_vgg16` → `ssd300-vgg16`, NVIDIA DeepLearningExamples SSD300
(seed 000) → `ssd300-resnet50`.

torchvision already orders its head channels as ours (anchor-major: channel a*K + k), so its state dict maps one to
one with a rename of the heads. NVIDIA's heads are read with `conv(f).view(N, K, -1)`: channel k*A + a and prior
index a*H*W + y*W + x (shapes outside cells), so the importer permutes each head conv's output channels to a*K + k;
the outputs then line up with `ssdtrt.default_boxes` order. Backbones load unchanged.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ssdtrt.core.errors import CheckpointError, ClassCountMismatchError, SSDTRTError

if TYPE_CHECKING:
    import torch

    from ssdtrt.model.ssd import SSD

#: --from value → the preset its weights fit.
SOURCE_PRESETS: dict[str, str] = {"torchvision": "ssd300-vgg16", "nvidia": "ssd300-resnet50"}


class UnknownWeightsSourceError(SSDTRTError, ValueError):
    """A `--from` value that is not one of SOURCE_PRESETS."""

    exit_code = 2


@dataclass
class ImportResult:
    """The imported model plus what the user should know about the conversion."""

    model: SSD
    source: str
    source_num_classes: int
    notes: list[str] = field(default_factory=list)


def coco_class_names(with_gaps: bool) -> tuple[str, ...] | None:
    """COCO names from torchvision's offline meta: 90 with 'N/A' gaps (torchvision's 91-way head) or the 80 real
    ones in category-id order (NVIDIA's 81-way head). None if torchvision lacks the table."""
    try:
        from torchvision.models._meta import _COCO_CATEGORIES
    except ImportError:  # pragma: no cover - private module moved
        return None
    names = list(_COCO_CATEGORIES[1:])
    return tuple(names if with_gaps else [n for n in names if n != "N/A"])


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Tensor entries of a checkpoint: a bare state dict or one under 'model' / 'state_dict'; 'module.' stripped."""
    from ssdtrt.model.checkpoint import read_torch_file

    return _state_from(read_torch_file(Path(path)), Path(path))


def _state_from(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    import torch

    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: expected a state dict (or a dict with 'model'), got {type(obj).__name__}")
    for key in ("model", "state_dict"):
        if isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    state = {str(k).removeprefix("module."): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not state:
        raise CheckpointError(f"{path}: no tensors found (not a model state dict)")
    return state


def _label_map_names(obj: Any, num_classes: int) -> tuple[str, ...] | None:
    """NVIDIA checkpoints may carry 'label_map' {label: name}; use it when it names every foreground class."""
    label_map = obj.get("label_map") if isinstance(obj, Mapping) else None
    if not isinstance(label_map, Mapping):
        return None
    try:
        names = {int(k): str(v) for k, v in label_map.items()}
    except (TypeError, ValueError):
        return None
    if all(i in names for i in range(1, num_classes)):
        return tuple(names[i] for i in range(1, num_classes))
    return None


def _require_keys(state: Mapping[str, torch.Tensor], prefix: str, source: str, what: str, other: str) -> None:
    """CheckpointError unless some key starts with `prefix` (the file is `what`; `other` names the right --from)."""
    if not any(k.startswith(prefix) for k in state):
        raise CheckpointError(f"{source}: not {what} (no '{prefix}*' keys); {other}")


def _rename_torchvision(state: Mapping[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    _require_keys(state, "backbone.features.", source, "a torchvision ssd300_vgg16 state dict",
                  "for NVIDIA SSD300 checkpoints use --from nvidia")
    out = {}
    for k, v in state.items():
        if k.startswith("head.regression_head.module_list."):
            k = "loc." + k.removeprefix("head.regression_head.module_list.")
        elif k.startswith("head.classification_head.module_list."):
            k = "conf." + k.removeprefix("head.classification_head.module_list.")
        elif k.startswith("anchor_generator.") or k.startswith("box_coder."):  # no tensors today; be lenient
            continue
        out[k] = v
    return out


#: Non-learned prior tables some SSD300 variants (seed 000) store in the state dict; ssdtrt derives priors itself.
_NVIDIA_PRIOR_TABLES = ("compute_loss.", "postprocess.", "encoder.")


def _rename_nvidia(state: Mapping[str, torch.Tensor], anchors: Sequence[int], source: str) -> dict[str, torch.Tensor]:
    _require_keys(state, "feature_extractor.feature_extractor.", source, "an NVIDIA SSD300 checkpoint",
                  "for torchvision ssd300_vgg16 state dicts use --from torchvision")
    out = {}
    for k, v in state.items():
        if k.startswith("feature_extractor."):
            out["backbone." + k.removeprefix("feature_extractor.")] = v
        elif k.startswith("additional_blocks."):
            out["backbone." + k] = v
        elif k.startswith(_NVIDIA_PRIOR_TABLES):
            continue  # seed 000 keeps its default boxes as frozen Parameters of the loss / postprocess
        elif k.startswith(("loc.", "conf.")):
            head, idx, _ = k.split(".", 2)
            a = anchors[int(idx)] if int(idx) < len(anchors) else None
            out[k] = _anchor_major(v, a, source, k) if a is not None else v
        else:
            out[k] = v  # unexpected keys are reported by the strict load
    return out


def _anchor_major(t: torch.Tensor, anchors: int, source: str, key: str) -> torch.Tensor:
    """Reorder output channels from NVIDIA's k*A + a to our a*K + k (weights [A*K, ...] or biases [A*K])."""
    if t.shape[0] % anchors:
        raise CheckpointError(f"{source}: {key} has {t.shape[0]} output channels, not a multiple of {anchors} boxes")
    k = t.shape[0] // anchors
    return t.reshape(k, anchors, *t.shape[1:]).transpose(0, 1).reshape(t.shape).contiguous()


def _head_classes(state: Mapping[str, torch.Tensor], anchors: int, source: str) -> int:
    w = state.get("conf.0.weight")
    if w is None:
        raise CheckpointError(f"{source}: no classification head weights (conf.0.weight) found")
    if w.shape[0] % anchors:
        raise CheckpointError(f"{source}: classification head has {w.shape[0]} channels, not a multiple of {anchors}")
    return w.shape[0] // anchors


def import_weights(
    src: str | os.PathLike[str],
    source: str,
    *,
    num_classes: int | None = None,
    class_names: Sequence[str] | None = None,
) -> ImportResult:
    """Build the preset that fits `source` ('torchvision' | 'nvidia') and load the weights of `src` into it.

    `num_classes` (incl. background) other than the source's keeps backbone and box heads and re-initialises the
    classification heads (noted in `notes`). `class_names` must then name num_classes - 1 classes.
    """
    from ssdtrt.core.config import get_preset
    from ssdtrt.model.checkpoint import _load_state
    from ssdtrt.model.ssd import build_model, default_class_names

    if source not in SOURCE_PRESETS:
        raise UnknownWeightsSourceError(
            f"unknown weights source {source!r}; choose one of: {', '.join(sorted(SOURCE_PRESETS))}"
        )
    spec = get_preset(SOURCE_PRESETS[source])
    anchors = spec.priors.boxes_per_cell
    from ssdtrt.model.checkpoint import read_torch_file

    obj = read_torch_file(Path(src))
    raw = _state_from(obj, Path(src))
    state = _rename_torchvision(raw, str(src)) if source == "torchvision" else _rename_nvidia(raw, anchors, str(src))
    src_classes = _head_classes(state, anchors[0], str(src))
    if src_classes < 2:
        raise CheckpointError(f"{src}: classification head has {src_classes} class, need background + at least one")

    if source == "torchvision":
        src_names = coco_class_names(with_gaps=True) if src_classes == 91 else None
    else:
        coco80 = coco_class_names(with_gaps=False) if src_classes == 81 else None
        src_names = _label_map_names(obj, src_classes) or coco80

    target = num_classes if num_classes is not None else (len(class_names) + 1 if class_names else src_classes)
    if class_names is not None and len(class_names) != target - 1:
        raise ClassCountMismatchError(
            f"{len(class_names)} class names given for {target} classes ({target - 1} + background)"
        )
    if target < 2:
        raise ClassCountMismatchError(f"--num-classes {target}: need background + at least one class")
    notes: list[str] = []
    if target == src_classes:
        names = tuple(class_names) if class_names is not None else (src_names or default_class_names(target))
    else:
        names = tuple(class_names) if class_names is not None else default_class_names(target)
        state = {k: v for k, v in state.items() if not k.startswith("conf.")}
        notes.append(
            f"the source has {src_classes} classes, the model {target}: backbone and box heads imported, "
            "classification heads (conf.*) re-initialised — fine-tune before use"
        )

    model = build_model(spec, num_classes=target, class_names=names)
    if target != src_classes:
        state.update({k: v for k, v in model.state_dict().items() if k.startswith("conf.")})
    _load_state(model, state, src)
    return ImportResult(model=model.eval(), source=source, source_num_classes=src_classes, notes=notes)


def convert_weights(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    source: str,
    *,
    num_classes: int | None = None,
    class_names: Sequence[str] | None = None,
) -> ImportResult:
    """`import_weights` and save the result as an ssdtrt checkpoint at `dst` (atomically)."""
    from ssdtrt.io.files import sha256_file
    from ssdtrt.model.checkpoint import save_checkpoint

    result = import_weights(src, source, num_classes=num_classes, class_names=class_names)
    save_checkpoint(
        dst,
        result.model,
        extra={
            "imported_from": source,
            "source_file": str(src),
            "source_sha256": sha256_file(src),
            "source_num_classes": result.source_num_classes,
            "notes": list(result.notes),
        },
    )
    return result
