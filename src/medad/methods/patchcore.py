"""PatchCore: a coreset memory bank of pretrained patch features (feature reference family).

Roth, Pemula, Zepeda, Schölkopf, Brox & Gehler, "Towards Total Recall in Industrial Anomaly
Detection", CVPR 2022 (arXiv 2106.08265); official code amazon-science/patchcore-inspection
(``patchcore.py``, ``common.py``, ``sampler.py``).

* Locally aware patch features (Sec. 3.1, Eq. 2): features of a frozen ImageNet CNN at layers 2
  and 3 (Wide ResNet-50-2), each averaged over its 3×3 neighbourhood (stride 1, zero padding),
  layer 3 upsampled (bilinear) to layer 2's grid; each layer's channels are adaptive-averaged to
  `embed_dimension` values and the concatenation again to `embed_dimension` (the code's
  ``MeanMapper`` and ``Aggregator``, 1024 and 1024), so each layer weighs half.
* Coreset-reduced memory bank (Sec. 3.2, Alg. 1): greedy k-center selection of `coreset_ratio` of
  all training patch features (1 %-25 % in the paper; 10 % here), chosen on sparse random
  projections (`medad.methods.parts.coreset`).
* Scores (Sec. 3.3): each test patch's distance to its nearest bank feature is its score; the
  image score is the largest patch score s* re-weighted by Eq. 7,
  s = (1 − exp‖m_test* − m*‖ / Σ_{m ∈ N_b(m*)} exp‖m_test* − m‖) · s*, with N_b(m*) the b nearest
  bank features of m* (itself included; the paper does not give b, medad uses 9). The map is the
  patch scores upsampled (bilinear) to the input size and smoothed with a Gaussian of σ = 4 (code).

Bounded memory: training features are extracted batch by batch, moved to the CPU as they come
(float16 with ``bank_dtype=float16``) together with their float32 projections; only the coreset
rows are gathered into the bank, and test patches are searched against it in blocks (faiss-cpu when
installed, torch otherwise; `medad.methods.parts.nearest_neighbours`). The bank is a buffer, saved
in the checkpoint; the frozen backbone is not.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator

from medad.data.loading import Preprocess
from medad.errors import MedadError
from medad.methods.base import FittedConfig, Method, MethodConfig, ScoreOutput, Stage, register
from medad.methods.parts.backbone import FrozenBackbone
from medad.methods.parts.coreset import (
    PROJECTION_DIM,
    coreset_size,
    greedy_k_center,
    sparse_random_projection,
)
from medad.methods.parts.feature_maps import gaussian_smooth
from medad.methods.parts.fitted_buffers import FittedBuffers
from medad.methods.parts.nearest_neighbours import Search, nearest_neighbours

#: value range of the images the ImageNet backbone gets (ToTensor, then ImageNet Normalize)
UNIT_RANGE = (0.0, 1.0)
BANK_DTYPES = {"float32": torch.float32, "float16": torch.float16}


class PatchCoreConfig(FittedConfig):
    batch_size: int = Field(32, ge=1)
    """Images per feature-extraction batch; results do not depend on it."""
    image_size: int = Field(224, ge=32, multiple_of=16)
    """Side of the square input (Roth et al. Sec. 4.1: 224 after resize to 256 and crop)."""
    backbone: str = "wide_resnet50_2"
    """Frozen CNN (Sec. 4: wide_resnet50_2; resnet18, or efficientnet_lite0 with medad[weights])."""
    weights: str = "imagenet"
    """Backbone weights: ``imagenet`` (torch hub cache / bundled), a weights file, or ``random``."""
    layers: list[str] = Field(default_factory=lambda: ["layer2", "layer3"], min_length=1)
    """Layers of the patch features, finest first (Sec. 3.1: layers 2 and 3)."""
    patch_size: int = Field(3, ge=1)
    """Neighbourhood averaged into each patch feature (Sec. 3.1: p = 3)."""
    embed_dimension: int = Field(1024, ge=1)
    """Values per layer and of the final patch feature (code: 1024 and 1024)."""
    coreset_ratio: float = Field(0.1, gt=0, le=1)
    """Fraction of training patch features kept in the bank (Sec. 4: 1 %, 10 %, 25 %)."""
    projection_dim: int = Field(PROJECTION_DIM, ge=1)
    """Dimension of the random projection the coreset is selected on (code: 128)."""
    num_neighbours: int = Field(9, ge=1)
    """b of Eq. 7: bank neighbours of m* in the re-weighting (the paper gives no value)."""
    reweight: bool = True
    """Re-weight the image score by Eq. 7 (False: the largest patch score, as the code)."""
    bank_dtype: Literal["float32", "float16"] = "float32"
    """Storage of the training features and the bank (float16 halves their memory)."""
    search: Search = "auto"
    """Nearest-neighbour search: faiss when installed (auto), or torch, or faiss."""
    chunk_size: int = Field(4096, ge=1)
    """Rows per block of the nearest-neighbour search (memory ≈ chunk_size² floats)."""
    sigma: float = Field(4.0, ge=0)
    """σ of the Gaussian smoothing of the upsampled map (code: 4; 0: none)."""

    @field_validator("patch_size")
    @classmethod
    def _odd(cls, value: int) -> int:
        if value % 2 == 0:
            raise ValueError("must be odd (a neighbourhood centred on its patch)")
        return value


def channel_average(features: torch.Tensor, dim: int) -> torch.Tensor:
    """[B, C, h, w] → [B, dim, h, w]: adaptive average pooling along the channels (code's
    ``MeanMapper``/``Aggregator``; dim > C repeats channels)."""
    b, c, h, w = features.shape
    if c == dim:
        return features
    flat = features.permute(0, 2, 3, 1).reshape(-1, 1, c)
    return F.adaptive_avg_pool1d(flat, dim).reshape(b, h, w, dim).permute(0, 3, 1, 2)


class MemoryBank(FittedBuffers):
    """The coreset of normal patch features [M, D]; empty until fitted."""

    features: torch.Tensor

    def __init__(self, dtype: torch.dtype) -> None:
        super().__init__()
        self.register_buffer("features", torch.zeros(0, 0, dtype=dtype))

    @property
    def fitted(self) -> bool:
        return self.features.shape[0] > 0


@register("patchcore")
class PatchCore(Method):
    in_study = False
    family = "feature-reference"
    description = (
        "PatchCore: coreset memory bank of locally aware frozen CNN patch features, "
        "map = nearest-neighbour distance"
    )
    Config = PatchCoreConfig
    config: PatchCoreConfig

    def __init__(self, config: PatchCoreConfig, channels: int) -> None:
        super().__init__(config, channels)
        self.backbone = FrozenBackbone(
            config.backbone, list(config.layers), config.weights, UNIT_RANGE
        )
        self.bank = MemoryBank(BANK_DTYPES[config.bank_dtype])

    @classmethod
    def preprocess(cls, config: MethodConfig, channels: int) -> Preprocess:
        """Square `image_size` images in [0, 1]; ImageNet normalisation at the backbone's door."""
        return Preprocess(size=config.image_size, channels=channels, value_range=UNIT_RANGE)

    def stages(self) -> list[Stage]:
        return []

    def patch_features(self, x: torch.Tensor) -> torch.Tensor:
        """Locally aware patch features [B, D, h, w] on the first layer's grid (Sec. 3.1)."""
        c = self.config
        feats = self.backbone(x)
        size = feats[0].shape[-2:]
        out = []
        for f in feats:
            f = F.avg_pool2d(f, c.patch_size, stride=1, padding=c.patch_size // 2)
            if f.shape[-2:] != size:
                f = F.interpolate(f, size=size, mode="bilinear", align_corners=False)
            out.append(channel_average(f, c.embed_dimension))
        return channel_average(torch.cat(out, dim=1), c.embed_dimension)

    def fit(self, batches: Callable[[], Iterator[torch.Tensor]]) -> None:
        """Extract all training patch features in chunks on the CPU, keep the greedy coreset."""
        c = self.config
        gen = torch.Generator().manual_seed(int(self.rng.integers(2**31)))
        dtype = BANK_DTYPES[c.bank_dtype]
        projection: torch.Tensor | None = None
        chunks, projected = [], []
        for x in batches():
            z = self.patch_features(x)
            z = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
            if projection is None:
                d = z.shape[1]
                projection = (
                    sparse_random_projection(d, c.projection_dim, gen).to(z)
                    if c.projection_dim < d
                    else torch.eye(d).to(z)
                )
            projected.append((z @ projection).to("cpu", torch.float32))
            chunks.append(z.to("cpu", dtype))
        if not chunks:
            raise MedadError("patchcore: no training images to build the memory bank from")
        device = projection.device  # type: ignore[union-attr]
        points = torch.cat(projected)
        del projected
        n = points.shape[0]
        start = int(torch.randint(n, (1,), generator=gen))
        k = coreset_size(n, c.coreset_ratio)
        picks = torch.arange(n) if k == n else greedy_k_center(points.to(device), k, start)
        self.bank.features = gather_rows(chunks, picks).to(device)

    def score(self, x: torch.Tensor) -> ScoreOutput:
        c = self.config
        if not self.bank.fitted:
            raise MedadError("patchcore: fit the memory bank on training images before scoring")
        z = self.patch_features(x)
        b, d, h, w = z.shape
        queries = z.permute(0, 2, 3, 1).reshape(-1, d)
        bank = self.bank.features
        dist, index = nearest_neighbours(queries, bank, 1, chunk=c.chunk_size, search=c.search)
        patch_scores = dist[:, 0].view(b, h * w)
        best, where = patch_scores.max(dim=1)  # s* and the patch m_test* of each image
        image_scores = best
        if c.reweight and bank.shape[0] > 1:
            rows = torch.arange(b, device=z.device) * h * w + where
            m_test, m_star = queries[rows], bank[index[rows, 0]]
            k = min(c.num_neighbours, bank.shape[0])
            _, support = nearest_neighbours(m_star, bank, k, chunk=c.chunk_size, search=c.search)
            to_support = (m_test[:, None].float() - bank[support].float()).norm(dim=-1)  # [B, k]
            # Eq. 7: 1 − exp(s*) / Σ exp(‖m_test* − m‖), computed stably in the log domain
            image_scores = (1 - torch.exp(best - torch.logsumexp(to_support, dim=1))) * best
        up = F.interpolate(patch_scores.view(b, 1, h, w), size=x.shape[-2:], mode="bilinear")
        maps = gaussian_smooth(up[:, 0], c.sigma)
        return ScoreOutput(image_scores, maps)


def gather_rows(chunks: list[torch.Tensor], rows: torch.Tensor) -> torch.Tensor:
    """Rows `rows` (indices into the chunks stacked in order) without stacking the chunks."""
    out = chunks[0].new_empty(len(rows), chunks[0].shape[1])
    rows = rows.cpu()
    start = 0
    for chunk in chunks:
        inside = (rows >= start) & (rows < start + chunk.shape[0])
        out[inside] = chunk[rows[inside] - start]
        start += chunk.shape[0]
    return out
