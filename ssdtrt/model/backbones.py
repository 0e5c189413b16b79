"""SSD feature extractors: each maps an image batch to the list of feature maps the heads read, largest first.

Module names mirror the references so their state dicts import with at most a prefix rename:
`ResNet50Backbone` = seed 000 (NVIDIA `feature_extractor.feature_extractor.*` + `additional_blocks.*`),
`VGG16Backbone` = torchvision `SSDFeatureExtractorVGG` (`features.*`, `scale_weight`, `extra.*`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _xavier_init(module: nn.Module) -> None:
    """Xavier-uniform conv weights, zero biases (torchvision's SSD init)."""
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.xavier_uniform_(layer.weight)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


class ResNet50Backbone(nn.Module):
    """Seed 000: torchvision resnet50 conv1..conv4 (first conv4 bottleneck at stride 1 → 38×38×1024 at 300 px) and
    five additional blocks (1×1 conv, BN, ReLU, 3×3 conv, BN, ReLU) → maps 38, 19, 10, 5, 3, 1."""

    out_channels: tuple[int, ...] = (1024, 512, 512, 256, 256, 256)
    middle_channels: tuple[int, ...] = (256, 256, 128, 128, 128)

    def __init__(self) -> None:
        super().__init__()
        from torchvision.models import resnet50

        net = resnet50(weights=None)
        self.feature_extractor = nn.Sequential(*list(net.children())[:7])
        conv4_block1 = self.feature_extractor[-1][0]
        conv4_block1.conv1.stride = (1, 1)
        conv4_block1.conv2.stride = (1, 1)
        conv4_block1.downsample[0].stride = (1, 1)

        blocks = []
        chans = self.out_channels
        for i, (c_in, c_out, c_mid) in enumerate(zip(chans[:-1], chans[1:], self.middle_channels)):
            padding, stride = (1, 2) if i < 3 else (0, 1)
            blocks.append(
                nn.Sequential(
                    nn.Conv2d(c_in, c_mid, kernel_size=1, bias=False),
                    nn.BatchNorm2d(c_mid),
                    nn.ReLU(inplace=True),
                    nn.Conv2d(c_mid, c_out, kernel_size=3, padding=padding, stride=stride, bias=False),
                    nn.BatchNorm2d(c_out),
                    nn.ReLU(inplace=True),
                )
            )
        self.additional_blocks = nn.ModuleList(blocks)

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.feature_extractor(x)
        maps = [x]
        for block in self.additional_blocks:
            x = block(x)
            maps.append(x)
        return maps


class VGG16Backbone(nn.Module):
    """Seed 001 / original SSD: VGG16 conv1..conv4_3 (pool3 ceil mode, 75 → 38), L2Norm with a learnable per-channel
    scale (init 20) on conv4_3, then conv5 + pool5 (3×3 s1 p1) + dilated conv6 + conv7, extras conv8_2..conv11_2.

    Same module tree as torchvision's `SSDFeatureExtractorVGG`, so `backbone.*` keys of `ssd300_vgg16` load as is.
    """

    out_channels: tuple[int, ...] = (512, 1024, 512, 256, 256, 256)

    def __init__(self) -> None:
        super().__init__()
        layers = _vgg16_features()
        pools = [i for i, layer in enumerate(layers) if isinstance(layer, nn.MaxPool2d)]
        pool3, pool4 = pools[2], pools[3]
        layers[pool3].ceil_mode = True
        self.scale_weight = nn.Parameter(torch.full((512,), 20.0))
        self.features = nn.Sequential(*layers[:pool4])  # conv1_1 .. relu4_3
        fc = nn.Sequential(
            nn.MaxPool2d(kernel_size=3, stride=1, padding=1, ceil_mode=False),  # pool5
            nn.Conv2d(512, 1024, kernel_size=3, padding=6, dilation=6),  # conv6 (fc6, atrous)
            nn.ReLU(inplace=True),
            nn.Conv2d(1024, 1024, kernel_size=1),  # conv7 (fc7)
            nn.ReLU(inplace=True),
        )
        _xavier_init(fc)
        extra = nn.ModuleList(
            [
                _extra_block(1024, 256, 512, padding=1, stride=2),  # conv8_2: 19 → 10
                _extra_block(512, 128, 256, padding=1, stride=2),  # conv9_2: 10 → 5
                _extra_block(256, 128, 256, padding=0, stride=1),  # conv10_2: 5 → 3
                _extra_block(256, 128, 256, padding=0, stride=1),  # conv11_2: 3 → 1
            ]
        )
        _xavier_init(extra)
        extra.insert(0, nn.Sequential(*layers[pool4:-1], fc))  # pool4, conv5_1..relu5_3, pool5, conv6, conv7
        self.extra = extra

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.features(x)
        maps = [self.scale_weight.view(1, -1, 1, 1) * F.normalize(x)]  # L2Norm (eps 1e-12 as torchvision)
        for block in self.extra:
            x = block(x)
            maps.append(x)
        return maps


#: VGG16 ("D") conv widths, "M" = 2×2 max pool — torchvision's `vgg16().features` layer for layer.
_VGG16_CFG: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"
)


def _vgg16_features() -> nn.Sequential:
    """torchvision's `vgg16(weights=None).features` (same indices, same init) without building the 100M-parameter
    classifier we would throw away."""
    layers: list[nn.Module] = []
    c_in = 3
    for v in _VGG16_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        conv = nn.Conv2d(c_in, int(v), kernel_size=3, padding=1)
        nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
        nn.init.zeros_(conv.bias)
        layers += [conv, nn.ReLU(inplace=True)]
        c_in = int(v)
    return nn.Sequential(*layers)


def _extra_block(c_in: int, c_mid: int, c_out: int, *, padding: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_mid, kernel_size=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_mid, c_out, kernel_size=3, padding=padding, stride=stride),
        nn.ReLU(inplace=True),
    )


def _conv_bn(c_in: int, c_out: int, *, kernel: int = 3, stride: int = 1, padding: int | None = None) -> nn.Sequential:
    pad = kernel // 2 if padding is None else padding
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=pad, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class BasicBlock(nn.Module):
    """ResNet basic block (two 3×3 conv-BN, identity shortcut) at constant width and resolution."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        nn.init.zeros_(self.bn2.weight)  # residual branch starts at zero: trains from scratch faster

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu(self.bn1(self.conv1(x)), inplace=True)
        return F.relu(x + self.bn2(self.conv2(y)), inplace=True)


class SmallBackbone(nn.Module):
    """Compact ResNet-style CNN for `ssd-small` (160 px): maps 20, 10, 5, 3, 1, trained from scratch on a CPU.

    Stem: two stride-2 conv-BN-ReLU (160 → 40) and one basic block; then stride-2 conv + basic block per stage
    (→ 20, → 10, → 5); two last maps from a stride-2 3×3 (5 → 3) and an unpadded 3×3 (3 → 1).
    """

    out_channels: tuple[int, ...] = (64, 96, 128, 128, 128)

    def __init__(self, widths: tuple[int, int] = (24, 32)) -> None:
        super().__init__()
        w0, w1 = widths
        c = self.out_channels
        self.stem = nn.Sequential(
            _conv_bn(3, w0, stride=2),  # 80
            _conv_bn(w0, w1, stride=2),  # 40
            BasicBlock(w1),
        )
        self.stage1 = nn.Sequential(_conv_bn(w1, c[0], stride=2), BasicBlock(c[0]))  # 20
        self.stage2 = nn.Sequential(_conv_bn(c[0], c[1], stride=2), BasicBlock(c[1]))  # 10
        self.stage3 = nn.Sequential(_conv_bn(c[1], c[2], stride=2), BasicBlock(c[2]))  # 5
        self.stage4 = _conv_bn(c[2], c[3], stride=2)  # 3
        self.stage5 = _conv_bn(c[3], c[4], padding=0)  # 1
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.stem(x)
        maps = []
        for stage in (self.stage1, self.stage2, self.stage3, self.stage4, self.stage5):
            x = stage(x)
            maps.append(x)
        return maps


BACKBONES: dict[str, type[nn.Module]] = {
    "resnet50": ResNet50Backbone,
    "vgg16": VGG16Backbone,
    "small": SmallBackbone,
}


def build_backbone(name: str) -> nn.Module:
    """The backbone called `name` (a ModelSpec's `backbone`), freshly initialised (no downloads)."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of: {', '.join(sorted(BACKBONES))}")
    return BACKBONES[name]()
