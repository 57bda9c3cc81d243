"""Datasets read from folders: medad's generic layout and the MedIAnomaly ``data.json`` layout.

Generic layout (your own data), either with explicit splits::

    ROOT/train/normal/*            normal training images
    ROOT/test/normal/*             normal test images
    ROOT/test/abnormal/*           abnormal test images
    ROOT/test/masks/*              optional: one mask per abnormal image, matched by file name

or flat, in which case normal images are split into train and test with a seeded shuffle::

    ROOT/normal/*  ROOT/abnormal/*  [ROOT/masks/*]

A mask matches an image when its name without extension equals the image's, optionally followed by
``_mask`` or ``_seg`` (``case1.png`` ↔ ``case1.png``, ``case1_mask.png``, ``case1.tif``).

Both layouts may list 3-D NIfTI volumes (``.nii``, ``.nii.gz``) beside or instead of 2-D images:
each volume gives one record per axial slice (id ``<file>#<slice>``, `expand_volumes`), and the
evaluation adds a volume-level one (`medad.evaluation`). Splits are made per file, so the slices of
one volume (one patient) never end up in both train and test. A slice's label is its volume's,
except that an abnormal volume with a segmentation mask (``masks/case1_seg.nii.gz``) labels each
slice by its mask: slices without any lesion voxel count as normal slices, as in BraTS-style
slice-level evaluation. Every slice is used, including empty ones at the ends of a volume.

``data.json`` layout (PAPER.md): ``ROOT/images/*`` and ``ROOT/data.json`` holding
``{"train": {"0": [...]}, "test": {"0": [...], "1": [...]}}``; other keys of ``train`` (the
``"unlabeled"`` list some releases carry) are ignored. Every entry must name a file inside the
dataset folder once ``..``, absolute names and symbolic links are resolved (`outside_dataset`): a
data.json that reaches elsewhere is refused rather than silently trained on. Linking the whole
``images/`` folder to another disk is fine; linking single files out of it is not.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from medad.data.base import DatasetSource, Record, Split
from medad.data.readers import (
    check_mask_threshold,
    file_format,
    is_image_file,
    nifti_axial_label_slices,
    nifti_depth,
)
from medad.errors import MedadError

MASK_SUFFIXES = ("", "_mask", "_seg")


def _stem(path: Path) -> str:
    name = path.name
    return name[: -len(".nii.gz")] if name.lower().endswith(".nii.gz") else path.stem


def expand_volumes(records: list[Record]) -> list[Record]:
    """Each record of a 3-D NIfTI volume → one record per axial slice (see module docs)."""
    out: list[Record] = []
    for rec in records:
        path = rec.image
        depth = 0
        if isinstance(path, Path) and file_format(path) == "nifti":
            depth = nifti_depth(path)
        if depth <= 1:  # a 2-D image (or a single plane): read as one image
            out.append(rec)
            continue
        labels = [rec.label] * depth
        if rec.mask is not None:
            mask = Path(rec.mask)  # type: ignore[arg-type]
            if file_format(mask) != "nifti" or nifti_depth(mask) != depth:
                raise MedadError(
                    f"{mask}: the mask of the volume {path} ({depth} axial slices) must be a "
                    "NIfTI volume on the same grid"
                )
            if rec.label:
                lesion = nifti_axial_label_slices(mask).any(axis=(1, 2))
                labels = [int(v) for v in lesion]
        out += [Record(f"{rec.id}#{k}", labels[k], path, rec.mask, slice=k) for k in range(depth)]
    return out


def list_images(folder: Path) -> list[Path]:
    """The image files directly inside `folder`, sorted by name; a clear error if there are none."""
    if not folder.is_dir():
        raise MedadError(f"{folder}: folder not found")
    files = sorted(p for p in folder.iterdir() if p.is_file() and is_image_file(p))
    if not files:
        raise MedadError(f"{folder}: no image files in this folder")
    return files


def match_masks(images: list[Path], mask_dir: Path) -> list[Path]:
    """For each image the mask in `mask_dir` with the same name (see module docs)."""
    if not mask_dir.is_dir():
        raise MedadError(f"{mask_dir}: masks folder not found")
    by_stem = {_stem(p): p for p in mask_dir.iterdir() if p.is_file() and is_image_file(p)}
    out = []
    for img in images:
        stem = _stem(img)
        found = next((by_stem[stem + s] for s in MASK_SUFFIXES if stem + s in by_stem), None)
        if found is None:
            raise MedadError(f"{img}: no mask named {stem}.* or {stem}_mask.* in {mask_dir}")
        out.append(found)
    return out


def outside_dataset(path: Path, root: Path) -> bool:
    """Whether `path`, resolved (``..``, absolute names, symbolic links), lies outside both the
    dataset folder `root` and its ``images/`` folder (which may be a link to another disk)."""
    try:
        real = path.resolve()
        bases = {root.resolve(), (root / "images").resolve()}
    except (OSError, RuntimeError, ValueError):  # a link loop, a NUL byte: not a usable entry
        return True
    return not any(real == b or b in real.parents for b in bases)


def datajson_entry_problem(entry: object, root: Path, where: str) -> tuple[Path, str] | None:
    """The (file, message) wrong with one data.json entry found at `where`, or None when it is a
    readable file inside the dataset folder. Shared by the loader and ``check-data``."""
    if not isinstance(entry, str) or not entry.strip() or "\0" in entry:
        return root / "data.json", f"entry {entry!r} in {where} is not a file name"
    path = root / "images" / entry
    if outside_dataset(path, root):
        return path, (
            f"entry {entry!r} in {where} points outside the dataset folder {root}; "
            "data.json may list only files inside it"
        )
    if not path.is_file():
        return path, f"listed in data.json ({where}) but not found"
    return None


def tree_fingerprint(name: str, files: list[Path]) -> str:
    """Changes when any file is added, removed, resized or touched."""
    h = hashlib.sha256(name.encode())
    for p in files:
        st = p.stat()
        h.update(f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def file_identity(root: Path, files: list[Path]) -> dict[str, Any]:
    """The resolved `root` and a digest of the files' names (relative to it) and sizes: cheap (no
    contents read) and stable when files are only touched, unlike `tree_fingerprint`."""
    root = root.resolve()
    h = hashlib.sha256()
    for p in sorted({f.resolve() for f in files}):
        name = p.relative_to(root).as_posix() if p.is_relative_to(root) else p.as_posix()
        h.update(f"{name}|{p.stat().st_size}\n".encode())
    return {"root": str(root), "files": len(set(files)), "digest": h.hexdigest()[:16]}


class FolderDataset(DatasetSource):
    """medad's generic layout (see module docs); `test_fraction` applies to the flat variant,
    `mask_threshold` accepts masks that are not two-valued (binarised at > it; `read_mask`)."""

    modality = "user data"

    def __init__(
        self,
        root: Path,
        *,
        channels: int = 1,
        test_fraction: float | None = None,
        split_seed: int = 0,
        name: str = "folder",
        mask_threshold: float | None = None,
    ) -> None:
        root = Path(root)
        self.mask_threshold = check_mask_threshold(mask_threshold)
        if not root.is_dir():
            raise MedadError(f"{root}: dataset folder not found")
        self.root, self.name, self.channels = root, name, channels
        if (root / "train").is_dir():
            train = list_images(root / "train" / "normal")
            test_normal = list_images(root / "test" / "normal")
            base = root / "test"
        elif (root / "normal").is_dir():
            normals = list_images(root / "normal")
            order = np.random.default_rng(split_seed).permutation(len(normals))
            n_abnormal = len(list_images(root / "abnormal"))
            n_test = (
                round(test_fraction * len(normals))
                if test_fraction is not None
                else min(n_abnormal, len(normals) // 2)
            )
            if not 1 <= n_test < len(normals):
                raise MedadError(
                    f"{root / 'normal'}: {len(normals)} normal images cannot give both a train "
                    f"and a test split (test would hold {n_test}); add images or set test_fraction"
                )
            test_normal = sorted(normals[i] for i in order[:n_test])
            train = sorted(normals[i] for i in order[n_test:])
            base = root
        else:
            raise MedadError(
                f"{root}: not a medad folder dataset; expected train/normal, test/normal, "
                "test/abnormal (and optional test/masks), or normal/, abnormal/ (and masks/)"
            )
        abnormal = list_images(base / "abnormal")
        self.has_masks = (base / "masks").is_dir()
        masks = match_masks(abnormal, base / "masks") if self.has_masks else [None] * len(abnormal)
        self._records: dict[Split, list[Record]] = {
            "train": expand_volumes([Record(f"train/{p.name}", 0, p) for p in train]),
            "test": expand_volumes(
                [Record(f"normal/{p.name}", 0, p) for p in test_normal]
                + [
                    Record(f"abnormal/{p.name}", 1, p, m)
                    for p, m in zip(abnormal, masks, strict=True)
                ]
            ),
        }
        files = train + test_normal + abnormal + [m for m in masks if m is not None]
        self._fingerprint = tree_fingerprint(f"{name}|{split_seed}|{test_fraction}", files)
        self._identity = file_identity(root, files)

    def records(self, split: Split) -> list[Record]:
        return list(self._records[split])

    def fingerprint(self) -> str:
        return self._fingerprint

    def identity(self) -> dict[str, Any]:
        return self._identity


class DataJsonDataset(DatasetSource):
    """The MedIAnomaly release layout: ``ROOT/images/*`` + ``ROOT/data.json``."""

    def __init__(self, root: Path, *, channels: int = 1, name: str = "datajson") -> None:
        root = Path(root)
        spec_path = root / "data.json"
        if not spec_path.is_file():
            raise MedadError(f"{spec_path}: file not found (expected the data.json layout)")
        try:
            spec = json.loads(spec_path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise MedadError(f"{spec_path}: not valid JSON ({exc})") from exc
        self.root, self.name, self.channels = root, name, channels
        image_dir = root / "images"

        def files(split: str, label: str) -> list[Path]:
            try:
                names = spec[split][label]
            except (KeyError, TypeError):
                raise MedadError(f'{spec_path}: missing the list "{split}" → "{label}"') from None
            if not isinstance(names, list) or not names:
                raise MedadError(f'{spec_path}: "{split}" → "{label}" must be a non-empty list')
            where = f'"{split}" → "{label}"'
            bad = [p for n in names if (p := datajson_entry_problem(n, root, where)) is not None]
            if bad:
                more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
                raise MedadError(f"{bad[0][0]}: {bad[0][1]}{more}")
            return [image_dir / n for n in names]

        train, normal, abnormal = files("train", "0"), files("test", "0"), files("test", "1")
        self._records: dict[Split, list[Record]] = {
            "train": expand_volumes([Record(p.name, 0, p) for p in train]),
            "test": expand_volumes(
                [Record(p.name, 0, p) for p in normal] + [Record(p.name, 1, p) for p in abnormal]
            ),
        }
        self._fingerprint = tree_fingerprint(name, [spec_path, *train, *normal, *abnormal])
        self._identity = file_identity(root, [spec_path, *train, *normal, *abnormal])

    def records(self, split: Split) -> list[Record]:
        return list(self._records[split])

    def fingerprint(self) -> str:
        return self._fingerprint

    def identity(self) -> dict[str, Any]:
        return self._identity


def detect_layout(root: Path, **options: object) -> DatasetSource:
    """Open a folder with whichever supported layout it holds."""
    root = Path(root)
    if (root / "data.json").is_file():
        return DataJsonDataset(root, **options)  # type: ignore[arg-type]
    return FolderDataset(root, **options)  # type: ignore[arg-type]
