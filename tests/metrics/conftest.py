"""Random anomaly maps with planted lesions, shared by the metric tests."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from scipy import ndimage

MapsAndMasks = tuple[np.ndarray, np.ndarray]


def lesion_maps(
    seed: int,
    n_images: int = 4,
    size: int = 12,
    decimals: int | None = 1,
    lesion_fraction: float = 0.5,
) -> MapsAndMasks:
    """Maps [n, size, size] and bool masks: the first image and about `lesion_fraction` of the
    others carry 1-3 rectangular lesions, the rest are normal (empty masks).

    Maps are blurred masks plus noise, rounded to `decimals` (None: no rounding) for ties.
    """
    rng = np.random.default_rng(seed)
    masks = np.zeros((n_images, size, size), dtype=bool)
    for image in range(n_images):
        if image > 0 and rng.random() >= lesion_fraction:
            continue
        for _ in range(rng.integers(1, 4)):
            top, left = rng.integers(0, size - 2, size=2)
            height, width = rng.integers(1, max(2, size // 3), size=2)
            masks[image, top : top + height, left : left + width] = True
    maps = ndimage.gaussian_filter(masks.astype(float), sigma=(0, 1, 1))
    maps += rng.normal(0.0, 0.25, size=maps.shape)
    if decimals is not None:
        maps = maps.round(decimals)
    return maps, masks


@pytest.fixture
def make_maps() -> Callable[..., MapsAndMasks]:
    """Factory for `lesion_maps` (seeded, deterministic)."""
    return lesion_maps
