"""Poisson blending of foreign patches: PII and NSA.

Both generators paste a patch with seamless (Poisson) cloning (Pérez, Gangnet, Blake, "Poisson
Image Editing", SIGGRAPH 2003): inside a rectangle the output f solves the discrete Poisson
equation ``Δf = div v`` with the original image as Dirichlet boundary on the rectangle's outer
ring. The guidance field v lives on the edges between 4-neighbours p, q: with target image x and
source patch s,

    a = w_x (x_q - x_p),  b = w_s (s_q - s_p),  m_pq = a if |a| > |b| else b,
    v_pq = (1 - mix) (x_q - x_p) + mix m_pq

(the *mixed-gradient* rule of Pérez et al., weighted, then mixed with the image's own gradient
by `mix`, 1 unless stated), and ``div v(p) = Σ_q v_pq``, so the
5-point Laplacian of the output equals ``div v`` at every interior pixel. Each channel is solved
on its own. The linear system (a 5-point Laplacian on the interior grid) is factorised once per
patch size with SuperLU and cached.

* PII (Tan et al., "Detecting Outliers with Poisson Image Interpolation", MICCAI 2021): the
  source patch comes from the same location of another image; label alpha on the pixels that
  changed (the change is not linear in alpha, but alpha is what the method regresses). Two
  guidance rules, `PII_BLENDS`:

  - ``blend="mixed"`` (the `pii` method's default), MedIAnomaly's PII (its ``FPI-Poisson``
    setting: NSA's ``patch_ex`` with ``cv2.MIXED_CLONE`` and a mask of value ceil(255 alpha)).
    OpenCV's ``seamlessClone`` keeps, per pixel, the stronger of the patch's and the
    destination's gradients, multiplies it by the mask / 255 = alpha and adds the destination's
    gradient times (1 - alpha) (its ``evaluate`` step, the inverted mask). So the guidance is
    ``(1 - alpha) dx + alpha * (ds if |ds| > |dx| else dx)``: weights w_x = w_s = 1 in the
    choice, then `mix` = alpha. The change grows with alpha (none at 0, NSA's clone at 1).
    Deviations: OpenCV compares |d_x - d_y| of the two images per pixel where medad compares
    the two differences per edge (Pérez et al.'s rule), and it erodes the mask by 3 px and
    zeroes its border, so its blended region is 4 px smaller on each side of the box;
  - ``blend="interpolated"`` (the generator's default), Tan et al.'s interpolated mixed
    gradient: ``w_x = 1 - alpha``, ``w_s = alpha``, the larger of the two weighted differences
    (the authors' code), `mix` = 1.
* NSA (Schlüter, Tan, Hou, Kainz, "Natural Synthetic Anomalies for Self-Supervised Anomaly
  Detection and Localization", ECCV 2022): 1-3 patches, each resized and moved to another place,
  cloned with plain mixed gradients (``w_x = w_s = 1``); label a logistic function of the
  intensity change.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from medad.anomalies._imageops import (
    Box,
    as_boxes,
    as_image,
    as_partner,
    box_sums,
    channels_last,
    finish_label,
    gray,
    pick_position,
    resize,
    settle,
)
from medad.anomalies.fpi import blend_foreign_patches
from medad.errors import MedadError

if TYPE_CHECKING:
    from scipy.sparse import linalg as sparse_linalg

_NEIGHBOURS = ((-1, 0), (1, 0), (0, -1), (0, 1))

#: PII guidance-weight rules, see `poisson_interpolate_patch`.
PII_BLENDS = ("interpolated", "mixed")


@lru_cache(maxsize=128)
def _laplacian_lu(rows: int, cols: int) -> sparse_linalg.SuperLU:
    """LU factors of the negative 5-point Laplacian on a rows x cols grid, Dirichlet outside."""
    from scipy import sparse  # lazy: `medad methods` must not pay for SciPy's sparse solvers
    from scipy.sparse import linalg as sparse_linalg

    def second_difference(n: int) -> sparse.csc_matrix:
        return sparse.diags([-np.ones(n - 1), 2 * np.ones(n), -np.ones(n - 1)], [-1, 0, 1])

    matrix = sparse.kron(second_difference(rows), sparse.identity(cols)) + sparse.kron(
        sparse.identity(rows), second_difference(cols)
    )
    return sparse_linalg.splu(sparse.csc_matrix(matrix))


def guidance_divergence(
    target: np.ndarray,
    source: np.ndarray,
    target_weight: float,
    source_weight: float,
    *,
    mix: float = 1.0,
) -> NDArray[np.float64]:
    """Divergence of the weighted mixed-gradient guidance field at the interior pixels.

    Args:
        target, source: (h, w) or (h, w, C) patches of equal shape, h, w >= 3.
        target_weight, source_weight: the weights w_x, w_s of the module docstring.
        mix: share of the mixed field in the guidance, the rest being the target's own gradient
            (OpenCV's mask value / 255; MedIAnomaly's PII: alpha).

    Returns:
        ``div v`` of shape (h - 2, w - 2) or (h - 2, w - 2, C).
    """
    t = np.asarray(target, dtype=np.float64)
    s = np.asarray(source, dtype=np.float64)
    h, w = t.shape[:2]
    centre_t, centre_s = t[1:-1, 1:-1], s[1:-1, 1:-1]
    div = np.zeros_like(centre_t)
    for dy, dx in _NEIGHBOURS:
        rows, cols = slice(1 + dy, h - 1 + dy), slice(1 + dx, w - 1 + dx)
        own = t[rows, cols] - centre_t
        a = target_weight * own
        b = source_weight * (s[rows, cols] - centre_s)
        div += (1 - mix) * own + mix * np.where(np.abs(a) > np.abs(b), a, b)
    return div


def poisson_blend(
    target: np.ndarray,
    source: np.ndarray,
    target_weight: float,
    source_weight: float,
    *,
    mix: float = 1.0,
) -> NDArray[np.float64]:
    """Solve ``Δf = div v`` inside a patch, with f = `target` on the patch's outer ring.

    Args:
        target: the image patch being modified, (h, w) or (h, w, C), h, w >= 3.
        source: the foreign patch, same shape.
        target_weight, source_weight: guidance weights (PII: 1 - alpha, alpha; NSA: 1, 1).
        mix: share of the mixed field in the guidance (`guidance_divergence`).

    Returns:
        The blended patch in float64, not clipped; its ring equals `target`.
    """
    t = np.asarray(target, dtype=np.float64)
    if t.shape != np.shape(source):
        raise MedadError(
            f"Poisson blending needs equal patch shapes; got {t.shape}, {np.shape(source)}."
        )
    h, w = t.shape[:2]
    if h < 3 or w < 3:
        raise MedadError(f"Poisson blending needs a patch of at least 3 x 3 pixels; got {h} x {w}.")
    planes = channels_last(t)
    rhs = -channels_last(guidance_divergence(t, source, target_weight, source_weight, mix=mix))
    # Known ring values move to the right-hand side (the matrix is 4 f_p - sum of interior f_q).
    rhs[0] += planes[0, 1:-1]
    rhs[-1] += planes[-1, 1:-1]
    rhs[:, 0] += planes[1:-1, 0]
    rhs[:, -1] += planes[1:-1, -1]
    solution = _laplacian_lu(h - 2, w - 2).solve(rhs.reshape((h - 2) * (w - 2), -1))
    out = planes.copy()
    out[1:-1, 1:-1] = solution.reshape(rhs.shape)
    return out[..., 0] if t.ndim == 2 else out


def poisson_interpolate_patch(
    image: np.ndarray,
    source: np.ndarray,
    box: Box | Sequence[Box],
    alpha: float,
    *,
    blend: str = "interpolated",
    tol: float = 1e-6,
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Deterministic core of PII: Poisson-interpolate `source` into `image` inside `box`.

    Several boxes are blended one after the other (each into the result of the previous ones)
    with the same alpha; the label is alpha on every changed pixel of their union. `blend`
    chooses the guidance (module docstring): ``"interpolated"``, weights (1 - alpha, alpha),
    Tan et al.'s PII, or ``"mixed"``, the stronger gradient given weight alpha against the
    image's own, MedIAnomaly's (OpenCV's mixed ``seamlessClone`` with a mask of alpha).
    """
    if blend not in PII_BLENDS:
        raise MedadError(f"pii: unknown blend {blend!r}; use one of {', '.join(PII_BLENDS)}.")
    img = as_image(image)
    src = as_partner(source, img, "source", "pii")
    if blend == "interpolated":
        weights, mix = (1 - alpha, alpha), 1.0
    else:
        weights, mix = (1.0, 1.0), alpha
    out = img.copy()
    label = np.zeros(img.shape[:2])
    for b in as_boxes(box):
        sl = b.slices
        out[sl] = poisson_blend(out[sl], src[sl], *weights, mix=mix)
        label[sl] = alpha
    out32, changed = settle(img, out, tol)
    return out32, finish_label(label, changed)


def pii(
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
    blend: str = "interpolated",
    tol: float = 1e-6,
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Poisson image interpolation (Tan et al. 2021) of a foreign patch, label alpha.

    The patches and alpha are drawn as in FPI (`medad.anomalies.fpi.sample_interpolation_boxes`);
    each patch is blended by `poisson_blend` with weights (1 - alpha, alpha), or, with
    ``blend="mixed"``, by the stronger gradient weighted alpha against the image's own
    (see `poisson_interpolate_patch`).

    Args:
        image: float image in [0, 1], (H, W) or (H, W, C).
        rng: the only source of randomness.
        source: another normal image of the same shape (required).
        alpha_range: range of the uniform interpolation factor (the authors' code: 0.05-0.95).
        width_range: patch side as a fraction of the shorter image side (reference code: 0.1-0.4).
        core: the patch centre is drawn from this central fraction of each axis (when patches
            are not placed on the object).
        max_patches, object_threshold, min_object: number and placement of the patches, as in
            `medad.anomalies.fpi.fpi`.
        blend: ``"interpolated"`` (Tan et al.: gradients weighted 1 - alpha and alpha) or
            ``"mixed"`` (MedIAnomaly's PII runs: OpenCV's mixed cloning with a mask of alpha).
        tol: smallest change (any channel) that counts as modified.

    Returns:
        The anomalous image (float32, same shape) and the label, alpha on changed patch pixels.
    """
    return blend_foreign_patches(
        "pii",
        functools.partial(poisson_interpolate_patch, blend=blend, tol=tol),
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


@dataclass(frozen=True)
class NSAPatch:
    """One NSA patch: cut from `source_box` of the source, resized and cloned into `target_box`."""

    source_box: Box
    target_box: Box


def sample_nsa_patches(
    image: np.ndarray,
    source: np.ndarray,
    rng: np.random.Generator,
    *,
    max_patches: int = 3,
    width_bounds: tuple[float, float] = (0.03, 0.4),
    width_gamma: tuple[float, float, float] = (2.0, 0.05, 0.03),
    half_widths: bool = False,
    resize_bounds: tuple[float, float] | None = (0.7, 1.3),
    object_threshold: float | None = 0.05,
    min_object: float = 0.25,
    min_overlap: float = 0.25,
) -> list[NSAPatch]:
    """Draw NSA's patches (Schlüter et al. 2022, Sec. 3.1 and the reference code).

    * Count: the first patch always, each further one (up to `max_patches`) with probability 1/2.
    * Size: per axis, ``offset + Gamma(shape, scale)`` of the image size, clipped to
      `width_bounds` (and to at least 3 px, the Poisson minimum). `width_gamma` = (shape, scale,
      offset) = (2, 0.05, 0.03) are NSA's numbers; NSA applies them to half-widths, medad (like
      PAPER.md: patch width 3-40 %) to full widths, so patches are mostly small (mode 8 %).
      With ``half_widths=True`` the draw and `width_bounds` are half-widths and the side is
      twice the half-width, as NSA's ``patch_ex`` (and MedIAnomaly's ``train_med.py``) does.
    * Source position: uniform among those where more than `min_object` of the patch is object.
    * Resize: factor N(1, 0.5) clipped to `resize_bounds`, both sides, clipped to `width_bounds`
      read as full widths (as ``patch_ex`` does, also with half-widths); None: no resize (the
      patch keeps its size, nothing is clipped).
    * Target position: uniform among those where the target object covers more than
      `min_overlap` of the (resized) source object pixels.

    Object pixels are those whose grayscale value exceeds `object_threshold` (medical images have
    a dark background; NSA's own object mask is the same thresholding). With
    ``object_threshold=None`` every pixel is object. Patches with no valid position are skipped,
    so the list may be empty on an image without object.
    """
    height, width = image.shape[:2]
    dims = np.array([height, width])
    lo_px = np.maximum(3, np.ceil(width_bounds[0] * dims - 1e-9)).astype(int)
    hi_px = np.maximum(lo_px, np.floor(width_bounds[1] * dims + 1e-9)).astype(int)
    if object_threshold is None:
        src_object = np.ones((height, width), dtype=bool)
        dst_object = src_object
    else:
        src_object = gray(source) > object_threshold
        dst_object = gray(image) > object_threshold

    count = 1 + int(np.sum(rng.random(max(0, max_patches - 1)) < 0.5))
    patches: list[NSAPatch] = []
    for _ in range(count):
        shape, scale, offset = width_gamma
        drawn = np.round((offset + rng.gamma(shape, scale, size=2)) * dims)
        if half_widths:
            half = np.clip(drawn, np.ceil(width_bounds[0] * dims), np.floor(width_bounds[1] * dims))
            size = np.clip(2 * half, 3, dims)
        else:
            size = np.clip(drawn, lo_px, hi_px)
        h, w = int(size[0]), int(size[1])
        corner = pick_position(rng, box_sums(src_object, h, w) > min_object * h * w)
        if corner is None:
            continue
        src_box = Box(corner[0], corner[1], h, w)
        new_h, new_w = h, w
        if resize_bounds is not None:
            factor = float(np.clip(rng.normal(1.0, 0.5), *resize_bounds))
            new_h = int(np.clip(round(factor * h), lo_px[0], hi_px[0]))
            new_w = int(np.clip(round(factor * w), lo_px[1], hi_px[1]))
        patch_object = resize(src_object[src_box.slices].astype(float), new_h, new_w) > 0.5
        n_object = int(patch_object.sum())
        if n_object == 0:
            continue
        from scipy import signal  # lazy: start-up time (cached after the first call)

        overlap = signal.fftconvolve(
            dst_object.astype(float), patch_object[::-1, ::-1].astype(float), mode="valid"
        )
        corner = pick_position(rng, np.rint(overlap) > min_overlap * n_object)
        if corner is None:
            continue
        patches.append(NSAPatch(src_box, Box(corner[0], corner[1], new_h, new_w)))
    return patches


def logistic_label(change: np.ndarray, steepness: float, centre: float) -> NDArray[np.float64]:
    """NSA's logistic intensity label ``1 / (1 + exp(-steepness * (change - centre)))``."""
    return 1.0 / (1.0 + np.exp(-steepness * (np.asarray(change, dtype=np.float64) - centre)))


def nsa(
    image: np.ndarray,
    rng: np.random.Generator,
    *,
    source: np.ndarray | None = None,
    max_patches: int = 3,
    width_bounds: tuple[float, float] = (0.03, 0.4),
    width_gamma: tuple[float, float, float] = (2.0, 0.05, 0.03),
    half_widths: bool = False,
    resize_bounds: tuple[float, float] | None = (0.7, 1.3),
    object_threshold: float | None = 0.05,
    min_object: float = 0.25,
    min_overlap: float = 0.25,
    logistic_steepness: float = 255 / 6,
    logistic_centre: float = 20 / 255,
    tol: float = 1 / 255,
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Natural synthetic anomalies (Schlüter et al. 2022): resized, shifted, mixed Poisson clones.

    Each patch from `sample_nsa_patches` is cut from `source`, resized, and cloned into the
    image with mixed gradients (`poisson_blend` with weights 1, 1), one after the other. The label
    is NSA's "logistic-intensity" label: ``logistic(mean over channels |out - image|)`` on changed
    pixels, 0 elsewhere (NSA additionally median-filters the change; medad does not, so the label
    is an exact function of the change).

    Args:
        image: float image in [0, 1], (H, W) or (H, W, C).
        rng: the only source of randomness.
        source: another normal image of the same shape; None uses the image itself.
        max_patches: at most this many patches (paper: 3).
        width_bounds: patch width bounds as fractions of the image size (3-40 %).
        width_gamma: (shape, scale, offset) of the patch-width distribution, see
            `sample_nsa_patches`.
        half_widths: `width_gamma` and `width_bounds` are half-widths (NSA's code) rather than
            full widths.
        resize_bounds: clip range of the N(1, 0.5) resize factor (NSA code: 0.7-1.3); None:
            no resize.
        object_threshold: grayscale level above which a pixel is object; None: no background.
        min_object: fraction of a source patch that must be object (NSA code: 0.25).
        min_overlap: fraction of the moved object that must land on object (NSA code: 0.25).
        logistic_steepness: k of the logistic label per unit intensity (NSA default k = 1/6 per
            8-bit level, i.e. 255/6).
        logistic_centre: x0 of the logistic label (NSA default 20 levels of 255).
        tol: smallest change that counts as modified (NSA: 1 level of 255); smaller changes are
            reset to the original so that label 0 always means "unchanged".

    Returns:
        The anomalous image (float32, same shape) and the logistic label (float32, (H, W)).
    """
    img = as_image(image)
    src = img if source is None else as_partner(source, img, "source", "nsa")
    patches = sample_nsa_patches(
        img,
        src,
        rng,
        max_patches=max_patches,
        width_bounds=width_bounds,
        width_gamma=width_gamma,
        half_widths=half_widths,
        resize_bounds=resize_bounds,
        object_threshold=object_threshold,
        min_object=min_object,
        min_overlap=min_overlap,
    )
    out = img.copy()
    for patch in patches:
        tb = patch.target_box
        moved = resize(src[patch.source_box.slices], tb.height, tb.width)
        out[tb.slices] = np.clip(poisson_blend(out[tb.slices], moved, 1.0, 1.0), 0.0, 1.0)
    out32, changed = settle(img, out, tol)
    change = np.abs(out32.astype(np.float64) - img.astype(np.float32))
    if change.ndim == 3:
        change = change.mean(axis=-1)
    label = logistic_label(change, logistic_steepness, logistic_centre)
    return out32, finish_label(label, changed)
