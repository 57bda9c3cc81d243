"""LAG (large-scale attention-based glaucoma database) → ``LAG/images/*`` + ``data.json``.

Source: the LAG database from its authors (github.com/smilell/AG-CNN; ``LAG_database_part_1``)::

    non_glaucoma/image/*.jpg          (attention_map/ and label/ beside it are not used)
    suspicious_glaucoma/image/*.jpg

``--source`` may point at ``LAG_database_part_1`` or at the folder holding it. Class folders
without an ``image/`` subfolder are read directly. Rule: ``non_glaucoma`` is normal,
``suspicious_glaucoma`` abnormal (paper: 1500 train, 811 + 811 test). Each image is its own
group (the database has no patient ids); when both classes use a file name, every name gets
its class as a prefix (``non_glaucoma_1.jpg``). Images are copied unchanged unless ``--size`` is
given, which writes PNGs (in colour: the loader converts to grayscale, ``channels=3`` keeps it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medad.data.prepare.base import PrepareOptions, build_datajson_release, register_preparer
from medad.data.prepare.class_folders import ClassFolder, class_folder_candidates
from medad.errors import MedadError

CLASSES = (("non_glaucoma", 0), ("suspicious_glaucoma", 1))
ARCHIVE_FOLDER = "LAG_database_part_1"


@register_preparer(
    "lag",
    source_layout="non_glaucoma/image/*.jpg and suspicious_glaucoma/image/*.jpg "
    f"(the {ARCHIVE_FOLDER} folder)",
)
def build(source: Path, out: Path, options: PrepareOptions) -> dict[str, Any]:
    root = source / ARCHIVE_FOLDER if (source / ARCHIVE_FOLDER).is_dir() else source
    folders = []
    for name, label in CLASSES:
        folder = root / name
        if not folder.is_dir():
            raise MedadError(
                f"{folder}: folder not found (LAG holds non_glaucoma/image/ and "
                "suspicious_glaucoma/image/)"
            )
        images = folder / "image" if (folder / "image").is_dir() else folder
        folders.append(ClassFolder(images, label, name, f"{name}_"))
    candidates = class_folder_candidates(root, folders)
    rule = "normal: non_glaucoma; abnormal: suspicious_glaucoma"
    return build_datajson_release("lag", candidates, out, options, gray=False, rule=rule)
