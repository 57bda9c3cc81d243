"""Texture sources for DRAEM: a folder of images (e.g. DTD) or procedurally generated textures.

DRAEM (Zavrtanik et al. 2021) fills its Perlin-shaped anomaly masks with images of the
Describable Textures Dataset. medad reads any folder of images for that, and, when none is
given, makes a texture itself so that the method works without a download.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from medad.anomalies._imageops import channels_last, rotate_hue
from medad.anomalies.perlin import fractal_noise, perlin_noise
from medad.errors import MedadError

#: File suffixes read by `load_texture_folder`.
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp"})

#: Kinds of procedural texture `procedural_texture` can draw.
TEXTURE_KINDS = ("fractal", "stripes", "checkers", "cells", "blend")


def load_texture_folder(
    path: str | Path, *, size: int | None = 256, limit: int | None = None
) -> list[NDArray[np.float32]]:
    """Read every image under `path` (recursively, sorted by path) as float32 RGB in [0, 1].

    Args:
        path: a folder of texture images, e.g. DTD's ``images/`` folder (one sub-folder per class).
        size: resize each texture to size x size (DRAEM resizes textures to the image size anyway;
            this bounds memory: DTD holds 5,640 images). None keeps the native size.
        limit: read at most this many files (the first in sorted order). None reads all.

    Returns:
        A list of (H, W, 3) float32 arrays.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise MedadError(
            f"Texture folder {folder} does not exist or is not a folder; "
            "pass a folder of texture images (e.g. the DTD 'images' folder) or leave it unset "
            "to use procedural textures."
        )
    files = sorted(
        p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )
    if not files:
        raise MedadError(
            f"Texture folder {folder} contains no images ({', '.join(sorted(IMAGE_SUFFIXES))}); "
            "put texture images there or leave the texture folder unset."
        )
    textures = []
    for file in files[:limit]:
        try:
            with Image.open(file) as im:
                rgb = im.convert("RGB")
                if size is not None:
                    rgb = rgb.resize((size, size), Image.Resampling.BILINEAR)
                textures.append(np.asarray(rgb, dtype=np.float32) / 255.0)
        except OSError as err:
            raise MedadError(f"Cannot read texture image {file}: {err}") from err
    return textures


def _colour_ramp(field: np.ndarray, rng: np.random.Generator, channels: int) -> np.ndarray:
    """Map a scalar field in [0, 1] through a ramp of 2-4 random colours."""
    n_stops = int(rng.integers(2, 5))
    stops = np.sort(rng.uniform(0, 1, n_stops))
    stops[0], stops[-1] = 0.0, 1.0
    colours = rng.uniform(0, 1, (n_stops, channels))
    return np.stack([np.interp(field, stops, colours[:, c]) for c in range(channels)], axis=-1)


def _normalise(field: np.ndarray) -> np.ndarray:
    lo, hi = field.min(), field.max()
    return (field - lo) / (hi - lo) if hi > lo else np.zeros_like(field)


def _scalar_field(kind: str, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A [0, 1] pattern of the given kind."""
    height, width = shape
    rows, cols = np.meshgrid(np.arange(height) / height, np.arange(width) / width, indexing="ij")
    angle = rng.uniform(0, np.pi)
    along = rows * np.sin(angle) + cols * np.cos(angle)
    across = -rows * np.cos(angle) + cols * np.sin(angle)
    warp = perlin_noise(shape, (2, 2), rng) * rng.uniform(0, 0.1)
    if kind == "fractal":
        base = 2 ** int(rng.integers(0, 4))
        field = fractal_noise(shape, (base, base), rng, octaves=int(rng.integers(3, 7)))
    elif kind == "stripes":
        freq = rng.uniform(3, 20)
        field = np.sin(2 * np.pi * freq * (along + warp))
        field = np.sign(field) * np.abs(field) ** rng.uniform(0.2, 1.0)
    elif kind == "checkers":
        freq = rng.uniform(2, 12)
        field = np.sign(np.sin(2 * np.pi * freq * (along + warp))) * np.sign(
            np.sin(2 * np.pi * freq * (across + warp))
        )
    elif kind == "cells":
        points = rng.uniform(0, 1, (int(rng.integers(5, 40)), 2))
        dist = np.hypot(rows[..., None] - points[:, 0], cols[..., None] - points[:, 1])
        dist.sort(axis=-1)
        field = dist[..., 1] - dist[..., 0] if rng.random() < 0.5 else dist[..., 0]
    else:
        raise MedadError(f"Unknown texture kind {kind!r}; choose one of {TEXTURE_KINDS}.")
    return _normalise(field)


def procedural_texture(
    shape: tuple[int, int],
    rng: np.random.Generator,
    *,
    channels: int = 3,
    kind: str | None = None,
) -> NDArray[np.float32]:
    """A random texture: fractal noise, stripes, checkers, cell pattern, or a blend of two.

    The pattern is coloured through a random colour ramp and, for RGB, given a random hue turn, in
    the spirit of DTD's variety (colourful, regular or irregular). Used by DRAEM when the user
    provides no texture folder.

    Args:
        shape: (H, W) of the texture.
        rng: the only source of randomness.
        channels: 1 returns (H, W); otherwise (H, W, channels).
        kind: one of `TEXTURE_KINDS`; None draws one uniformly.

    Returns:
        A float32 texture in [0, 1].
    """
    kind = TEXTURE_KINDS[int(rng.integers(len(TEXTURE_KINDS)))] if kind is None else kind
    if kind == "blend":
        first, second = rng.choice(len(TEXTURE_KINDS) - 1, size=2, replace=False)
        mix = _normalise(fractal_noise(shape, (2, 2), rng, octaves=3))[..., None]
        a, b = (
            channels_last(procedural_texture(shape, rng, channels=channels, kind=TEXTURE_KINDS[i]))
            for i in (first, second)
        )
        texture = mix * a + (1 - mix) * b
    else:
        texture = _colour_ramp(_scalar_field(kind, shape, rng), rng, channels)
        if channels == 3:
            texture = rotate_hue(texture, rng.uniform(-0.5, 0.5))
    texture = np.clip(texture, 0.0, 1.0).astype(np.float32)
    return texture[..., 0] if channels == 1 else texture
