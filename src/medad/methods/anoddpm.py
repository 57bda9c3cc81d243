"""AnoDDPM (Gaussian) and AnoDDPM (Simplex): partial diffusion of Wyatt et al. 2022.

Wyatt, Leach, Schmon, Willcocks, "AnoDDPM: Anomaly Detection with Denoising Diffusion
Probabilistic Models using Simplex Noise", CVPR Workshops 2022 (code: Julian-Wyatt/AnoDDPM).
A DDPM is trained on normal images (`medad.methods.parts.diffusion`). At test time the input is
noised to step t_λ = 250 of 1000 (Sec. 3.2: partial diffusion, enough to wash out a lesion but
not the anatomy) and denoised back; the model restores what it knows, normal anatomy. Map: the
squared error (x − x̂)² summed over channels; image score: the mean of the map (the study's rule).

The simplex variant (Sec. 3.3) trains and samples with multi-octave simplex noise instead of
Gaussian noise (6 octaves, persistence 0.8, frequency 64; `medad.anomalies.simplex`): its
low-frequency structure covers lesion-sized blobs that white noise at t_λ leaves recognisable.
Adaptations to 64-px inputs and CPU budgets are listed in docs/FIDELITY.md ("Diffusion").
"""

from __future__ import annotations

import torch

from medad.methods.base import ScoreOutput, register
from medad.methods.parts.ddpm import NoiseKind
from medad.methods.parts.diffusion import DiffusionConfig, DiffusionMethod
from medad.methods.parts.scoring import map_scores


class AnoDDPMConfig(DiffusionConfig):
    """AnoDDPM with Gaussian noise: every default is `DiffusionConfig`'s (t_λ = 250)."""


class AnoDDPMSimplexConfig(DiffusionConfig):
    noise: NoiseKind = "simplex"
    """Simplex noise for training and sampling (AnoDDPM, Sec. 3.3)."""


class _AnoDDPM(DiffusionMethod):
    def score(self, x: torch.Tensor) -> ScoreOutput:
        rec = self.reconstruct(x, self.scoring_noise(x.shape[0]))
        return map_scores(((x - rec) ** 2).sum(dim=1), self.config)


@register("anoddpm-gaussian")
class AnoDDPMGaussian(_AnoDDPM):
    description = "DDPM, noise to t=250 and denoise, score = squared error (Wyatt 2022)"
    Config = AnoDDPMConfig


@register("anoddpm-simplex")
class AnoDDPMSimplex(_AnoDDPM):
    description = "DDPM with simplex noise, partial diffusion from t=250 (Wyatt 2022)"
    Config = AnoDDPMSimplexConfig
