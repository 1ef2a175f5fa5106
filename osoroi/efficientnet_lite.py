"""EfficientNet-Lite0 with the parameter names of ``efficientnet_pytorch`` (``_conv_stem``, ``_blocks.N``).

The Lite variants drop squeeze-and-excitation, use ReLU6 and keep the stem
and head at fixed widths (TensorFlow ``efficientnet/lite``). Convolutions pad
like TensorFlow's ``SAME`` mode, as the converted ImageNet weights expect.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

BATCH_NORM_EPSILON = 1e-3
BATCH_NORM_MOMENTUM = 0.01  # PyTorch momentum; TensorFlow's decay is 0.99

# (repeats, kernel size, stride, expand ratio, input channels, output channels) per stage of Lite0.
LITE0_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)


class SamePaddingConv2d(nn.Conv2d):
    """2D convolution that pads like TensorFlow's ``SAME`` mode: output size is ceil(input / stride)."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding=0, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        pad_h = _same_padding(height, self.kernel_size[0], self.stride[0])
        pad_w = _same_padding(width, self.kernel_size[1], self.stride[1])
        if pad_h or pad_w:
            x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        return super().forward(x)


def _same_padding(size: int, kernel: int, stride: int) -> int:
    output = math.ceil(size / stride)
    return max((output - 1) * stride + kernel - size, 0)


def _batch_norm(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BATCH_NORM_EPSILON, momentum=BATCH_NORM_MOMENTUM)


class MBConvBlock(nn.Module):
    """An inverted-residual block without squeeze-and-excitation: expand 1x1, depthwise, project 1x1."""

    def __init__(
        self, kernel_size: int, stride: int, expand_ratio: int, in_channels: int, out_channels: int
    ) -> None:
        super().__init__()
        hidden = in_channels * expand_ratio
        self.has_expansion = expand_ratio != 1
        if self.has_expansion:
            self._expand_conv = SamePaddingConv2d(in_channels, hidden, 1)
            self._bn0 = _batch_norm(hidden)
        self._depthwise_conv = SamePaddingConv2d(hidden, hidden, kernel_size, stride, groups=hidden)
        self._bn1 = _batch_norm(hidden)
        self._project_conv = SamePaddingConv2d(hidden, out_channels, 1)
        self._bn2 = _batch_norm(out_channels)
        self.has_skip = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        if self.has_expansion:
            out = F.relu6(self._bn0(self._expand_conv(out)))
        out = F.relu6(self._bn1(self._depthwise_conv(out)))
        out = self._bn2(self._project_conv(out))
        return out + x if self.has_skip else out


class _Stem(nn.Module):
    def __init__(self, network: EfficientNetLite0, blocks: list[nn.Module]) -> None:
        super().__init__()
        self._conv_stem = network._conv_stem
        self._bn0 = network._bn0
        self._blocks = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._blocks(F.relu6(self._bn0(self._conv_stem(x))))


class _Head(nn.Module):
    def __init__(self, network: EfficientNetLite0, blocks: list[nn.Module]) -> None:
        super().__init__()
        self._blocks = nn.Sequential(*blocks)
        self._conv_head = network._conv_head
        self._bn1 = network._bn1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu6(self._bn1(self._conv_head(self._blocks(x))))


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 (4.7M parameters, 1280-d pooled feature) laid out like ``efficientnet_pytorch``."""

    # The last stage group (the four 192-channel blocks and the 320-channel block) forms the tail.
    TAIL_BLOCKS = 5

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self._conv_stem = SamePaddingConv2d(3, 32, 3, stride=2)
        self._bn0 = _batch_norm(32)
        blocks = []
        for repeats, kernel, stride, expand, in_channels, out_channels in LITE0_STAGES:
            for index in range(repeats):
                blocks.append(
                    MBConvBlock(
                        kernel,
                        stride if index == 0 else 1,
                        expand,
                        in_channels if index == 0 else out_channels,
                        out_channels,
                    )
                )
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SamePaddingConv2d(320, 1280, 1)
        self._bn1 = _batch_norm(1280)
        self._fc = nn.Linear(1280, num_classes)
        self.feature_dim = 1280

    def split(self, tail_blocks: int) -> tuple[nn.Module, nn.Module]:
        """Return (trunk, tail) modules sharing this network's parameters; the tail holds the last blocks."""
        blocks = list(self._blocks)
        return _Stem(self, blocks[:-tail_blocks]), _Head(self, blocks[-tail_blocks:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ImageNet logits of shape (N, num_classes) for images of shape (N, 3, H, W)."""
        trunk, tail = self.split(self.TAIL_BLOCKS)
        pooled = torch.flatten(F.adaptive_avg_pool2d(tail(trunk(x)), 1), 1)
        return self._fc(pooled)
