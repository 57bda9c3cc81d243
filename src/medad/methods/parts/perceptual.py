"""Frozen VGG19 features and the relative perceptual L1 distance of Shvetsova et al. 2021.

Shvetsova, Bakker, Fedulova, Schulz, Dylov, "Anomaly detection in medical imaging with deep
perceptual autoencoders", IEEE Access 9 (2021); code: ninatu/anomaly_detection
(``dpa/rec_losses.py``), copied into MedIAnomaly's ``utils/losses.py`` for its AE-PL row.

The distance between an image x and its reconstruction y uses the features f of one VGG19 layer
(relu4_2 in both codes: their default ``feature_weights={"r42": 1}``), standardised per channel,
f̂ = (f − μ) / σ, and divided by the size of x's own features:

    d(x, y)[h, w] = mean_c |f̂(x) − f̂(y)|[c, h, w] / mean_{c,h,w} |f̂(x)|

The denominator is a per-image constant, detached from the graph as in their code; it makes the
distance "relative", i.e. insensitive to the overall contrast of the image. The mean of the map
is their training loss; the map itself, upsampled, is the anomaly map.

On μ and σ (see `RelativePerceptualL1`): both codes load per-channel statistics of VGG19 features
on ImageNet from a file they ship (``vgg19_ILSVRC2012_object_detection_mean_var.pt``, key ``r42``)
and divide by its second entry, named ``var`` (MedIAnomaly's ``utils/losses.py``,
``PerceptualLoss.forward``: ``(f − mean) / var``). That file is data medad cannot ship, and with
random weights ImageNet statistics would not apply anyway. Two normalisations are therefore offered:

- ``train`` (default): the mean and standard deviation of each channel over the features of the
  *whole* training split of normal images, in one pass before the first update (the engine's
  `Method.prepare`). It plays the same role as the ImageNet file (features on a common scale per
  channel) but is estimated on the data at hand, so results can differ from the study's;
- a file: the original Shvetsova/MedIAnomaly ``.pt`` (used exactly as their code does, mean and
  ``var`` as the divisor) or a ``{"mean": …, "std": …}`` ``.pt``/``.npz``: exact reproduction of
  the study's row needs the original file and ``weights=imagenet``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from medad.errors import MedadError
from medad.methods.parts.backbone import FrozenBackbone

#: convs per VGG19 block (Simonyan & Zisserman 2015, configuration E)
_VGG19_BLOCKS = (2, 2, 4, 4, 4)
_VGG19_WIDTHS = (64, 128, 256, 512, 512)


def _relu_layers() -> dict[str, tuple[int, int, int]]:
    """``relu{block}_{k}`` → (end index in torchvision's ``vgg19().features``, channels, stride)."""
    layers, i = {}, 0
    for b, (n, width) in enumerate(zip(_VGG19_BLOCKS, _VGG19_WIDTHS, strict=True), start=1):
        for k in range(1, n + 1):
            layers[f"relu{b}_{k}"] = (i + 2, width, 2 ** (b - 1))  # conv at i, its ReLU at i + 1
            i += 2
        i += 1  # the block's max-pool
    return layers


VGG19_LAYERS = _relu_layers()


class FrozenVGG19(FrozenBackbone):
    """VGG19 features up to a ReLU layer, frozen: [B, C, S, S] in `value_range` → [B, c, S/r, S/r].

    A `FrozenBackbone` on the node of that ReLU: the VGG weights are pretrained data, not model
    state, kept out of ``parameters()`` and ``state_dict()`` (checkpoints stay small and loading
    one needs the same `weights`), in eval mode, following the module across devices and dtypes.
    """

    def __init__(
        self,
        layer: str = "relu4_2",
        weights: str = "imagenet",
        value_range: tuple[float, float] = (-1.0, 1.0),
    ) -> None:
        if layer not in VGG19_LAYERS:
            raise MedadError(f"unknown VGG19 layer {layer!r}; use one of {', '.join(VGG19_LAYERS)}")
        end, _, stride = VGG19_LAYERS[layer]
        super().__init__("vgg19", f"features.{end - 1}", weights, value_range)
        self.layer, self.stride = layer, stride


def relative_l1_map(
    fx: torch.Tensor, fy: torch.Tensor, mean: torch.Tensor, std: torch.Tensor
) -> torch.Tensor:
    """Relative L1 distance of feature maps [B, c, h, w] → [B, h, w] (see the module docstring)."""
    mean, std = mean.view(1, -1, 1, 1), std.view(1, -1, 1, 1)
    nx, ny = (fx - mean) / std, (fy - mean) / std
    size = nx.abs().mean(dim=(1, 2, 3)).detach().clamp_min(1e-12)
    return (nx - ny).abs().mean(dim=1) / size.view(-1, 1, 1)


class RelativePerceptualL1(nn.Module):
    """The relative perceptual L1 map d(x, y) on frozen VGG19 features, with its statistics.

    `stats`: ``"train"`` (estimate μ, σ over all the batches given to `estimate`), ``"none"``
    (μ = 0, σ = 1), or a file: ``{"mean": [c], "std": [c]}`` (``.pt`` or ``.npz``), or the
    Shvetsova/MedIAnomaly file ``{"r42": (mean, var), ...}`` whose second entry is used as the
    divisor exactly as their code does. μ and σ are buffers, so they are saved with the method's
    checkpoint.
    """

    def __init__(
        self,
        layer: str = "relu4_2",
        weights: str = "imagenet",
        stats: str = "train",
        value_range: tuple[float, float] = (-1.0, 1.0),
    ) -> None:
        super().__init__()
        self.features = FrozenVGG19(layer, weights, value_range)
        c = self.features.channels
        self.register_buffer("mean", torch.zeros(c))
        self.register_buffer("std", torch.ones(c))
        self.register_buffer("ready", torch.tensor(stats != "train"))
        if stats not in ("train", "none"):
            m, s = load_feature_stats(Path(stats), layer, c)
            self.mean.copy_(m)
            self.std.copy_(s)

    @torch.no_grad()
    def estimate(self, batches: Iterable[torch.Tensor]) -> None:
        """Set μ, σ per channel from the features of all images in `batches`, once (later calls,
        and calls on a loss built from a statistics file, do nothing).

        σ is the standard deviation over every image and position, floored at 1 % of its mean
        over channels: a channel (almost) silent on normal images would otherwise get a weight in
        the thousands.
        """
        if bool(self.ready):
            return
        total = squares = None
        count = 0
        for x in batches:
            f = self.features(x).transpose(0, 1).flatten(1).double()  # [c, B·h·w]
            s, q = f.sum(dim=1), (f * f).sum(dim=1)
            total, squares = (s, q) if total is None else (total + s, squares + q)
            count += f.shape[1]
        if total is None or squares is None or count < 2:
            raise MedadError("perceptual loss: feature statistics need at least one training image")
        mean = total / count
        std = ((squares - count * mean * mean) / (count - 1)).clamp_min(0.0).sqrt()
        self.mean.copy_(mean)
        self.std.copy_(std.clamp_min(max(0.01 * float(std.mean()), 1e-12)))
        self.ready.fill_(True)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """d(x, y) → [B, h, w] at the layer's resolution; x is the reference, y the rebuilt x."""
        if not bool(self.ready):
            raise MedadError("perceptual loss: feature statistics were never estimated")
        with torch.no_grad():
            fx = self.features(x)
        return relative_l1_map(fx, self.features(y), self.mean, self.std)


def load_feature_stats(path: Path, layer: str, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(μ, σ) of `channels` values from a statistics file (formats: see `RelativePerceptualL1`)."""
    if not path.is_file():
        raise MedadError(
            f"{path}: feature statistics file not found "
            "(feature_stats= takes train, none or a file)"
        )
    try:
        if path.suffix == ".npz":
            with np.load(path) as npz:
                data = {k: torch.from_numpy(npz[k]) for k in npz.files}
        else:
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error
        raise MedadError(f"{path}: cannot read feature statistics ({exc})") from exc
    short = "r" + layer.removeprefix("relu").replace("_", "")  # relu4_2 → r42 (their key)
    if isinstance(data, dict) and "mean" in data and "std" in data:
        pair = (data["mean"], data["std"])
    elif (
        isinstance(data, dict)
        and isinstance(data.get(short), tuple | list)
        and len(data[short]) == 2
    ):
        pair = tuple(data[short])
    else:
        raise MedadError(
            f"{path}: expected a dict with 'mean' and 'std', or with key {short!r} "
            f"(mean, var) as in the Shvetsova et al. file"
        )
    try:
        mean, std = (torch.as_tensor(t, dtype=torch.float32).reshape(channels) for t in pair)
    except (RuntimeError, ValueError) as exc:
        raise MedadError(f"{path}: statistics must hold {channels} values per entry") from exc
    if not (std > 0).all():
        raise MedadError(f"{path}: the divisor (std/var) must be positive for every channel")
    return mean, std
