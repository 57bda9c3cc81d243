"""AutoDDPM: mask, stitch and re-sample (Bercea et al. 2023).

Bercea, Neumayer, Rueckert, Schnabel, "Mask, Stitch, and Re-Sample: Enhancing Robustness and
Generalizability in Anomaly Detection through Automatic Diffusion Models", ICML 2023 workshop
(code: ci-ber/autoDDPM, ``projects/autoddpm``). On one DDPM (`medad.methods.parts.diffusion`):

1. Mask: reconstruct the input from t = 200 (``noise_level_recon``); the residual |x − x̂|, divided
   by its per-image 95th percentile and clipped to [0, 1], times a perceptual difference of x and
   x̂, is the "combined" map; above 0.13 (``masking_threshold``) it is the mask, dilated 3×3.
2. Stitch and re-sample: the reconstruction is noised to t = 50 (``noise_level_inpaint``) and
   denoised RePaint-style: after every step the region outside the mask is replaced by the input
   noised to that step, and each step is repeated 5 times (``resample_steps``), re-noising one step
   in between, so the inpainted region is made coherent with the untouched anatomy around it.
3. Score: the new residual |x − x̃| times the combined map of step 1 (their code multiplies by the
   continuous combined map; the binary mask only selects what is re-sampled). Image score: the mean
   of the map (the study's rule; their code takes the max).

Perceptual difference: the paper uses LPIPS (SqueezeNet with learned layer weights), which medad
cannot ship. medad uses its frozen-backbone part (`medad.methods.parts.backbone.FrozenBackbone`):
the cosine distance 1 − cos of the channel vectors of x's and x̂'s features at several layers of
an ImageNet network, upsampled and averaged over layers — LPIPS' unit-normalised feature
difference with equal layer weights, no learned ones. The default network is EfficientNet-Lite0,
the one with ImageNet weights that install offline (``medad[weights]``); the 0.13 threshold is the
paper's, on a differently scaled distance (docs/FIDELITY.md, "Diffusion").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from medad.methods.base import ScoreOutput, register
from medad.methods.parts.diffusion import DiffusionConfig, DiffusionMethod
from medad.methods.parts.scoring import map_scores


class AutoDDPMConfig(DiffusionConfig):
    t_start: int = Field(200, ge=1)
    """Noise level of the first reconstruction (Bercea: ``noise_level_recon`` 200)."""
    inpaint_start: int = Field(50, ge=1)
    """Noise level the reconstruction is re-sampled from (Bercea: ``noise_level_inpaint`` 50)."""
    inpaint_steps: int | None = Field(None, ge=1)
    """Denoising steps of the re-sampling (None: every step, as Bercea)."""
    resample_steps: int = Field(5, ge=1)
    """Passes per re-sampling step, re-noised one step in between (Bercea: 5)."""
    mask_threshold: float = Field(0.13, ge=0)
    """Threshold of the combined map that makes the mask (Bercea: ``masking_threshold`` 0.13)."""
    residual_percentile: float = Field(95.0, gt=0, le=100)
    """Per-image percentile the residual is divided by before clipping to 1 (Bercea: 95)."""
    perceptual_backbone: str = "efficientnet_lite0"
    """Frozen network of the perceptual difference (Bercea: LPIPS-SqueezeNet; see the module)."""
    perceptual_weights: str = "imagenet"
    """Its weights: ``imagenet``, ``random`` or a file."""
    perceptual_layers: tuple[str, ...] = ("layer1", "layer2", "layer3")
    """Its layers whose feature differences are averaged."""


class FeatureCosineDistance(nn.Module):
    """Mean over layers of 1 − cos(f(x), f(y)) per position, upsampled: [B, H, W] in [0, 2]."""

    def __init__(
        self, arch: str, layers: tuple[str, ...], weights: str, value_range: tuple[float, float]
    ) -> None:
        super().__init__()
        from medad.methods.parts.backbone import FrozenBackbone  # torchvision: imported on use

        self.features = FrozenBackbone(arch, list(layers), weights, value_range)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        total = x.new_zeros(x.shape[0], *size)
        fxs, fys = self.features(x), self.features(y)
        for fx, fy in zip(fxs, fys, strict=True):
            d = 1 - F.cosine_similarity(fx, fy, dim=1, eps=1e-8)
            total += F.interpolate(d[:, None], size=size, mode="bilinear", align_corners=False)[
                :, 0
            ]
        return total / len(fxs)


@register("autoddpm")
class AutoDDPM(DiffusionMethod):
    backbones = ("efficientnet_lite0",)  # its perceptual difference (configurable)
    description = "DDPM: mask by residual x perceptual difference, stitch, re-sample (Bercea 2023)"
    Config = AutoDDPMConfig

    def __init__(self, config: AutoDDPMConfig, channels: int) -> None:
        super().__init__(config, channels)
        self.perceptual = FeatureCosineDistance(
            config.perceptual_backbone,
            config.perceptual_layers,
            config.perceptual_weights,
            self.value_range,
        )

    def combined_map(self, x: torch.Tensor, rec: torch.Tensor) -> torch.Tensor:
        """Residual over its per-image percentile, clipped to 1, times the perceptual difference."""
        c: AutoDDPMConfig = self.config  # type: ignore[assignment]
        res = (x - rec).abs().sum(dim=1)
        q = torch.quantile(res.flatten(1), c.residual_percentile / 100, dim=1)
        res = (res / q.clamp_min(1e-8).view(-1, 1, 1)).clamp(max=1.0)
        return res * self.perceptual(x, rec)

    def score(self, x: torch.Tensor) -> ScoreOutput:
        c: AutoDDPMConfig = self.config  # type: ignore[assignment]
        noise = self.scoring_noise(x.shape[0])
        rec = self.reconstruct(x, noise)
        combined = self.combined_map(x, rec)
        mask = (combined > c.mask_threshold).to(x.dtype)[:, None]
        mask = F.max_pool2d(mask, 3, stride=1, padding=1)  # 3×3 dilation

        def keep_outside(x_s: torch.Tensor, s: int) -> torch.Tensor:
            known = self.schedule.q_sample(x, s, noise.draw(x)) if s >= 0 else x
            return mask * x_s + (1 - mask) * known

        inpainted = self.reconstruct(
            x,
            noise,
            start=rec,
            t_start=c.inpaint_start,
            steps=c.inpaint_steps,
            condition=keep_outside,
            resample=c.resample_steps - 1,
        )
        return map_scores((x - inpainted).abs().sum(dim=1) * combined, c)
