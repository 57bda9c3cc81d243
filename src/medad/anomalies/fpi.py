"""FPI: foreign patch interpolation.

Tan et al., "Detecting Outliers with Foreign Patch Interpolation", MELBA 2022 (the method of
the MICCAI MOOD 2020 challenge entry). A square patch of another normal image is linearly
interpolated into the image with a factor alpha, and the network regresses alpha per pixel:
``out = (1 - alpha) * image + alpha * source`` inside the patch, label ``alpha`` there.

As in the authors' code, pixels where image and source agree (e.g. shared black background)
are not changed and carry label 0.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from medad.anomalies._imageops import Box, as_image, as_partner, finish_label, settle


def sample_interpolation_box(
    shape: tuple[int, ...],
    rng: np.random.Generator,
    *,
    width_range: tuple[float, float] = (0.1, 0.4),
    core: float = 0.8,
    min_size: int = 3,
) -> Box:
    """The patch of FPI and PII: a square, centre in the central `core` part, clipped to the image.

    The side is drawn uniformly from `width_range` times the shorter image side and the centre
    uniformly from the central 80 % of each axis; the box is then clipped at the image border,
    so boxes near the edge are rectangles (FPI/PII reference code: half-width 5-20 % of the side).
    """
    height, width = shape[:2]
    side_lo = max(min_size, round(width_range[0] * min(height, width)))
    side_hi = max(side_lo, round(width_range[1] * min(height, width)))
    side = int(rng.integers(side_lo, side_hi + 1))
    starts, sizes = [], []
    for dim in (height, width):
        lo = int((1 - core) * dim / 2)
        centre = int(rng.integers(lo, max(lo + 1, int((1 + core) * dim / 2))))
        start = int(np.clip(centre - side // 2, 0, dim - min_size))
        stop = min(dim, max(start + min_size, centre - side // 2 + side))
        starts.append(start)
        sizes.append(stop - start)
    return Box(starts[0], starts[1], sizes[0], sizes[1])


def interpolate_patch(
    image: np.ndarray, source: np.ndarray, box: Box, alpha: float, *, tol: float = 1e-6
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Deterministic core of FPI: blend `source` into `image` with factor `alpha` inside `box`."""
    img = as_image(image)
    src = as_partner(source, img, "source", "fpi")
    out = img.copy()
    sl = box.slices
    out[sl] = (1 - alpha) * img[sl] + alpha * src[sl]
    label = np.zeros(img.shape[:2])
    label[sl] = alpha
    out32, changed = settle(img, out, tol)
    return out32, finish_label(label, changed)


def fpi(
    image: np.ndarray,
    rng: np.random.Generator,
    *,
    source: np.ndarray | None = None,
    alpha_range: tuple[float, float] = (0.0, 1.0),
    width_range: tuple[float, float] = (0.1, 0.4),
    core: float = 0.8,
    tol: float = 1e-6,
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Foreign patch interpolation (Tan et al. 2020): continuous label alpha ~ U(alpha_range).

    Args:
        image: float image in [0, 1], (H, W) or (H, W, C).
        rng: the only source of randomness.
        source: another normal image of the same shape (required).
        alpha_range: range of the uniform interpolation factor (paper: U(0, 1); the authors'
            code uses (0.05, 0.95)).
        width_range: patch side as a fraction of the shorter image side (reference code: 0.1-0.4).
        core: the patch centre is drawn from this central fraction of each axis (reference: 0.8).
        tol: smallest change (any channel) that counts as modified.

    Returns:
        The anomalous image (float32, same shape) and the label, alpha on changed patch pixels.
    """
    img = as_image(image)
    src = as_partner(source, img, "source", "fpi")
    box = sample_interpolation_box(img.shape, rng, width_range=width_range, core=core)
    alpha = float(rng.uniform(*alpha_range))
    return interpolate_patch(img, src, box, alpha, tol=tol)
