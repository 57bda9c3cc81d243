"""Denoising diffusion (DDPM) as a shared part: noise schedule, forward process, samplers, EMA.

Ho, Jain, Abbeel, "Denoising Diffusion Probabilistic Models", NeurIPS 2020 (the forward process
q(x_t | x_0) = N(√ᾱ_t x_0, (1 − ᾱ_t) I), ε-prediction trained with the MSE at uniformly drawn t,
the linear β schedule 1e-4 … 0.02 over T = 1000, ancestral sampling); Nichol & Dhariwal, "Improved
DDPM", ICML 2021 (the cosine schedule; sampling on a subsequence of steps with the respaced
posterior); Song, Meng, Ermon, "DDIM", ICLR 2021 (deterministic sampling, η = 0); Lugmayr et al.,
"RePaint", CVPR 2022 (a known region merged in at every step, resampling by re-noising one step).

The anomaly-detection methods (`medad.methods.anoddpm`, `autoddpm`, `pddpm`) never sample from
pure noise: they noise the input to a start step t_λ and denoise it back (`reverse`), so normal
anatomy is restored and a lesion is replaced by what the model knows. Steps are 0-based indices:
"t_λ = 250 of 1000" noises with ᾱ at index 249 and denoises through 249 … 0.

Randomness: every draw of the samplers comes from a `PerImageNoise`, one NumPy generator per image
seeded from (run seed, image index), so a reconstruction does not depend on the batch it is in.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
import torch
from torch import nn

from medad.anomalies.simplex import fractal_simplex_noise_batch

ScheduleKind = Literal["linear", "cosine"]
NoiseKind = Literal["gaussian", "simplex"]
SamplerKind = Literal["ddpm", "ddim"]
#: a denoiser: (x_t, t [B] long) → predicted x_0
Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
#: merged into the sample after each step (RePaint's known region): (x_s, s) → x_s
Condition = Callable[[torch.Tensor, int], torch.Tensor]


def beta_schedule(
    timesteps: int, kind: ScheduleKind = "linear", start: float = 1e-4, end: float = 0.02
) -> torch.Tensor:
    """β_1 … β_T in float64: linear from `start` to `end` (Ho et al. 2020), or cosine (Nichol &
    Dhariwal 2021, Eq. 17, offset s = 0.008, β clipped at 0.999)."""
    if kind == "linear":
        return torch.linspace(start, end, timesteps, dtype=torch.float64)
    s = 0.008
    steps = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps
    f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
    return (1 - f[1:] / f[:-1]).clamp(max=0.999)


class NoiseSchedule(nn.Module):
    """ᾱ_t of a β schedule and the forward process; buffers follow the module's device.

    The buffers are derived from the config, so they are not saved in checkpoints."""

    def __init__(
        self,
        timesteps: int = 1000,
        kind: ScheduleKind = "linear",
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
    ) -> None:
        super().__init__()
        self.timesteps = timesteps
        betas = beta_schedule(timesteps, kind, beta_start, beta_end)
        self.register_buffer("betas", betas.float(), persistent=False)
        self.register_buffer("alpha_bar", torch.cumprod(1 - betas, 0).float(), persistent=False)

    def abar(self, t: torch.Tensor | int) -> torch.Tensor:
        """ᾱ at step indices `t` (any shape); index −1 means ᾱ = 1 (the clean image)."""
        t = torch.as_tensor(t, device=self.alpha_bar.device)
        padded = torch.cat([self.alpha_bar.new_ones(1), self.alpha_bar])
        return padded[t.long() + 1]

    def q_sample(
        self, x0: torch.Tensor, t: torch.Tensor | int, noise: torch.Tensor
    ) -> torch.Tensor:
        """x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε, with `t` an int or one index per image [B]."""
        a = self.abar(t).to(x0.dtype)
        a = a.view(-1, *([1] * (x0.dim() - 1))) if a.dim() else a
        return a.sqrt() * x0 + (1 - a).sqrt() * noise

    def eps_from_x0(self, x_t: torch.Tensor, t: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        """The ε that explains x_t given x_0 (converts an x_0-prediction to an ε-prediction)."""
        a = self.abar(t).to(x_t.dtype).view(-1, *([1] * (x_t.dim() - 1)))
        return (x_t - a.sqrt() * x0) / (1 - a).sqrt()

    def x0_from_eps(self, x_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """The x_0 that ε explains (converts an ε-prediction to an x_0-prediction)."""
        a = self.abar(t).to(x_t.dtype).view(-1, *([1] * (x_t.dim() - 1)))
        return (x_t - (1 - a).sqrt() * eps) / a.sqrt()


class PerImageNoise:
    """Gaussian or simplex noise images, each image from its own generator.

    Image b's generator is seeded with (`seed`, `indices[b]`) (NumPy's SeedSequence), so the noise
    an image receives depends on the run and the image, never on the batch it is scored in or on
    the images before it. Simplex noise (`medad.anomalies.simplex`, AnoDDPM's octaves,
    persistence and frequency) is drawn per channel and scaled to zero mean and unit variance per
    image and channel, so the forward process keeps the schedule's variance.
    """

    def __init__(
        self,
        seed: int,
        indices: Sequence[int],
        kind: NoiseKind = "gaussian",
        *,
        octaves: int = 6,
        persistence: float = 0.8,
        frequency: float = 64.0,
    ) -> None:
        self.rngs = [np.random.default_rng([int(seed), int(i)]) for i in indices]
        self.kind = kind
        self.octaves, self.persistence, self.frequency = octaves, persistence, frequency

    def draw(self, like: torch.Tensor) -> torch.Tensor:
        """One noise image per generator, shaped, typed and placed like `like` [B, C, H, W]."""
        b, c, h, w = like.shape
        if b != len(self.rngs):
            raise ValueError(f"PerImageNoise holds {len(self.rngs)} generators, asked for {b}")
        if self.kind == "gaussian":
            arr = np.stack([r.standard_normal((c, h, w), dtype=np.float32) for r in self.rngs])
        else:
            fields = fractal_simplex_noise_batch(
                (h, w),
                [r for r in self.rngs for _ in range(c)],
                scale=self.frequency,
                octaves=self.octaves,
                persistence=self.persistence,
            ).reshape(b, c, h, w)
            mean = fields.mean(axis=(2, 3), keepdims=True)
            std = fields.std(axis=(2, 3), keepdims=True)
            arr = (fields - mean) / np.maximum(std, 1e-6)
        return torch.from_numpy(arr).to(device=like.device, dtype=like.dtype)


def step_sequence(t_start: int, steps: int | None) -> list[int]:
    """Descending step indices from t_start − 1 to 0: all of them, or `steps` evenly spaced."""
    if t_start < 1:
        raise ValueError("t_start must be at least 1")
    n = t_start if steps is None else max(1, min(steps, t_start))
    seq = np.unique(np.round(np.linspace(0, t_start - 1, n)).astype(int))[::-1]
    return [int(t) for t in seq]


def reverse(
    schedule: NoiseSchedule,
    denoise: Denoiser,
    x_t: torch.Tensor,
    t_start: int,
    noise: PerImageNoise,
    *,
    sampler: SamplerKind = "ddpm",
    steps: int | None = None,
    condition: Condition | None = None,
    resample: int = 0,
) -> torch.Tensor:
    """Denoise `x_t` (noised to index t_start − 1) back to x_0.

    ``ddpm``: ancestral sampling with the posterior q(x_s | x_t, x̂_0) between consecutive steps of
    `step_sequence` (all steps: Ho et al.'s sampler; fewer: Nichol & Dhariwal's respacing);
    ``ddim``: deterministic DDIM (η = 0) on the same steps. `condition` is applied after every
    step (RePaint's known region); `resample` repeats each step that many more times after
    re-noising the merged sample back to the step it came from (RePaint's jump length 1).
    """
    seq = step_sequence(t_start, steps)
    x = x_t
    b = x.shape[0]
    for k, t in enumerate(seq):
        s = seq[k + 1] if k + 1 < len(seq) else -1
        for r in range(resample + 1):
            tt = torch.full((b,), t, device=x.device, dtype=torch.long)
            x0 = denoise(x, tt)
            a_t, a_s = schedule.abar(t).to(x.dtype), schedule.abar(s).to(x.dtype)
            if sampler == "ddim":
                eps = schedule.eps_from_x0(x, tt, x0)
                x_s = a_s.sqrt() * x0 + (1 - a_s).sqrt() * eps
            else:
                beta = 1 - a_t / a_s  # the respaced β between s and t
                mean = (a_s.sqrt() * beta * x0 + (1 - beta).sqrt() * (1 - a_s) * x) / (1 - a_t)
                x_s = mean
                if s >= 0:
                    var = beta * (1 - a_s) / (1 - a_t)
                    x_s = mean + var.sqrt() * noise.draw(x)
            if condition is not None:
                x_s = condition(x_s, s)
            if r < resample and s >= 0:
                ratio = a_t / a_s  # q(x_t | x_s): one jump back up
                x = ratio.sqrt() * x_s + (1 - ratio).sqrt() * noise.draw(x)
            else:
                x = x_s
                break
    return x


class EMA(nn.Module):
    """An exponential moving average of a network's weights (Ho et al. 2020: decay 0.9999).

    The decay warms up as min(decay, (1 + n) / (10 + n)) after n updates (the TensorFlow
    ``ExponentialMovingAverage`` rule with ``num_updates``), so a short training's average is not
    dominated by the random initial weights. Copies are frozen and saved with the method."""

    def __init__(self, net: nn.Module, decay: float) -> None:
        super().__init__()
        self.decay = decay
        self.net = copy.deepcopy(net).requires_grad_(False)
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def update(self, net: nn.Module) -> None:
        n = int(self.updates)
        d = min(self.decay, (1 + n) / (10 + n))
        for e, p in zip(self.net.parameters(), net.parameters(), strict=True):
            e.lerp_(p.detach(), 1 - d)
        for e, p in zip(self.net.buffers(), net.buffers(), strict=True):
            e.copy_(p)
        self.updates += 1
