"""The MedIAnomaly reconstruction backbone (PAPER.md, "Shared reconstruction backbone").

Encoder: 4 blocks of conv(k4, s2, p1) → BN → ReLU with widths w, 2w, 4w, 4w (w = 16).
Bottleneck: flatten → FC(1024) → BN → ReLU → FC(latent); mirrored on the way back (FC(1024) → BN →
ReLU → FC back to the feature map). Decoder: 4 transposed-conv blocks mirroring the encoder, the
last without BN/ReLU. At 64×64 grayscale with latent 16 this is 2.35 M parameters.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from pydantic import BaseModel, Field
from torch import nn

from medad.methods.base import MethodConfig


class BackboneConfig(BaseModel):
    """Config fields of the paper's AE backbone (mixed into a method's config)."""

    latent_size: int = Field(16, ge=1)
    """Size of the FC bottleneck (PAPER.md: 16; the latent-size study varies it 1…128)."""
    base_width: int = Field(16, ge=1)
    """Channels of the first encoder block; the others are 2×, 4×, 4× (PAPER.md)."""
    mid_size: int = Field(1024, ge=1)
    """Width of the hidden FC layer of the bottleneck (PAPER.md: 1024)."""


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


def fc_layers(cin: int, mid: int, cout: int, batch_norm: bool = True) -> list[nn.Module]:
    """FC(mid) → BN → ReLU → FC(cout); without the BN where a network has none (GANomaly)."""
    norm: list[nn.Module] = [nn.BatchNorm1d(mid)] if batch_norm else []
    return [nn.Linear(cin, mid), *norm, nn.ReLU(inplace=True), nn.Linear(mid, cout)]


class FCBottleneck(nn.Module):
    """flatten → FC(mid) → BN → ReLU → FC(latent); and the mirror from the latent back.

    `batch_norm=False` drops the two BatchNorm1d layers (MedIAnomaly's GANomaly networks).
    """

    def __init__(
        self,
        channels: int,
        side: int,
        latent_size: int = 16,
        mid: int = 1024,
        batch_norm: bool = True,
    ) -> None:
        super().__init__()
        self.shape = (channels, side, side)
        flat = channels * side * side
        self.encode = nn.Sequential(nn.Flatten(), *fc_layers(flat, mid, latent_size, batch_norm))
        self.decode_fc = nn.Sequential(*fc_layers(latent_size, mid, flat, batch_norm))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decode_fc(z).view(z.shape[0], *self.shape)


class AutoEncoder(nn.Module):
    """The paper's AE: `ConvEncoder` → `FCBottleneck` → `ConvDecoder`.

    `out_channels` lets a decoder predict more than the image (AE-U adds a log-variance map).
    `bottleneck` swaps the FC bottleneck for another module with ``encode``/``decode`` (spatial,
    variational), built from (encoder channels, encoder output side) between encoder and decoder.
    `fc_batch_norm=False` drops the BatchNorm of the FC bottleneck (GANomaly).
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
        fc_batch_norm: bool = True,
    ) -> None:
        super().__init__()
        if image_size % 16:
            raise ValueError(f"image_size must be a multiple of 16, got {image_size}")
        self.encoder = ConvEncoder(in_channels, base_width)
        make = bottleneck or (
            lambda c, side: FCBottleneck(c, side, latent_size, mid, fc_batch_norm)
        )
        self.bottleneck = make(self.encoder.out_channels, image_size // 16)
        self.decoder = ConvDecoder(out_channels or in_channels, base_width)

    @classmethod
    def from_config(cls, config: MethodConfig, channels: int, **options: Any) -> AutoEncoder:
        """The paper's AE for a method config that includes `BackboneConfig`; `options` are the
        constructor's other arguments (``out_channels``, ``fc_batch_norm``)."""
        if not isinstance(config, BackboneConfig):
            raise TypeError(f"{type(config).__name__} does not include BackboneConfig")
        c = config
        return cls(channels, config.image_size, c.latent_size, c.base_width, c.mid_size, **options)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.bottleneck.encode(self.encoder(x))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.bottleneck.decode(z))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
