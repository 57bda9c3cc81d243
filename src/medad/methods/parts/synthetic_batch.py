"""Apply a synthetic anomaly generator to a training batch (self-supervised methods).

The generators of `medad.anomalies` work on single float NumPy images; the methods train on
batches of torch tensors on some device. `synthesize_batch` bridges the two: the batch goes to the
CPU as NumPy, every image gets its anomaly (with another image of the batch as the foreign
`source`, as NSA's and MedIAnomaly's data loaders take another training image), and the anomalous
images and labels come back to the batch's device. All randomness comes from the method's NumPy
generator, so a seeded run is reproducible.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from medad.anomalies import GENERATORS, make_anomaly
from medad.errors import MedadError


@dataclass(frozen=True)
class SyntheticBatch:
    """A training batch with its synthetic anomalies, made ahead of the training step."""

    clean: torch.Tensor  #: the batch [B, C, H, W]
    anomalous: torch.Tensor  #: its anomalous copies [B, C, H, W]
    label: torch.Tensor  #: their pixel labels [B, H, W]


def check_generator_params(kind: str, params: dict[str, Any], where: str) -> None:
    """Fail early (at method construction) on a parameter the generator `kind` does not take."""
    if kind not in GENERATORS:
        raise MedadError(
            f"{where}: unknown anomaly generator {kind!r}; choose one of {', '.join(GENERATORS)}"
        )
    allowed = {
        name
        for name, p in inspect.signature(GENERATORS[kind]).parameters.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY and name != "source"
    }
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise MedadError(
            f"{where}: unknown parameter(s) {', '.join(unknown)} for the {kind!r} generator; "
            f"it accepts {', '.join(sorted(allowed))}"
        )


def source_offset(batch_size: int, rng: np.random.Generator) -> int:
    """The shift k such that image i takes image (i + k) mod B as its source (k ≠ 0 if B > 1)."""
    return int(rng.integers(1, batch_size)) if batch_size > 1 else 0


def synthesize_batch(
    x: torch.Tensor, kind: str, rng: np.random.Generator, params: dict[str, Any] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Anomalous copies of a batch and their pixel labels.

    Args:
        x: images [B, C, H, W] with values in [0, 1] (clipped to it first).
        kind: a generator name of `medad.anomalies.GENERATORS`.
        rng: the only source of randomness: first the source shift k (`source_offset`), then each
            image's generator call in batch order.
        params: keyword parameters of the generator.

    Returns:
        (anomalous images [B, C, H, W], labels [B, H, W] in [0, 1]), float32 on `x`'s device.
    """
    batch = x.detach().clamp(0.0, 1.0).permute(0, 2, 3, 1).to("cpu", torch.float32).numpy()
    images = batch[..., 0] if batch.shape[-1] == 1 else batch
    k = source_offset(len(images), rng)
    outs, labels = [], []
    for i, image in enumerate(images):
        out, label = make_anomaly(
            kind, image, rng, source=images[(i + k) % len(images)], **(params or {})
        )
        outs.append(out)
        labels.append(label)
    out_arr = np.stack(outs)
    out_arr = out_arr[:, None] if out_arr.ndim == 3 else out_arr.transpose(0, 3, 1, 2)
    return (
        torch.from_numpy(np.ascontiguousarray(out_arr, dtype=np.float32)).to(x.device),
        torch.from_numpy(np.stack(labels).astype(np.float32)).to(x.device),
    )
