"""The U-Net of the denoising autoencoder (DAE) of Kascenas et al. 2022.

Kascenas, Pugeault, O'Neil, "Denoising autoencoders for unsupervised anomaly detection in brain
MRI", MIDL 2022; public code AntanasKascenas/DenoisingAE (``src/unet.py``, ``src/denoising.py``),
which MedIAnomaly reuses for its DAE row. The first level has 2**6 = 64 filters, doubled at each
level. MedIAnomaly builds it with the class's default depth 5 (``reconstruction/networks/unet.py``:
64 … 1024 channels, 31.0 M parameters at 1 input channel); Kascenas' training script passes depth 4
(64 … 512 channels, 7.7 M).

- a level is two units of: reflection pad 1 → weight-standardised 3×3 conv → Swish → GroupNorm
  (normalisation after the activation, as in their code);
- down between levels by 2×2 average pooling, up by a 2×2 stride-2 transposed conv, concatenated
  with the skip of the same level and followed by a level block;
- a last 1×1 conv back to the image channels, no output activation (the target is the clean
  image in [-1, 1]).

GroupNorm uses the middle divisor of the channel count as its number of groups (≈ √C: 8 groups
for 64 channels, 16 for 128), the rule of their code.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class WSConv2d(nn.Conv2d):
    """A conv whose weights are standardised per output filter (zero mean, unit std) on use.

    Weight standardisation (Qiao et al. 2019), paired with GroupNorm in Kascenas' U-Net.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        w = w - w.mean(dim=(1, 2, 3), keepdim=True)
        w = w / (w.flatten(1).std(dim=1).view(-1, 1, 1, 1) + 1e-5)
        return F.conv2d(x, w, self.bias, self.stride, self.padding, self.dilation, self.groups)


def group_count(channels: int) -> int:
    """The middle divisor of `channels` (sorted ascending), e.g. 64 → 8, 128 → 16, 3 → 3."""
    divisors = sorted(d for d in range(1, channels + 1) if channels % d == 0)
    return divisors[len(divisors) // 2]


def conv_unit(cin: int, cout: int) -> list[nn.Module]:
    return [
        nn.ReflectionPad2d(1),
        WSConv2d(cin, cout, 3),
        nn.SiLU(),
        nn.GroupNorm(group_count(cout), cout),
    ]


def level_block(cin: int, cout: int) -> nn.Sequential:
    """Two (pad → WS-conv 3×3 → Swish → GroupNorm) units; keeps the side."""
    return nn.Sequential(*conv_unit(cin, cout), *conv_unit(cout, cout))


class UpLevel(nn.Module):
    """Transposed conv 2×2 s2 (doubles the side, halves the channels), concat skip, level block."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(cin, cout, kernel_size=2, stride=2)
        self.block = level_block(2 * cout, cout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.block(torch.cat([self.up(x), skip], dim=1))


class UNet(nn.Module):
    """[B, C, S, S] → [B, out_channels, S, S]; S must be divisible by 2**(depth - 1)."""

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int | None = None,
        depth: int = 5,
        base_width: int = 64,
    ) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        self.depth = depth
        widths = [base_width * 2**i for i in range(depth)]
        chans = [in_channels, *widths]
        self.down = nn.ModuleList(level_block(chans[i], chans[i + 1]) for i in range(depth))
        self.up = nn.ModuleList(
            UpLevel(widths[i + 1], widths[i]) for i in reversed(range(depth - 1))
        )
        self.last = nn.Conv2d(widths[0], out_channels or in_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        factor = 2 ** (self.depth - 1)
        if x.shape[-1] % factor or x.shape[-2] % factor:
            raise ValueError(f"U-Net of depth {self.depth}: input side must divide by {factor}")
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.avg_pool2d(x, 2))
            skips.append(x)
        for up, skip in zip(self.up, reversed(skips[:-1]), strict=True):
            x = up(x, skip)
        return self.last(x)
