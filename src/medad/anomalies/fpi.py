"""FPI: foreign patch interpolation.

Tan et al., "Detecting Outliers with Foreign Patch Interpolation", MELBA 2022 (the method of
the MICCAI MOOD 2020 challenge entry). A square patch of another normal image is linearly
interpolated into the image with a factor alpha, and the network regresses alpha per pixel:
``out = (1 - alpha) * image + alpha * source`` inside the patch, label ``alpha`` there.

As in the authors' code, pixels where image and source agree (e.g. shared black background)
are not changed and carry label 0.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medad.anomalies._imageops import (
    Box,
    as_boxes,
    as_image,
    as_partner,
    box_sums,
    finish_label,
    gray,
    pick_position,
    settle,
)


def _patch_side(
    shape: tuple[int, ...],
    rng: np.random.Generator,
    width_range: tuple[float, float],
    min_size: int,
) -> int:
    """Side of an FPI/PII square: uniform in `width_range` times the shorter image side."""
    height, width = shape[:2]
    side_lo = max(min_size, round(width_range[0] * min(height, width)))
    side_hi = max(side_lo, round(width_range[1] * min(height, width)))
    return min(int(rng.integers(side_lo, side_hi + 1)), height, width)


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
    side = _patch_side(shape, rng, width_range, min_size)
    starts, sizes = [], []
    for dim in shape[:2]:
        lo = int((1 - core) * dim / 2)
        centre = int(rng.integers(lo, max(lo + 1, int((1 + core) * dim / 2))))
        start = int(np.clip(centre - side // 2, 0, dim - min_size))
        stop = min(dim, max(start + min_size, centre - side // 2 + side))
        starts.append(start)
        sizes.append(stop - start)
    return Box(starts[0], starts[1], sizes[0], sizes[1])


def sample_interpolation_boxes(
    source: np.ndarray,
    rng: np.random.Generator,
    *,
    max_patches: int = 1,
    width_range: tuple[float, float] = (0.1, 0.4),
    core: float = 0.8,
    object_threshold: float | None = None,
    min_object: float = 0.0,
    min_size: int = 3,
) -> list[Box]:
    """The patches of one FPI/PII example.

    The first patch always, each further one (up to `max_patches`) with probability 1/2, as in
    NSA's ``patch_ex``, which MedIAnomaly's FPI and PII runs use. With ``object_threshold=None``
    each box is `sample_interpolation_box`. Otherwise a box is a square of the same side
    distribution lying fully inside the image, placed uniformly among the positions where more
    than `min_object` of the source patch is object (grayscale above `object_threshold`), so
    patches of dark background are not drawn; a patch with no such position is skipped, and the
    list may then be empty.
    """
    count = 1 + int(np.sum(rng.random(max(0, max_patches - 1)) < 0.5))
    if object_threshold is None:
        return [
            sample_interpolation_box(
                source.shape, rng, width_range=width_range, core=core, min_size=min_size
            )
            for _ in range(count)
        ]
    objects = gray(source) > object_threshold
    boxes = []
    for _ in range(count):
        side = _patch_side(source.shape, rng, width_range, min_size)
        corner = pick_position(rng, box_sums(objects, side, side) > min_object * side * side)
        if corner is not None:
            boxes.append(Box(corner[0], corner[1], side, side))
    return boxes


def interpolate_patch(
    image: np.ndarray,
    source: np.ndarray,
    box: Box | Sequence[Box],
    alpha: float,
    *,
    tol: float = 1e-6,
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Deterministic core of FPI: blend `source` into `image` with factor `alpha` inside `box`.

    Several boxes are blended one after the other with the same alpha (an overlap is blended
    twice); the label is alpha on every changed pixel of their union.
    """
    img = as_image(image)
    src = as_partner(source, img, "source", "fpi")
    out = img.copy()
    label = np.zeros(img.shape[:2])
    for b in as_boxes(box):
        sl = b.slices
        out[sl] = (1 - alpha) * out[sl] + alpha * src[sl]
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
    max_patches: int = 1,
    object_threshold: float | None = None,
    min_object: float = 0.0,
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
        core: the patch centre is drawn from this central fraction of each axis (reference: 0.8);
            not used when patches are placed on the object.
        max_patches: at most this many patches sharing one alpha (Tan et al.: 1; MedIAnomaly,
            through NSA's code: 3), see `sample_interpolation_boxes`.
        object_threshold: None places patches anywhere; a grayscale level places them where more
            than `min_object` of the source patch lies above it (MedIAnomaly: 20 of 255, 0.7).
        min_object: see `object_threshold`.
        tol: smallest change (any channel) that counts as modified; labels are 0 elsewhere
            (MedIAnomaly: 1 grey level of 255).

    Returns:
        The anomalous image (float32, same shape) and the label, alpha on changed patch pixels.
    """
    return blend_foreign_patches(
        "fpi",
        functools.partial(interpolate_patch, tol=tol),
        image,
        rng,
        source,
        alpha_range,
        max_patches=max_patches,
        width_range=width_range,
        core=core,
        object_threshold=object_threshold,
        min_object=min_object,
    )


def blend_foreign_patches(
    name: str,
    blend: Callable[..., tuple[NDArray[np.float32], NDArray[np.float32]]],
    image: np.ndarray,
    rng: np.random.Generator,
    source: np.ndarray | None,
    alpha_range: tuple[float, float],
    **placement: Any,
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """The shared body of FPI and PII: check the images, draw the patches
    (`sample_interpolation_boxes` with `placement`), then alpha, and `blend(image, source,
    boxes, alpha)` (`interpolate_patch` or `medad.anomalies.poisson.poisson_interpolate_patch`)."""
    img = as_image(image)
    src = as_partner(source, img, "source", name)
    boxes = sample_interpolation_boxes(src, rng, **placement)
    alpha = float(rng.uniform(*alpha_range))
    return blend(img, src, boxes, alpha)
