"""Write a prepared dataset: all or nothing, with images in the release's formats.

`atomic_output_dir` builds the dataset in a staging folder next to ``--out`` and renames it
into place only when everything was written; on any error the staging folder is removed, so
``--out`` never holds half a dataset (`medad.outputs`: it never replaces files medad did not write).

Images: a file that can be copied (PNG, JPEG, TIFF, BMP) is first decoded (so a corrupt file
stops the preparation, naming it) and then copied byte for byte, as the paper's release kept the
original files. Anything else (DICOM, NIfTI slices), and every image when a size is asked for, is
decoded by `medad.data.readers` (DICOM: rescale, the file's VOI window or min-max, MONOCHROME1
inverted), converted to grayscale where the dataset is grayscale, scaled so that its longer side is
``size`` (bilinear, aspect ratio kept) and written as an 8-bit PNG. Masks are written 0/255 and
resized with nearest neighbour to their image's size.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from medad.data.catalog import MANIFEST_NAME
from medad.data.prepare.splits import Candidate, Selection
from medad.data.readers import read_image, to_channels
from medad.outputs import output_dir

#: file types copied unchanged when no resizing is asked for
COPYABLE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"})


@contextmanager
def atomic_output_dir(out: Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a fresh staging folder next to `out`; rename it to `out` when the block succeeds.

    The rules of `medad.outputs.output_dir`: an existing non-empty `out` is refused unless it is
    an earlier ``medad prepare`` output and `overwrite` is given, and even then only the files
    that preparation wrote are replaced (a file added since is named, and nothing is touched).
    On failure the staging folder is removed and `out` stays as it was.
    """
    with output_dir(out, "prepare", overwrite=overwrite) as stage:
        yield stage


def resized_shape(width: int, height: int, size: int | None) -> tuple[int, int]:
    """(width, height) with the longer side scaled to `size` (unchanged when size is None)."""
    if size is None:
        return width, height
    scale = size / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def to_uint8(image: np.ndarray) -> np.ndarray:
    """A float image in [0, 1] → uint8 (rounded)."""
    return np.clip(np.rint(np.asarray(image, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)


def write_png(path: Path, image: np.ndarray, *, size: int | None, gray: bool) -> None:
    """Write a float [0, 1] (H, W) or (H, W, 3) image as an 8-bit PNG (see module docs)."""
    if gray:
        image = to_channels(image, 1)
    pil = Image.fromarray(to_uint8(image))
    target = resized_shape(pil.width, pil.height, size)
    if target != pil.size:
        pil = pil.resize(target, Image.Resampling.BILINEAR)
    pil.save(path, format="PNG")


def write_mask_png(path: Path, mask: np.ndarray, *, size: int | None) -> None:
    """Write a bool (H, W) mask as a 0/255 PNG, resized (nearest) like its image."""
    pil = Image.fromarray(np.where(mask, 255, 0).astype(np.uint8))
    target = resized_shape(pil.width, pil.height, size)
    if target != pil.size:
        pil = pil.resize(target, Image.Resampling.NEAREST)
    pil.save(path, format="PNG")


def link_or_copy(src: Path, dst: Path) -> None:
    """A hard link when the file system allows it (no extra space), else a copy."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def export_image(src: Path, folder: Path, stem: str, *, size: int | None, gray: bool) -> str:
    """Write the image file `src` into `folder` as `stem` (see module docs); returns its name."""
    image = read_image(src)  # also proves the file decodes; names the file if it does not
    suffix = src.suffix.lower()
    if size is None and suffix in COPYABLE_SUFFIXES:
        name = f"{stem}{suffix}"
        shutil.copyfile(src, folder / name)
        return name
    name = f"{stem}.png"
    write_png(folder / name, image, size=size, gray=gray)
    return name


def write_datajson_release(
    out: Path, selection: Selection, *, size: int | None, gray: bool
) -> None:
    """The MedIAnomaly release layout: ``out/images/*`` and ``out/data.json``."""
    images = out / "images"
    images.mkdir()

    def export(cands: list[Candidate]) -> list[str]:
        return sorted(export_image(c.source, images, c.name, size=size, gray=gray) for c in cands)

    spec = {
        "train": {"0": export(selection.train)},
        "test": {"0": export(selection.test_normal), "1": export(selection.test_abnormal)},
    }
    (out / "data.json").write_text(json.dumps(spec, indent=1) + "\n")


def write_manifest(out: Path, manifest: dict[str, Any]) -> None:
    (out / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
