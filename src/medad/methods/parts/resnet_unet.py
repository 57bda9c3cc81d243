"""A ResNet18 encoder-decoder that predicts a per-pixel anomaly logit (one-stage SSL methods).

NSA (Schlüter et al., ECCV 2022) and MedIAnomaly's one-stage SSL code train a ResNet18-style
encoder-decoder from scratch on 224 px grayscale crops: the torchvision ResNet18 encoder (7×7
stride-2 stem, max-pool, four stages of two basic blocks, 64-128-256-512 channels, output stride
32), a 1×1 "network in network" squeeze 512 → 256 → 128, three residual up-sampling stages of
64, 32, 16 channels, and a final up-sampling to the input size with one output channel.

medad builds the encoder from ``torchvision.models.resnet18(weights=None)`` with the stem
convolution replaced to take `in_channels` (grayscale stays 1-channel), and the decoder from
residual blocks that each up-sample (bilinear) to the size of the next-shallower encoder stage.
Two choices differ from NSA, both documented:

* skip connections (U-Net style), an option: with ``skips=True`` each decoder stage also
  receives the encoder feature map of its resolution, concatenated; ``skips=False`` (default) is
  NSA's and MedIAnomaly's plain encoder-decoder (``model/resnet.py``, ``resnet18_enc_dec``);
* up-sampling is bilinear to the exact size of the skip / input rather than a stride-2 transposed
  convolution, so any input side works (not only multiples of 32), and the decoder has one stage
  more (at stride 2, NSA's plain bilinear ×2) followed by a 7×7 convolution to the logit (NSA: a
  7×7 stride-2 transposed convolution).

With one input channel: 11.5 M parameters (11.7 M with ``skips=True``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: channels of the torchvision ResNet18 stem and of its four stages
ENCODER_WIDTHS = (64, 64, 128, 256, 512)
#: channels of the decoder stages, deepest first (NSA: 64, 32, 16, then 16 at stride 2)
DECODER_WIDTHS = (64, 32, 16, 16)


class UpBlock(nn.Module):
    """Bilinear up-sampling to a target size, optional skip concatenation, residual conv block."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int) -> None:
        super().__init__()
        cat = in_channels + skip_channels
        self.body = nn.Sequential(
            nn.Conv2d(cat, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        self.shortcut = nn.Sequential(
            nn.Conv2d(cat, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels)
        )

    def forward(
        self, x: torch.Tensor, size: tuple[int, int], skip: torch.Tensor | None
    ) -> torch.Tensor:
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return F.relu(self.body(x) + self.shortcut(x))


class ResNetUNet(nn.Module):
    """ResNet18 encoder (from scratch) + up-sampling decoder → one logit per input pixel.

    Args:
        in_channels: channels of the input image (1 for grayscale).
        skips: concatenate the encoder feature maps into the decoder (U-Net); False (default) is
            NSA's and MedIAnomaly's plain encoder-decoder.
    """

    def __init__(self, in_channels: int = 1, *, skips: bool = False) -> None:
        super().__init__()
        self.skips = skips
        import torchvision  # lazy: start-up time

        resnet = torchvision.models.resnet18(weights=None)
        stem_conv = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        nn.init.kaiming_normal_(stem_conv.weight, mode="fan_out", nonlinearity="relu")
        self.stem = nn.Sequential(stem_conv, resnet.bn1, resnet.relu)
        self.pool = resnet.maxpool
        self.stages = nn.ModuleList([resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4])
        # NSA's 1×1 squeeze of the deepest features, 512 → 256 → 128
        self.squeeze = nn.Sequential(
            nn.Conv2d(512, 256, 1, bias=False),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 128, 1, bias=False),
            nn.ReLU(inplace=True),
        )
        # decoder stages target layer3, layer2, layer1 and the stem (strides 16, 8, 4, 2)
        skip_widths = ENCODER_WIDTHS[-2::-1]  # 256, 128, 64, 64
        ups, width = [], 128
        for skip_width, out in zip(skip_widths, DECODER_WIDTHS, strict=True):
            ups.append(UpBlock(width, skip_width if skips else 0, out))
            width = out
        self.ups = nn.ModuleList(ups)
        self.head = nn.Conv2d(width, 1, kernel_size=7, padding=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, C, H, W] → anomaly logits [B, 1, H, W]."""
        features = [self.stem(x)]
        h = self.pool(features[0])
        for stage in self.stages:
            h = stage(h)
            features.append(h)
        h = self.squeeze(features.pop())
        for up in self.ups:
            skip = features.pop()
            h = up(h, tuple(skip.shape[-2:]), skip if self.skips else None)
        h = F.interpolate(h, size=tuple(x.shape[-2:]), mode="bilinear", align_corners=False)
        return self.head(h)
