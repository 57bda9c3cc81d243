"""Decode, resize and cache a dataset split once, as uint8 arrays.

Every dataset goes through the same path: records → decoded float image in [0, 1] → channel
conversion (grayscale stays 1-channel) → resize → uint8. The result is held in memory and, when a
cache folder is given, saved as one ``.npz`` per (dataset content, split, preprocessing), so later
runs and later epochs never touch a decoder again.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from medad.data.base import DatasetSource, Record, Split
from medad.data.readers import (
    nifti_axial_label_slices,
    nifti_axial_slices,
    read_image,
    read_mask,
    to_channels,
)
from medad.errors import MedadError

CACHE_VERSION = 1


@dataclass(frozen=True)
class Preprocess:
    """How a method wants its images (PAPER.md, "Preprocessing").

    `resize="stretch"` resizes to size×size ignoring the aspect ratio (reconstruction family);
    `resize="shorter"` scales the shorter side to `size` and centre-crops a size×size square
    (one-stage SSL: later random/centre crops of 224 px all lie inside it).
    """

    size: int = 64
    channels: int = 1
    resize: Literal["stretch", "shorter"] = "stretch"
    #: range of the float tensors given to the method (the cache itself is uint8)
    value_range: tuple[float, float] = (-1.0, 1.0)

    def key(self) -> str:
        d = asdict(self)
        d.pop("value_range")  # the cache is uint8 and does not depend on it
        return json.dumps(d, sort_keys=True)


@dataclass
class ArraySplit:
    """A decoded split: images uint8 [N, C, H, W], labels int64 [N], masks bool [N, H, W] | None,
    and the source shape int64 [N, 3] of each image."""

    images: np.ndarray
    labels: np.ndarray
    masks: np.ndarray | None
    ids: list[str]
    #: (H, W, C) of each image as decoded, before conversion and resizing; None when unknown
    #: (a cache entry written before medad kept it)
    source_shapes: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def has_masks(self) -> bool:
        return self.masks is not None


def _to_float01(image: np.ndarray, where: str) -> np.ndarray:
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    image = np.asarray(image, dtype=np.float32)
    if not np.isfinite(image).all() or image.min() < 0.0 or image.max() > 1.0:
        raise MedadError(f"{where}: in-memory image must be uint8 or float in [0, 1]")
    return image


def _resize_float(image: np.ndarray, pre: Preprocess) -> np.ndarray:
    """Resize a float [0,1] (H, W) or (H, W, C) image per `pre`; returns (C, S, S) float32."""
    chans = image[..., None] if image.ndim == 2 else image
    h, w = chans.shape[:2]
    if pre.resize == "stretch":
        target, crop = (pre.size, pre.size), None
    else:
        scale = pre.size / min(h, w)
        target = (max(pre.size, round(w * scale)), max(pre.size, round(h * scale)))
        crop = ((target[1] - pre.size) // 2, (target[0] - pre.size) // 2)
    out = []
    for c in range(chans.shape[2]):
        pil = Image.fromarray(np.ascontiguousarray(chans[..., c], dtype=np.float32), mode="F")
        arr = np.asarray(pil.resize(target, Image.Resampling.BILINEAR), dtype=np.float32)
        if crop is not None:
            arr = arr[crop[0] : crop[0] + pre.size, crop[1] : crop[1] + pre.size]
        out.append(arr)
    return np.stack(out)


def map_to_source(amap: np.ndarray, size_hw: tuple[int, int], pre: Preprocess) -> np.ndarray:
    """An anomaly map of a preprocessed image [S, S] brought back to its source's (H, W).

    The inverse of `_resize_float`'s geometry, bilinear: "stretch" resizes back; "shorter" puts the
    map in place of the centre crop inside the scaled image and resizes that. Pixels outside the
    crop were never seen by the method: they get the map's minimum (the least anomalous value the
    method gave this image), so they neither light up nor enter a thresholded mask.
    """
    h, w = size_hw
    values = np.ascontiguousarray(amap, dtype=np.float32)
    if pre.resize == "shorter":
        scale = pre.size / min(h, w)
        tw, th = max(pre.size, round(w * scale)), max(pre.size, round(h * scale))
        top, left = (th - pre.size) // 2, (tw - pre.size) // 2
        canvas = np.full((th, tw), float(values.min()), dtype=np.float32)
        canvas[top : top + pre.size, left : left + pre.size] = values
        values = canvas
    pil = Image.fromarray(values, mode="F")
    return np.asarray(pil.resize((w, h), Image.Resampling.BILINEAR), dtype=np.float32)


def _resize_mask(mask: np.ndarray, pre: Preprocess) -> np.ndarray:
    h, w = mask.shape
    pil = Image.fromarray(mask.astype(np.uint8) * 255)
    if pre.resize == "stretch":
        return np.asarray(pil.resize((pre.size, pre.size), Image.Resampling.NEAREST)) > 0
    scale = pre.size / min(h, w)
    tw, th = max(pre.size, round(w * scale)), max(pre.size, round(h * scale))
    arr = np.asarray(pil.resize((tw, th), Image.Resampling.NEAREST)) > 0
    top, left = (th - pre.size) // 2, (tw - pre.size) // 2
    return arr[top : top + pre.size, left : left + pre.size]


class VolumeSlices:
    """Decoded NIfTI volumes of slice records (`Record.slice`), the last few kept, so that the
    slices of one volume, listed one after another, decode the file once and not once per slice."""

    def __init__(self, keep: int = 2) -> None:
        self.keep = keep
        self._held: dict[tuple[str, bool], np.ndarray] = {}

    def plane(self, path: Path, index: int, *, labels: bool = False) -> np.ndarray:
        key = (str(path), labels)
        if key not in self._held:
            if len(self._held) >= self.keep:
                self._held.pop(next(iter(self._held)))
            read = nifti_axial_label_slices if labels else nifti_axial_slices
            self._held[key] = read(path)
        stack = self._held[key]
        if not 0 <= index < stack.shape[0]:
            raise MedadError(f"{path}: slice {index} out of range 0..{stack.shape[0] - 1}")
        return stack[index]


def decode_record(
    record: Record,
    pre: Preprocess,
    mask_threshold: float | None = None,
    volumes: VolumeSlices | None = None,
) -> tuple[np.ndarray, np.ndarray | None, tuple[int, int, int]]:
    """Decode one record → (uint8 image [C, S, S], bool mask [S, S] or None, source (H, W, C)).

    The source shape is the decoded image's before any conversion (C = 3 for colour files), which
    `medad.data.profile` keeps to tell later inputs that differ from the training data. A slice
    record (`Record.slice`) reads axial slice k of its NIfTI volume and of its mask volume (a
    segmentation, > 0). A mask file is checked and binarised at full size (`read_mask`, with
    `mask_threshold`), then resized with nearest neighbour.
    """
    volumes = volumes if volumes is not None else VolumeSlices()
    if isinstance(record.image, np.ndarray):
        where = f"record {record.id}"
        image = _to_float01(record.image, where)
    elif record.slice is not None:
        where = f"{record.image} slice {record.slice}"
        image = volumes.plane(record.image, record.slice)
    else:
        where = str(record.image)
        image = read_image(record.image)
    source = (image.shape[0], image.shape[1], image.shape[2] if image.ndim == 3 else 1)
    image = to_channels(image, pre.channels)
    size_hw = image.shape[:2]
    resized = _resize_float(image, pre)
    image_u8 = np.clip(np.rint(resized * 255.0), 0, 255).astype(np.uint8)
    mask = None
    if record.mask is not None:
        if isinstance(record.mask, np.ndarray):
            mask_raw, mwhere = record.mask.astype(bool), f"mask of record {record.id}"
        elif record.slice is not None:
            mask_raw = volumes.plane(record.mask, record.slice, labels=True)
            mwhere = f"{record.mask} slice {record.slice}"
        else:
            mask_raw = read_mask(record.mask, threshold=mask_threshold)
            mwhere = str(record.mask)
        if mask_raw.shape != size_hw:
            raise MedadError(
                f"{mwhere}: mask is {mask_raw.shape[1]}x{mask_raw.shape[0]} but its image "
                f"{where} is {size_hw[1]}x{size_hw[0]}; masks must match their image's size"
            )
        mask = _resize_mask(mask_raw, pre)
    return image_u8, mask, source


def decode_records(
    records: list[Record], pre: Preprocess, with_masks: bool, mask_threshold: float | None = None
) -> ArraySplit:
    """Decode a list of records into an `ArraySplit` (masks all-False for records without one)."""
    if not records:
        raise MedadError("the split is empty: no images were found")
    n, s = len(records), pre.size
    images = np.empty((n, pre.channels, s, s), dtype=np.uint8)
    masks = np.zeros((n, s, s), dtype=bool) if with_masks else None
    shapes = np.empty((n, 3), dtype=np.int64)
    volumes = VolumeSlices()
    for i, rec in enumerate(records):
        img, mask, shapes[i] = decode_record(rec, pre, mask_threshold, volumes)
        images[i] = img
        if masks is not None and mask is not None:
            masks[i] = mask
    labels = np.array([r.label for r in records], dtype=np.int64)
    return ArraySplit(images, labels, masks, [r.id for r in records], shapes)


def _cache_file(cache_dir: Path, dataset: DatasetSource, split: Split, pre: Preprocess) -> Path:
    parts: list[object] = [CACHE_VERSION, dataset.fingerprint(), split, pre.key()]
    if dataset.mask_threshold is not None:
        parts.append(dataset.mask_threshold)
    digest = hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:20]
    return cache_dir / f"{dataset.name}-{split}-{pre.size}px-{digest}.npz"


def load_split(
    dataset: DatasetSource, split: Split, pre: Preprocess, cache_dir: Path | None = None
) -> ArraySplit:
    """Decode `split` of `dataset` per `pre`, reusing (and filling) the on-disk cache if given."""
    path = _cache_file(cache_dir, dataset, split, pre) if cache_dir is not None else None
    if path is not None and path.exists():
        cached = _read_cache(path, pre)
        if cached is not None:
            return cached
        path.unlink(missing_ok=True)  # a damaged cache entry is rebuilt, never trusted
    records = dataset.records(split)
    with_masks = split == "test" and dataset.has_masks
    arrays = decode_records(records, pre, with_masks, dataset.mask_threshold)
    if split == "train" and arrays.labels.any():
        raise MedadError(f"dataset {dataset.name}: the train split must hold normal images only")
    if path is not None:
        _save_atomic(path, arrays)
    return arrays


def _read_cache(path: Path, pre: Preprocess) -> ArraySplit | None:
    """A cache entry written by `_save_atomic`, or None when it is damaged (a truncated or foreign
    file, a missing array, arrays that disagree); the caller then decodes again."""
    try:
        with np.load(path, allow_pickle=False) as z:
            masks = z["masks"] if "masks" in z.files else None
            shapes = z["source_shapes"] if "source_shapes" in z.files else None
            split = ArraySplit(z["images"], z["labels"], masks, [str(i) for i in z["ids"]], shapes)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error):
        return None
    n, s = len(split.ids), pre.size
    if (
        split.images.shape != (n, pre.channels, s, s)
        or split.images.dtype != np.uint8
        or split.labels.shape != (n,)
        or (split.masks is not None and split.masks.shape != (n, s, s))
        or (split.source_shapes is not None and split.source_shapes.shape != (n, 3))
    ):
        return None
    return split


def _save_atomic(path: Path, arrays: ArraySplit) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"images": arrays.images, "labels": arrays.labels, "ids": np.array(arrays.ids)}
    if arrays.masks is not None:
        payload["masks"] = arrays.masks
    if arrays.source_shapes is not None:
        payload["source_shapes"] = arrays.source_shapes
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **payload)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
