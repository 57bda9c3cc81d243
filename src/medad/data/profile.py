"""What a run's training images looked like, so that `medad predict` can say when an input differs.

A detector trained on 256-pixel grayscale brain MRI still gives a score to a 3000-pixel colour
photograph; the score means nothing, and nothing in it says so. The profile keeps, per run
(``input_profile.json``), the channel counts, the size range (height, width) of the training images
as decoded, and the range of their per-image mean and standard deviation of intensity after
preprocessing (in [0, 1]). An input is flagged when its channel count was never seen in training,
when a side lies outside the training range by more than `SIZE_FACTOR`, or when its intensity mean
or spread lies outside the training range widened by `INTENSITY_MARGIN` of that range's width
(and at least `MIN_INTENSITY_MARGIN`) on each side. These are warnings, not errors: a user may know
better (a different scanner, a rescaled export), but should be told.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from medad.data.loading import ArraySplit
from medad.errors import MedadError

PROFILE_NAME = "input_profile.json"
#: a side more than this factor below the smallest or above the largest training side is flagged
SIZE_FACTOR = 1.5
#: intensity statistics are compared with the training range widened by this fraction of its width
INTENSITY_MARGIN = 0.1
#: ... and by at least this much (in [0, 1] units), so a training set of near-identical images
#: does not flag every input
MIN_INTENSITY_MARGIN = 0.02


def _intensity(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-image mean and standard deviation of uint8 images [N, C, H, W], in [0, 1]."""
    flat = images.reshape(len(images), -1).astype(np.float64) / 255.0
    return flat.mean(axis=1), flat.std(axis=1)


@dataclass(frozen=True)
class InputProfile:
    """Channel counts, size range and intensity range of a run's training images."""

    channels: list[int]
    height: list[int] | None  # [min, max]; None when the sizes are unknown (an old cache entry)
    width: list[int] | None
    mean: list[float]  # [min, max] of per-image mean intensity after preprocessing
    std: list[float]  # [min, max] of per-image standard deviation

    @classmethod
    def of(cls, split: ArraySplit) -> InputProfile:
        mean, std = _intensity(split.images)
        shapes = split.source_shapes
        return cls(
            channels=sorted({int(c) for c in shapes[:, 2]}) if shapes is not None else [],
            height=[int(shapes[:, 0].min()), int(shapes[:, 0].max())]
            if shapes is not None
            else None,
            width=[int(shapes[:, 1].min()), int(shapes[:, 1].max())]
            if shapes is not None
            else None,
            mean=[float(mean.min()), float(mean.max())],
            std=[float(std.min()), float(std.max())],
        )

    def save(self, folder: Path) -> None:
        (Path(folder) / PROFILE_NAME).write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, folder: Path) -> InputProfile | None:
        """The profile kept in a run folder; None for runs trained before medad kept one."""
        path = Path(folder) / PROFILE_NAME
        if not path.is_file():
            return None
        try:
            return cls(**json.loads(path.read_text()))
        except (ValueError, TypeError) as exc:
            raise MedadError(f"{path}: not a medad input profile ({exc})") from None

    def differences(self, source_shape: tuple[int, int, int], image: np.ndarray) -> list[str]:
        """How one input differs from the training images: its decoded (H, W, C) and its
        preprocessed uint8 image [C, S, S]; an empty list when it does not."""
        h, w, c = (int(v) for v in source_shape)
        out = []
        if self.channels and c not in self.channels:
            seen = " or ".join(str(v) for v in self.channels)
            out.append(f"{c} channel(s), training images had {seen}")
        for name, value, span in (("height", h, self.height), ("width", w, self.width)):
            if span is not None and not span[0] / SIZE_FACTOR <= value <= span[1] * SIZE_FACTOR:
                out.append(f"{name} {value} px, training images had {span[0]}..{span[1]}")
        mean, std = (float(v[0]) for v in _intensity(image[None]))
        for name, value, span in (("mean intensity", mean, self.mean), ("contrast", std, self.std)):
            margin = max(INTENSITY_MARGIN * (span[1] - span[0]), MIN_INTENSITY_MARGIN)
            if not span[0] - margin <= value <= span[1] + margin:
                out.append(f"{name} {value:.3f}, training images had {span[0]:.3f}..{span[1]:.3f}")
        return out
