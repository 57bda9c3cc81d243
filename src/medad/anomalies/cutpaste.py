"""CutPaste: cut a patch of the image and paste it elsewhere in the same image.

Li, Sohn, Yoon, Pfister, "CutPaste: Self-Supervised Learning for Anomaly Detection and
Localization", CVPR 2021, Sec. 3.1. Two variants, and the form MedIAnomaly's one-stage code uses:

* ``cutpaste``: a rectangle of 2-15 % of the image area, aspect ratio log-uniform in
  [0.3, 1/0.3], colour-jittered and pasted at a uniformly random position;
* ``cutpaste_scar``: a thin rectangle (width 2-16 px, length 10-25 px on the paper's 256 px
  images, scaled here to the image size), colour-jittered, rotated by U(-45, 45) degrees;
* ``cutpaste_shift``: MedIAnomaly's one-stage CutPaste (``train_med.py``, setting ``CutPaste``:
  NSA's ``patch_ex`` with ``same=True, shift=True, resize=False, mode='swap'``): up to three
  patches of NSA's size distribution, each cut from the object of the image itself and pasted
  unchanged (no jitter, no blending) at another place on the object. NSA's mode is called
  "swap" but the source region is left as it was: the patch is copied, not exchanged.

The label (used by the one-stage, pixel-level variant in medad) is 1 on pasted pixels whose value
changed and 0 elsewhere; pasting background onto identical background is no anomaly.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from medad.anomalies._imageops import (
    as_image,
    channels_last,
    colour_jitter,
    finish_label,
    gray,
    random_box,
    sample_patch_size,
    settle,
)
from medad.anomalies.poisson import sample_nsa_patches

#: Image side (px) the paper's scar sizes refer to (CutPaste trains on 256 x 256 MVTec images).
SCAR_REFERENCE_SIZE = 256


def cutpaste(
    image: np.ndarray,
    rng: np.random.Generator,
    *,
    source: np.ndarray | None = None,
    area_ratio: tuple[float, float] = (0.02, 0.15),
    aspect_ratio: float = 0.3,
    jitter: float = 0.1,
    tol: float = 1e-6,
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Paste a colour-jittered rectangle of the image at another random place (Li et al. 2021).

    Args:
        image: float image in [0, 1], (H, W) or (H, W, C).
        rng: the only source of randomness.
        source: unused (CutPaste takes its patch from the image itself); accepted so every
            generator has the same signature.
        area_ratio: patch area as a fraction of the image area, drawn uniformly (paper: 0.02-0.15).
        aspect_ratio: r; the patch aspect ratio is log-uniform in [r, 1/r] (paper: 0.3).
        jitter: colour-jitter strength for brightness/contrast/saturation/hue (paper: 0.1).
        tol: smallest change (any channel) that counts as modified.

    Returns:
        The anomalous image (float32, same shape) and the binary label (float32, (H, W)).
    """
    del source
    img = as_image(image)
    h, w = sample_patch_size(rng, img.shape, area_ratio, aspect_ratio)
    cut = random_box(rng, img.shape, h, w)
    patch = colour_jitter(img[cut.slices], rng, jitter)
    paste = random_box(rng, img.shape, h, w)
    out = img.copy()
    out[paste.slices] = patch
    label = np.zeros(img.shape[:2])
    label[paste.slices] = 1.0
    out32, changed = settle(img, out, tol)
    return out32, finish_label(label, changed)


def cutpaste_scar(
    image: np.ndarray,
    rng: np.random.Generator,
    *,
    source: np.ndarray | None = None,
    width: tuple[float, float] = (2.0, 16.0),
    length: tuple[float, float] = (10.0, 25.0),
    rotation: tuple[float, float] = (-45.0, 45.0),
    reference_size: int = SCAR_REFERENCE_SIZE,
    jitter: float = 0.1,
    tol: float = 1e-6,
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Paste a thin, rotated, colour-jittered strip of the image elsewhere (CutPaste-Scar).

    The strip is cut axis-aligned (``length`` rows by ``width`` columns), rotated by an angle
    drawn from ``rotation`` (degrees) about its centre and pasted, bilinearly resampled, at a
    random position where it fits entirely. Sizes are in pixels of a ``reference_size`` image
    and scale with the shorter image side (Li et al. 2021, Sec. 3.1, on 256 px images).

    Args:
        image: float image in [0, 1], (H, W) or (H, W, C).
        rng: the only source of randomness.
        source: unused; accepted for the common generator signature.
        width: strip width range in reference pixels (paper: 2-16).
        length: strip length range in reference pixels (paper: 10-25).
        rotation: rotation range in degrees (paper: -45..45).
        reference_size: image side the pixel sizes refer to.
        jitter: colour-jitter strength (paper: 0.1).
        tol: smallest change (any channel) that counts as modified.

    Returns:
        The anomalous image (float32, same shape) and the binary label (float32, (H, W)).
    """
    del source
    img = as_image(image)
    height, width_px = img.shape[:2]
    scale = min(height, width_px) / reference_size
    strip_w = max(1.0, rng.uniform(*width) * scale)
    strip_l = max(2.0, rng.uniform(*length) * scale)
    theta = np.deg2rad(rng.uniform(*rotation))
    cos, sin = abs(np.cos(theta)), abs(np.sin(theta))
    # Shrink a strip whose rotated bounding box would not fit (only on tiny images).
    fit = min(
        1.0, height / (strip_l * cos + strip_w * sin), width_px / (strip_w * cos + strip_l * sin)
    )
    strip_w, strip_l = max(1.0, strip_w * fit), max(1.0, strip_l * fit)

    cut_h, cut_w = min(int(np.ceil(strip_l)), height), min(int(np.ceil(strip_w)), width_px)
    cut = random_box(rng, img.shape, cut_h, cut_w)
    patch = channels_last(colour_jitter(img[cut.slices], rng, jitter))

    # Half extents of the rotated strip; pixel centres sit on integers, the image spans
    # [-0.5, size - 0.5], so the centre is drawn where the whole strip stays inside.
    ext_y = 0.5 * (strip_l * cos + strip_w * sin)
    ext_x = 0.5 * (strip_w * cos + strip_l * sin)
    cy = rng.uniform(ext_y - 0.5, max(ext_y - 0.5, height - 0.5 - ext_y))
    cx = rng.uniform(ext_x - 0.5, max(ext_x - 0.5, width_px - 0.5 - ext_x))

    y0, y1 = max(0, int(np.floor(cy - ext_y))), min(height, int(np.ceil(cy + ext_y)) + 1)
    x0, x1 = max(0, int(np.floor(cx - ext_x))), min(width_px, int(np.ceil(cx + ext_x)) + 1)
    dy, dx = np.meshgrid(np.arange(y0, y1) - cy, np.arange(x0, x1) - cx, indexing="ij")
    # Inverse rotation: destination offset -> coordinates in the unrotated strip frame.
    c, s = np.cos(theta), np.sin(theta)
    u_row = c * dy + s * dx
    u_col = -s * dy + c * dx
    inside = (np.abs(u_row) <= strip_l / 2) & (np.abs(u_col) <= strip_w / 2)
    coords = np.stack([u_row + (cut_h - 1) / 2, u_col + (cut_w - 1) / 2])
    sampled = np.stack(
        [
            ndimage.map_coordinates(patch[..., k], coords, order=1, mode="nearest")
            for k in range(patch.shape[-1])
        ],
        axis=-1,
    )
    out = channels_last(img.copy())
    region = out[y0:y1, x0:x1]
    region[inside] = sampled[inside]
    out = out[..., 0] if img.ndim == 2 else out
    label = np.zeros(img.shape[:2])
    label[y0:y1, x0:x1] = inside
    out32, changed = settle(img, out, tol)
    return out32, finish_label(label, changed)


def cutpaste_shift(
    image: np.ndarray,
    rng: np.random.Generator,
    *,
    source: np.ndarray | None = None,
    max_patches: int = 3,
    width_bounds: tuple[float, float] = (0.03, 0.4),
    width_gamma: tuple[float, float, float] = (2.0, 0.03, 0.05),
    half_widths: bool = True,
    object_threshold: float | None = 20 / 255,
    min_object: float = 0.7,
    min_overlap: float = 0.7,
    tol: float = 1 / 255,
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Copy up to `max_patches` patches of the image to other places on its object (MedIAnomaly).

    The patches are NSA's (`medad.anomalies.poisson.sample_nsa_patches` on the image itself,
    without resizing); the defaults are MedIAnomaly's ``train_med.py`` values (half-widths
    0.05 + Gamma(2, 0.03) of the side within 3-40 %, object above 20 grey levels, 70 % object in
    the source patch and 70 % overlap at the target). As in ``patch_ex``'s ``swap`` mode, a patch
    replaces the target pixels where the source or the target is object (background pasted onto
    background is not copied). Label 1 where some channel moved by more than `tol` (the study:
    1 grey level), 0 elsewhere.

    Args:
        image: float image in [0, 1], (H, W) or (H, W, C).
        rng: the only source of randomness.
        source: unused (the patches come from the image itself); accepted for the common
            signature.
        max_patches, width_bounds, width_gamma, half_widths, object_threshold, min_object,
            min_overlap: patch count, size and placement, see `sample_nsa_patches`.
        tol: smallest change (any channel) that counts as modified.

    Returns:
        The anomalous image (float32, same shape) and the binary label (float32, (H, W)); an
        image without object (or without a valid place) is returned unchanged.
    """
    del source
    img = as_image(image)
    patches = sample_nsa_patches(
        img,
        img,
        rng,
        max_patches=max_patches,
        width_bounds=width_bounds,
        width_gamma=width_gamma,
        half_widths=half_widths,
        resize_bounds=None,
        object_threshold=object_threshold,
        min_object=min_object,
        min_overlap=min_overlap,
    )
    shape = img.shape[:2]
    objects = np.ones(shape, bool) if object_threshold is None else gray(img) > object_threshold
    out = img.copy()
    label = np.zeros(shape)
    for patch in patches:
        src, dst = patch.source_box.slices, patch.target_box.slices
        copied = objects[src] | objects[dst]
        out[dst][copied] = img[src][copied]
        label[dst][copied] = 1.0
    out32, changed = settle(img, out, tol)
    return out32, finish_label(label, changed)
