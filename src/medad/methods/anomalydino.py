"""AnomalyDINO: nearest-neighbour distances of DINOv2 patch features to a bank of normal patches.

Damm, Laszkiewicz, Lederer, Fischer, "AnomalyDINO: Boosting Patch-based Few-shot Anomaly Detection
with DINOv2", WACV 2025 (arXiv 2405.14529); official code dammsi/AnomalyDINO (``src/detection.py``,
``src/backbones.py``, ``src/utils.py``, ``src/post_eval.py``, ``run_anomalydino.py``).

Nothing is trained. `fit` embeds the reference images with a frozen ViT (default DINOv2 ViT-S/14,
`medad.methods.parts.vit`; the last block's normalised patch tokens) into a memory bank of patch
features: every training image (full-shot, the code's ``--shots -1``) or `shots` of them (few-shot:
k images drawn with the run's seed; the code takes the seed-th block of k sorted file names).

* Distance (paper Sec. 3; ``detection.py``, ``knn_metric="L2_normalized"``, 1 neighbour): cosine
  distance 1 − cos(f, m) of each test patch to its nearest bank patch.
* Image score (paper Eq. 2; ``post_eval.py``, ``mean_top1p``): the mean of the highest 1 % of an
  image's patch distances (⌊1 % · patches⌋ of them; the maximum when that is 0).
* Map (``utils.py``, ``dists2map``): the patch distances upsampled bilinearly to the input size,
  then Gaussian-smoothed with σ = 4 (`gaussian_smooth`, scipy's filter).
* Masking (paper Sec. 3.2, "zero-shot masking"; ``backbones.py``, ``compute_background_mask``):
  off by default, as for the paper's textures and full-frame objects; ``masking=true`` keeps the
  test patches whose first principal component (PCA over that image's own patches) exceeds 10,
  flips the sign when that keeps at most 35 % of the central crop (20 % border cut), then dilates
  and closes the mask with a 3 × 3 kernel. Masked patches get distance 0 and still count in the
  image score, as in the code. Reference patches are not masked (the code's default). The paper
  masks objects on a plain background (MVTec capsule, hazelnut, pill, screw, toothbrush; all of
  VisA) and only with DINOv2, whose first component separates object from background; on brain
  MRI (a head on black) it is the closest analogue.
* Input (``run_anomalydino.py``: ``--resolution 448``): 448 px, ImageNet normalisation; medad
  resizes to a square (the code scales the shorter side and crops to a multiple of the patch).

Not done: the code's rotation augmentation of the reference images (8 angles, its "agnostic"
preset), meant for objects in varying orientation; medical scans are acquired in a standard pose.
The bank is held in memory (``bank_dtype=float16`` halves it) and searched in chunks.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from medad.data.loading import Preprocess
from medad.errors import MedadError
from medad.methods.base import FittedConfig, Method, MethodConfig, ScoreOutput, Stage, register
from medad.methods.parts.feature_maps import gaussian_smooth

#: AnomalyDINO's images are in [0, 1], then ImageNet-normalised (``backbones.py``)
UNIT_RANGE = (0.0, 1.0)
#: patches compared at once against a chunk of the bank (bounds the similarity matrix)
QUERY_CHUNK = 4096
BANK_CHUNK = 16384


class AnomalyDINOConfig(FittedConfig):
    batch_size: int = Field(16, ge=1)
    """Images embedded at once (no effect on the scores)."""
    image_size: int = Field(448, ge=14)
    """Side of the square input (code ``--resolution``: 448); a multiple of the patch size."""
    backbone: str = "dinov2_vits14"
    """ViT (code default ``dinov2_vits14``; also ``dino_vits16``, ``mae_vitb16`` or a timm name)."""
    weights: str = "pretrained"
    """Backbone weights: ``pretrained`` (Hugging Face hub cache), a weights file, or ``random``."""
    shots: int | None = Field(None, ge=1)
    """Reference images in the bank: None = all training images (full-shot), k = few-shot."""
    masking: bool = False
    """Zero-shot masking of background test patches (paper Sec. 3.2; see the module docstring)."""
    mask_threshold: float = 10.0
    """Threshold on the first principal component (code: 10, tuned for DINOv2 ViT-S/14)."""
    top_fraction: float = Field(0.01, gt=0, le=1)
    """Image score: mean of this fraction of the highest patch distances (paper: 1 %)."""
    sigma: float = Field(4.0, ge=0)
    """σ of the Gaussian smoothing of the upsampled map (code ``dists2map``: 4)."""
    bank_dtype: Literal["float32", "float16"] = "float32"
    """Storage of the memory bank (float16 halves its memory; distances computed in float32)."""


def mean_top_fraction(distances: torch.Tensor, fraction: float) -> torch.Tensor:
    """Per row of [B, N]: mean of the ⌊fraction · N⌋ highest values, the maximum if that is 0
    (the code's ``mean_top1p``)."""
    k = int(distances.shape[1] * fraction)
    if k == 0:
        return distances.amax(dim=1)
    return distances.topk(k, dim=1).values.mean(dim=1)


def nearest_cosine_distance(queries: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
    """1 − max cosine similarity of each row of `queries` [n, D] to the unit rows of `bank`
    [N, D], in chunks so the similarity matrix stays small."""
    q = F.normalize(queries.float(), dim=1)
    out = torch.empty(q.shape[0], device=q.device)
    for i in range(0, q.shape[0], QUERY_CHUNK):
        best = torch.full((min(QUERY_CHUNK, q.shape[0] - i),), -2.0, device=q.device)
        for j in range(0, bank.shape[0], BANK_CHUNK):
            sims = q[i : i + QUERY_CHUNK] @ bank[j : j + BANK_CHUNK].float().T
            best = torch.maximum(best, sims.amax(dim=1))
        out[i : i + QUERY_CHUNK] = 1 - best
    return out


def _dilate(mask: torch.Tensor) -> torch.Tensor:
    """3 × 3 dilation of boolean masks [B, h, w] (outside the image counts as background)."""
    return F.max_pool2d(mask[:, None].float(), 3, 1, 1)[:, 0] > 0


def _erode(mask: torch.Tensor) -> torch.Tensor:
    """3 × 3 erosion of boolean masks [B, h, w] (outside the image counts as foreground)."""
    return ~_dilate(~mask)


def background_mask(features: torch.Tensor, threshold: float, border: float = 0.2) -> torch.Tensor:
    """Foreground patches [B, h, w] from patch features [B, D, h, w] (the code's
    ``compute_background_mask``): first principal component of each image's patches above
    `threshold`, sign flipped when the central crop is mostly background, dilated, closed."""
    b, d, h, w = features.shape
    masks = []
    for f in features.flatten(2).transpose(1, 2).float():  # [h·w, D] per image
        centred = f - f.mean(dim=0)
        _, _, v = torch.linalg.svd(centred, full_matrices=False)
        pc = centred @ v[0]
        mask = (pc > threshold).view(h, w)
        centre = mask[
            int(h * border) : int(h * (1 - border)), int(w * border) : int(w * (1 - border))
        ]
        if centre.sum() <= centre.numel() * 0.35:
            mask = (-pc > threshold).view(h, w)
        masks.append(mask)
    mask = _dilate(torch.stack(masks))
    return _erode(_dilate(mask))  # closing


@register("anomalydino")
class AnomalyDINO(Method):
    in_study = False
    family = "feature-reference"
    description = (
        "AnomalyDINO: cosine distance of DINOv2 patch features to their nearest normal patch "
        "(full- or few-shot bank); score = mean of the top 1 % patch distances"
    )
    Config = AnomalyDINOConfig
    config: AnomalyDINOConfig

    def __init__(self, config: AnomalyDINOConfig, channels: int) -> None:
        from medad.methods.parts.vit import FrozenViT

        super().__init__(config, channels)
        self.encoder = FrozenViT(config.backbone, config.weights, config.image_size, UNIT_RANGE)
        dtype = getattr(torch, config.bank_dtype)
        self.register_buffer("bank", torch.empty(0, self.encoder.channels, dtype=dtype))

    @classmethod
    def preprocess(cls, config: MethodConfig, channels: int) -> Preprocess:
        """Square `image_size` images in [0, 1]; ImageNet normalisation at the ViT's door."""
        return Preprocess(size=config.image_size, channels=channels, value_range=UNIT_RANGE)

    def stages(self) -> list[Stage]:
        return []

    def fit(self, batches) -> None:  # type: ignore[no-untyped-def]
        """The bank: unit patch features of all training images, or of `shots` drawn ones."""
        shots = self.config.shots
        chosen = None
        if shots is not None:
            n = sum(len(x) for x in batches())
            if shots > n:
                raise MedadError(f"anomalydino: shots={shots} but the train split has {n} images")
            chosen = set(self.rng.choice(n, size=shots, replace=False).tolist())
        parts, seen = [], 0
        for x in batches():
            if chosen is not None:
                keep = [i for i in range(len(x)) if seen + i in chosen]
                seen, x = seen + len(x), x[keep]
                if not len(x):
                    continue
            f = self.encoder(x).flatten(2).transpose(1, 2).flatten(0, 1)
            parts.append(F.normalize(f.float(), dim=1).to(self.bank.dtype))
        self.bank = torch.cat(parts)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[no-untyped-def]
        """A saved bank has its own number of patches: take its shape before loading it."""
        saved = state_dict.get(prefix + "bank")
        if saved is not None:
            self.bank = torch.empty(saved.shape, dtype=self.bank.dtype, device=self.bank.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def patch_distances(self, x: torch.Tensor) -> torch.Tensor:
        """Cosine distance of each patch to the bank, 0 where masked: [B, h, w]."""
        if self.bank.shape[0] == 0:
            raise MedadError("anomalydino: score() before fit(): the memory bank is empty")
        feats = self.encoder(x)
        b, d, h, w = feats.shape
        dist = nearest_cosine_distance(feats.flatten(2).transpose(1, 2).flatten(0, 1), self.bank)
        dist = dist.view(b, h, w)
        if self.config.masking:
            dist = dist * background_mask(feats, self.config.mask_threshold)
        return dist

    def score(self, x: torch.Tensor) -> ScoreOutput:
        c = self.config
        dist = self.patch_distances(x)
        scores = mean_top_fraction(dist.flatten(1), c.top_fraction)
        maps = F.interpolate(dist[:, None], size=x.shape[-2:], mode="bilinear")[:, 0]
        return ScoreOutput(scores, gaussian_smooth(maps, c.sigma))
