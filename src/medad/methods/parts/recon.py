"""`ReconstructionAE`: the shared shape of the image-reconstruction methods of MedIAnomaly.

Every method of the "image recon" rows of PAPER.md's method table is an autoencoder whose anomaly
map is a per-pixel reconstruction error and whose image score is the mean of that map. They differ
in three places only, each a method to override:

- `build_network`: the network (default: the paper's `AutoEncoder`);
- `pixel_error`: the element-wise error [B, C, H, W] of an input and its reconstruction (default:
  the squared error, which makes the base class exactly the plain AE: loss = mean squared error,
  map = squared error summed over channels);
- `error_map` / `reconstruction_loss`: how that error becomes the map [B, H, W] (default: sum over
  channels) and the training loss (default: mean over all elements).

Its config is a `ReconstructionConfig` (the shared fields and the image-score rule); the default
network reads `AEConfig`'s backbone fields, so a method with another network (AE-Spatial) declares
its own config and overrides `build_network`.

Methods whose training differs from "reconstruct x, compare with x" (context encoding, latent
consistency, memory entropy, predicted variance) override `training_loss` or `anomaly_map`.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from medad.methods.base import Method, MethodConfig, ScoreOutput
from medad.methods.parts.autoencoder import AutoEncoder, BackboneConfig
from medad.methods.parts.scoring import MapScoreConfig, map_scores


class ReconstructionConfig(MethodConfig, MapScoreConfig):
    """What `ReconstructionAE` reads: the shared fields and the map → image-score rule."""


class AEConfig(ReconstructionConfig, BackboneConfig):
    """The paper's AE: `ReconstructionConfig` and the backbone's latent and widths."""


class ReconstructionAE(Method):
    """An autoencoder scored by its reconstruction error; see the module docstring."""

    family = "reconstruction"
    Config: ClassVar[type[MethodConfig]] = AEConfig
    config: ReconstructionConfig

    def __init__(self, config: ReconstructionConfig, channels: int) -> None:
        super().__init__(config, channels)
        self.net = self.build_network(config, channels)

    def build_network(self, config: ReconstructionConfig, channels: int) -> nn.Module:
        """The paper's AE (`config` must be an `AEConfig`)."""
        return AutoEncoder.from_config(config, channels)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """x̂ of a batch [B, C, H, W], in the input's value range."""
        return self.net(x)

    def pixel_error(self, x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        """Element-wise error [B, C, H, W]; the plain AE's squared error."""
        return (x_hat - x) ** 2

    def error_map(self, x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        """Anomaly map [B, H, W]: `pixel_error` summed over channels."""
        return self.pixel_error(x, x_hat).sum(dim=1)

    def reconstruction_loss(self, x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        """Training loss: `pixel_error` averaged over all elements (the AE's MSE)."""
        return self.pixel_error(x, x_hat).mean()

    def training_loss(
        self, x: torch.Tensor, stage: str, phase: str
    ) -> torch.Tensor | dict[str, torch.Tensor]:
        return self.reconstruction_loss(x, self.reconstruct(x))

    def anomaly_map(self, x: torch.Tensor) -> torch.Tensor:
        """Anomaly map [B, H, W] of a batch: `error_map` of x and its reconstruction."""
        return self.error_map(x, self.reconstruct(x))

    def score(self, x: torch.Tensor) -> ScoreOutput:
        """Map from `anomaly_map`; image score = mean of the map (PAPER.md, "Pixel map") unless
        the config asks for another `image_score` rule."""
        return map_scores(self.anomaly_map(x), self.config)
