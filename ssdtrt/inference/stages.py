"""A model's stages around its runner, built from its manifest: preprocess, postprocess, pixel scaling, class names.

    stages = ModelStages(read_manifest("export/model.onnx"), overrides={"score_threshold": 0.3})
    batch = stages.preprocess(images_rgb)                          # the network input
    dets = stages.postprocess(outputs, [img.shape[:2] for img in images_rgb])   # Detections in pixels, with names

`Detector` is a runner plus these stages; a Triton ensemble's python models use them without a runner (the network
runs in another Triton model). Torch-free.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ssdtrt.core.config import ModelSpec, PostprocessSpec
from ssdtrt.core.detections import Detections
from ssdtrt.core.errors import ManifestError
from ssdtrt.core.manifest import Manifest
from ssdtrt.inference.protocol import Postprocessor, Preprocessor
from ssdtrt.postprocess.settings import EXPORT_OUTPUTS, baked_settings, effective_settings
from ssdtrt.postprocess.stages import postprocessor_for
from ssdtrt.preprocess.stages import preprocessor_for
from ssdtrt.runtime.base import TensorMeta

__all__ = ["ModelStages", "manifest_input", "to_pixels"]


def manifest_input(manifest: Manifest) -> TensorMeta:
    """The model's one image input as the manifest describes it (ManifestError for a model with several inputs)."""
    if len(manifest.inputs) != 1:
        raise ManifestError(f"expected a model with one image input, found inputs {[t.name for t in manifest.inputs]}")
    t = manifest.inputs[0]
    return TensorMeta(t.name, np.dtype(t.dtype), tuple(t.shape))


class ModelStages:
    """Pre- and postprocessing of one model, picked from its manifest; outputs in pixels of the original images.

    input_meta: the runner's view of the input (default: the manifest's). overrides: score_threshold /
    iou_threshold / max_detections (None values ignored; `problems` lists those an nms graph cannot apply).
    postprocess_placement / postprocess_device: see `ssdtrt.postprocess.stages.postprocessor_for`.
    preprocessor / postprocessor: stages built elsewhere (e.g. for an engine-side placement) instead of the defaults.
    """

    def __init__(
        self,
        manifest: Manifest,
        *,
        input_meta: TensorMeta | None = None,
        overrides: Mapping[str, Any] | None = None,
        postprocess_placement: str | None = None,
        postprocess_device: str = "cpu",
        preprocessor: Preprocessor | None = None,
        postprocessor: Postprocessor | None = None,
    ) -> None:
        self.manifest = manifest
        self.export_mode = manifest.export_mode
        if self.export_mode not in EXPORT_OUTPUTS:
            raise ManifestError(f"unknown export mode {self.export_mode!r} in the manifest")
        self.spec: ModelSpec = manifest.model_spec
        self.class_names: tuple[str, ...] = tuple(manifest.class_names)
        self.input: TensorMeta = input_meta if input_meta is not None else manifest_input(manifest)
        self.baked_settings: PostprocessSpec = baked_settings(manifest.postprocess, self.spec.postprocess)
        settings, self.problems = effective_settings(self.baked_settings, overrides or {}, self.export_mode)
        self.preprocessor: Preprocessor = preprocessor or preprocessor_for(manifest, self.input)
        self.postprocess_device = postprocess_device
        self.postprocessor: Postprocessor = postprocessor or postprocessor_for(
            self.export_mode, self.spec, settings, baked=self.baked_settings,
            placement=postprocess_placement, device=postprocess_device,
        )

    @property
    def settings(self) -> PostprocessSpec:
        """The postprocess settings in effect (the manifest's, overridden where the placement allows)."""
        return self.postprocessor.settings

    @settings.setter
    def settings(self, value: PostprocessSpec) -> None:
        """Apply other settings from now on: a new postprocess stage of the same placement (taken as given: for an
        nms graph, only stricter settings than `baked_settings` have an effect)."""
        self.postprocessor = postprocessor_for(self.export_mode, self.spec, value, baked=self.baked_settings,
                                               placement=self.postprocessor.placement, device=self.postprocess_device)

    def preprocess(self, images_rgb: Sequence[np.ndarray]) -> np.ndarray:
        """HxWx3 uint8 RGB images of any sizes → one input batch in the runner's dtype."""
        return self.preprocessor(images_rgb)

    def by_role(self, outputs: Mapping[str, Any]) -> dict[str, Any]:
        """Runner outputs keyed by the export mode's roles (the export's names, else the manifest's output order)."""
        roles = EXPORT_OUTPUTS[self.export_mode]
        if all(r in outputs for r in roles):
            return {r: outputs[r] for r in roles}
        ordered = [outputs[t.name] for t in self.manifest.outputs if t.name in outputs]
        if len(ordered) != len(roles):
            raise ManifestError(
                f"a {self.export_mode} model should give outputs {list(roles)}, the runner gave {sorted(outputs)}"
            )
        return dict(zip(roles, ordered))

    def normalized(self, outputs: Mapping[str, Any]) -> list[Detections]:
        """Runner outputs → Detections per image, normalized xyxy, no class names."""
        return self.postprocessor(self.by_role(outputs))

    def postprocess(self, outputs: Mapping[str, Any], image_sizes_hw: Sequence[tuple[int, int]]) -> list[Detections]:
        """Runner outputs → numpy Detections per image, boxes xyxy in pixels of (height, width) `image_sizes_hw`."""
        dets = self.normalized(outputs)
        if len(dets) != len(image_sizes_hw):
            raise ValueError(f"{len(dets)} results for {len(image_sizes_hw)} image sizes")
        return to_pixels(dets, image_sizes_hw, self.class_names)


def to_pixels(
    dets: Sequence[Detections], image_sizes_hw: Sequence[tuple[int, int]], class_names: tuple[str, ...] | None
) -> list[Detections]:
    """Normalized Detections → float32 pixel xyxy of each (height, width), float32 scores, int64 labels, names."""
    out = []
    for d, (height, width) in zip(dets, image_sizes_hw):
        d = d.numpy()
        scale = np.asarray([width, height, width, height], dtype=np.float32)
        out.append(Detections(np.asarray(d.boxes, dtype=np.float32) * scale, np.asarray(d.scores, np.float32),
                              np.asarray(d.labels, np.int64), class_names))
    return out
