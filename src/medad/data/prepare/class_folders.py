"""Sources organised as one folder of images per class (Brain Tumor MRI, LAG, patch folders)."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from medad.data.inventory import file_stem
from medad.data.layouts import list_images
from medad.data.prepare.splits import Candidate, unique_names


class ClassFolder(NamedTuple):
    """A folder of images of one class."""

    path: Path
    #: 0 normal, 1 abnormal
    label: int
    #: the class name recorded in prepare.json
    kind: str
    #: put before every file name when names clash across folders, e.g. ``Training_glioma_``
    prefix: str


def class_folder_candidates(source: Path, folders: list[ClassFolder]) -> list[Candidate]:
    """Every image of each folder, each image its own group.

    Output names are the file names without extension; when two folders reuse a name, every
    name gets its folder's prefix. Raises MedadError naming a folder that is missing or holds no
    image.
    """
    candidates = [
        Candidate(f.label, file_stem(p), p.relative_to(source).as_posix(), p, kind=f.kind)
        for f in folders
        for p in list_images(f.path)
    ]
    prefixes = {f.path: f.prefix for f in folders}
    return unique_names(candidates, lambda c: prefixes[c.source.parent], source)


def subfolders(folder: Path) -> list[Path]:
    """The visible subfolders of `folder`, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
