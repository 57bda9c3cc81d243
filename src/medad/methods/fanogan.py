"""f-AnoGAN (Schlegl et al., Medical Image Analysis 54, 2019; PAPER.md, method table).

Two stages, one after the other, both run by the one engine:

1. ``gan``: a WGAN-GP (Gulrajani et al. 2017) learns normal anatomy from noise z ~ N(0, I). The
   generator G is the decoding half of the paper's AE (FC(1024) → BN → ReLU → FC → 4 transposed-conv
   blocks) followed by tanh, as f-AnoGAN's generator ends in tanh; the critic D is the paper's
   encoder blocks with per-sample layer norm instead of BatchNorm (`parts.gan.Discriminator`), since
   the gradient penalty is per sample. Phases per batch: ``critic`` (n_critic = 5 steps, λ_gp = 10)
   then ``generator`` (one step); Adam lr 1e-4, betas (0, 0.9) (f-AnoGAN's `wgangp_64x64.py`).
2. ``encoder``: the izi_f training of an encoder E (the encoding half of the paper's AE) with G and
   D frozen (eval mode, no gradients): ‖x − G(E(x))‖² + κ·‖f(x) − f(G(E(x)))‖² as means, with f the
   critic's last features and κ = 1 (f-AnoGAN's izi_f training).

Score = the izi_f loss of the image (residual MSE + κ·feature MSE, f-AnoGAN's score); the map is
the per-pixel squared residual (x − G(E(x)))², averaged over channels (so its mean is the residual
term of the score).

Choices (PAPER.md lists f-AnoGAN as missing from the public code; a later commit of that repository,
cd04899, adds one with f-AnoGAN's residual 64-px networks and 3000 GAN + 300 encoder epochs):
- networks are the paper's backbone, so f-AnoGAN is compared at the AE's capacity; E + G are one
  `AutoEncoder`, whose decoding half is trained as the generator and whose encoding half as E;
- latent size 128, z ~ N(0, I) (f-AnoGAN's ZDIM and sampling), not the AE's 16;
- the paper's budget of 250 epochs is split 4 : 1 between the stages (200 GAN + 50 encoder) unless
  ``gan_epochs`` / ``encoder_epochs`` are given; f-AnoGAN's own code gives the GAN the larger share;
- the critic's 5 steps reuse the batch's real images with fresh noise each step (the engine's
  `Phase.repeats`); WGAN-GP draws a new real batch per critic step;
- E is trained with Adam (lr ``encoder_lr``, default betas); f-AnoGAN used RMSProp at 5e-5, and
  the engine's phases are Adam.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field

from medad.methods.base import Method, MethodConfig, Phase, ScoreOutput, Stage, register
from medad.methods.parts.autoencoder import AutoEncoder, BackboneConfig
from medad.methods.parts.gan import (
    Discriminator,
    gradient_penalty,
    wasserstein_critic_loss,
    wasserstein_generator_loss,
)

#: share of `epochs` given to the GAN stage when `gan_epochs` is not set
GAN_SHARE = 0.8


class FAnoGANConfig(MethodConfig, BackboneConfig):
    lr: float = Field(1e-4, gt=0)
    """Adam learning rate of the critic and the generator (f-AnoGAN / WGAN-GP: 1e-4)."""
    beta1: float = Field(0.0, ge=0, lt=1)
    """Adam β₁ of the GAN stage (WGAN-GP: 0)."""
    beta2: float = Field(0.9, gt=0, lt=1)
    """Adam β₂ of the GAN stage (WGAN-GP: 0.9)."""
    encoder_lr: float = Field(1e-4, gt=0)
    """Adam learning rate of the encoder stage (f-AnoGAN: RMSProp at 5e-5; see the docstring)."""
    gan_epochs: int | None = Field(None, ge=0)
    """Epochs of the WGAN-GP stage (None: 4/5 of `epochs`, i.e. 200 of the paper's 250)."""
    encoder_epochs: int | None = Field(None, ge=0)
    """Epochs of the izi_f encoder stage (None: the rest of `epochs`, i.e. 50 of 250)."""
    n_critic: int = Field(5, ge=1)
    """Critic steps per generator step (WGAN-GP, f-AnoGAN: 5)."""
    gp_weight: float = Field(10.0, ge=0)
    """Weight λ of the gradient penalty (WGAN-GP, f-AnoGAN: 10)."""
    kappa: float = Field(1.0, ge=0)
    """Weight κ of the feature term in the izi_f loss and the score (f-AnoGAN: 1)."""
    latent_size: int = Field(128, ge=1)
    """Size of the noise / latent z (f-AnoGAN: 128)."""

    def stage_epochs(self) -> tuple[int, int]:
        """(GAN epochs, encoder epochs), filling the unset ones from `epochs`."""
        gan = self.gan_epochs if self.gan_epochs is not None else round(GAN_SHARE * self.epochs)
        enc = self.encoder_epochs if self.encoder_epochs is not None else max(self.epochs - gan, 0)
        return gan, enc


@register("f-anogan")
class FAnoGAN(Method):
    family = "reconstruction"
    description = "WGAN-GP then izi_f encoder; score = residual + κ·critic-feature error"
    Config = FAnoGANConfig

    def __init__(self, config: FAnoGANConfig, channels: int) -> None:
        super().__init__(config, channels)
        c = config
        self.autoencoder = AutoEncoder.from_config(c, channels)  # encode = E, decode (+ tanh) = G
        self.critic = Discriminator(channels, c.image_size, c.base_width, norm="layer")

    def encoder_parameters(self) -> list[torch.nn.Parameter]:
        ae = self.autoencoder
        return [*ae.encoder.parameters(), *ae.bottleneck.encode.parameters()]

    def generator_parameters(self) -> list[torch.nn.Parameter]:
        ae = self.autoencoder
        return [*ae.bottleneck.decode_fc.parameters(), *ae.decoder.parameters()]

    def stages(self) -> list[Stage]:
        c = self.config
        gan_epochs, encoder_epochs = c.stage_epochs()
        self.requires_grad_(True)  # undo `_freeze_gan` of an earlier training
        betas = (c.beta1, c.beta2)
        stages = [
            Stage("gan", gan_epochs, [
                Phase("critic", list(self.critic.parameters()), c.lr, betas, c.weight_decay,
                      repeats=c.n_critic),
                Phase("generator", self.generator_parameters(), c.lr, betas, c.weight_decay),
            ]),
            Stage("encoder", encoder_epochs, [
                Phase("encoder", self.encoder_parameters(), c.encoder_lr,
                      weight_decay=c.weight_decay),
            ]),
        ]  # fmt: skip
        return [s for s in stages if s.epochs > 0]

    def generate(self, z: torch.Tensor) -> torch.Tensor:
        """G(z): the AE's decoding half, squashed to [-1, 1] by tanh."""
        return torch.tanh(self.autoencoder.decode(z))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The reconstruction G(E(x))."""
        return self.generate(self.autoencoder.encode(x))

    def _noise(self, x: torch.Tensor) -> torch.Tensor:
        return torch.randn(x.shape[0], self.config.latent_size, device=x.device, dtype=x.dtype)

    def training_loss(self, x: torch.Tensor, stage: str, phase: str) -> dict[str, torch.Tensor]:
        if phase == "critic":
            with torch.no_grad():
                fake = self.generate(self._noise(x))
            distance = wasserstein_critic_loss(self.critic(x), self.critic(fake))
            penalty = gradient_penalty(self.critic, x, fake)
            loss = distance + self.config.gp_weight * penalty
            return {"loss": loss, "wasserstein": -distance.detach(), "gp": penalty.detach()}
        if phase == "generator":
            return {"loss": wasserstein_generator_loss(self.critic(self.generate(self._noise(x))))}
        self._freeze_gan()
        residual, features = self._izif(x)
        residual, features = residual.mean(), features.mean()
        loss = residual + self.config.kappa * features
        return {"loss": loss, "residual": residual.detach(), "features": features.detach()}

    def _freeze_gan(self) -> None:
        """Stage 2 keeps G and D fixed: no gradients, and G's BatchNorm statistics frozen."""
        ae = self.autoencoder
        for module in (ae.bottleneck.decode_fc, ae.decoder, self.critic):
            module.eval()
            module.requires_grad_(False)

    def _izif(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-pixel squared residual [B, C, H, W] and per-image feature MSE [B]."""
        x_hat = self(x)
        f_real, f_fake = self.critic.features(x), self.critic.features(x_hat)
        return (x - x_hat) ** 2, F.mse_loss(f_fake, f_real, reduction="none").mean(dim=1)

    def score(self, x: torch.Tensor) -> ScoreOutput:
        residual, features = self._izif(x)
        maps = residual.mean(dim=1)
        return ScoreOutput(maps.flatten(1).mean(dim=1) + self.config.kappa * features, maps)
