"""Array plumbing shared by the anomaly generators: input checks, boxes, resizing, colour.

Every generator follows one contract (see `medad.anomalies`): float images in [0, 1] of shape
(H, W) or (H, W, C) in, a float32 image of the same shape and a float32 (H, W) label out, with
the label exactly 0 wherever the output equals the input. `settle` enforces the last part.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from medad.errors import MedadError

FloatArray = NDArray[np.floating]

#: Values this far outside [0, 1] are rounding noise from normalisation and are clipped silently.
_RANGE_SLACK = 1e-4

#: ITU-R BT.601 luma weights, the ones torchvision's ``rgb_to_grayscale`` uses.
_LUMA = np.array([0.299, 0.587, 0.114])


class Box(NamedTuple):
    """An axis-aligned rectangle of pixels: rows ``top:top+height``, columns ``left:left+width``."""

    top: int
    left: int
    height: int
    width: int

    @property
    def slices(self) -> tuple[slice, slice]:
        """Index expression selecting the box from an (H, W, ...) array."""
        return slice(self.top, self.top + self.height), slice(self.left, self.left + self.width)


def as_image(image: np.ndarray, name: str = "image") -> NDArray[np.float64]:
    """Validate a generator input and return it as a fresh float64 array (never a view)."""
    arr = np.asarray(image)
    if arr.ndim not in (2, 3) or min(arr.shape) == 0:
        raise MedadError(f"`{name}` must have shape (H, W) or (H, W, C); got shape {arr.shape}.")
    if not np.issubdtype(arr.dtype, np.floating):
        raise MedadError(
            f"`{name}` must be a float array in [0, 1]; got dtype {arr.dtype}. "
            "Convert first, e.g. `image.astype(np.float32) / 255` for 8-bit data."
        )
    lo, hi = float(np.min(arr)), float(np.max(arr))
    if not (np.isfinite(lo) and np.isfinite(hi)) or lo < -_RANGE_SLACK or hi > 1 + _RANGE_SLACK:
        raise MedadError(
            f"`{name}` values must lie in [0, 1]; got min {lo:.4g}, max {hi:.4g}. "
            "Rescale the image (e.g. min-max normalise) before generating anomalies."
        )
    return np.clip(arr.astype(np.float64), 0.0, 1.0)


def as_partner(
    partner: np.ndarray | None, image: np.ndarray, name: str, generator: str
) -> FloatArray:
    """Validate a second image (`source`) that must match `image` in shape."""
    if partner is None:
        raise MedadError(
            f"The {generator!r} generator blends in a patch of another normal image: "
            f"pass it as `{name}=` (same shape as the image, e.g. another training image)."
        )
    arr = as_image(partner, name)
    if arr.shape != image.shape:
        raise MedadError(
            f"`{name}` must have the same shape as the image: "
            f"got {arr.shape}, the image is {image.shape}."
        )
    return arr


def as_boxes(box: Box | Sequence[Box]) -> list[Box]:
    """One box or a sequence of boxes, as a list of boxes."""
    return [box] if isinstance(box, Box) else list(box)


def channels_last(image: np.ndarray) -> np.ndarray:
    """View an (H, W) image as (H, W, 1); (H, W, C) images are returned as they are."""
    return image[..., None] if image.ndim == 2 else image


def gray(image: np.ndarray) -> np.ndarray:
    """Grayscale (H, W) of an (H, W) or (H, W, C) image: BT.601 luma for RGB, the mean otherwise."""
    if image.ndim == 2:
        return image
    if image.shape[-1] == 3:
        return image @ _LUMA
    return image.mean(axis=-1)


def settle(
    image: np.ndarray, out: np.ndarray, tol: float
) -> tuple[NDArray[np.float32], NDArray[np.bool_]]:
    """Clip `out` to [0, 1], cast it to float32 and restore the pixels it did not really change.

    A pixel counts as changed when some channel moved by more than `tol` (measured after the cast
    to float32); every other pixel is set back to the input exactly. Returns the output and the
    (H, W) mask of changed pixels, outside of which every label must be 0.
    """
    ref = image.astype(np.float32)
    res = np.clip(out, 0.0, 1.0).astype(np.float32)
    diff = np.abs(res.astype(np.float64) - ref.astype(np.float64))
    changed = diff > tol if diff.ndim == 2 else (diff > tol).any(axis=-1)
    keep = changed if res.ndim == 2 else changed[..., None]
    return np.where(keep, res, ref).astype(np.float32), changed


def finish_label(label: np.ndarray, changed: np.ndarray) -> NDArray[np.float32]:
    """Zero `label` outside `changed` and return it as float32 in [0, 1]."""
    return np.where(changed, np.clip(label, 0.0, 1.0), 0.0).astype(np.float32)


def resize(image: np.ndarray, height: int, width: int) -> NDArray[np.float64]:
    """Bilinear resize of an (h, w) or (h, w, C) array, sampling at pixel centres (no shift)."""
    h, w = image.shape[:2]
    if (h, w) == (height, width):
        return image.astype(np.float64)
    rows = np.clip((np.arange(height) + 0.5) * h / height - 0.5, 0, h - 1)
    cols = np.clip((np.arange(width) + 0.5) * w / width - 0.5, 0, w - 1)
    grid = np.stack(np.meshgrid(rows, cols, indexing="ij"))
    planes = channels_last(image.astype(np.float64))
    out = np.stack(
        [ndimage.map_coordinates(planes[..., c], grid, order=1) for c in range(planes.shape[-1])],
        axis=-1,
    )
    return out[..., 0] if image.ndim == 2 else out


def match_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """Give an image `channels` channels: RGB to luma for 1, replication for gray to many."""
    c = 1 if image.ndim == 2 else image.shape[-1]
    if channels == 1:
        return gray(image)
    if c == channels:
        return image
    if c == 1:
        return np.repeat(channels_last(image), channels, axis=-1)
    raise MedadError(f"Cannot convert a {c}-channel image to {channels} channels.")


def rotate_hue(image: np.ndarray, turns: float) -> np.ndarray:
    """Rotate the hue of an (H, W, 3) RGB image by `turns` of a full circle.

    The rotation is done in YIQ space (luma kept, chroma plane rotated), a cheap stand-in for the
    HSV hue shift of torchvision's ``ColorJitter``; grayscale images have no hue and pass through.
    """
    if image.ndim == 2 or image.shape[-1] != 3 or turns == 0:
        return image
    to_yiq = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
    a = 2 * np.pi * turns
    rot = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    transform = np.linalg.inv(to_yiq) @ rot @ to_yiq
    return image @ transform.T


def colour_jitter(patch: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """Random brightness, contrast, saturation and hue change, as torchvision's ``ColorJitter``.

    Brightness, contrast and saturation factors are drawn from U(1 - s, 1 + s), the hue shift from
    U(-s, s) turns, and the four are applied in random order (CutPaste, Li et al. 2021, Sec. 3.1,
    uses s = 0.1). Saturation and hue only act on RGB patches.
    """
    if strength <= 0:
        return patch
    out = patch.astype(np.float64)
    for op in rng.permutation(4):
        if op == 0:
            out = out * rng.uniform(1 - strength, 1 + strength)
        elif op == 1:
            f = rng.uniform(1 - strength, 1 + strength)
            out = f * out + (1 - f) * gray(out).mean()
        elif op == 2 and out.ndim == 3 and out.shape[-1] == 3:
            f = rng.uniform(1 - strength, 1 + strength)
            out = f * out + (1 - f) * gray(out)[..., None]
        elif op == 3 and out.ndim == 3 and out.shape[-1] == 3:
            out = rotate_hue(out, rng.uniform(-strength, strength))
        out = np.clip(out, 0.0, 1.0)
    return out


def sample_patch_size(
    rng: np.random.Generator,
    shape: tuple[int, ...],
    area_ratio: tuple[float, float],
    aspect_ratio: float,
) -> tuple[int, int]:
    """CutPaste patch size: area U(area_ratio) of the image, aspect log-uniform in [r, 1/r].

    Li et al. 2021, Sec. 3.1 (area 2-15 %, aspect (0.3, 1/0.3)); AnatPaste reuses the rule.
    """
    height, width = shape[:2]
    area = rng.uniform(*area_ratio) * height * width
    log_r = abs(np.log(aspect_ratio))
    aspect = np.exp(rng.uniform(-log_r, log_r))
    h = int(np.clip(round(np.sqrt(area / aspect)), 1, height))
    w = int(np.clip(round(np.sqrt(area * aspect)), 1, width))
    return h, w


def random_box(rng: np.random.Generator, shape: tuple[int, ...], height: int, width: int) -> Box:
    """A box of the given size at a uniformly random position fully inside the image."""
    top = int(rng.integers(0, shape[0] - height + 1))
    left = int(rng.integers(0, shape[1] - width + 1))
    return Box(top, left, height, width)


def box_sums(mask: np.ndarray, height: int, width: int) -> NDArray[np.int64]:
    """Number of True pixels in every height x width window, indexed by the window's top-left."""
    integral = np.zeros((mask.shape[0] + 1, mask.shape[1] + 1), dtype=np.int64)
    integral[1:, 1:] = np.cumsum(np.cumsum(mask, axis=0), axis=1)
    return (
        integral[height:, width:]
        - integral[:-height, width:]
        - integral[height:, :-width]
        + integral[:-height, :-width]
    )


def pick_position(rng: np.random.Generator, valid: np.ndarray) -> tuple[int, int] | None:
    """A uniformly random True position of a 2-D boolean array, or None if there is none."""
    positions = np.flatnonzero(valid)
    if positions.size == 0:
        return None
    row, col = np.unravel_index(positions[rng.integers(positions.size)], valid.shape)
    return int(row), int(col)
