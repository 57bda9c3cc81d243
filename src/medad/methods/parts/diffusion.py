"""What every diffusion method shares: its config fields and a `Method` around one small DDPM.

`DiffusionMethod` holds the time-conditioned U-Net (`medad.methods.parts.diffusion_unet`), the
noise schedule and its optional EMA copy (`medad.methods.parts.ddpm`), trains by ε-prediction with
the MSE at uniformly drawn steps (Ho et al. 2020; x_0-prediction with L1 for pDDPM), and offers
`reconstruct`: noise the input to a start step and denoise it back, with Gaussian or simplex noise
(Wyatt et al. 2022) drawn per image from (run seed, image index) so scores do not depend on the
batch size or order. The methods (`anoddpm`, `autoddpm`, `pddpm`) differ in what they do with it.

Defaults follow the original papers adapted to the study's 64-px inputs (docs/FIDELITY.md, section
"Diffusion"): linear β 1e-4 … 0.02 over T = 1000, Adam at 1e-4 (AnoDDPM, AutoDDPM, pDDPM all use
1e-4), EMA 0.9999 (AnoDDPM; warmed up, see `EMA`), the study's batch 64 and epoch budget.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, model_validator

from medad.anomalies.simplex import fractal_simplex_noise_batch
from medad.methods.base import Method, MethodConfig
from medad.methods.parts.ddpm import (
    EMA,
    Condition,
    NoiseKind,
    NoiseSchedule,
    PerImageNoise,
    SamplerKind,
    ScheduleKind,
    reverse,
)
from medad.methods.parts.diffusion_unet import DiffusionUNet
from medad.methods.parts.scoring import MapScoreConfig


class DiffusionConfig(MethodConfig, MapScoreConfig):
    lr: float = Field(1e-4, gt=0)
    """Adam learning rate (AnoDDPM, AutoDDPM and pDDPM: 1e-4)."""
    timesteps: int = Field(1000, ge=2)
    """Diffusion steps T (Ho et al. 2020 and the three papers: 1000)."""
    beta_schedule: ScheduleKind = "linear"
    """β schedule: ``linear`` (Ho et al.; the three papers) or ``cosine`` (Nichol & Dhariwal)."""
    beta_start: float = Field(1e-4, gt=0, lt=1)
    """First β of the linear schedule (Ho et al.: 1e-4)."""
    beta_end: float = Field(0.02, gt=0, lt=1)
    """Last β of the linear schedule (Ho et al.: 0.02)."""
    base_width: int = Field(64, ge=4)
    """Channels of the U-Net's first level (AnoDDPM: 128 at 256 px; halved for 64-px inputs)."""
    channel_mults: tuple[int, ...] = (1, 2, 3, 4)
    """Width multiplier per U-Net level (AnoDDPM's 128-px setting without its 5th level)."""
    res_blocks: int = Field(2, ge=1)
    """Residual blocks per level (AnoDDPM: 2)."""
    attention_sides: tuple[int, ...] = (16, 8)
    """Feature-map sides with self-attention (AnoDDPM: 32, 16, 8 at 256 px; the two lowest here)."""
    heads: int = Field(4, ge=1)
    """Attention heads (AnoDDPM: 4)."""
    dropout: float = Field(0.0, ge=0, lt=1)
    """Dropout in the residual blocks (AnoDDPM: 0)."""
    ema: bool = True
    """Score with an exponential moving average of the weights (Ho et al.; AnoDDPM)."""
    ema_decay: float = Field(0.9999, gt=0, lt=1)
    """EMA decay (Ho et al., AnoDDPM: 0.9999), warmed up as min(decay, (1 + n) / (10 + n))."""
    noise: NoiseKind = "gaussian"
    """Noise of training and sampling: ``gaussian`` or ``simplex`` (AnoDDPM's simplex variant)."""
    simplex_octaves: int = Field(6, ge=1)
    """Octaves of simplex noise (AnoDDPM: 6)."""
    simplex_persistence: float = Field(0.8, gt=0)
    """Weight factor per octave (AnoDDPM: 0.8)."""
    simplex_frequency: float = Field(64.0, gt=0)
    """Pixel size of the coarsest octave's features (AnoDDPM: 64)."""
    t_start: int = Field(250, ge=1)
    """Start step t_λ: the input is noised to this step, then denoised (AnoDDPM: 250)."""
    sampler: SamplerKind = "ddpm"
    """Reverse process: ``ddpm`` (ancestral, the papers') or ``ddim`` (deterministic, η = 0)."""
    sample_steps: int | None = Field(None, ge=1)
    """Denoising steps from t_start to 0 (None: every step, t_start of them); fewer steps are
    evenly spaced (respaced DDPM or DDIM)."""

    @model_validator(mode="after")
    def _consistent(self) -> DiffusionConfig:
        if self.t_start > self.timesteps:
            raise ValueError(f"t_start {self.t_start} exceeds timesteps {self.timesteps}")
        if self.beta_end < self.beta_start:
            raise ValueError("beta_end must not be below beta_start")
        if not self.channel_mults or min(self.channel_mults) < 1:
            raise ValueError("channel_mults must be positive integers")
        factor = 2 ** (len(self.channel_mults) - 1)
        if self.image_size % factor:
            raise ValueError(
                f"image_size {self.image_size} must divide by 2**(levels-1) = {factor}"
            )
        return self


class DiffusionMethod(Method):
    """A DDPM trained on normal images, with per-image seeded reconstruction (see module)."""

    family = "diffusion"
    budget = "reconstruction"
    Config = DiffusionConfig
    #: what the network predicts: the noise ε (Ho et al.) or the clean image x_0 (pDDPM)
    target: ClassVar[Literal["eps", "x0"]] = "eps"

    def __init__(self, config: DiffusionConfig, channels: int) -> None:
        super().__init__(config, channels)
        c = config
        self.value_range = type(self).preprocess(config, channels).value_range
        self.schedule = NoiseSchedule(c.timesteps, c.beta_schedule, c.beta_start, c.beta_end)
        self.net = DiffusionUNet(
            channels,
            channels,
            image_size=c.image_size,
            base_width=c.base_width,
            channel_mults=c.channel_mults,
            res_blocks=c.res_blocks,
            attention_sides=c.attention_sides,
            heads=c.heads,
            dropout=c.dropout,
        )
        self.ema = EMA(self.net, c.ema_decay) if c.ema else None
        #: seed of the scoring noise, drawn from the run seed in `prepare` and saved with the
        #: weights, so a reloaded run scores with the same noise
        self.register_buffer("noise_seed", torch.zeros((), dtype=torch.long))
        self._ema_pending = False

    # -- training ---------------------------------------------------------------------------
    def prepare(self, batches) -> None:  # type: ignore[no-untyped-def]
        """Fix the scoring noise's seed from the run seed (`self.rng` is fresh here)."""
        self.noise_seed.fill_(int(self.rng.integers(0, 2**62)))

    def _sync_ema(self) -> None:
        """Average in the weights of the optimiser step that followed the last loss."""
        if self.ema is not None and self._ema_pending:
            self.ema.update(self.net)
        self._ema_pending = False

    def training_noise(self, x: torch.Tensor) -> torch.Tensor:
        """Training noise like `x`: torch's seeded Gaussian or simplex from the method's rng."""
        c: DiffusionConfig = self.config  # type: ignore[assignment]
        if c.noise == "gaussian":
            return torch.randn_like(x)
        b, ch, h, w = x.shape
        fields = fractal_simplex_noise_batch(
            (h, w),
            [self.rng] * (b * ch),
            scale=c.simplex_frequency,
            octaves=c.simplex_octaves,
            persistence=c.simplex_persistence,
        ).reshape(b, ch, h, w)
        fields = (fields - fields.mean(axis=(2, 3), keepdims=True)) / np.maximum(
            fields.std(axis=(2, 3), keepdims=True), 1e-6
        )
        return torch.from_numpy(fields).to(device=x.device, dtype=x.dtype)

    def training_loss(self, x: torch.Tensor, stage: str, phase: str) -> torch.Tensor:
        """ε-prediction MSE at a uniformly drawn step per image (Ho et al. 2020, Algorithm 1)."""
        self._sync_ema()
        self._ema_pending = True
        t = torch.randint(0, self.schedule.timesteps, (x.shape[0],), device=x.device)
        noise = self.training_noise(x)
        out = self.net(self.schedule.q_sample(x, t, noise), t)
        if self.target == "x0":
            return F.l1_loss(out, x)
        return F.mse_loss(out, noise)

    def fit(self, batches) -> None:  # type: ignore[no-untyped-def]
        """The last optimiser step's weights join the EMA (the engine calls this after training)."""
        self._sync_ema()

    # -- scoring ----------------------------------------------------------------------------
    @property
    def scoring_net(self) -> DiffusionUNet:
        return self.ema.net if self.ema is not None else self.net

    def denoise(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x̂_0 from x_t, clipped to the value range (Ho et al.'s clipped sampling)."""
        out = self.scoring_net(x_t, t)
        x0 = out if self.target == "x0" else self.schedule.x0_from_eps(x_t, t, out)
        return x0.clamp(*self.value_range)

    def scoring_noise(self, batch: int, per_image: int = 1) -> PerImageNoise:
        """Noise generators of the images being scored (the engine's `image_index`, else 0..B−1).

        `per_image` > 1 gives that many independent generators per image, image-major (for a batch
        built with ``repeat_interleave``, e.g. pDDPM's patches)."""
        c: DiffusionConfig = self.config  # type: ignore[assignment]
        index = range(batch) if self.image_index is None else [int(i) for i in self.image_index]
        indices = [i * per_image + k for i in index for k in range(per_image)]
        return PerImageNoise(
            int(self.noise_seed),
            indices,
            c.noise,
            octaves=c.simplex_octaves,
            persistence=c.simplex_persistence,
            frequency=c.simplex_frequency,
        )

    def reconstruct(
        self,
        x: torch.Tensor,
        noise: PerImageNoise,
        *,
        start: torch.Tensor | None = None,
        t_start: int | None = None,
        sampler: SamplerKind | None = None,
        steps: int | None = None,
        condition: Condition | None = None,
        resample: int = 0,
    ) -> torch.Tensor:
        """Noise `start` (default `x`) to t_start and denoise back to an image like `x`.

        Defaults come from the config; `steps` None means the config's `sample_steps`."""
        c: DiffusionConfig = self.config  # type: ignore[assignment]
        t0 = c.t_start if t_start is None else t_start
        x_t = self.schedule.q_sample(x if start is None else start, t0 - 1, noise.draw(x))
        if condition is not None:
            x_t = condition(x_t, t0 - 1)
        return reverse(
            self.schedule,
            self.denoise,
            x_t,
            t0,
            noise,
            sampler=sampler or c.sampler,
            steps=c.sample_steps if steps is None else steps,
            condition=condition,
            resample=resample,
        )
