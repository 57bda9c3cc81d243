"""The MedIAnomaly reconstruction backbone (PAPER.md, "Shared reconstruction backbone").

Encoder: 4 blocks of conv(k4, s2, p1) → BN → ReLU with widths w, 2w, 4w, 4w (w = 16).
Bottleneck: flatten → FC(1024) → BN → ReLU → FC(latent); mirrored on the way back (FC(1024) → BN →
ReLU → FC back to the feature map). Decoder: 4 transposed-conv blocks mirroring the encoder, the
last without BN/ReLU. At 64×64 grayscale with latent 16 this is 2.35 M parameters.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


def down_block(cin: int, cout: int) -> nn.Sequential:
    """conv k4 s2 p1 (halves the side) → BN → ReLU; no conv bias, BN follows."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


def up_block(cin: int, cout: int, last: bool = False) -> nn.Sequential:
    """transposed conv k4 s2 p1 (doubles the side) → BN → ReLU; the last block is the conv alone."""
    conv = nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False)
    if last:
        return nn.Sequential(conv)
    return nn.Sequential(conv, nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def widths(base_width: int) -> list[int]:
    return [base_width, 2 * base_width, 4 * base_width, 4 * base_width]


class ConvEncoder(nn.Module):
    """Four down blocks: [B, C, S, S] → [B, 4w, S/16, S/16]."""

    def __init__(self, in_channels: int, base_width: int = 16) -> None:
        super().__init__()
        w = widths(base_width)
        chans = [in_channels, *w]
        self.blocks = nn.Sequential(*(down_block(chans[i], chans[i + 1]) for i in range(4)))
        self.out_channels = w[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


class ConvDecoder(nn.Module):
    """Four up blocks mirroring `ConvEncoder`: [B, 4w, S/16, S/16] → [B, out_channels, S, S]."""

    def __init__(self, out_channels: int, base_width: int = 16) -> None:
        super().__init__()
        w = widths(base_width)
        chans = [w[3], w[2], w[1], w[0], out_channels]
        self.blocks = nn.Sequential(
            *(up_block(chans[i], chans[i + 1], last=i == 3) for i in range(4))
        )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.blocks(h)


class FCBottleneck(nn.Module):
    """flatten → FC(mid) → BN → ReLU → FC(latent); and the mirror from the latent back."""

    def __init__(self, channels: int, side: int, latent_size: int = 16, mid: int = 1024) -> None:
        super().__init__()
        self.shape = (channels, side, side)
        flat = channels * side * side
        self.encode = nn.Sequential(
            nn.Flatten(),
            nn.Linear(flat, mid),
            nn.BatchNorm1d(mid),
            nn.ReLU(inplace=True),
            nn.Linear(mid, latent_size),
        )
        self.decode_fc = nn.Sequential(
            nn.Linear(latent_size, mid),
            nn.BatchNorm1d(mid),
            nn.ReLU(inplace=True),
            nn.Linear(mid, flat),
        )

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decode_fc(z).view(z.shape[0], *self.shape)


class AutoEncoder(nn.Module):
    """The paper's AE: `ConvEncoder` → `FCBottleneck` → `ConvDecoder`.

    `out_channels` lets a decoder predict more than the image (AE-U adds a log-variance map).
    `bottleneck` swaps the FC bottleneck for another module with ``encode``/``decode`` (spatial,
    variational), built from (encoder channels, encoder output side) between encoder and decoder.
    """

    def __init__(
        self,
        in_channels: int = 1,
        image_size: int = 64,
        latent_size: int = 16,
        base_width: int = 16,
        mid: int = 1024,
        out_channels: int | None = None,
        bottleneck: Callable[[int, int], nn.Module] | None = None,
    ) -> None:
        super().__init__()
        if image_size % 16:
            raise ValueError(f"image_size must be a multiple of 16, got {image_size}")
        self.encoder = ConvEncoder(in_channels, base_width)
        make = bottleneck or (lambda c, side: FCBottleneck(c, side, latent_size, mid))
        self.bottleneck = make(self.encoder.out_channels, image_size // 16)
        self.decoder = ConvDecoder(out_channels or in_channels, base_width)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.bottleneck.encode(self.encoder(x))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.bottleneck.decode(z))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
