"""pDDPM: patched diffusion models (Behrendt et al. 2023), beyond the MedIAnomaly study.

Behrendt, Bhattacharya, Krüger, Opfer, Schlaefer, "Patched Diffusion Models for Unsupervised
Anomaly Detection in Brain MRI", MIDL 2023 (code: FinnBehrendt/patched-Diffusion-Models-UAD,
``DDPM_patched.yaml``). On one DDPM (`medad.methods.parts.diffusion`) that predicts the clean image
x_0 and is trained with the L1 loss:

- training: one patch of a fixed grid (patch side half the image side: 48-px patches on 96-px
  images) is drawn per image and noised to a uniformly drawn step with simplex noise; the rest of
  the image stays clean and is the model's context; the loss counts the patch only (``inpaint``);
- scoring: each grid patch in turn is noised to t = 500 (``test_timesteps``) and reconstructed with
  the clean context around it; the patch reconstructions are stitched into one image. Their code
  takes the x_0-prediction of that single step (``sample_steps`` 1 here; more steps denoise the
  patch iteratively, keeping the context clean after every step). Map: the absolute residual
  |x − x̂| summed over channels (their ``residualmode: l1``); image score: its mean.

All patches of a batch are reconstructed in one batched pass ([B·K, C, H, W] for K patches).
"""

from __future__ import annotations

import torch
from pydantic import Field, model_validator

from medad.methods.base import ScoreOutput, register
from medad.methods.parts.ddpm import NoiseKind
from medad.methods.parts.diffusion import DiffusionConfig, DiffusionMethod
from medad.methods.parts.scoring import map_scores


class PDDPMConfig(DiffusionConfig):
    noise: NoiseKind = "simplex"
    """Noise of training and scoring (Behrendt: ``noisetype: simplex``)."""
    t_start: int = Field(500, ge=1)
    """Noise level of each patch at scoring (Behrendt: ``test_timesteps`` 500)."""
    sample_steps: int | None = Field(1, ge=1)
    """Denoising steps from t_start (Behrendt: 1, the x_0-prediction of one forward pass)."""
    grid: int = Field(2, ge=1)
    """Patches per side of the grid (Behrendt: 48-px patches on 96-px images, 2)."""

    @model_validator(mode="after")
    def _grid_divides(self) -> PDDPMConfig:
        if self.image_size % self.grid:
            raise ValueError(f"image_size {self.image_size} must divide by grid {self.grid}")
        return self


def grid_masks(size: int, grid: int, device: torch.device | None = None) -> torch.Tensor:
    """[grid², 1, size, size] {0, 1} masks of the grid's patches, row-major."""
    side = size // grid
    masks = torch.zeros(grid * grid, 1, size, size, device=device)
    for k in range(grid * grid):
        r, c = divmod(k, grid)
        masks[k, :, r * side : (r + 1) * side, c * side : (c + 1) * side] = 1
    return masks


@register("pddpm")
class PDDPM(DiffusionMethod):
    in_study = False
    description = "Patched DDPM: noise one patch, rebuild it from its context (Behrendt 2023)"
    Config = PDDPMConfig
    target = "x0"

    def training_loss(self, x: torch.Tensor, stage: str, phase: str) -> torch.Tensor:
        """L1 between x̂_0 and x on one random grid patch per image, noised to a random step."""
        self._sync_ema()
        self._ema_pending = True
        c: PDDPMConfig = self.config  # type: ignore[assignment]
        b = x.shape[0]
        masks = grid_masks(x.shape[-1], c.grid, x.device)
        box = masks[torch.randint(0, len(masks), (b,), device=x.device)]
        t = torch.randint(0, self.schedule.timesteps, (b,), device=x.device)
        x_t = box * self.schedule.q_sample(x, t, self.training_noise(x)) + (1 - box) * x
        err = (self.net(x_t, t) - x).abs() * box
        return err.sum() / (box.sum() * x.shape[1])

    def score(self, x: torch.Tensor) -> ScoreOutput:
        c: PDDPMConfig = self.config  # type: ignore[assignment]
        b = x.shape[0]
        masks = grid_masks(x.shape[-1], c.grid, x.device)
        k = len(masks)
        xs = x.repeat_interleave(k, dim=0)
        box = masks.repeat(b, 1, 1, 1)

        def clean_context(x_s: torch.Tensor, s: int) -> torch.Tensor:
            return box * x_s + (1 - box) * xs

        rec = self.reconstruct(xs, self.scoring_noise(b, per_image=k), condition=clean_context)
        stitched = (rec * box).view(b, k, *x.shape[1:]).sum(dim=1)
        return map_scores((x - stitched).abs().sum(dim=1), c)
