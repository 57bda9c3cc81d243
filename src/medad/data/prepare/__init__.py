"""``medad prepare``: build the benchmarks' release layouts from the official raw downloads.

One module per source (`rsna`, `vincxr`, `brain_tumor`, `lag`, `isic2018`, `camelyon16`,
`brats2021`) documents the files it reads and the rule that labels and splits them; `splits`
chooses the images, `output` writes them all-or-nothing. Every prepared folder holds a
``prepare.json`` recording the source, seed, size, counts and rule.
"""

from medad.data.catalog import MANIFEST_NAME
from medad.data.prepare import (  # noqa: F401  (each module registers its preparer)
    brain_tumor,
    brats2021,
    camelyon16,
    isic2018,
    lag,
    rsna,
    vincxr,
)
from medad.data.prepare.base import PREPARERS, Preparer, PrepareResult, get_preparer, prepare
from medad.data.prepare.output import atomic_output_dir
from medad.data.prepare.splits import parse_counts

__all__ = [
    "MANIFEST_NAME",
    "PREPARERS",
    "PrepareResult",
    "Preparer",
    "atomic_output_dir",
    "get_preparer",
    "parse_counts",
    "prepare",
]
