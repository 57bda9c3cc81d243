"""The time-conditioned U-Net of denoising diffusion models, small and configurable.

The architecture of Ho et al. 2020 (Appendix B) as refined by Nichol & Dhariwal 2021 and used by
AnoDDPM (Wyatt et al. 2022, their ``UNet``), AutoDDPM and pDDPM: a sinusoidal timestep embedding
through a two-layer MLP, residual blocks (GroupNorm → SiLU → 3×3 conv, the embedding added between
the two convs), multi-head self-attention at the low resolutions, strided-conv downsampling and
nearest-neighbour upsampling, skip connections from every block of the encoder to the decoder,
and a zero-initialised output conv (the untrained network predicts 0). Widths are `base_width`
times `channel_mults` per level; GroupNorm uses up to 32 groups (fewer when a width is small).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding [B, dim] of integer steps t [B] (Vaswani 2017; Ho et al. 2020)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    return F.pad(emb, (0, dim % 2))


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(32, channels), channels)


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, emb_dim: int, dropout: float) -> None:
        super().__init__()
        self.in_layers = nn.Sequential(_norm(cin), nn.SiLU(), nn.Conv2d(cin, cout, 3, padding=1))
        self.emb = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, cout))
        self.out_layers = nn.Sequential(
            _norm(cout), nn.SiLU(), nn.Dropout(dropout), nn.Conv2d(cout, cout, 3, padding=1)
        )
        self.skip = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.in_layers(x) + self.emb(emb)[:, :, None, None]
        return self.skip(x) + self.out_layers(h)


class Attention(nn.Module):
    """Multi-head self-attention over the positions of a feature map, with a residual."""

    def __init__(self, channels: int, heads: int) -> None:
        super().__init__()
        self.heads = math.gcd(heads, channels)
        self.norm = _norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w).unbind(1)
        out = F.scaled_dot_product_attention(
            q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2)
        )
        return x + self.proj(out.transpose(-1, -2).reshape(b, c, h, w))


class _Block(nn.Module):
    def __init__(self, res: ResBlock, attn: Attention | None) -> None:
        super().__init__()
        self.res, self.attn = res, attn if attn is not None else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        return self.attn(self.res(x, emb))


class DiffusionUNet(nn.Module):
    """ε- or x_0-predicting U-Net: ([B, C, S, S], t [B]) → [B, C_out, S, S].

    `attention_sides`: feature-map sides (pixels) at which blocks get self-attention; S must divide
    by 2^(len(channel_mults) − 1)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        image_size: int = 64,
        base_width: int = 64,
        channel_mults: Sequence[int] = (1, 2, 3, 4),
        res_blocks: int = 2,
        attention_sides: Sequence[int] = (16, 8),
        heads: int = 4,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.base_width = base_width
        emb = 4 * base_width
        self.time_mlp = nn.Sequential(nn.Linear(base_width, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.conv_in = nn.Conv2d(in_channels, base_width, 3, padding=1)
        side, width = image_size, base_width
        skips = [width]
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        for level, mult in enumerate(channel_mults):
            blocks = nn.ModuleList()
            for _ in range(res_blocks):
                out = base_width * mult
                attn = Attention(out, heads) if side in attention_sides else None
                blocks.append(_Block(ResBlock(width, out, emb, dropout), attn))
                width = out
                skips.append(width)
            self.down.append(blocks)
            last = level == len(channel_mults) - 1
            self.downsample.append(
                nn.Identity() if last else nn.Conv2d(width, width, 3, stride=2, padding=1)
            )
            if not last:
                skips.append(width)
                side //= 2
        self.mid = nn.ModuleList(
            [
                _Block(ResBlock(width, width, emb, dropout), Attention(width, heads)),
                _Block(ResBlock(width, width, emb, dropout), None),
            ]
        )
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mults))):
            blocks = nn.ModuleList()
            for _ in range(res_blocks + 1):
                out = base_width * mult
                attn = Attention(out, heads) if side in attention_sides else None
                blocks.append(_Block(ResBlock(width + skips.pop(), out, emb, dropout), attn))
                width = out
            self.up.append(blocks)
            self.upsample.append(
                nn.Conv2d(width, width, 3, padding=1) if level > 0 else nn.Identity()
            )
            if level > 0:
                side *= 2
        self.out = nn.Sequential(
            _norm(width), nn.SiLU(), nn.Conv2d(width, out_channels, 3, padding=1)
        )
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        emb = self.time_mlp(timestep_embedding(t, self.base_width))
        h = self.conv_in(x)
        hs = [h]
        for blocks, down in zip(self.down, self.downsample, strict=True):
            for block in blocks:
                h = block(h, emb)
                hs.append(h)
            if not isinstance(down, nn.Identity):
                h = down(h)
                hs.append(h)
        for block in self.mid:
            h = block(h, emb)
        for blocks, up in zip(self.up, self.upsample, strict=True):
            for block in blocks:
                h = block(torch.cat([h, hs.pop()], dim=1), emb)
            if not isinstance(up, nn.Identity):
                h = up(F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.out(h)
