"""Simplex noise (Perlin 2001; the 2-D algorithm as described by Gustavson, "Simplex noise
demystified", 2005), single-octave and fractal, as a reusable NumPy part.

Simplex noise is the structured noise of RD++'s pseudo-anomalies (Tien et al., "Revisiting Reverse
Distillation for Anomaly Detection", CVPR 2023, Sec. 3.3: simplex noise added to a region of a
normal image) and of AnoDDPM's diffusion (Wyatt et al. 2022), both after AnoDDPM's octave noise.
Unlike Perlin noise (`medad.anomalies.perlin`) it is built on a triangular lattice, so it has no
axis-aligned artefacts.

Every function takes a ``numpy.random.Generator`` as its only source of randomness: the lattice's
gradient permutation is drawn from it, so the same seed gives the same noise.
`fractal_simplex_noise_batch` evaluates many images at once, each from its own generator (the
diffusion methods seed one per image, so a score does not depend on the batch it is computed in).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

_F2 = 0.5 * (np.sqrt(3.0) - 1.0)  # skews the square grid onto the triangular (simplex) lattice
_G2 = (3.0 - np.sqrt(3.0)) / 6.0  # and back
#: the 12 gradient directions (edges of a cube); 2-D noise uses their first two components
_GRADIENTS = np.array(
    [[1, 1], [-1, 1], [1, -1], [-1, -1], [1, 0], [-1, 0],
     [1, 0], [-1, 0], [0, 1], [0, -1], [0, 1], [0, -1]],
    dtype=np.float64,
)  # fmt: skip
#: scales the sum of the three corner contributions to about [-1, 1]
_SCALE = 70.0


def simplex_noise(
    y: NDArray[np.floating], x: NDArray[np.floating], perm: NDArray[np.integer]
) -> NDArray[np.float64]:
    """2-D simplex noise at coordinates (`y`, `x`) (any equal shapes), values in about [-1, 1].

    `perm` is a permutation of 0..255 (`simplex_permutation`) that fixes the lattice gradients,
    or a stack [B, 256] of them: then `y` and `x` have a leading axis B and image b uses lattice
    ``perm[b]`` (one vectorised evaluation of many independent noise images)."""
    perm = np.asarray(perm)
    table = np.concatenate([perm, perm], axis=-1).astype(np.int64)
    if table.ndim == 1:
        lookup = table.__getitem__
    else:

        def lookup(index: NDArray[np.int64]) -> NDArray[np.int64]:
            flat = index.reshape(index.shape[0], -1)
            return np.take_along_axis(table, flat, axis=1).reshape(index.shape)

    y, x = np.asarray(y, dtype=np.float64), np.asarray(x, dtype=np.float64)
    s = (x + y) * _F2
    i, j = np.floor(x + s).astype(np.int64), np.floor(y + s).astype(np.int64)
    t = (i + j) * _G2
    x0, y0 = x - (i - t), y - (j - t)
    i1 = (x0 > y0).astype(np.int64)  # which triangle of the skewed cell
    j1 = 1 - i1
    corners = [
        (x0, y0, 0, 0),
        (x0 - i1 + _G2, y0 - j1 + _G2, i1, j1),
        (x0 - 1 + 2 * _G2, y0 - 1 + 2 * _G2, 1, 1),
    ]
    ii, jj = i & 255, j & 255
    total = np.zeros_like(x)
    for cx, cy, di, dj in corners:
        g = _GRADIENTS[lookup(ii + di + lookup(jj + dj)) % 12]
        falloff = np.maximum(0.5 - cx * cx - cy * cy, 0.0)
        total += falloff**4 * (g[..., 0] * cx + g[..., 1] * cy)
    return _SCALE * total


def simplex_permutation(rng: np.random.Generator) -> NDArray[np.int64]:
    """A random permutation of 0..255: one simplex-noise lattice."""
    return rng.permutation(256).astype(np.int64)


def fractal_simplex_noise(
    shape: tuple[int, int],
    rng: np.random.Generator,
    *,
    scale: float = 64.0,
    octaves: int = 6,
    persistence: float = 0.8,
) -> NDArray[np.float32]:
    """Fractal simplex noise of `shape` (H, W), normalised to about [-1, 1].

    Octave k samples the noise with features `scale` / 2^k pixels wide and weight `persistence`^k
    (AnoDDPM's defaults: 6 octaves, persistence 0.8, 64-pixel base frequency); the weighted sum is
    divided by the sum of the weights. Each call draws one lattice and a random offset from `rng`.
    """
    return fractal_simplex_noise_batch(
        shape, [rng], scale=scale, octaves=octaves, persistence=persistence
    )[0]


def fractal_simplex_noise_batch(
    shape: tuple[int, int],
    rngs: Sequence[np.random.Generator],
    *,
    scale: float = 64.0,
    octaves: int = 6,
    persistence: float = 0.8,
) -> NDArray[np.float32]:
    """[len(rngs), H, W] fractal simplex noise: image b is ``fractal_simplex_noise(shape,
    rngs[b], ...)`` exactly (same draws from each generator), evaluated in one vectorised pass."""
    if scale <= 0 or octaves < 1 or persistence <= 0:
        raise ValueError("fractal_simplex_noise: scale, octaves and persistence must be positive")
    if not rngs:
        return np.zeros((0, *shape), dtype=np.float32)
    perms, offsets = [], []
    for rng in rngs:  # one lattice and one offset per image, in the order of the single version
        perms.append(simplex_permutation(rng))
        offsets.append(rng.uniform(0, 256, size=2))
    perm = np.stack(perms)
    oy, ox = (np.asarray(o)[:, None, None] for o in zip(*offsets, strict=True))
    yy, xx = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    out = np.zeros((len(rngs), *shape), dtype=np.float64)
    weight, total = 1.0, 0.0
    for k in range(octaves):
        f = 2.0**k / scale
        out += weight * simplex_noise(oy + yy * f, ox + xx * f, perm)
        total += weight
        weight *= persistence
    return (out / total).astype(np.float32)


def simplex_noise_patch(
    shape: tuple[int, int],
    rng: np.random.Generator,
    *,
    side_range: tuple[float, float] = (10 / 256, 1 / 8),
    scale: float = 1 / 8,
    octaves: int = 6,
    persistence: float = 0.6,
    amplitude: float = 0.2,
) -> NDArray[np.float32]:
    """RD++'s pseudo-anomaly: fractal simplex noise inside one random rectangle, 0 elsewhere.

    The result is *added* to a normal image in [0, 1], without clipping (Tien et al. 2023, Sec. 3.3;
    official code tientrandinh/Revisiting-Reverse-Distillation, ``dataset/dataset.py``). There, at
    256 px, the rectangle's height and width are each a uniform integer in [10, 32) pixels, its
    top-left corner uniform in [1, 256 − side), and the noise is ``rand_3d_octaves`` with 6
    octaves, persistence 0.6 and a 32-pixel base wavelength, the octaves' weighted sum taken as is
    (not divided by the weights), times 0.2. Here `side_range` and `scale` are fractions of the
    image side (the official pixels at 256 px), so other sizes keep the proportions.

    Args:
        shape: (H, W) of the image.
        rng: the only source of randomness (rectangle, then the noise lattice and offset).
        side_range: [low, high) of the rectangle's sides as fractions of the image's sides.
        scale: wavelength of the first octave as a fraction of the image height.
        octaves, persistence: fractal octaves and the weight factor between them.
        amplitude: factor of the summed octaves (values reach about ± `amplitude` × Σ weights).
    """
    lo, hi = side_range
    if not 0 < lo < hi <= 1 or scale <= 0 or amplitude < 0:
        raise ValueError(
            "simplex_noise_patch: need 0 < side_range[0] < side_range[1] <= 1, a positive scale "
            "and a non-negative amplitude"
        )

    def side(n: int) -> int:
        a = max(1, int(lo * n))
        return int(rng.integers(a, max(a + 1, int(hi * n))))

    height, width = shape
    h, w = side(height), side(width)
    top = int(rng.integers(1, max(2, height - h)))
    left = int(rng.integers(1, max(2, width - w)))
    weights = sum(persistence**k for k in range(octaves))  # undo the normalisation: as published
    noise = fractal_simplex_noise(
        (h, w), rng, scale=scale * height, octaves=octaves, persistence=persistence
    )
    out = np.zeros(shape, dtype=np.float32)
    out[top : top + h, left : left + w] = amplitude * weights * noise
    return out
