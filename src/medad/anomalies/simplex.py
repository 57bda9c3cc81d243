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
