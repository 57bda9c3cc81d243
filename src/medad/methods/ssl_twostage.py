"""Two-stage self-supervised methods: CutPaste (two-stage) and AnatPaste (PAPER.md, method table).

Stage 1 trains a ResNet18 with a projection head to tell normal images from synthetic anomalies
made from them: CutPaste (Li et al., "CutPaste: Self-Supervised Learning for Anomaly Detection and
Localization", CVPR 2021, Sec. 3) or AnatPaste (Sato et al., iScience 2023). Stage 2
(`EmbeddingDensityMethod.fit`) fits a Gaussian (Ledoit–Wolf) to the L2-normalised 512-d embeddings
of the training images; the image score is the Mahalanobis distance; there is no anomaly map.

Following MedIAnomaly's two-stage code (``ssl/two_stage``: its run script trains the variants
"normal", "3way" and "anatpaste", all with ``--no-pretrained``):

* ResNet18 from random initialisation by default (``weights="random"``; PAPER.md finding 3 is
  about SSL *without* ImageNet weights). ``weights="imagenet"`` or a file starts from ImageNet
  weights; then, as there, only the head trains for the first `freeze_epochs` epochs.
* Head: `head_layers` blocks Linear(512)–BN–ReLU, then Linear(128)–BN–ReLU, then a linear
  classifier (MedIAnomaly's ``--head_layer`` default 1; Li et al.'s code uses 8).
* Input: 224 × 224 in [0, 1]; during training a colour jitter of 0.1 on the whole image before
  the anomaly is synthesised; normalised by mean 0.5, std 0.5 (PAPER.md, "Preprocessing"). Grayscale
  stays 1-channel and is replicated to 3 channels at the ResNet's door.
* A batch of B normal images becomes B normals plus B synthetic anomalies of each kind, labelled
  0, 1, 2, ...; the loss is the cross-entropy (Li et al. Sec. 3.1: the 3-way variant classifies
  normal vs CutPaste vs CutPaste-Scar).

Optimisation (MedIAnomaly ``ssl/two_stage/run_training.py``, ``run_training``): SGD, lr 0.03,
momentum 0.9, weight decay 3e-5, ``CosineAnnealingWarmRestarts(optimizer, epochs)`` stepped once
per epoch, i.e. T_0 = the whole run, so the rate anneals once from 0.03 to 0 without restarting;
an "epoch" is 256 steps of batch 64 drawn from the repeated, shuffled training set
(`steps_per_epoch`), so 100 epochs are 25 600 steps on every dataset. Remaining deviations: the
study steps its scheduler with the index of the epoch just finished (``scheduler.step(epoch)``),
so its rate lags medad's by one epoch (epochs 0 and 1 both run at 0.03); with pretrained weights
medad's head-only and full stages each get their own optimiser and schedule, where the study
keeps one over the whole run.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn
from torch.nn import functional as F

from medad.anomalies import make_anomaly
from medad.methods.base import MethodConfig, Stage, config_phase, config_stage, register
from medad.methods.optimisation import OptimiserConfig, OptimiserName, Schedule
from medad.methods.parts.density import GaussianDensity
from medad.methods.parts.embedding_density import (
    BackboneInput,
    EmbeddingDensityMethod,
    ResNetEmbedding,
)

#: MedIAnomaly's two-stage input normalisation, Normalize(mean=0.5, std=0.5): [0, 1] → [-1, 1]
HALF = (0.5, 0.5, 0.5)


class TwoStageSSLConfig(MethodConfig, OptimiserConfig):
    epochs: int = Field(100, ge=0)
    """Epochs of `steps_per_epoch` steps (MedIAnomaly's ``--epochs`` default 100)."""
    batch_size: int = Field(64, ge=2)
    """Normal images per step; each adds one synthetic anomaly per class (MedIAnomaly: 64)."""
    optimizer: OptimiserName = "sgd"
    """MedIAnomaly's two-stage ``--optim`` default ``sgd``."""
    lr: float = Field(0.03, gt=0)
    """Learning rate (MedIAnomaly's two-stage ``--lr`` default 0.03)."""
    momentum: float = Field(0.9, ge=0, lt=1)
    """SGD momentum (MedIAnomaly's two-stage code: 0.9)."""
    weight_decay: float = Field(3e-5, ge=0)
    """Weight decay (MedIAnomaly's two-stage code: 3e-5)."""
    schedule: Schedule = Field(default_factory=lambda: Schedule(kind="cosine-restarts"))
    """Cosine warm restarts with T_0 = the whole run, stepped per epoch (MedIAnomaly)."""
    steps_per_epoch: int | None = Field(256, ge=1)
    """Optimiser steps per epoch (MedIAnomaly, after Li et al.: 256); None: one pass."""
    image_size: int = Field(224, ge=32, multiple_of=16)
    """Side of the square input (PAPER.md, two-stage SSL: 224)."""
    weights: str = "random"
    """ResNet18 initialisation: ``random`` (MedIAnomaly: ``--no-pretrained``), ``imagenet`` (torch
    hub cache) or a weights file."""
    freeze_epochs: int = Field(20, ge=0)
    """With pretrained weights, epochs during which only the head trains (MedIAnomaly: 20)."""
    head_layers: int = Field(1, ge=0)
    """Hidden 512-wide blocks of the projection head before its 128-wide layer (MedIAnomaly: 1)."""
    jitter: float = Field(0.1, ge=0, le=0.5)
    """Colour-jitter strength of the training images (brightness, contrast, saturation, hue;
    PAPER.md: 0.1); saturation and hue only act on RGB data."""


def projection_head(dim: int, hidden_layers: int, classes: int) -> nn.Sequential:
    """`hidden_layers` × Linear(512)–BN–ReLU, Linear(128)–BN–ReLU, Linear(classes)."""
    layers: list[nn.Module] = []
    for width in [512] * hidden_layers + [128]:
        layers += [nn.Linear(dim, width), nn.BatchNorm1d(width), nn.ReLU(inplace=True)]
        dim = width
    return nn.Sequential(*layers, nn.Linear(dim, classes))


def colour_jitter_batch(x: torch.Tensor, strength: float, rng: np.random.Generator) -> torch.Tensor:
    """torchvision's ``ColorJitter(s, s, s, s)``, drawn anew for every image of `x` in [0, 1].

    Brightness, contrast and saturation factors are U(1 − s, 1 + s), the hue shift U(−s, s), applied
    in a random order; the draws come from `rng`, so a seeded run is reproducible.
    """
    import torchvision.transforms.functional as TF  # noqa: N812 (lazy: start-up time)

    if strength <= 0:
        return x
    out = []
    for img in x:
        factors = rng.uniform(max(0.0, 1 - strength), 1 + strength, size=3)
        hue = rng.uniform(-strength, strength)
        for op in rng.permutation(4):
            if op == 0:
                img = TF.adjust_brightness(img, float(factors[0]))
            elif op == 1:
                img = TF.adjust_contrast(img, float(factors[1]))
            elif op == 2 and img.shape[0] == 3:
                img = TF.adjust_saturation(img, float(factors[2]))
            elif op == 3 and img.shape[0] == 3:
                img = TF.adjust_hue(img, float(hue))
        out.append(img)
    return torch.stack(out)


class TwoStageSSL(EmbeddingDensityMethod):
    """ResNet18 classifier of normal vs synthetic anomalies, then a Gaussian of its embeddings."""

    backbones = ("resnet18",)
    family = "self-supervised"
    Config = TwoStageSSLConfig

    def __init__(self, config: TwoStageSSLConfig, channels: int) -> None:
        super().__init__(config, channels)
        self.config: TwoStageSSLConfig = config
        self.embedding = ResNetEmbedding(BackboneInput(HALF, HALF), "resnet18", config.weights)
        self.head = projection_head(
            self.embedding.dim, config.head_layers, 1 + len(self.anomaly_kinds())
        )
        self.density = GaussianDensity(self.embedding.dim)

    def anomaly_kinds(self) -> tuple[str, ...]:
        """Generator names of `medad.anomalies`, one class each (label = position + 1)."""
        raise NotImplementedError

    def anomaly_params(self, kind: str) -> dict[str, Any]:
        """Extra keyword arguments for the generator `kind`."""
        return {}

    def stages(self) -> list[Stage]:
        c = self.config
        if c.epochs == 0:
            return []
        freeze = min(c.freeze_epochs, c.epochs) if c.weights != "random" else 0
        stages = []
        if freeze:
            head = config_phase("head", list(self.head.parameters()), c)
            stages.append(config_stage("head", freeze, [head], c))
        if c.epochs > freeze:
            model = config_phase("model", list(self.parameters()), c)
            stages.append(config_stage("train", c.epochs - freeze, [model], c))
        return stages

    def train_transform(self, x: torch.Tensor) -> torch.Tensor:
        return colour_jitter_batch(x, self.config.jitter, self.rng)

    def synthesise(self, x: torch.Tensor, kind: str) -> torch.Tensor:
        """One synthetic anomaly of `kind` per image of `x` [B, C, H, W] in [0, 1]."""
        images = x.detach().cpu().numpy()
        out = np.empty_like(images)
        params = self.anomaly_params(kind)
        for i, img in enumerate(images):
            hwc = img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0)
            anomalous, _ = make_anomaly(kind, hwc, self.rng, **params)
            out[i] = anomalous.reshape(hwc.shape[0], hwc.shape[1], -1).transpose(2, 0, 1)
        return torch.from_numpy(out).to(x.device)

    def training_loss(self, x: torch.Tensor, stage: str, phase: str) -> dict[str, torch.Tensor]:
        views = [x] + [self.synthesise(x, kind) for kind in self.anomaly_kinds()]
        labels = torch.arange(len(views), device=x.device).repeat_interleave(x.shape[0])
        embeddings = self.embedding(torch.cat(views))
        if stage == "head":  # frozen backbone: no gradient through it
            embeddings = embeddings.detach()
        logits = self.head(embeddings)
        accuracy = (logits.argmax(dim=1) == labels).float().mean()
        return {"loss": F.cross_entropy(logits, labels), "accuracy": accuracy.detach()}


class CutPasteConfig(TwoStageSSLConfig):
    variant: Literal["binary", "3way"] = "binary"
    """``binary`` (default): normal vs CutPaste, MedIAnomaly's ``normal`` variant, the paper's
    "CutPaste (two-stage)" row; ``3way``: normal vs CutPaste vs CutPaste-Scar (Li et al.'s best
    on MVTec, MedIAnomaly's ``3way`` run)."""


@register("cutpaste-2stage")
class CutPaste2Stage(TwoStageSSL):
    description = (
        "ResNet18 trained to classify normal vs CutPaste (or 3-way with scars); "
        "score = Mahalanobis distance of its embedding"
    )
    Config = CutPasteConfig
    config: CutPasteConfig

    def anomaly_kinds(self) -> tuple[str, ...]:
        return ("cutpaste", "cutpaste-scar") if self.config.variant == "3way" else ("cutpaste",)


class AnatPasteConfig(TwoStageSSLConfig):
    foreground: Literal["dark-inner", "bright", "dark"] = "dark-inner"
    """Where the patch is pasted (`medad.anomalies.anatpaste.foreground_mask`). ``dark-inner``
    (default): the dark Otsu class minus the regions touching the image border, i.e. the lungs of
    a chest X-ray; Sato et al.'s lung segmentation, which MedIAnomaly applies to every dataset
    (on other data it keeps dark structures inside the body, e.g. ventricles of a brain).
    ``bright``: the bright Otsu class (body vs air, e.g. brain tissue); ``dark``: the whole dark
    class, air included."""


@register("anatpaste")
class AnatPaste(TwoStageSSL):
    description = (
        "ResNet18 trained to classify normal vs AnatPaste (CutPaste inside the foreground, "
        "blurred); score = Mahalanobis distance of its embedding"
    )
    Config = AnatPasteConfig
    config: AnatPasteConfig

    def anomaly_kinds(self) -> tuple[str, ...]:
        return ("anatpaste",)

    def anomaly_params(self, kind: str) -> dict[str, Any]:
        return {"foreground": self.config.foreground}
