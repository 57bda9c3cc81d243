"""RD++: reverse distillation with feature compactness and anomalous-signal suppression
(PAPER.md, method table, row "RD++").

Tien, Nguyen, Tran, Huy, Duong, Nguyen, Truong, "Revisiting Reverse Distillation for Anomaly
Detection", CVPR 2023; official code tientrandinh/Revisiting-Reverse-Distillation (``main.py``,
``utils/utils_train.py``: ``ProjLayer``, ``MultiProjectionLayer``, ``Revisit_RDLoss``;
``dataset/dataset.py``: the simplex-noise pseudo-anomalies; ``utils/utils_test.py``: the map).

RD (`medad.methods.rd`, whose teacher, bottleneck, student, map and score it keeps) with a
trainable multi-projection layer (MPL) between the frozen teacher and the one-class bottleneck:
one projection per scale, four 3×3 convs (C → C/2 → C/4 → C/2 → C channels), each followed by
instance norm and LeakyReLU (``ProjLayer``). The student rebuilds the *teacher's* features from
the *projected* ones, and the projections learn, besides, three self-supervised tasks on a normal
batch x and its pseudo-anomalous copy x̃ (simplex noise added to one rectangle of each image,
`medad.anomalies.simplex.simplex_noise_patch`), with T the teacher and P the MPL:

* SSOT, feature compactness (Sec. 3.2): the debiased Sinkhorn divergence (blur 0.05, ε-scaling
  0.95; `medad.methods.parts.sinkhorn`) between the projected features of each normal image and
  those of another image of the batch (a random permutation), each image's map taken as a cloud of
  its positions (average-pooled to at most `ssot_grid` per side) with channels softmax-normalised,
  summed over the scales;
* reconstruction (Sec. 3.3): mean over positions of 1 − cos over channels between P(T(x̃)) and
  P(T(x)), summed over the scales;
* contrast (``Revisit_RDLoss.contrast``): 1 − cos between the flattened T(x̃) and P(T(x)) per
  image, batch mean, summed over the scales (``CosineEmbeddingLoss`` with target 1, its margin
  −0.5 inert);
* L = L_RD + 0.2 · (SSOT + 0.01 · reconstruction + 0.1 · contrast) / 1.11 (``main.py``,
  ``Revisit_RDLoss.forward``).

Optimisation (``main.py``): Adam, betas (0.5, 0.999), lr 0.005 for bottleneck and student and
0.001 for the projections (two optimisers in the code stepping on the same loss; one Adam with two
parameter groups here, the same update), batch 16, 256 px. Map and score as RD (``utils_test.py``,
``evaluation_multi_proj``): teacher vs student features of the projected input, Σ of upsampled
1 − cos, Gaussian σ 4, image score the maximum. docs/FIDELITY.md lists what differs and why.
"""

from __future__ import annotations

import numpy as np
import torch
from pydantic import Field
from torch import nn

from medad.anomalies.simplex import simplex_noise_patch
from medad.methods.base import Phase, Stage, register
from medad.methods.optimisation import ParamGroup
from medad.methods.parts.sinkhorn import sinkhorn_divergence
from medad.methods.rd import RD, RDConfig, flat_cosine_loss

#: the official loss divides its weighted sum by the sum of its weights, 1 + 0.01 + 0.1
#: (``Revisit_RDLoss.forward``); kept fixed so that changing one weight changes only that term
OFFICIAL_NORMALISER = 1.11


class RDppConfig(RDConfig):
    proj_lr: float = Field(0.001, gt=0)
    """Adam learning rate of the projection layers (``main.py``: ``--proj_lr 0.001``); `lr`
    (0.005, ``--distill_lr``) is the bottleneck's and the student's."""
    proj_weight: float = Field(0.2, ge=0)
    """Weight of the projection losses beside RD's (``main.py``: ``--weight_proj 0.2``)."""
    ssot_weight: float = Field(1.0, ge=0)
    """Weight of the SSOT compactness loss (``Revisit_RDLoss``: 1; 0 reproduces the official
    code's effective objective, whose SSOT term is zero, docs/FIDELITY.md)."""
    recon_weight: float = Field(0.01, ge=0)
    """Weight of the reconstruction loss on pseudo-anomalies (``Revisit_RDLoss``: 0.01)."""
    contrast_weight: float = Field(0.1, ge=0)
    """Weight of the contrast loss (``Revisit_RDLoss``: 0.1)."""
    sinkhorn_blur: float = Field(0.05, gt=0)
    """Final √ε of the Sinkhorn divergence (``geomloss.SamplesLoss(blur=0.05)``)."""
    sinkhorn_scaling: float = Field(0.95, gt=0, lt=1)
    """ε-scaling factor of the Sinkhorn iterations (``SamplesLoss(scaling=0.95)``)."""
    ssot_grid: int = Field(32, ge=1)
    """Largest side of a projected map as an SSOT cloud; larger maps are average-pooled to it
    (medad's bound: the cost of a pair grows with the 4th power of the side)."""
    noise_side: tuple[float, float] = (10 / 256, 1 / 8)
    """[low, high) of the noise rectangle's sides, fractions of the image side (``dataset.py``:
    10 to 31 pixels at 256 px)."""
    noise_scale: float = Field(1 / 8, gt=0)
    """Wavelength of the noise's first octave, a fraction of the image side (``dataset.py``:
    ``frequency=32`` pixels at 256 px)."""
    noise_octaves: int = Field(6, ge=1)
    """Octaves of the simplex noise (``dataset.py``: 6)."""
    noise_persistence: float = Field(0.6, gt=0)
    """Weight factor between octaves (``dataset.py``: 0.6)."""
    noise_amplitude: float = Field(0.2, ge=0)
    """Factor of the summed octaves added to the [0, 1] image (``dataset.py``: 0.2)."""


class ProjectionLayer(nn.Module):
    """One scale of the MPL: four 3×3 convs C → C/2 → C/4 → C/2 → C, each with instance norm and
    LeakyReLU (``utils_train.py``, ``ProjLayer``; widths floored at 1 for narrow teachers)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        widths = [channels, max(1, channels // 2), max(1, channels // 4), max(1, channels // 2)]
        layers: list[nn.Module] = []
        for cin, cout in zip(widths, [*widths[1:], channels], strict=True):
            layers += [nn.Conv2d(cin, cout, 3, 1, 1), nn.InstanceNorm2d(cout), nn.LeakyReLU()]
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class MultiProjection(nn.Module):
    """The MPL: one `ProjectionLayer` per teacher scale (``MultiProjectionLayer``)."""

    def __init__(self, channels: tuple[int, ...]) -> None:
        super().__init__()
        self.scales = nn.ModuleList(ProjectionLayer(c) for c in channels)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        return [proj(f) for proj, f in zip(self.scales, feats, strict=True)]


def feature_cloud(f: torch.Tensor, grid: int) -> torch.Tensor:
    """[B, C, H, W] → [B, positions, C]: the map (pooled to at most `grid` per side) as a cloud of
    its positions, each a channel softmax (a point of the probability simplex)."""
    if max(f.shape[-2:]) > grid:
        f = nn.functional.adaptive_avg_pool2d(f, (min(grid, f.shape[-2]), min(grid, f.shape[-1])))
    return torch.softmax(f.flatten(2).transpose(1, 2), dim=-1)


def ssot_loss(
    projected: list[torch.Tensor], perm: torch.Tensor, blur: float, scaling: float, grid: int
) -> torch.Tensor:
    """Σ over scales of the batch mean of S_ε(cloud of image i, cloud of image perm[i])."""
    total = torch.zeros((), device=projected[0].device)
    for f in projected:
        cloud = feature_cloud(f, grid)
        total = total + sinkhorn_divergence(cloud, cloud[perm], blur, scaling).mean()
    return total


def reconstruction_loss(noisy: list[torch.Tensor], normal: list[torch.Tensor]) -> torch.Tensor:
    """Σ over scales of the mean over images and positions of 1 − cos over channels."""
    pairs = zip(noisy, normal, strict=True)
    return sum((1 - torch.cosine_similarity(a, b, dim=1)).mean() for a, b in pairs)  # type: ignore[return-value]


@register("rdpp")
class RDpp(RD):
    family = "feature-reconstruction"
    description = (
        "RD++: RD with a multi-projection layer trained for compactness (Sinkhorn optimal "
        "transport) and to suppress simplex-noise pseudo-anomalies; map as RD"
    )
    Config = RDppConfig
    config: RDppConfig
    budget = "rd"

    def __init__(self, config: RDppConfig, channels: int) -> None:
        super().__init__(config, channels)
        self.projection = MultiProjection(tuple(self.teacher.channels))

    def stages(self) -> list[Stage]:
        c = self.config
        if c.epochs == 0:
            return []
        groups = [
            ParamGroup([*self.bottleneck.parameters(), *self.student.parameters()]),
            ParamGroup(list(self.projection.parameters()), lr=c.proj_lr),
        ]
        return [Stage("train", c.epochs, [Phase("model", groups, c.lr, betas=c.betas)])]

    def rebuild(self, t: list[torch.Tensor]) -> list[torch.Tensor]:
        """The student's features from the projected teacher features."""
        return super().rebuild(self.projection(t))

    def pseudo_anomalies(self, x: torch.Tensor) -> torch.Tensor:
        """`x` plus one simplex-noise rectangle per image (the same on every channel)."""
        c = self.config
        noise = np.stack(
            [
                simplex_noise_patch(
                    tuple(x.shape[-2:]),
                    self.rng,
                    side_range=c.noise_side,
                    scale=c.noise_scale,
                    octaves=c.noise_octaves,
                    persistence=c.noise_persistence,
                    amplitude=c.noise_amplitude,
                )  # fmt: skip
                for _ in range(x.shape[0])
            ]
        )
        return x + torch.from_numpy(noise)[:, None].to(x)

    def training_loss(self, x: torch.Tensor, stage: str, phase: str) -> dict[str, torch.Tensor]:
        c = self.config
        n = x.shape[0]
        with torch.no_grad():  # one pass over normal and noisy images (BN in eval, IN per image)
            both = self.teacher(torch.cat([x, self.pseudo_anomalies(x)]))
        t, t_noisy = [f[:n] for f in both], [f[n:] for f in both]
        projected = self.projection(both)
        p, p_noisy = [f[:n] for f in projected], [f[n:] for f in projected]
        distill = flat_cosine_loss(t, super().rebuild(p))
        perm = torch.from_numpy(self.rng.permutation(n)).to(x.device)
        ssot = (
            ssot_loss(p, perm, c.sinkhorn_blur, c.sinkhorn_scaling, c.ssot_grid)
            if c.ssot_weight
            else torch.zeros((), device=x.device)
        )
        recon = reconstruction_loss(p_noisy, p)
        contrast = flat_cosine_loss(t_noisy, p)
        projection = (
            c.ssot_weight * ssot + c.recon_weight * recon + c.contrast_weight * contrast
        ) / OFFICIAL_NORMALISER
        return {
            "loss": distill + c.proj_weight * projection,
            "distill": distill.detach(),
            "ssot": ssot.detach(),
            "recon": recon.detach(),
            "contrast": contrast.detach(),
        }
