"""The dataset protocol: what every dataset (embedded, folder, official layout) provides.

A dataset lists *records*: an id, a label (0 normal, 1 abnormal), the image (a file path or an
already decoded array) and an optional mask. Decoding, resizing and caching are done once, by
`medad.data.loading`, for every dataset alike, so a dataset only has to say what exists where.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from medad.errors import MedadError

Split = Literal["train", "test"]
SPLITS: tuple[Split, ...] = ("train", "test")


@dataclass(frozen=True)
class Record:
    """One image of a split.

    `image` and `mask` are either a path (decoded by `medad.data.readers`) or an array already in
    memory: images as float32 in [0, 1] (H, W) or (H, W, 3) or uint8, masks as bool (H, W).
    With `slice` set, `image` (and a `mask` path) is a NIfTI volume and the record is its axial
    slice of that index (`medad.data.readers.nifti_axial_slices`); the id ends in ``#<slice>``.
    """

    id: str
    label: int
    image: Path | np.ndarray
    mask: Path | np.ndarray | None = None
    slice: int | None = None


class DatasetSource(ABC):
    """A named dataset: lists the records of its train (normal only) and test splits."""

    #: registry name, e.g. ``synth-brain``
    name: str = ""
    #: imaging modality, e.g. ``brain MRI``
    modality: str = ""
    #: native number of channels: 1 for grayscale data, 3 for RGB (Camelyon16)
    channels: int = 1
    #: whether test abnormal images carry pixel masks
    has_masks: bool = False
    #: masks are binarised at > this value; None: masks must be two-valued (`read_mask`)
    mask_threshold: float | None = None

    @abstractmethod
    def records(self, split: Split) -> list[Record]:
        """The records of `split`; train holds normal images only."""

    def fingerprint(self) -> str:
        """A string that changes when the dataset's content changes (used as a cache key)."""
        return self.name

    def identity(self) -> dict[str, Any] | None:
        """What tells this dataset apart from another with the same name and options; part of
        the configuration a run id hashes. None for data generated from its options alone;
        datasets read from disk give their folder and a digest of their files (`file_identity`)."""
        return None


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    modality: str
    description: str
    needs_root: bool
    factory: Callable[..., DatasetSource] = field(repr=False)


_DATASETS: dict[str, DatasetInfo] = {}


def register_dataset(
    name: str, *, modality: str, description: str, needs_root: bool
) -> Callable[[Callable[..., DatasetSource]], Callable[..., DatasetSource]]:
    """Register a dataset factory ``factory(root: Path | None, **options) -> DatasetSource``."""

    def deco(factory: Callable[..., DatasetSource]) -> Callable[..., DatasetSource]:
        if name in _DATASETS:
            raise RuntimeError(f"dataset {name!r} registered twice")
        _DATASETS[name] = DatasetInfo(name, modality, description, needs_root, factory)
        return factory

    return deco


def dataset_infos() -> list[DatasetInfo]:
    """All registered datasets, in registration order."""
    import medad.data.registry  # noqa: F401  (fills the registry)

    return list(_DATASETS.values())


def get_dataset(name: str, root: Path | str | None = None, **options: Any) -> DatasetSource:
    """Build the dataset registered as `name`; `root` is the data root for datasets on disk."""
    import medad.data.registry  # noqa: F401

    if name not in _DATASETS:
        known = ", ".join(sorted(_DATASETS))
        raise MedadError(f"unknown dataset {name!r}; known datasets: {known}")
    info = _DATASETS[name]
    try:
        return info.factory(Path(root) if root is not None else None, **options)
    except TypeError as exc:
        if "unexpected keyword argument" not in str(exc):
            raise
        bad = str(exc).split("argument")[-1].strip()
        raise MedadError(f"dataset {name!r} has no option {bad}") from None
