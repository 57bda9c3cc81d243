"""PaDiM: a Gaussian of pretrained patch features at every position (feature reference family).

Defard, Setkaliev, Loesch & Audigier, "PaDiM: a Patch Distribution Modeling Framework for Anomaly
Detection and Localization", ICPR workshops 2021 (arXiv 2011.08785); the authors' reference
implementation is not public, the widely used re-implementation (xiahaifeng1995/PaDiM) is the
code cited for details below.

* Embedding (Sec. 3.1): features of a frozen ImageNet CNN at layers 1-3 (ResNet18: 64 + 128 + 256 =
  448 channels; Wide ResNet-50-2: 1792), the deeper maps upsampled to layer 1's grid (nearest: each
  layer-1 position takes the deeper feature of the cell it lies in, as the code's
  ``embedding_concat``) and concatenated.
* Random dimensionality reduction (Sec. 3.2, Table 1): a random subset of d channels, fixed once
  (ResNet18: 100 of 448, Wide ResNet-50-2: 550 of 1792; the code draws it with seed 1024).
* Learning (Eq. 1): at every position of the grid, the mean and the covariance of the N training
  features there, Σ = sample covariance + ε·I with ε = 0.01 so Σ is invertible.
* Inference (Eq. 2): the Mahalanobis distance of each test feature to its position's Gaussian,
  a map upsampled (bilinear) to the input size and smoothed with a Gaussian of σ = 4; the image
  score is the map's maximum (Sec. 3.3 and the code).

Fitting streams over the training batches and accumulates per-position sums and sums of outer
products in float64 (no feature tensor of the whole training set is ever held); the fitted means
and inverse covariances are buffers, so they travel in the checkpoint (the frozen backbone does
not: `medad.methods.parts.backbone.FrozenBackbone`). Grayscale is replicated to 3 channels at the
backbone's door only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from pydantic import Field

from medad.data.loading import Preprocess
from medad.errors import MedadError
from medad.methods.base import FittedConfig, Method, MethodConfig, ScoreOutput, Stage, register
from medad.methods.parts.backbone import FrozenBackbone
from medad.methods.parts.feature_maps import gaussian_smooth
from medad.methods.parts.fitted_buffers import FittedBuffers

#: value range of the images the ImageNet backbone gets (ToTensor, then ImageNet Normalize)
UNIT_RANGE = (0.0, 1.0)
#: channels kept per backbone (Defard et al. Table 1 / Sec. 4: ResNet18 100, WRN-50-2 550)
PAPER_REDUCED_DIM = {"resnet18": 100, "wide_resnet50_2": 550}


class PaDiMConfig(FittedConfig):
    batch_size: int = Field(32, ge=1)
    """Images per feature-extraction batch (the re-implementation: 32); no effect on results."""
    image_size: int = Field(224, ge=32, multiple_of=16)
    """Side of the square input (Defard et al. Sec. 4.1: 224 after resize to 256 and crop)."""
    backbone: str = "resnet18"
    """Frozen CNN (Sec. 4: resnet18 or wide_resnet50_2; efficientnet_lite0 with medad[weights])."""
    weights: str = "imagenet"
    """Backbone weights: ``imagenet`` (torch hub cache / bundled), a weights file, or ``random``."""
    layers: list[str] = Field(default_factory=lambda: ["layer1", "layer2", "layer3"], min_length=1)
    """Layers whose features are concatenated, finest first (Sec. 3.1: layers 1-3)."""
    reduced_dim: int | None = Field(None, ge=1)
    """Channels kept at random (Table 1: resnet18 100, wide_resnet50_2 550; None: those, or 100)."""
    subset_seed: int = 1024
    """Seed of the random channel subset (the re-implementation's seed, 1024)."""
    epsilon: float = Field(0.01, gt=0)
    """Regularisation ε·I added to each covariance (Sec. 3.2: 0.01)."""
    sigma: float = Field(4.0, ge=0)
    """σ of the Gaussian smoothing of the upsampled map (Sec. 3.3 / code: 4; 0: none)."""


class PositionGaussians(FittedBuffers):
    """One Gaussian per feature-map position: mean [P, d] and inverse covariance [P, d, d]."""

    mean: torch.Tensor
    precision: torch.Tensor
    n_samples: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(0, 0))
        self.register_buffer("precision", torch.zeros(0, 0, 0))
        #: training images the Gaussians were fitted on; 0 = not fitted yet
        self.register_buffer("n_samples", torch.zeros((), dtype=torch.long))

    @property
    def fitted(self) -> bool:
        return bool(self.n_samples.item() > 0)

    @torch.no_grad()
    def fit(self, features: Iterator[torch.Tensor], epsilon: float) -> None:
        """Fit from a stream of feature batches [B, d, h, w] (float64 running sums, Eq. 1)."""
        n, total, outer = 0, None, None
        for f in features:
            z = f.flatten(2).permute(2, 0, 1).to(torch.float64)  # [P, B, d]
            if total is None:
                total, outer = z.sum(dim=1), torch.bmm(z.transpose(1, 2), z)
            else:
                if z.shape[0] != total.shape[0] or z.shape[2] != total.shape[1]:
                    raise MedadError("PaDiM: feature batches of different sizes")
                total += z.sum(dim=1)
                outer += torch.bmm(z.transpose(1, 2), z)  # type: ignore[operator]
            n += z.shape[1]
        if total is None or outer is None or n < 2:
            raise MedadError(f"PaDiM needs at least 2 training images, got {n}")
        mean = total / n
        cov = (outer - n * mean[:, :, None] * mean[:, None, :]) / (n - 1)  # unbiased, as np.cov
        cov += epsilon * torch.eye(cov.shape[-1], dtype=cov.dtype, device=cov.device)
        self.mean = mean.float()
        self.precision = torch.linalg.inv(cov).float()
        self.n_samples.fill_(n)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Mahalanobis distance maps [B, h, w] of features [B, d, h, w] (Eq. 2)."""
        if not self.fitted:
            raise MedadError("PaDiM: fit the Gaussians on training images before scoring")
        b, d, h, w = features.shape
        if (h * w, d) != tuple(self.mean.shape):
            raise MedadError(
                f"PaDiM: features of {d} channels on a {h}×{w} grid; fitted on "
                f"{self.mean.shape[1]} channels at {self.mean.shape[0]} positions"
            )
        delta = features.flatten(2).permute(2, 0, 1) - self.mean[:, None]  # [P, B, d]
        squared = (torch.bmm(delta, self.precision) * delta).sum(dim=-1)  # [P, B]
        return squared.clamp_min(0).sqrt().t().reshape(b, h, w)


def concat_on_finest_grid(features: list[torch.Tensor]) -> torch.Tensor:
    """Features of several layers, each upsampled (nearest) to the first's grid, concatenated."""
    size = features[0].shape[-2:]
    return torch.cat(
        [
            f if f.shape[-2:] == size else F.interpolate(f, size=size, mode="nearest")
            for f in features
        ],
        dim=1,
    )


@register("padim")
class PaDiM(Method):
    in_study = False
    family = "feature-reference"
    description = (
        "PaDiM: per-position Gaussian of frozen multi-layer CNN features (random channel subset), "
        "map = Mahalanobis distance"
    )
    Config = PaDiMConfig
    config: PaDiMConfig

    channel_subset: torch.Tensor

    def __init__(self, config: PaDiMConfig, channels: int) -> None:
        super().__init__(config, channels)
        layers = list(config.layers)
        self.backbone = FrozenBackbone(config.backbone, layers, config.weights, UNIT_RANGE)
        total = sum(self.backbone.channels)
        d = config.reduced_dim or min(PAPER_REDUCED_DIM.get(config.backbone, 100), total)
        if d > total:
            raise MedadError(
                f"padim: reduced_dim={d} but {config.backbone} {', '.join(layers)} have only "
                f"{total} channels"
            )
        gen = torch.Generator().manual_seed(config.subset_seed)
        subset = torch.randperm(total, generator=gen)[:d].sort().values
        self.register_buffer("channel_subset", subset)
        self.gaussians = PositionGaussians()

    @classmethod
    def preprocess(cls, config: MethodConfig, channels: int) -> Preprocess:
        """Square `image_size` images in [0, 1]; ImageNet normalisation at the backbone's door."""
        return Preprocess(size=config.image_size, channels=channels, value_range=UNIT_RANGE)

    def stages(self) -> list[Stage]:
        return []

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Embedding [B, d, h, w]: layers on layer 1's grid, the fixed random channel subset."""
        return concat_on_finest_grid(self.backbone(x))[:, self.channel_subset]

    def fit(self, batches: Callable[[], Iterator[torch.Tensor]]) -> None:
        self.gaussians.fit((self.embed(x) for x in batches()), self.config.epsilon)

    def score(self, x: torch.Tensor) -> ScoreOutput:
        dist = self.gaussians(self.embed(x))
        up = F.interpolate(dist[:, None], size=x.shape[-2:], mode="bilinear", align_corners=False)
        maps = gaussian_smooth(up[:, 0], self.config.sigma)
        return ScoreOutput(maps.flatten(1).amax(dim=1), maps)
