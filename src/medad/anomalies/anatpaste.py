"""AnatPaste: CutPaste restricted to the anatomy, with soft edges.

Sato, Suzuki, Wataya, et al., "Anatomy-aware self-supervised learning for anomaly detection in
chest radiographs", iScience 2023, doi:10.1016/j.isci.2023.107086 (arXiv:2205.04282).

A CutPaste patch (Li et al. 2021) is pasted centred on a random foreground pixel, through a
rectangle- or ellipse-shaped mask that is Gaussian-blurred, scaled by a random weight and
multiplied by the foreground mask, so the anomaly only appears inside the anatomy and blends
smoothly:

    alpha = weight * blur(shape) * foreground,   out = (1 - alpha) * image + alpha * patch.

The foreground (`foreground_mask`) is by default the authors' lung segmentation, which
MedIAnomaly's two-stage code (``ssl/two_stage/anatpaste.py``, ``LungSegment``) applies to every
dataset: the dark class of an Otsu threshold (without pure black pixels), opened with a 3 x 3
square, minus the regions touching the image border (the air around the body), dilated with a
3 x 3 square, without regions smaller than 400 px of a 256 px image: on a chest X-ray, the lungs.
Deviations: no CLAHE before the threshold (the authors equalise with ``equalize_adapthist``, clip
0.01), 8-connected regions removed exactly (the authors blank a small region's bounding box).
``foreground="bright"`` (the bright Otsu class: body vs air, e.g. brain tissue) and ``"dark"``
(the whole dark class) are alternatives. An image whose foreground is empty gets the patch
anywhere, as in the authors' code. Label: the blending weight alpha on changed pixels, a
continuous label like FPI's.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from medad.anomalies._imageops import (
    as_image,
    colour_jitter,
    finish_label,
    gray,
    random_box,
    sample_patch_size,
    settle,
)
from medad.errors import MedadError

#: Image side (px) the paper's margin and blur sizes refer to (AnatPaste trains on 256 px CXRs).
ANATPASTE_REFERENCE_SIZE = 256

#: Foreground rules of `foreground_mask`.
Foreground = Literal["dark-inner", "bright", "dark"]
FOREGROUNDS: tuple[str, ...] = ("dark-inner", "bright", "dark")

#: Smallest region (px of a 256 px image) the authors' lung segmentation keeps (``LungSegment``).
MIN_REGION_AREA = 400


def otsu_threshold(values: np.ndarray, nbins: int = 256) -> float:
    """Otsu's threshold (Otsu 1979): the split of a histogram maximising between-class variance.

    Values are binned into `nbins` equal bins over [min, max]; every split between bins is scored
    by ``w0 * w1 * (mu0 - mu1)^2`` with the exact class means. Returns the largest value of the
    lower class, so ``values > threshold`` is the upper class; a constant input returns its value.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    lo, hi = float(v.min()), float(v.max())
    if hi <= lo:
        return lo
    bins = np.minimum(((v - lo) / (hi - lo) * nbins).astype(np.int64), nbins - 1)
    counts = np.bincount(bins, minlength=nbins).astype(np.float64)
    sums = np.bincount(bins, weights=v, minlength=nbins)
    w0, s0 = np.cumsum(counts)[:-1], np.cumsum(sums)[:-1]
    w1, s1 = v.size - w0, sums.sum() - s0
    valid = (w0 > 0) & (w1 > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        between = np.where(valid, w0 * w1 * (s0 / w0 - s1 / w1) ** 2, -1.0)
    split = int(np.argmax(between))
    return float(v[bins <= split].max())


def foreground_mask(
    image: np.ndarray,
    polarity: Foreground = "dark-inner",
    *,
    reference_size: int = ANATPASTE_REFERENCE_SIZE,
) -> NDArray[np.bool_]:
    """Where AnatPaste may paste, from an Otsu threshold of the image's grayscale.

    ``dark-inner``: the authors' lung segmentation (module docstring): dark class, opened, minus
    regions touching the border, dilated, regions under `MIN_REGION_AREA` px (of a
    `reference_size` image) dropped; ``bright``: the bright class; ``dark``: the dark class.
    """
    g = gray(np.asarray(image, dtype=np.float64))
    t = otsu_threshold(g)
    if polarity == "bright":
        return g > t
    if polarity == "dark":
        return g <= t
    if polarity != "dark-inner":
        raise MedadError(f"`foreground` must be one of {', '.join(FOREGROUNDS)}; got {polarity!r}.")
    square = np.ones((3, 3), dtype=bool)
    dark = ndimage.binary_opening((g <= t) & (g > 0), structure=square)
    regions, _ = ndimage.label(dark, structure=square)
    border = np.unique(np.concatenate([regions[0], regions[-1], regions[:, 0], regions[:, -1]]))
    inner = ndimage.binary_dilation(dark & ~np.isin(regions, border), structure=square)
    regions, n = ndimage.label(inner, structure=square)
    area = np.bincount(regions.ravel(), minlength=n + 1)
    min_area = MIN_REGION_AREA * (min(g.shape) / reference_size) ** 2
    keep = area >= min_area
    keep[0] = False
    return keep[regions]


def anatpaste(
    image: np.ndarray,
    rng: np.random.Generator,
    *,
    source: np.ndarray | None = None,
    area_ratio: tuple[float, float] = (0.02, 0.15),
    aspect_ratio: float = 0.3,
    weight_range: tuple[float, float] = (150 / 255, 1.0),
    blur_range: tuple[float, float] = (0.0, 15.0),
    margin: float = 10.0,
    reference_size: int = ANATPASTE_REFERENCE_SIZE,
    jitter: float = 0.1,
    foreground: Foreground = "dark-inner",
    tol: float = 1e-6,
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Paste a soft-edged CutPaste patch inside the Otsu foreground (Sato et al. 2023).

    Args:
        image: float image in [0, 1], (H, W) or (H, W, C).
        rng: the only source of randomness.
        source: unused (the patch comes from the image itself); accepted for the common signature.
        area_ratio, aspect_ratio: CutPaste patch size rule (0.02-0.15, 0.3).
        weight_range: the mask weight is U(weight_range) (reference code: 150-255 of 255).
        blur_range: Gaussian blur sigma range in reference pixels (reference code: 0-15).
        margin: the rectangle/ellipse is this many reference pixels inside the patch on each side,
            so the blurred edge stays within the patch (reference code: 10; at least 1 px remains).
        reference_size: image side the pixel sizes refer to; they scale with the shorter side.
        jitter: colour-jitter strength of the patch (CutPaste: 0.1).
        foreground: where to paste, see `foreground_mask`: 'dark-inner' (the authors' lung
            segmentation, MedIAnomaly's rule on every dataset), 'bright' (body vs air) or 'dark'.
        tol: smallest change (any channel) that counts as modified.

    Returns:
        The anomalous image (float32, same shape) and the label alpha (float32, (H, W)), zero
        outside the foreground (the whole image when the foreground is empty).
    """
    del source
    img = as_image(image)
    height, width = img.shape[:2]
    fg = foreground_mask(img, foreground, reference_size=reference_size)
    if not fg.any():  # the authors' code then pastes anywhere
        fg = np.ones_like(fg)
    h, w = sample_patch_size(rng, img.shape, area_ratio, aspect_ratio)
    cut = random_box(rng, img.shape, h, w)
    patch = colour_jitter(img[cut.slices], rng, jitter)
    fg_pixels = np.flatnonzero(fg)
    cy, cx = np.unravel_index(fg_pixels[rng.integers(fg_pixels.size)], fg.shape)

    # The patch, centred on (cy, cx) and cropped by the image border.
    top, left = int(cy) - h // 2, int(cx) - w // 2
    r0, r1 = max(0, top), min(height, top + h)
    c0, c1 = max(0, left), min(width, left + w)
    canvas = img.copy()
    canvas[r0:r1, c0:c1] = patch[r0 - top : r1 - top, c0 - left : c1 - left]
    inside_patch = np.zeros((height, width))
    inside_patch[r0:r1, c0:c1] = 1.0

    scale = min(height, width) / reference_size
    half_h, half_w = max(1.0, h / 2 - margin * scale), max(1.0, w / 2 - margin * scale)
    dy, dx = np.meshgrid(np.arange(height) - cy, np.arange(width) - cx, indexing="ij")
    if rng.random() < 0.5:
        shape = (dy / half_h) ** 2 + (dx / half_w) ** 2 <= 1.0
    else:
        shape = (np.abs(dy) <= half_h) & (np.abs(dx) <= half_w)
    sigma = rng.uniform(*blur_range) * scale
    soft = ndimage.gaussian_filter(shape.astype(np.float64), sigma) if sigma > 0 else shape
    alpha = rng.uniform(*weight_range) * soft * fg * inside_patch

    a = alpha if img.ndim == 2 else alpha[..., None]
    out = (1 - a) * img + a * canvas
    out32, changed = settle(img, out, tol)
    return out32, finish_label(alpha, changed)
