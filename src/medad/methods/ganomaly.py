"""GANomaly (Akçay, Atapour-Abarghouei, Breckon, ACCV 2018; PAPER.md, method table, row "GANomaly").

An encoder-decoder-encoder generator on the paper's backbone, as MedIAnomaly builds it
(``reconstruction/networks/ganomaly.py``): E1 encodes x to z, G decodes z to x̂ and a second encoder
E2 encodes x̂ to ẑ; E1 + G are the paper's AE and E2 its encoding half, except that the fully
connected layers have no BatchNorm (FC(1024) → ReLU → FC, the study's GANomaly networks). The
discriminator (`parts.gan.Discriminator`) is the AE's encoder blocks (BatchNorm) → FC(1024) → ReLU
→ linear logit, and its *features* for feature matching are the FC(1024) → ReLU output, where the
study takes them.

Training is one stage of two alternating phases per batch (GANomaly, Sec. 3):
- ``generator`` (E1, G, E2): w_adv·‖f(x) − f(x̂)‖² (feature matching on the discriminator's
  features) + w_rec·‖x − x̂‖² + w_enc·‖z − ẑ‖², weights 1, 50, 1 (PAPER.md; MedIAnomaly's
  ``GANomalyLoss``; GANomaly's own code uses |x − x̂| for the reconstruction term);
- ``discriminator``: BCE, real → 1 and x̂ → 0, on the x̂ the generator phase made from the same
  batch (cached between the two phases). As in GANomaly's and MedIAnomaly's code, the
  discriminator is re-initialised whenever its loss falls below 1e-5 (it has won and gives no
  gradient).

Both phases use Adam with the study's lr 1e-3 and PyTorch's default betas (0.9, 0.999), as
MedIAnomaly's ``GanomalyWorker`` does; GANomaly itself used lr 2e-4, β₁ 0.5 and L1 (``lr``,
``beta1``, ``rec_loss`` select that recipe).

Score = ‖z − ẑ‖² averaged over the latent dimensions; there is no anomaly map.

Deviation from the public MedIAnomaly code, on purpose: it scored in *train* mode at batch size 1
(the convolutional BatchNorm used each test image's own statistics; the reason its FC layers have
no BatchNorm, which cannot normalise one sample); medad scores in eval mode like every other
method, so a score never depends on how the test set is batched (PAPER.md, "Known defects").
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from medad.methods.base import Method, MethodConfig, Phase, ScoreOutput, Stage, register
from medad.methods.parts.autoencoder import AutoEncoder, BackboneConfig
from medad.methods.parts.gan import (
    Discriminator,
    LatentEncoder,
    discriminator_bce,
    feature_matching,
)

#: GANomaly's code restarts the discriminator when its loss falls below this
D_RESET_THRESHOLD = 1e-5


class GANomalyConfig(MethodConfig, BackboneConfig):
    lr: float = Field(1e-3, gt=0)
    """Adam learning rate of both phases (PAPER.md and MedIAnomaly's code: 1e-3; GANomaly: 2e-4)."""
    beta1: float = Field(0.9, ge=0, lt=1)
    """Adam β₁ of both phases (MedIAnomaly's code: PyTorch's default 0.9; GANomaly / DCGAN: 0.5);
    β₂ = 0.999."""
    w_adv: float = Field(1.0, ge=0)
    """Weight of the feature-matching adversarial loss (PAPER.md, GANomaly: 1)."""
    w_rec: float = Field(50.0, ge=0)
    """Weight of the reconstruction loss (PAPER.md, GANomaly: 50)."""
    w_enc: float = Field(1.0, ge=0)
    """Weight of the latent consistency loss ‖z − ẑ‖² (PAPER.md, GANomaly: 1)."""
    rec_loss: Literal["l1", "l2"] = "l2"
    """Reconstruction distance: the L2 of MedIAnomaly's code, or GANomaly's L1."""


@register("ganomaly")
class GANomaly(Method):
    family = "reconstruction"
    description = "Encoder-decoder-encoder GAN; score = latent distance ‖E1(x) − E2(G(E1(x)))‖²"
    Config = GANomalyConfig

    def __init__(self, config: GANomalyConfig, channels: int) -> None:
        super().__init__(config, channels)
        c = config
        self.autoencoder = AutoEncoder.from_config(c, channels, fc_batch_norm=False)  # E1 and G
        self.encoder2 = LatentEncoder(
            channels, c.image_size, c.latent_size, c.base_width, c.mid_size, batch_norm=False
        )
        self.discriminator = Discriminator(
            channels, c.image_size, c.base_width, norm="batch", hidden=c.mid_size
        )
        #: (input batch, its detached x̂) from the last generator phase, for the discriminator phase
        self._fake: tuple[torch.Tensor, torch.Tensor] | None = None

    def stages(self) -> list[Stage]:
        c = self.config
        if c.epochs == 0:
            return []
        betas = (c.beta1, 0.999)
        generator = [*self.autoencoder.parameters(), *self.encoder2.parameters()]
        return [
            Stage("train", c.epochs, [
                Phase("generator", generator, c.lr, betas, c.weight_decay),
                Phase("discriminator", list(self.discriminator.parameters()), c.lr, betas,
                      c.weight_decay),
            ])
        ]  # fmt: skip

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(x̂, z, ẑ) = (G(E1(x)), E1(x), E2(G(E1(x))))."""
        z = self.autoencoder.encode(x)
        x_hat = self.autoencoder.decode(z)
        return x_hat, z, self.encoder2(x_hat)

    def training_loss(self, x: torch.Tensor, stage: str, phase: str) -> dict[str, torch.Tensor]:
        if phase == "generator":
            return self._generator_loss(x)
        return self._discriminator_loss(x)

    def _generator_loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        c = self.config
        x_hat, z, z_hat = self(x)
        self._fake = (x, x_hat.detach())
        with torch.no_grad():
            real_features = self.discriminator.features(x)
        adv = feature_matching(real_features, self.discriminator.features(x_hat))
        rec = F.l1_loss(x_hat, x) if c.rec_loss == "l1" else F.mse_loss(x_hat, x)
        enc = F.mse_loss(z_hat, z)
        loss = c.w_adv * adv + c.w_rec * rec + c.w_enc * enc
        return {"loss": loss, "adv": adv.detach(), "rec": rec.detach(), "enc": enc.detach()}

    def _discriminator_loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if self._fake is not None and self._fake[0] is x:
            x_hat = self._fake[1]
        else:  # no generator phase ran on this batch: make x̂ now
            with torch.no_grad():
                x_hat = self(x)[0]
        self._fake = None
        loss = discriminator_bce(self.discriminator(x), self.discriminator(x_hat))
        if loss.item() < D_RESET_THRESHOLD:
            self.discriminator.reset()
            loss = discriminator_bce(self.discriminator(x), self.discriminator(x_hat))
        return {"loss": loss}

    def score(self, x: torch.Tensor) -> ScoreOutput:
        _, z, z_hat = self(x)
        return ScoreOutput(((z - z_hat) ** 2).mean(dim=1))
