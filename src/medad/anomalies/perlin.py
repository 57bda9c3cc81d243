"""Perlin gradient noise in 2-D, vectorised; the mask source of DRAEM and of procedural textures.

Perlin, "Improving Noise", SIGGRAPH 2002: random unit gradients on a lattice, dot products with
the offsets to the four surrounding nodes, blended with the quintic fade 6t^5 - 15t^4 + 10t^3.
As in DRAEM's reference implementation the result is scaled by sqrt(2), so values lie in [-1, 1].
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray


def _fade(t: np.ndarray) -> np.ndarray:
    return t * t * t * (t * (6 * t - 15) + 10)


def perlin_noise(
    shape: tuple[int, int], resolution: tuple[int, int], rng: np.random.Generator
) -> NDArray[np.float64]:
    """Perlin noise of `shape` with `resolution` lattice cells along (rows, columns).

    The image need not be a multiple of the resolution: pixel i sits at lattice coordinate
    ``i * resolution / size``.
    """
    height, width = shape
    res_y, res_x = max(1, int(resolution[0])), max(1, int(resolution[1]))
    angles = rng.uniform(0.0, 2 * np.pi, size=(res_y + 1, res_x + 1))
    grad_y, grad_x = np.sin(angles), np.cos(angles)

    y = np.arange(height) * res_y / height
    x = np.arange(width) * res_x / width
    iy, ix = np.floor(y).astype(int), np.floor(x).astype(int)
    fy, fx = (y - iy)[:, None], (x - ix)[None, :]
    iy, ix = iy[:, None], ix[None, :]

    def corner(dy: int, dx: int) -> np.ndarray:
        gy, gx = grad_y[iy + dy, ix + dx], grad_x[iy + dy, ix + dx]
        return gy * (fy - dy) + gx * (fx - dx)

    uy, ux = _fade(fy), _fade(fx)
    top = corner(0, 0) * (1 - ux) + corner(0, 1) * ux
    bottom = corner(1, 0) * (1 - ux) + corner(1, 1) * ux
    return np.sqrt(2) * (top * (1 - uy) + bottom * uy)


def fractal_noise(
    shape: tuple[int, int],
    resolution: tuple[int, int],
    rng: np.random.Generator,
    *,
    octaves: int = 4,
    persistence: float = 0.5,
) -> NDArray[np.float64]:
    """Sum of `octaves` Perlin layers, each with twice the resolution and `persistence` the weight.

    Normalised by the total weight, so values stay in [-1, 1].
    """
    total = np.zeros(shape)
    amplitude, weight = 1.0, 0.0
    res = np.array(resolution, dtype=int)
    for _ in range(octaves):
        res_clipped = np.minimum(res, shape)
        total += amplitude * perlin_noise(shape, (int(res_clipped[0]), int(res_clipped[1])), rng)
        weight += amplitude
        amplitude *= persistence
        res = res * 2
    return total / weight
