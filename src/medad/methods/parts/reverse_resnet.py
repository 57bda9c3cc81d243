"""The one-class bottleneck and the reversed-ResNet student of reverse distillation (RD).

Deng & Li, "Anomaly Detection via Reverse Distillation from One-Class Embedding", CVPR 2022,
Sec. 3.2-3.3 and Fig. 3; official code hq-deng/RD4AD (``resnet.py``: ``BN_layer``;
``de_resnet.py``: the decoder). Shared by RD and the methods built on it (RD++, ReContrast).

* One-class bottleneck embedding (OCBE): multi-scale feature fusion of the teacher's three scales
  (layer 1 brought down by two stride-2 3×3 convs, layer 2 by one, each conv followed by BN and
  ReLU, then concatenated with layer 3) and one more ResNet stage of the teacher's block type
  (512 planes, stride 2; 2 blocks for ResNet18, 3 otherwise) that compresses the fused features
  to the compact embedding. Its output has twice layer 3's channels, as for every ResNet of RD4AD.
* Student decoder: the teacher's layers 3, 2, 1 in reverse, each a ResNet stage whose first block
  upsamples ×2 with a 2×2 transposed conv where the teacher's block downsamples (main path and
  shortcut). Its three outputs match the teacher's layer 1-3 features in shape.

Teachers that are not ResNets but have the same output strides (4, 8, 16) get a layout with their
own channel widths (`ResNetLayout.widths`): ``efficientnet_lite0`` (24, 40, 112 channels) gets
ResNet18's basic-block OCBE and student at those widths, so the student mirrors its teacher.

Convolutions use Kaiming (fan-out) initialisation and BN starts at weight 1, bias 0, as both
official modules (and torchvision's ResNet) do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from medad.errors import MedadError
from medad.methods.parts.pretrained import EFFICIENTNET_LITE0


@dataclass(frozen=True)
class ResNetLayout:
    """What RD needs to know of a teacher ResNet (torchvision's definitions)."""

    block: Literal["basic", "bottleneck"]
    #: blocks of the decoder's three stages, deepest first (RD4AD's ``de_resnet`` passes the
    #: teacher's ``layers[0..2]`` in that order)
    decoder_blocks: tuple[int, int, int]
    #: blocks of the OCBE's ResNet stage (RD4AD: ``BN_layer(block, 2)`` for ResNet18, 3 otherwise)
    ocbe_blocks: int
    #: bottleneck width per group (64; Wide ResNet: 128)
    base_width: int = 64
    #: channels of the teacher's layers 1-3 when they are not a ResNet's (None: 64, 128, 256 ×
    #: the block's expansion)
    widths: tuple[int, int, int] | None = None

    @property
    def expansion(self) -> int:
        return 1 if self.block == "basic" else 4

    @property
    def channels(self) -> tuple[int, int, int]:
        """Channels of the teacher's layers 1, 2, 3."""
        if self.widths is not None:
            return self.widths
        e = self.expansion
        return 64 * e, 128 * e, 256 * e

    @property
    def planes(self) -> tuple[int, int, int]:
        """Planes of the stages that output layers 1, 2, 3 (64, 128, 256 for a ResNet)."""
        e = self.expansion
        return tuple(c // e for c in self.channels)  # type: ignore[return-value]


LAYOUTS: dict[str, ResNetLayout] = {
    "resnet18": ResNetLayout("basic", (2, 2, 2), 2),
    "resnet34": ResNetLayout("basic", (3, 4, 6), 3),
    "resnet50": ResNetLayout("bottleneck", (3, 4, 6), 3),
    "wide_resnet50_2": ResNetLayout("bottleneck", (3, 4, 6), 3, base_width=128),
    EFFICIENTNET_LITE0: ResNetLayout("basic", (2, 2, 2), 2, widths=(24, 40, 112)),
}


def layout_of(arch: str) -> ResNetLayout:
    if arch not in LAYOUTS:
        raise MedadError(f"no reverse-distillation layout for {arch!r}; use one of {list(LAYOUTS)}")
    return LAYOUTS[arch]


def _init(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def _conv_bn_relu(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class OneClassBottleneck(nn.Module):
    """OCBE: teacher features [f1, f2, f3] → the one-class embedding (stride 2 below f3)."""

    def __init__(self, layout: ResNetLayout) -> None:
        super().__init__()
        c1, c2, c3 = layout.channels
        self.fuse1 = nn.Sequential(*_conv_bn_relu(c1, c2), *_conv_bn_relu(c2, c3))
        self.fuse2 = nn.Sequential(*_conv_bn_relu(c2, c3))
        from torchvision.models.resnet import BasicBlock, Bottleneck  # lazy: start-up time

        e = layout.expansion
        planes = 2 * c3 // e  # 512 for every ResNet: an embedding of twice layer 3's channels
        block: type[BasicBlock | Bottleneck] = BasicBlock if layout.block == "basic" else Bottleneck
        shortcut = nn.Sequential(
            nn.Conv2d(3 * c3, planes * e, 1, 2, bias=False), nn.BatchNorm2d(planes * e)
        )
        blocks = [block(3 * c3, planes, 2, shortcut, base_width=layout.base_width)]
        blocks += [
            block(planes * e, planes, base_width=layout.base_width)
            for _ in range(layout.ocbe_blocks - 1)
        ]
        self.stage = nn.Sequential(*blocks)
        #: channels of the embedding
        self.channels = planes * e
        _init(self)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        f1, f2, f3 = feats
        return self.stage(torch.cat([self.fuse1(f1), self.fuse2(f2), f3], dim=1)).contiguous()


class UpBlock(nn.Module):
    """A ResNet block (basic or bottleneck) that upsamples ×2 with 2×2 transposed convolutions
    where torchvision's block would downsample (RD4AD ``de_resnet.py``); `up=False`: as is."""

    def __init__(
        self, kind: str, cin: int, planes: int, up: bool, expansion: int, base_width: int
    ) -> None:
        super().__init__()
        cout = planes * expansion

        def spatial(a: int, b: int) -> nn.Module:
            if up:
                return nn.ConvTranspose2d(a, b, 2, 2, bias=False)
            return nn.Conv2d(a, b, 3, 1, 1, bias=False)

        if kind == "basic":
            self.body = nn.Sequential(
                spatial(cin, planes), nn.BatchNorm2d(planes), nn.ReLU(inplace=True),
                nn.Conv2d(planes, planes, 3, 1, 1, bias=False), nn.BatchNorm2d(planes),
            )  # fmt: skip
        else:
            width = planes * base_width // 64
            self.body = nn.Sequential(
                nn.Conv2d(cin, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
                spatial(width, width), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
                nn.Conv2d(width, cout, 1, bias=False), nn.BatchNorm2d(cout),
            )  # fmt: skip
        self.shortcut: nn.Module = nn.Identity()
        if up or cin != cout:
            conv = (
                nn.ConvTranspose2d(cin, cout, 2, 2, bias=False)
                if up
                else nn.Conv2d(cin, cout, 1, bias=False)
            )
            self.shortcut = nn.Sequential(conv, nn.BatchNorm2d(cout))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.body(x) + self.shortcut(x))


class ReverseResNet(nn.Module):
    """RD's student: embedding → features shaped as the teacher's layers 1, 2, 3 (in that order).

    `heads` > 0 adds that many sets of 1×1 convolutions (with bias) on the three outputs, as
    ReContrast's two decoders sharing one body (its ``de_resnet.py``, ``output_conv=2``); the
    output is then head 1's three scales, head 2's three scales, and so on.
    """

    def __init__(self, layout: ResNetLayout, in_channels: int, heads: int = 0) -> None:
        super().__init__()
        e, stages, cin = layout.expansion, [], in_channels
        for planes, n in zip(layout.planes[::-1], layout.decoder_blocks, strict=True):
            blocks = [UpBlock(layout.block, cin, planes, True, e, layout.base_width)]
            cin = planes * e
            blocks += [
                UpBlock(layout.block, cin, planes, False, e, layout.base_width)
                for _ in range(n - 1)
            ]
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        self.heads = nn.ModuleList(
            nn.ModuleList(nn.Conv2d(c, c, 1) for c in layout.channels) for _ in range(heads)
        )
        _init(self)

    def forward(self, z: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for stage in self.stages:
            z = stage(z)
            outs.append(z)
        feats = outs[::-1]
        if not len(self.heads):
            return feats
        return [conv(f) for head in self.heads for conv, f in zip(head, feats, strict=True)]
