"""A picture of what a synthetic anomaly generator does to a dataset (``medad anomalies``).

`write_gallery` draws `n` images, gives each an anomaly of one kind (with the next drawn image as
the foreign `source`) and writes one PNG grid: row 1 the originals, row 2 the anomalous images,
row 3 the labels (black 0 to white 1). Tiles keep the images' size and are separated by a
`GAP`-pixel dark-grey margin, so the PNG is ``n·W + (n + 1)·GAP`` wide and ``3·H + 4·GAP`` high.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from medad.anomalies import make_anomaly
from medad.errors import MedadError
from medad.outputs import output_file

#: margin between tiles, in pixels
GAP = 2
#: grey level of the margin
GAP_LEVEL = 64


def _as_float_images(images: np.ndarray) -> np.ndarray:
    """uint8 or float [0, 1] [N, C, H, W] → float32 [N, H, W] (C = 1) or [N, H, W, 3]."""
    arr = np.asarray(images)
    if arr.ndim != 4 or arr.shape[1] not in (1, 3) or arr.shape[0] == 0:
        raise MedadError(
            "gallery: images must be an array [N, C, H, W] with C = 1 or 3 and N >= 1; "
            f"got shape {arr.shape}"
        )
    if arr.dtype == np.uint8:
        out = arr.astype(np.float32) / 255.0
    else:
        out = arr.astype(np.float32)
        if not np.isfinite(out).all() or out.min() < 0.0 or out.max() > 1.0:
            raise MedadError("gallery: float images must lie in [0, 1]; pass uint8 or rescale them")
    out = out.transpose(0, 2, 3, 1)
    return out[..., 0] if out.shape[-1] == 1 else out


def _to_rgb_u8(tile: np.ndarray) -> np.ndarray:
    """float [0, 1] (H, W) or (H, W, 3) → uint8 (H, W, 3)."""
    u8 = np.clip(np.rint(tile * 255.0), 0, 255).astype(np.uint8)
    return np.repeat(u8[..., None], 3, axis=-1) if u8.ndim == 2 else u8


def write_gallery(
    kind: str,
    images: np.ndarray,
    out_dir: Path,
    *,
    n: int = 8,
    seed: int = 0,
    params: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``out_dir / f"{kind}.png"``: originals, anomalous images and labels of `n` images.

    Args:
        kind: an anomaly generator of `medad.anomalies.GENERATORS`.
        images: uint8 [N, C, H, W], or float in [0, 1], C = 1 or 3 (e.g. a cached split's images).
        out_dir: folder of the PNG (created if missing).
        n: number of columns (fewer if there are fewer images).
        seed: seeds both the choice of images and the generator.
        params: keyword parameters of the generator (default: its own defaults).
        overwrite: replace an earlier gallery of this kind in `out_dir` (`medad.outputs`: the
            folder collects galleries of ``medad anomalies`` and never files medad did not write).

    Returns:
        The path of the PNG, written atomically (a temporary file renamed into place).
    """
    if n < 1:
        raise MedadError(f"gallery: n must be at least 1, got {n}")
    floats = _as_float_images(images)
    rng = np.random.default_rng(seed)
    count = min(n, len(floats))
    chosen = np.sort(rng.choice(len(floats), size=count, replace=False))
    height, width = floats.shape[1:3]
    canvas = np.full(
        (3 * height + 4 * GAP, count * width + (count + 1) * GAP, 3), GAP_LEVEL, dtype=np.uint8
    )
    for col, index in enumerate(chosen):
        image = floats[index]
        source = floats[chosen[(col + 1) % count]]
        anomalous, label = make_anomaly(kind, image, rng, source=source, **(params or {}))
        left = GAP + col * (width + GAP)
        for row, tile in enumerate((image, anomalous, label)):
            top = GAP + row * (height + GAP)
            canvas[top : top + height, left : left + width] = _to_rgb_u8(tile)
    name = f"{kind}.png"
    with output_file(out_dir, name, "anomalies", overwrite=overwrite) as tmp:
        Image.fromarray(canvas).save(tmp, format="PNG")
    return Path(out_dir) / name
