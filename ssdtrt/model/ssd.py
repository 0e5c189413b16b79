"""The SSD network: a backbone's feature maps → 3×3 loc/conf heads → `locs [N, P, 4]`, `logits [N, P, C]`.

Prior order (ARCHITECTURE.md, torchvision): maps largest first; per map row-major over cells; per cell the box
shapes. A head conv gives [N, A*K, H, W] with channel a*K + k, so permute(0, 2, 3, 1) + reshape [N, H*W*A, K] puts
the P axis in exactly the order of `ssdtrt.default_boxes`. Graph is static (ONNX / TensorRT friendly).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ssdtrt.core.config import ModelSpec, resolve_spec
from ssdtrt.model.backbones import build_backbone


class SSD(nn.Module):
    """Single-shot detector. `forward(images)` takes normalized float images [N, 3, H, W] (see `spec.preprocess`)."""

    def __init__(self, spec: ModelSpec, num_classes: int, class_names: Sequence[str]) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes counts the background and must be >= 2, got {num_classes}")
        if len(class_names) != num_classes - 1:
            raise ValueError(f"{len(class_names)} class names for {num_classes} classes (names exclude background)")
        self.spec = spec
        self.num_classes = int(num_classes)
        self.class_names: tuple[str, ...] = tuple(str(n) for n in class_names)
        self.backbone = build_backbone(spec.backbone)
        channels = tuple(self.backbone.out_channels)
        anchors = spec.priors.boxes_per_cell
        if len(channels) != len(anchors):
            raise ValueError(
                f"backbone {spec.backbone!r} gives {len(channels)} feature maps, "
                f"preset {spec.name!r} needs {len(anchors)}"
            )
        self.loc = nn.ModuleList(nn.Conv2d(c, a * 4, kernel_size=3, padding=1) for c, a in zip(channels, anchors))
        self.conf = nn.ModuleList(
            nn.Conv2d(c, a * self.num_classes, kernel_size=3, padding=1) for c, a in zip(channels, anchors)
        )
        self.reset_heads()

    @property
    def preset(self) -> str:
        return self.spec.name

    def reset_heads(self, loc: bool = True, conf: bool = True) -> None:
        """Xavier-uniform weights and zero biases for the head convs (torchvision's SSD head init)."""
        for enabled, heads in ((loc, self.loc), (conf, self.conf)):
            if not enabled:
                continue
            for layer in heads:
                nn.init.xavier_uniform_(layer.weight)
                nn.init.zeros_(layer.bias)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        maps = self.backbone(images)
        locs = [_flatten(head(f), 4) for f, head in zip(maps, self.loc)]
        logits = [_flatten(head(f), self.num_classes) for f, head in zip(maps, self.conf)]
        return torch.cat(locs, dim=1), torch.cat(logits, dim=1)

    def extra_repr(self) -> str:
        return f"preset={self.spec.name!r}, num_classes={self.num_classes}"


def _flatten(x: Tensor, k: int) -> Tensor:
    """[N, A*K, H, W] → [N, H*W*A, K] (cells row-major, then box shapes)."""
    n = x.shape[0]
    return x.permute(0, 2, 3, 1).reshape(n, -1, k)


def default_class_names(num_classes: int) -> tuple[str, ...]:
    return tuple(f"class{i}" for i in range(1, num_classes))


def build_model(
    preset: str | ModelSpec,
    num_classes: int | None = None,
    class_names: Sequence[str] | None = None,
) -> SSD:
    """A freshly initialised SSD for a preset (name or ModelSpec). No downloads: backbones start random.

    `num_classes` includes the background; it defaults to `len(class_names) + 1`, else the preset's default.
    Raises ValueError if the head output count differs from the preset's prior count.
    """
    spec = resolve_spec(preset)
    if num_classes is None:
        num_classes = len(class_names) + 1 if class_names is not None else spec.default_num_classes
    if class_names is None:
        class_names = default_class_names(num_classes)
    model = SSD(spec, num_classes, class_names)
    num_priors = _count_outputs(model)
    if num_priors != spec.priors.num_priors:
        raise ValueError(
            f"preset {spec.name!r}: the network predicts {num_priors} boxes at {spec.priors.image_size} px but the "
            f"PriorSpec defines {spec.priors.num_priors} (feature maps {spec.priors.feature_maps}); "
            "the backbone's map sizes and the PriorSpec disagree"
        )
    return model


def _count_outputs(model: SSD) -> int:
    """Number of predicted boxes for one input of the preset's size, from the map sizes (a cheap meta-device pass)."""
    size = model.spec.priors.image_size
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            maps = _map_shapes(model, size)
    finally:
        model.train(was_training)
    anchors = model.spec.priors.boxes_per_cell
    if tuple(maps) != tuple(model.spec.priors.feature_maps):
        raise ValueError(
            f"preset {model.spec.name!r}: backbone {model.spec.backbone!r} gives feature maps {tuple(maps)} at "
            f"{size} px, the PriorSpec expects {model.spec.priors.feature_maps}"
        )
    return sum(m * m * a for m, a in zip(maps, anchors))


def _map_shapes(model: SSD, size: int) -> list[int]:
    """Feature-map sizes for a square input, computed on the meta device (no FLOPs, no copies of the weights)."""
    from torch.func import functional_call

    tensors = {k: v.to("meta") for k, v in (*model.backbone.named_parameters(), *model.backbone.named_buffers())}
    maps = functional_call(model.backbone, tensors, (torch.empty(1, 3, size, size, device="meta"),))
    sizes = []
    for f in maps:
        if f.shape[-1] != f.shape[-2]:
            raise ValueError(f"non-square feature map {tuple(f.shape)}")
        sizes.append(int(f.shape[-1]))
    return sizes
