"""What a dataset folder holds, and what is wrong with it.

A layout scanner (`medad.data.official`, `medad.data.external`, `medad.data.check`) walks a folder
and returns an `Inventory`: the records of each split plus every `Problem` met on the way (missing
folder, empty class, missing mask, unreadable CSV row), each naming a file. The loaders refuse an
inventory with problems (`InventoryDataset`); ``medad check-data`` lists them all, then goes on to
decode every file. Scanning never decodes images, so opening a dataset stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from medad.data.base import DatasetSource, Record, Split
from medad.data.layouts import tree_fingerprint
from medad.data.readers import check_mask_threshold, is_image_file
from medad.errors import MedadError


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a dataset: the file or folder concerned and what is wrong."""

    path: Path
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass
class Inventory:
    """The records a layout lists, per split, and the problems met while listing them.

    Splits are ``train`` and ``test``; a layout with a validation split (BMAD) may add ``valid``
    for ``check-data``, which checks it like ``test``.
    """

    layout: str
    root: Path
    records: dict[str, list[Record]] = field(default_factory=lambda: {"train": [], "test": []})
    problems: list[Problem] = field(default_factory=list)
    #: problems ``check-data`` reports but loaders tolerate (a mask without an image is unused)
    warnings: list[Problem] = field(default_factory=list)

    def add(self, path: Path, message: str) -> None:
        self.problems.append(Problem(path, message))

    def files(self) -> list[Path]:
        """Every image and mask path listed (for fingerprints)."""
        out: list[Path] = []
        for recs in self.records.values():
            for r in recs:
                out += [p for p in (r.image, r.mask) if isinstance(p, Path)]
        return out

    def raise_problems(self) -> None:
        """Raise the first problem as a MedadError (with how many more there are), if any."""
        if not self.problems:
            return
        more = len(self.problems) - 1
        tail = (
            f" (and {more} more problem{'s' if more > 1 else ''}; "
            f"`medad check-data {self.root}` lists them all)"
            if more
            else ""
        )
        raise MedadError(f"{self.problems[0]}{tail}")


class InventoryDataset(DatasetSource):
    """A dataset whose records come from an `Inventory` with no problems."""

    def __init__(
        self,
        inventory: Inventory,
        *,
        name: str,
        modality: str,
        channels: int,
        has_masks: bool,
        mask_threshold: float | None = None,
    ) -> None:
        inventory.raise_problems()
        self.mask_threshold = check_mask_threshold(mask_threshold)
        self.root = inventory.root
        self.name, self.modality, self.channels = name, modality, channels
        self.has_masks = has_masks
        self._records: dict[Split, list[Record]] = {
            "train": list(inventory.records["train"]),
            "test": list(inventory.records["test"]),
        }
        self._fingerprint = tree_fingerprint(f"{name}|{inventory.layout}", inventory.files())

    def records(self, split: Split) -> list[Record]:
        return list(self._records[split])

    def fingerprint(self) -> str:
        return self._fingerprint


def file_stem(path: Path) -> str:
    """The name without its extension (``.nii.gz`` counts as one extension)."""
    name = path.name
    return name[: -len(".nii.gz")] if name.lower().endswith(".nii.gz") else path.stem


def images_in(folder: Path, inv: Inventory, what: str) -> list[Path]:
    """The image files directly in `folder`, sorted; records a problem if missing or empty."""
    if not folder.is_dir():
        inv.add(folder, f"folder not found (it should hold {what})")
        return []
    files = sorted(p for p in folder.iterdir() if p.is_file() and is_image_file(p))
    if not files:
        inv.add(folder, f"no image files in this folder (it should hold {what})")
    return files


def match_masks(
    images: Iterable[Path],
    mask_dir: Path,
    candidates: Callable[[str], list[str]],
    inv: Inventory,
) -> list[Path | None]:
    """For each image, the file in `mask_dir` whose stem is the first of ``candidates(stem)``.

    A missing folder is one problem; each image without a mask is one problem naming the image;
    each mask without an image is a warning naming the mask.
    """
    images = list(images)
    if not mask_dir.is_dir():
        inv.add(mask_dir, "masks folder not found")
        return [None] * len(images)
    by_stem = {file_stem(p): p for p in mask_dir.iterdir() if p.is_file() and is_image_file(p)}
    out: list[Path | None] = []
    for img in images:
        names = candidates(file_stem(img))
        found = next((by_stem[n] for n in names if n in by_stem), None)
        if found is None:
            inv.add(img, f"no mask for this image in {mask_dir} (expected {names[0]}.png)")
        out.append(found)
    used = set(out)
    for mask in sorted(set(by_stem.values()) - used):
        inv.warnings.append(Problem(mask, "mask without an image (no image has this name)"))
    return out


def relative_id(path: Path, root: Path) -> str:
    """A record id: the path relative to the dataset root, with forward slashes."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.name


def locate(root: Path, folders: Iterable[str], looks_like: Callable[[Path], bool]) -> Path | None:
    """The dataset folder: ``root/<folder>`` for the first listed folder that exists, else `root`
    itself when it looks like the layout; None when neither."""
    for name in folders:
        if (root / name).is_dir():
            return root / name
    return root if looks_like(root) else None
