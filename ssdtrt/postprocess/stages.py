"""Postprocessing stages (`ssdtrt.inference.protocol.Postprocessor`): network outputs → normalized Detections.

    stage = postprocessor_for("raw", spec, settings)               # placement "host-numpy"
    dets = stage({"locs": locs, "logits": logits})                 # list[Detections], xyxy in [0, 1]

- `HostNumpyPostprocess` ("host-numpy"): decode + per-class NMS in numpy (`host_numpy`), torch-free.
- `HostTorchPostprocess` ("host-torch"): the same in torch on the CPU or a CUDA device (`host_torch`); it reads
  device tensors in place when the runner hands them over.
- `EngineDetections` ("engine"): the graph already ends in detections (an `nms` export, or an OpenVINO build with
  `--postprocess engine`: its DetectionOutput rows are scattered to the same outputs): un-pad each image's K rows
  to its `num_detections`, sort by score, and apply a score threshold higher than the graph's / fewer detections.
A `decoded` export (boxes + softmax scores in the graph) is a host stage with `boxes_are_decoded` and
`scores_are_probs`: decode and softmax are skipped. torch is imported only by the host-torch stage.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ssdtrt.core.config import ModelSpec, PostprocessSpec
from ssdtrt.core.detections import Detections
from ssdtrt.core.errors import ManifestError
from ssdtrt.postprocess.settings import EXPORT_OUTPUTS

__all__ = ["EngineDetections", "HostNumpyPostprocess", "HostTorchPostprocess", "postprocessor_for"]


class _HostPostprocess:
    """Shared by the two host stages: the settings as keyword arguments, priors only for a raw export."""

    placement = "abstract"

    def __init__(self, export_mode: str, spec: ModelSpec, settings: PostprocessSpec) -> None:
        if export_mode not in ("raw", "decoded"):
            raise ManifestError(f"a host postprocess takes raw or decoded outputs, not {export_mode!r}")
        self.export_mode = export_mode
        self.settings = settings
        decoded = export_mode == "decoded"
        self.roles = EXPORT_OUTPUTS[export_mode]
        if decoded:
            self.priors_cxcywh = np.zeros((0, 4), np.float32)
        else:
            from ssdtrt.core.priors import default_boxes

            self.priors_cxcywh = default_boxes(spec)
        self.kwargs: dict[str, Any] = dict(
            score_threshold=settings.score_threshold,
            iou_threshold=settings.iou_threshold,
            topk_candidates=settings.topk_candidates,
            candidates_per_class=settings.candidates_per_class,
            max_detections=settings.max_detections,
            min_size=settings.min_size,
            variances=spec.variances,
            scores_are_probs=decoded,
            boxes_are_decoded=decoded,
        )


class HostNumpyPostprocess(_HostPostprocess):
    """Decode + per-class NMS in numpy on the host (no torch)."""

    placement = "host-numpy"

    def __call__(self, outputs: Mapping[str, Any]) -> list[Detections]:
        from ssdtrt.postprocess.host_numpy import postprocess_numpy

        locs, logits = (_host(outputs[role]) for role in self.roles)
        return postprocess_numpy(locs, logits, self.priors_cxcywh, **self.kwargs)


class HostTorchPostprocess(_HostPostprocess):
    """Decode + per-class NMS in torch on `device` (None: where the outputs are; "cuda[:i]": moved there)."""

    placement = "host-torch"

    def __init__(self, export_mode: str, spec: ModelSpec, settings: PostprocessSpec, device: str | None = None) -> None:
        super().__init__(export_mode, spec, settings)
        self.device = device

    def __call__(self, outputs: Mapping[str, Any]) -> list[Detections]:
        import torch

        from ssdtrt.postprocess.host_torch import postprocess

        locs, logits = (torch.as_tensor(outputs[role], device=self.device) for role in self.roles)
        return [d.numpy() for d in postprocess(locs, logits, self.priors_cxcywh, **self.kwargs)]


class EngineDetections:
    """An `nms` graph's padded outputs → Detections: each image's first `num_detections` rows, sorted by score.

    `settings` stricter than `baked` (what the graph applied) are applied here: a higher score threshold, fewer
    detections; the graph's own are not re-applied (its rows are its answer). A lower threshold, another IoU or more
    detections cannot be (see `ssdtrt.postprocess.settings.effective_settings`)."""

    placement = "engine"
    roles = EXPORT_OUTPUTS["nms"]

    def __init__(self, settings: PostprocessSpec, baked: PostprocessSpec | None = None) -> None:
        self.settings = settings
        self.baked = baked if baked is not None else settings

    def __call__(self, outputs: Mapping[str, Any]) -> list[Detections]:
        num, boxes, scores, labels = (_host(outputs[role]) for role in self.roles)
        num = num.reshape(num.shape[0], -1)[:, 0] if num.ndim > 1 else num
        fewer = self.settings.max_detections < self.baked.max_detections
        keep_k = min(self.settings.max_detections, boxes.shape[1]) if fewer else boxes.shape[1]
        raised = self.settings.score_threshold > self.baked.score_threshold
        threshold = np.float32(self.settings.score_threshold)
        out = []
        for i in range(boxes.shape[0]):  # per image: un-pad (K is small and fixed)
            n = int(min(max(int(num[i]), 0), boxes.shape[1]))
            b, s, lab = boxes[i, :n].astype(np.float32), scores[i, :n].astype(np.float32), labels[i, :n]
            order = np.argsort(-s, kind="stable")
            b, s, lab = b[order], s[order], lab[order]
            if raised:
                keep = s > threshold
                b, s, lab = b[keep], s[keep], lab[keep]
            out.append(Detections(b[:keep_k], s[:keep_k], lab[:keep_k].astype(np.int64)))
        return out


def postprocessor_for(
    export_mode: str,
    spec: ModelSpec,
    settings: PostprocessSpec,
    *,
    baked: PostprocessSpec | None = None,
    placement: str | None = None,
    device: str | None = None,
) -> HostNumpyPostprocess | HostTorchPostprocess | EngineDetections:
    """The postprocessing stage for outputs of `export_mode` (a manifest fact); `baked`: what an nms graph applied.

    placement None: "engine" for an `nms` export, "host-torch" when `device` is a CUDA device, else "host-numpy".
    A host placement for an `nms` export, or "engine" for raw / decoded outputs, is a ManifestError (the work is
    either in the graph or not)."""
    if export_mode not in EXPORT_OUTPUTS:
        raise ManifestError(f"unknown export mode {export_mode!r} in the manifest")
    if placement is None:
        cuda = device is not None and device.startswith("cuda")
        placement = "engine" if export_mode == "nms" else ("host-torch" if cuda else "host-numpy")
    if (placement == "engine") != (export_mode == "nms"):
        where = "in the graph" if export_mode == "nms" else "not in the graph"
        raise ManifestError(f"a {export_mode} export's detections are {where}: postprocess placement {placement!r} "
                            "does not fit it")
    if placement == "engine":
        return EngineDetections(settings, baked)
    if placement == "host-torch":
        return HostTorchPostprocess(export_mode, spec, settings, None if device in (None, "cpu") else device)
    if placement == "host-numpy":
        return HostNumpyPostprocess(export_mode, spec, settings)
    raise ValueError(f"postprocess placement must be one of host-numpy, host-torch, engine, not {placement!r}")


def _host(x: Any) -> np.ndarray:
    return x if isinstance(x, np.ndarray) else x.detach().cpu().numpy()
