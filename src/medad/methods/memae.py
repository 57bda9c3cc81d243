"""MemAE: the paper's AE with a memory module on its FC latent (PAPER.md, row "MemAE").

Gong et al. 2019, "Memorizing normality to detect anomalies: memory-augmented deep autoencoder for
unsupervised anomaly detection" (ICCV). The encoder's latent z addresses a memory of 25 slots
(`medad.methods.parts.memory.Memory`: softmax attention, hard shrinkage at λ = 0.0025, L1
re-normalisation); the decoder sees the memory read-out ẑ. Loss = MSE + 2e-4 · entropy of the
attention (the values of the MemAE paper and the MedIAnomaly code). Score = the AE's: mean squared
error, map = squared error summed over channels.

As in MedIAnomaly (and unlike the MemAE paper, which addresses every position of a convolutional
feature map), the memory sits on the 16-dimensional FC latent, one query per image.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from medad.methods.ae import AEConfig
from medad.methods.base import register
from medad.methods.parts.autoencoder import AutoEncoder
from medad.methods.parts.memory import Memory, attention_entropy
from medad.methods.parts.recon import ReconstructionAE


class MemAEConfig(AEConfig):
    memory_slots: int = Field(25, ge=1)
    """Number of memory items (PAPER.md / MedIAnomaly code: 25)."""
    shrink_threshold: float = Field(0.0025, ge=0, lt=1)
    """λ of the hard shrinkage of the attention (PAPER.md: 0.0025; 0 turns shrinkage off)."""
    entropy_weight: float = Field(2e-4, ge=0)
    """Weight of the attention-entropy loss (Gong et al. 2019 and PAPER.md: 2e-4)."""


class MemoryAutoEncoder(nn.Module):
    """The paper's `AutoEncoder` with a `Memory` between its FC encoder and decoder."""

    def __init__(self, ae: AutoEncoder, memory: Memory) -> None:
        super().__init__()
        self.ae = ae
        self.memory = memory

    def forward_with_attention(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(x̂, attention [B, slots])."""
        z_hat, att = self.memory(self.ae.encode(x))
        return self.ae.decode(z_hat), att

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_attention(x)[0]


@register("memae")
class MemAE(ReconstructionAE):
    description = "Memory-augmented autoencoder (25 slots, hard shrinkage), MSE score"
    Config = MemAEConfig

    def build_network(self, config: MemAEConfig, channels: int) -> nn.Module:
        ae = super().build_network(config, channels)
        memory = Memory(config.memory_slots, config.latent_size, config.shrink_threshold)
        return MemoryAutoEncoder(ae, memory)

    def training_loss(self, x: torch.Tensor, stage: str, phase: str) -> dict[str, torch.Tensor]:
        x_hat, att = self.net.forward_with_attention(x)
        recon = self.reconstruction_loss(x, x_hat)
        entropy = attention_entropy(att)
        loss = recon + self.config.entropy_weight * entropy
        return {"loss": loss, "recon": recon.detach(), "entropy": entropy.detach()}
