"""Seed 000 (NVIDIA DeepLearningExamples SSD300-ResNet50), transcribed as the independent reference for the importer.

Faithful to the seed's Backbone, SSD300 (_build_additional_features, loc/conf, bbox_view, forward), DefaultBoxes /
dboxes300_coco and PostProcess (scale_back_batch, decode_single_new, batched_nms with coordinate offsets). Only the
training loss / encoder are left out, and `heads()` exposes the raw head outputs forward() feeds to PostProcess.
Nothing here imports ssdtrt.
"""

from __future__ import annotations

import itertools
from math import sqrt

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models import resnet50
from torchvision.ops import nms


class Backbone(nn.Module):
    def __init__(self, pretrain_path=None):  # noqa: ANN001
        super().__init__()
        net = resnet50()
        self.out_channels = [1024, 512, 512, 256, 256, 256]
        if pretrain_path is not None:
            net.load_state_dict(torch.load(pretrain_path))
        self.feature_extractor = nn.Sequential(*list(net.children())[:7])
        conv4_block1 = self.feature_extractor[-1][0]
        conv4_block1.conv1.stride = (1, 1)
        conv4_block1.conv2.stride = (1, 1)
        conv4_block1.downsample[0].stride = (1, 1)

    def forward(self, x):  # noqa: ANN001, ANN201
        return self.feature_extractor(x)


class DefaultBoxes:
    def __init__(self, fig_size, feat_size, steps, scales, aspect_ratios, scale_xy=0.1, scale_wh=0.2):  # noqa: ANN001
        self.fig_size = fig_size
        self.feat_size = feat_size
        self.scale_xy_ = scale_xy
        self.scale_wh_ = scale_wh
        self.steps = steps
        self.scales = scales
        fk = fig_size / np.array(steps)
        self.aspect_ratios = aspect_ratios
        self.default_boxes = []
        for idx, sfeat in enumerate(self.feat_size):
            sk1 = scales[idx] / fig_size
            sk2 = scales[idx + 1] / fig_size
            sk3 = sqrt(sk1 * sk2)
            all_sizes = [(sk1, sk1), (sk3, sk3)]
            for alpha in aspect_ratios[idx]:
                w, h = sk1 * sqrt(alpha), sk1 / sqrt(alpha)
                all_sizes.append((w, h))
                all_sizes.append((h, w))
            for w, h in all_sizes:
                for i, j in itertools.product(range(sfeat), repeat=2):
                    cx, cy = (j + 0.5) / fk[idx], (i + 0.5) / fk[idx]
                    self.default_boxes.append((cx, cy, w, h))
        self.dboxes = torch.as_tensor(self.default_boxes, dtype=torch.float32)
        self.dboxes.clamp_(min=0, max=1)
        self.dboxes_ltrb = self.dboxes.clone()
        self.dboxes_ltrb[:, 0] = self.dboxes[:, 0] - 0.5 * self.dboxes[:, 2]
        self.dboxes_ltrb[:, 1] = self.dboxes[:, 1] - 0.5 * self.dboxes[:, 3]
        self.dboxes_ltrb[:, 2] = self.dboxes[:, 0] + 0.5 * self.dboxes[:, 2]
        self.dboxes_ltrb[:, 3] = self.dboxes[:, 1] + 0.5 * self.dboxes[:, 3]

    @property
    def scale_xy(self):  # noqa: ANN201
        return self.scale_xy_

    @property
    def scale_wh(self):  # noqa: ANN201
        return self.scale_wh_

    def __call__(self, order="ltrb"):  # noqa: ANN001, ANN204
        if order == "ltrb":
            return self.dboxes_ltrb
        if order == "xywh":
            return self.dboxes


def dboxes300_coco() -> DefaultBoxes:
    figsize = 300
    feat_size = [38, 19, 10, 5, 3, 1]
    steps = [8, 16, 32, 64, 100, 300]
    scales = [21, 45, 99, 153, 207, 261, 315]
    aspect_ratios = [[2], [2, 3], [2, 3], [2, 3], [2], [2]]
    return DefaultBoxes(figsize, feat_size, steps, scales, aspect_ratios)


def batched_nms(boxes, scores, idxs, iou_threshold):  # noqa: ANN001, ANN201
    """The seed's batched_nms: per-class coordinate offsets, then one nms."""
    if boxes.numel() == 0:
        return torch.empty((0,), dtype=torch.int64, device=boxes.device)
    max_coordinate = boxes.max()
    offsets = idxs.to(boxes) * (max_coordinate + 1)
    boxes_for_nms = boxes + offsets[:, None]
    keep = nms(boxes_for_nms, scores, iou_threshold)
    return keep


class PostProcess(nn.Module):
    def __init__(self, dboxes):  # noqa: ANN001
        super().__init__()
        self.dboxes_xywh = nn.Parameter(dboxes(order="xywh").unsqueeze(dim=0), requires_grad=False)
        self.scale_xy = dboxes.scale_xy
        self.scale_wh = dboxes.scale_wh
        self.criteria = 0.5
        self.max_output = 100

    def scale_back_batch(self, bboxes_in, scores_in):  # noqa: ANN001, ANN201
        bboxes_in = bboxes_in.permute(0, 2, 1)
        scores_in = scores_in.permute(0, 2, 1)
        bboxes_in[:, :, :2] = self.scale_xy * bboxes_in[:, :, :2]
        bboxes_in[:, :, 2:] = self.scale_wh * bboxes_in[:, :, 2:]
        bboxes_in[:, :, :2] = bboxes_in[:, :, :2] * self.dboxes_xywh[:, :, 2:] + self.dboxes_xywh[:, :, :2]
        bboxes_in[:, :, 2:] = bboxes_in[:, :, 2:].exp() * self.dboxes_xywh[:, :, 2:]
        l = bboxes_in[:, :, 0] - 0.5 * bboxes_in[:, :, 2]  # noqa: E741
        t = bboxes_in[:, :, 1] - 0.5 * bboxes_in[:, :, 3]
        r = bboxes_in[:, :, 0] + 0.5 * bboxes_in[:, :, 2]
        b = bboxes_in[:, :, 1] + 0.5 * bboxes_in[:, :, 3]
        bboxes_in[:, :, 0] = l
        bboxes_in[:, :, 1] = t
        bboxes_in[:, :, 2] = r
        bboxes_in[:, :, 3] = b
        return bboxes_in, F.softmax(scores_in, dim=-1)

    def decode_single_new(self, bboxes_in, scores_in, criteria, num_output):  # noqa: ANN001, ANN201
        device = bboxes_in.device
        num_classes = scores_in.shape[-1]
        bboxes_in = bboxes_in.clamp(min=0, max=1)
        bboxes_in = bboxes_in.repeat(1, num_classes).reshape(scores_in.shape[0], -1, 4)
        labels = torch.arange(num_classes, device=device)
        labels = labels.view(1, -1).expand_as(scores_in)
        bboxes_in = bboxes_in[:, 1:, :]
        scores_in = scores_in[:, 1:]
        labels = labels[:, 1:]
        bboxes_in = bboxes_in.reshape(-1, 4)
        scores_in = scores_in.reshape(-1)
        labels = labels.reshape(-1)
        inds = torch.nonzero(scores_in > 0.05, as_tuple=False).squeeze(1)
        bboxes_in, scores_in, labels = bboxes_in[inds, :], scores_in[inds], labels[inds]
        ws, hs = bboxes_in[:, 2] - bboxes_in[:, 0], bboxes_in[:, 3] - bboxes_in[:, 1]
        keep = (ws >= 1 / 300) & (hs >= 1 / 300)
        keep = keep.nonzero(as_tuple=False).squeeze(1)
        bboxes_in, scores_in, labels = bboxes_in[keep], scores_in[keep], labels[keep]
        keep = batched_nms(bboxes_in, scores_in, labels, iou_threshold=criteria)
        keep = keep[:num_output]
        return bboxes_in[keep, :], labels[keep], scores_in[keep]

    def forward(self, bboxes_in, scores_in):  # noqa: ANN001, ANN201
        bboxes, probs = self.scale_back_batch(bboxes_in, scores_in)
        outputs = []
        for bbox, prob in zip(bboxes.split(1, 0), probs.split(1, 0)):
            bbox = bbox.squeeze(0)
            prob = prob.squeeze(0)
            outputs.append(self.decode_single_new(bbox, prob, self.criteria, self.max_output))
        return outputs


class SSD300(nn.Module):
    def __init__(self, backbone=None, num_classes=21):  # noqa: ANN001
        super().__init__()
        if backbone is None:
            raise Exception("backbone is None")
        if not hasattr(backbone, "out_channels"):
            raise Exception("the backbone not has attribute: out_channel")
        self.feature_extractor = backbone
        self.num_classes = num_classes
        self._build_additional_features(self.feature_extractor.out_channels)
        self.num_defaults = [4, 6, 6, 6, 4, 4]
        location_extractors = []
        confidence_extractors = []
        for nd, oc in zip(self.num_defaults, self.feature_extractor.out_channels):
            location_extractors.append(nn.Conv2d(oc, nd * 4, kernel_size=3, padding=1))
            confidence_extractors.append(nn.Conv2d(oc, nd * self.num_classes, kernel_size=3, padding=1))
        self.loc = nn.ModuleList(location_extractors)
        self.conf = nn.ModuleList(confidence_extractors)
        self._init_weights()
        default_box = dboxes300_coco()
        self.postprocess = PostProcess(default_box)

    def _build_additional_features(self, input_size):  # noqa: ANN001
        additional_blocks = []
        middle_channels = [256, 256, 128, 128, 128]
        for i, (input_ch, output_ch, middle_ch) in enumerate(zip(input_size[:-1], input_size[1:], middle_channels)):
            padding, stride = (1, 2) if i < 3 else (0, 1)
            layer = nn.Sequential(
                nn.Conv2d(input_ch, middle_ch, kernel_size=1, bias=False),
                nn.BatchNorm2d(middle_ch),
                nn.ReLU(inplace=True),
                nn.Conv2d(middle_ch, output_ch, kernel_size=3, padding=padding, stride=stride, bias=False),
                nn.BatchNorm2d(output_ch),
                nn.ReLU(inplace=True),
            )
            additional_blocks.append(layer)
        self.additional_blocks = nn.ModuleList(additional_blocks)

    def _init_weights(self):  # noqa: ANN202 - NVIDIA's: xavier on every weight of the added layers
        layers = [*self.additional_blocks, *self.loc, *self.conf]
        for layer in layers:
            for param in layer.parameters():
                if param.dim() > 1:
                    nn.init.xavier_uniform_(param)

    def bbox_view(self, features, loc_extractor, conf_extractor):  # noqa: ANN001, ANN201
        locs = []
        confs = []
        for f, l, c in zip(features, loc_extractor, conf_extractor):  # noqa: E741
            locs.append(l(f).view(f.size(0), 4, -1))
            confs.append(c(f).view(f.size(0), self.num_classes, -1))
        locs, confs = torch.cat(locs, 2).contiguous(), torch.cat(confs, 2).contiguous()
        return locs, confs

    def heads(self, image: Tensor) -> tuple[Tensor, Tensor]:
        """The part of forward() before PostProcess: locs [N, 4, 8732], confs [N, C, 8732] (shape-major priors)."""
        x = self.feature_extractor(image)
        detection_features = [x]
        for layer in self.additional_blocks:
            x = layer(x)
            detection_features.append(x)
        return self.bbox_view(detection_features, self.loc, self.conf)

    def forward(self, image, targets=None):  # noqa: ANN001, ANN201
        locs, confs = self.heads(image)
        if self.training:
            raise NotImplementedError("the reference copy has no training loss")
        return self.postprocess(locs, confs)
