"""Imports every module that registers datasets, so that the registry is complete."""

from medad.data import layouts, synthetic  # noqa: F401
from medad.data.base import register_dataset
from medad.errors import MedadError


def _require_root(name: str, root):
    if root is None:
        raise MedadError(
            f"dataset {name!r} is read from a folder: give --data-root DIR (or set MEDAD_DATA)"
        )
    return root


@register_dataset(
    "folder",
    modality="any",
    description="your own images: train/normal, test/normal, test/abnormal[, test/masks] "
    "(or normal/, abnormal/[, masks/]) under --data-root",
    needs_root=True,
)
def _folder(root, **options):
    return layouts.FolderDataset(_require_root("folder", root), **options)


@register_dataset(
    "datajson",
    modality="any",
    description="the MedIAnomaly release layout: images/ + data.json under --data-root",
    needs_root=True,
)
def _datajson(root, **options):
    return layouts.DataJsonDataset(_require_root("datajson", root), **options)


import medad.data.external  # noqa: E402,F401
import medad.data.official  # noqa: E402,F401
