"""Frozen specs for priors, preprocessing and postprocessing, and the preset registry.

A preset names everything a stage needs to reproduce its reference exactly: prior geometry and clip mode, input
normalization, postprocess defaults. Stages never hard-code these numbers; they read them from a `ModelSpec`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from ssdtrt.core.errors import UnknownPresetError

ClipMode = Literal["none", "wh", "all"]

#: Box-coder variances of both seeds (center x, center y, width, height).
VARIANCES: tuple[float, float, float, float] = (0.1, 0.1, 0.2, 0.2)


@dataclass(frozen=True)
class PriorSpec:
    """Default-box geometry. `sizes_px` has one more entry than `feature_maps` (s_k and s_k+1 of the seeds).

    clip: "all" clamps cx, cy, w, h to [0, 1] (seed 000), "wh" clamps only w, h (torchvision), "none" (seed 001).
    """

    image_size: int
    feature_maps: tuple[int, ...]
    steps: tuple[float, ...]
    sizes_px: tuple[float, ...]
    aspect_ratios: tuple[tuple[float, ...], ...]
    clip: ClipMode = "none"
    offset: float = 0.5

    def __post_init__(self) -> None:
        n = len(self.feature_maps)
        if not (len(self.steps) == len(self.aspect_ratios) == n and len(self.sizes_px) == n + 1):
            raise ValueError("PriorSpec: steps and aspect_ratios need one entry per feature map, sizes_px one more")
        if self.clip not in ("none", "wh", "all"):
            raise ValueError(f"PriorSpec: clip must be none|wh|all, not {self.clip!r}")

    @property
    def boxes_per_cell(self) -> tuple[int, ...]:
        """Shapes per cell on each map: two squares plus two per aspect ratio."""
        return tuple(2 + 2 * len(ratios) for ratios in self.aspect_ratios)

    @property
    def num_priors(self) -> int:
        return sum(f * f * a for f, a in zip(self.feature_maps, self.boxes_per_cell))


@dataclass(frozen=True)
class Preprocess:
    """How an image becomes the network input: RGB uint8 → resize → /255 → (x - mean) / std → NCHW float32."""

    height: int
    width: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    channel_order: Literal["RGB", "BGR"] = "RGB"
    interpolation: Literal["linear", "area", "nearest"] = "linear"


@dataclass(frozen=True)
class PostprocessSpec:
    """Decode + per-class NMS settings (the semantics of `ssdtrt.postprocess.host_torch`).

    `topk_candidates` is the reference model's per-class top-k (None = every prior above the threshold, as seed 000).
    `candidates_per_class` is a second, deployment cap: an `nms` export always sets it (at most
    `NMS_CANDIDATES_PER_CLASS`), because TensorRT's NMS considers at most 5000 boxes per batch item (2000 on SM 5.3 /
    6.2) and its TopK needs K < 3840, so an uncapped graph would mean different things on TensorRT and ONNX Runtime.
    Presets leave it None. Every path applies min(topk_candidates, candidates_per_class) (see `per_class_cap`).
    """

    score_threshold: float = 0.01
    iou_threshold: float = 0.45
    topk_candidates: int | None = 400
    max_detections: int = 200
    min_size: float = 0.0
    candidates_per_class: int | None = None

    def as_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of `postprocess` / `postprocess_numpy` (one place that unpacks a spec)."""
        return asdict(self)


@dataclass(frozen=True)
class ModelSpec:
    """Everything that defines one SSD variant except its weights and class count."""

    name: str
    backbone: str
    priors: PriorSpec
    preprocess: Preprocess
    postprocess: PostprocessSpec = field(default_factory=PostprocessSpec)
    default_num_classes: int = 21
    variances: tuple[float, float, float, float] = VARIANCES
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (for checkpoints and manifests)."""
        return asdict(self)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> ModelSpec:
        pri = dict(d["priors"])
        for key in ("feature_maps", "steps", "sizes_px"):
            pri[key] = tuple(pri[key])
        pri["aspect_ratios"] = tuple(tuple(r) for r in pri["aspect_ratios"])
        pre = dict(d["preprocess"])
        pre["mean"], pre["std"] = tuple(pre["mean"]), tuple(pre["std"])
        return ModelSpec(
            name=d["name"],
            backbone=d["backbone"],
            priors=PriorSpec(**pri),
            preprocess=Preprocess(**pre),
            postprocess=PostprocessSpec(**d.get("postprocess", {})),
            default_num_classes=int(d.get("default_num_classes", 21)),
            variances=tuple(d.get("variances", VARIANCES)),  # type: ignore[arg-type]
            description=d.get("description", ""),
        )


#: Per-class candidate cap an `nms` export uses when the settings give none smaller: within TensorRT's INMSLayer
#: limit on every GPU (2000 boxes per batch item on SM 5.3 / 6.2, else 5000; NvInfer.h) and its TopK K < 3840.
NMS_CANDIDATES_PER_CLASS = 2000


def per_class_cap(topk_candidates: int | None, candidates_per_class: int | None) -> int | None:
    """The per-class candidate cap both settings impose together (None = no cap)."""
    caps = [int(c) for c in (topk_candidates, candidates_per_class) if c is not None]
    return min(caps) if caps else None


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_SSD300_GEOMETRY: dict[str, Any] = dict(
    image_size=300,
    feature_maps=(38, 19, 10, 5, 3, 1),
    steps=(8, 16, 32, 64, 100, 300),
    sizes_px=(21, 45, 99, 153, 207, 261, 315),
    aspect_ratios=((2,), (2, 3), (2, 3), (2, 3), (2,), (2,)),
)


def _build_presets() -> dict[str, ModelSpec]:
    resnet50 = ModelSpec(
        name="ssd300-resnet50",
        backbone="resnet50",
        priors=PriorSpec(**_SSD300_GEOMETRY, clip="all"),
        preprocess=Preprocess(300, 300, IMAGENET_MEAN, IMAGENET_STD),
        # seed 000's PostProcess: score 0.05, IoU 0.5, 100 outputs, min size 1 px, no per-class top-k
        postprocess=PostprocessSpec(0.05, 0.5, None, 100, 1.0 / 300.0),
        default_num_classes=81,
        description="Seed 000 (NVIDIA DeepLearningExamples): ResNet-50 conv1..conv4 (stride-1 conv4), five extra blocks",
    )
    vgg16 = ModelSpec(
        name="ssd300-vgg16",
        backbone="vgg16",
        priors=PriorSpec(**_SSD300_GEOMETRY, clip="wh"),
        # torchvision ssd300_vgg16: mean in [0,1] units, std 1/255 (i.e. x*255 - mean*255)
        preprocess=Preprocess(300, 300, (0.48235, 0.45882, 0.40784), (1 / 255.0, 1 / 255.0, 1 / 255.0)),
        postprocess=PostprocessSpec(0.01, 0.45, 400, 200, 0.0),
        default_num_classes=91,
        description="Seed 001 / original SSD: VGG16 conv1..conv5, dilated conv6, conv7, extras 8_2..11_2, L2Norm(20)",
    )
    small = ModelSpec(
        name="ssd-small",
        backbone="small",
        priors=PriorSpec(
            image_size=160,
            feature_maps=(20, 10, 5, 3, 1),
            steps=(8, 16, 32, 160 / 3, 160),
            sizes_px=(16, 36, 64, 96, 128, 160),
            aspect_ratios=((2,), (2, 3), (2, 3), (2,), (2,)),
            clip="all",
        ),
        preprocess=Preprocess(160, 160, IMAGENET_MEAN, IMAGENET_STD),
        postprocess=PostprocessSpec(0.01, 0.45, 200, 100, 0.0),
        default_num_classes=7,
        description="Compact ResNet-style backbone at 160 px, trains from scratch on 2 CPU cores in minutes",
    )
    return {p.name: p for p in (resnet50, vgg16, small)}


def preset_names() -> list[str]:
    return sorted(_build_presets())


def get_preset(name: str) -> ModelSpec:
    """The preset `name`; raises UnknownPresetError listing the valid names."""
    presets = _build_presets()
    if name not in presets:
        raise UnknownPresetError(f"unknown preset {name!r}; choose one of: {', '.join(sorted(presets))}")
    return presets[name]


def resolve_spec(preset: str | ModelSpec) -> ModelSpec:
    return preset if isinstance(preset, ModelSpec) else get_preset(preset)
