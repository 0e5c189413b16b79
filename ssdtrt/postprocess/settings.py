"""What a caller may change about postprocessing, and the constants every postprocess path shares (torch-free).

One list of override keys (`OVERRIDE_KEYS`) serves the Python API (`Detector(score_threshold=...)`), the CLI
options, `ssdtrt serve` and the Triton repository's postprocess model; one function (`effective_settings`) decides
what an override means for each export mode. An `nms` export has its NMS in the graph: there only a higher score
threshold or fewer detections can still be applied (on its output), which `effective_settings` reports as problems.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields, replace
from typing import Any

from ssdtrt.core.config import NMS_CANDIDATES_PER_CLASS, PostprocessSpec

__all__ = [
    "EXPORT_OUTPUTS",
    "NMS_CANDIDATES_PER_CLASS",
    "OVERRIDE_KEYS",
    "OVERRIDE_TYPES",
    "ROW_FILTER_LOG_MARGIN",
    "SPARSE_MAX_ROW_SHARE",
    "baked_settings",
    "effective_settings",
    "override_values",
    "unappliable_message",
]

#: Postprocess settings a user may override at inference time, with their types (CLI, serve, Triton parameters).
OVERRIDE_TYPES: dict[str, type] = {"score_threshold": float, "iou_threshold": float, "max_detections": int}
OVERRIDE_KEYS: tuple[str, ...] = tuple(OVERRIDE_TYPES)

#: Output roles per export mode, in the order the postprocess stages take them (the export writes these names; a
#: runner that names them differently is read in manifest order).
EXPORT_OUTPUTS: dict[str, tuple[str, ...]] = {
    "raw": ("locs", "logits"),
    "decoded": ("boxes", "scores"),
    "nms": ("num_detections", "boxes", "scores", "labels"),
}

#: Margin (log space) of the row pre-filter of both host postprocess paths: a row is skipped only when even its best
#: class could not pass the threshold with a probability 1e-4 (relative) above the computed one — orders of
#: magnitude above float32 error.
ROW_FILTER_LOG_MARGIN = 1e-4
#: Above this share of (image, prior) rows passing the pre-filter the dense path is as cheap (no gathering; measured
#: on SSD300-ResNet50 heads: sparse 4.4 ms vs dense 8.6 ms with 29% of the rows passing).
SPARSE_MAX_ROW_SHARE = 0.5


def override_values(source: Mapping[str, Any] | Any) -> dict[str, Any]:
    """The overrides given in `source` (a mapping or an object with those attributes), None values left out."""
    get = source.get if isinstance(source, Mapping) else (lambda key: getattr(source, key, None))
    return {key: get(key) for key in OVERRIDE_KEYS if get(key) is not None}


def baked_settings(manifest_postprocess: Mapping[str, Any] | None, default: PostprocessSpec) -> PostprocessSpec:
    """The manifest's postprocess settings (what the export used or baked in), else the preset's defaults."""
    known = {f.name for f in fields(PostprocessSpec)}
    given = {k: v for k, v in (manifest_postprocess or {}).items() if k in known}
    return replace(default, **given)


def effective_settings(
    baked: PostprocessSpec, overrides: Mapping[str, Any], export_mode: str
) -> tuple[PostprocessSpec, list[str]]:
    """(settings to apply, problems): `baked` with the non-None `overrides` applied.

    For an `nms` export the graph's NMS has run already: the score threshold can only rise, the detection count only
    fall, the IoU threshold stays; each override that cannot apply is one problem line (callers warn with them).
    """
    given = {k: v for k, v in overrides.items() if v is not None}
    unknown = sorted(set(given) - set(OVERRIDE_KEYS))
    if unknown:
        raise ValueError(f"unknown postprocess overrides {unknown}; choose from {list(OVERRIDE_KEYS)}")
    settings = replace(baked, **given)
    if export_mode != "nms":
        return settings, []
    problems = []
    if "score_threshold" in given and given["score_threshold"] < baked.score_threshold:
        problems.append(f"score threshold {given['score_threshold']} < {baked.score_threshold} in the graph")
    if "iou_threshold" in given and given["iou_threshold"] != baked.iou_threshold:
        problems.append(f"IoU threshold {given['iou_threshold']} != {baked.iou_threshold} in the graph")
    if "max_detections" in given and given["max_detections"] > baked.max_detections:
        problems.append(f"max detections {given['max_detections']} > {baked.max_detections} in the graph")
    settings = replace(
        settings,
        score_threshold=max(settings.score_threshold, baked.score_threshold),
        iou_threshold=baked.iou_threshold,
        max_detections=min(settings.max_detections, baked.max_detections),
    )
    return settings, problems


def unappliable_message(problems: list[str]) -> str:
    """The one-line warning for overrides an nms graph cannot apply (see `effective_settings`)."""
    return "NMS is baked into this model; cannot apply " + "; ".join(problems) + " (export without NMS to change it)"
