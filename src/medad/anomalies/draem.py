"""DRAEM's simulated anomalies: Perlin-noise masks filled with an augmented texture.

Zavrtanik, Kristan, Skočaj, "DRAEM - A Discriminatively Trained Reconstruction Embedding for
Surface Anomaly Detection", ICCV 2021, Sec. 3.3 (and the reference code for the constants):

* mask M: Perlin noise with 2^k lattice cells per axis (k independently per axis), rotated,
  thresholded at 0.5;
* texture A: a texture image (DTD in the paper) resized to the image, augmented by 3 random
  operations out of 10;
* ``out = image * (1 - M) + (1 - beta) * A * M + beta * image * M`` with beta ~ U(0, 0.8);
* with probability 1 - p_anomaly the image is returned unchanged (the paper's 50 % of normal
  training samples).

Label: M on the pixels that changed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from medad.anomalies._imageops import (
    as_image,
    channels_last,
    finish_label,
    gray,
    match_channels,
    resize,
    rotate_hue,
    settle,
)
from medad.anomalies.perlin import perlin_noise
from medad.anomalies.textures import procedural_texture


def perlin_mask(
    shape: tuple[int, int],
    rng: np.random.Generator,
    *,
    max_exponent: int = 6,
    min_cell: int = 4,
    threshold: float = 0.5,
    rotate: bool = True,
) -> NDArray[np.bool_]:
    """DRAEM's anomaly mask: thresholded, rotated Perlin noise.

    The lattice has 2^k cells along each axis, k drawn independently per axis from
    ``{0, ..., max_exponent - 1}`` (DRAEM's ``randint(0, 6)``), capped so that a cell spans at least
    `min_cell` pixels (DRAEM works on 256 px images, where the cap never binds). The noise is
    rotated by U(-90, 90) degrees (DRAEM's ``iaa.Affine(rotate=(-90, 90))``; the corners brought in
    are 0, i.e. below threshold) and thresholded at `threshold` (0.5).
    """
    exponents = []
    for dim in shape:
        cap = int(np.floor(np.log2(max(1.0, dim / min_cell))))
        exponents.append(int(rng.integers(0, max(0, min(max_exponent - 1, cap)) + 1)))
    noise = perlin_noise(shape, (2 ** exponents[0], 2 ** exponents[1]), rng)
    if rotate:
        angle = rng.uniform(-90.0, 90.0)
        noise = ndimage.rotate(noise, angle, reshape=False, order=1, mode="constant", cval=0.0)
    return noise > threshold


def _sharpness(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    blurred = ndimage.gaussian_filter(x, sigma=(1, 1, 0))
    return blurred + rng.uniform(0.0, 2.0) * (x - blurred)


def _hue_saturation(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if x.shape[-1] != 3:
        return x
    x = rotate_hue(x, rng.uniform(-0.2, 0.2))
    luma = gray(x)[..., None]
    return luma + rng.uniform(0.6, 1.4) * (x - luma)


def _solarize(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if rng.random() >= 0.5:
        return x
    level = rng.uniform(32, 128) / 255
    return np.where(x >= level, 1.0 - x, x)


def _posterize(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    bits = int(rng.integers(1, 9))
    step = 2 ** (8 - bits)
    return np.floor(np.round(x * 255) / step) * step / 255


def _autocontrast(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    lo, hi = x.min(axis=(0, 1)), x.max(axis=(0, 1))
    return np.where(hi > lo, (x - lo) / np.where(hi > lo, hi - lo, 1.0), x)


def _equalize(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    levels = np.clip(np.round(x * 255).astype(int), 0, 255)
    out = np.empty_like(x)
    for c in range(x.shape[-1]):
        cdf = np.cumsum(np.bincount(levels[..., c].ravel(), minlength=256))
        cdf = (cdf - cdf[0]) / max(1, cdf[-1] - cdf[0])
        out[..., c] = cdf[levels[..., c]]
    return out


def _rotate(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    angle = rng.uniform(-45.0, 45.0)
    return ndimage.rotate(x, angle, axes=(0, 1), reshape=False, order=1, mode="reflect")


#: DRAEM's 10 texture augmentations (reference code: GammaContrast(0.5, 2), MultiplyAndAddTo-
#: Brightness(0.8-1.2, -30..30), EnhanceSharpness, AddToHueAndSaturation(-50, 50), Solarize(0.5,
#: 32..128), Posterize, Invert, Autocontrast, Equalize, Affine(rotate -45..45)), re-implemented.
_TEXTURE_OPS = (
    lambda x, rng: x ** rng.uniform(0.5, 2.0),
    lambda x, rng: x * rng.uniform(0.8, 1.2) + rng.uniform(-30, 30) / 255,
    _sharpness,
    _hue_saturation,
    _solarize,
    _posterize,
    lambda x, rng: 1.0 - x,
    _autocontrast,
    _equalize,
    _rotate,
)


def augment_texture(texture: np.ndarray, rng: np.random.Generator, n_ops: int = 3) -> np.ndarray:
    """Apply `n_ops` distinct random operations out of DRAEM's 10, in random order (DRAEM: 3)."""
    x = channels_last(np.asarray(texture, dtype=np.float64))
    for op in rng.choice(len(_TEXTURE_OPS), size=n_ops, replace=False):
        x = np.clip(_TEXTURE_OPS[op](x, rng), 0.0, 1.0)
    return x[..., 0] if np.ndim(texture) == 2 else x


def _texture_for(
    img: np.ndarray, rng: np.random.Generator, texture: np.ndarray | Sequence[np.ndarray] | None
) -> np.ndarray:
    """The texture to paste: the user's (a random one of a sequence) or a generated one."""
    height, width = img.shape[:2]
    channels = 1 if img.ndim == 2 else img.shape[-1]
    if texture is None:
        tex = procedural_texture((height, width), rng, channels=channels)
    else:
        if not isinstance(texture, np.ndarray):
            texture = texture[int(rng.integers(len(texture)))]
        tex = resize(as_image(texture, "texture"), height, width)
    tex = match_channels(tex, channels)
    return channels_last(tex) if img.ndim == 3 else tex


def draem(
    image: np.ndarray,
    rng: np.random.Generator,
    *,
    source: np.ndarray | None = None,
    texture: np.ndarray | Sequence[np.ndarray] | None = None,
    p_anomaly: float = 0.5,
    beta_max: float = 0.8,
    threshold: float = 0.5,
    max_exponent: int = 6,
    min_cell: int = 4,
    rotate_mask: bool = True,
    augment: bool = True,
    tol: float = 1e-6,
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """DRAEM's anomaly: a Perlin-shaped region replaced by a partly transparent texture.

    Args:
        image: float image in [0, 1], (H, W) or (H, W, C).
        rng: the only source of randomness.
        source: unused; accepted for the common generator signature.
        texture: a texture image in [0, 1] (any size and channel count; resized and converted),
            a sequence of them (one is picked at random, e.g. from `load_texture_folder`), or None
            for a `procedural_texture`.
        p_anomaly: probability of producing an anomaly at all (DRAEM: 0.5).
        beta_max: the opacity beta is U(0, beta_max) (DRAEM: 0.8).
        threshold: Perlin noise threshold of the mask (DRAEM: 0.5).
        max_exponent: lattice exponents k are drawn from {0, ..., max_exponent - 1} (DRAEM: 6).
        min_cell: smallest lattice cell in pixels, caps k on small images.
        rotate_mask: rotate the noise by U(-90, 90) degrees (DRAEM: yes).
        augment: apply 3 random texture augmentations (DRAEM: yes).
        tol: smallest change (any channel) that counts as modified.

    Returns:
        The anomalous image (float32, same shape) and the binary mask label (float32, (H, W)).
    """
    del source
    img = as_image(image)
    if rng.random() >= p_anomaly:
        return img.astype(np.float32), np.zeros(img.shape[:2], dtype=np.float32)
    tex = _texture_for(img, rng, texture)
    if augment:
        tex = augment_texture(tex, rng)
    mask = perlin_mask(
        img.shape[:2],
        rng,
        max_exponent=max_exponent,
        min_cell=min_cell,
        threshold=threshold,
        rotate=rotate_mask,
    )
    beta = rng.uniform(0.0, beta_max)
    m = mask.astype(np.float64) if img.ndim == 2 else mask[..., None].astype(np.float64)
    out = img * (1 - m) + (1 - beta) * tex * m + beta * img * m
    out32, changed = settle(img, out, tol)
    return out32, finish_label(mask.astype(np.float64), changed)
