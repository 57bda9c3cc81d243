"""ISIC 2018 Task 3 → ``ISIC2018/`` in the challenge's own layout (validated, then copied).

Source: the four official archives of the ISIC 2018 challenge, Task 3, unpacked side by side
(``--source`` may also be a folder holding them in ``ISIC2018_Task3/`` or ``ISIC2018/``)::

    ISIC2018_Task3_Training_Input/ISIC_*.jpg
    ISIC2018_Task3_Training_GroundTruth/ISIC2018_Task3_Training_GroundTruth.csv
    ISIC2018_Task3_Test_Input/ISIC_*.jpg
    ISIC2018_Task3_Test_GroundTruth/ISIC2018_Task3_Test_GroundTruth.csv

The paper uses this layout as released, so there is nothing to split: NV training images train,
the whole test set tests (6705; 909 NV + 603 others). ``prepare`` checks the CSVs (columns
``image``, MEL, NV, BCC, AKIEC, BKL, DF, VASC; one class per row), decodes every listed image,
and copies the listed images (all training classes included), the CSVs and the archives' text
files (licence, attribution) into ``--out`` — as hard links where the file system allows, so no
space is used twice. ``--size`` writes resized colour PNGs instead. ``--counts`` and ``--seed``
do not apply.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from medad.data.catalog import benchmark
from medad.data.official import (
    ISIC_PARTS,
    isic_ground_truth_csv,
    isic_ground_truth_dir,
    isic_input_dir,
    scan_isic2018,
)
from medad.data.prepare.base import PrepareOptions, register_preparer
from medad.data.prepare.output import link_or_copy, write_png
from medad.data.readers import read_image


def _release_root(source: Path) -> Path:
    for name in ("ISIC2018_Task3", "ISIC2018"):
        if isic_input_dir(source / name, "Training").is_dir():
            return source / name
    return source


@register_preparer(
    "isic2018",
    source_layout="ISIC2018_Task3_Training_Input/, ISIC2018_Task3_Training_GroundTruth/, "
    "ISIC2018_Task3_Test_Input/, ISIC2018_Task3_Test_GroundTruth/",
    takes_counts=False,
)
def build(source: Path, out: Path, options: PrepareOptions) -> dict[str, Any]:
    root = _release_root(source)
    inventory = scan_isic2018(root, keep_train_abnormal=True)
    inventory.raise_problems()
    for _, part in ISIC_PARTS:
        src_input, src_gt = isic_input_dir(root, part), isic_ground_truth_dir(root, part)
        dst_input, dst_gt = isic_input_dir(out, part), isic_ground_truth_dir(out, part)
        dst_input.mkdir()
        dst_gt.mkdir()
        csv_path = isic_ground_truth_csv(src_gt)
        shutil.copyfile(csv_path, dst_gt / f"{dst_gt.name}.csv")
        for src, dst in ((src_input, dst_input), (src_gt, dst_gt)):
            for extra in src.glob("*.txt"):  # licence and attribution notes
                shutil.copyfile(extra, dst / extra.name)
    copied = 0
    for records in inventory.records.values():
        for rec in records:
            assert isinstance(rec.image, Path)
            dst_dir = out / rec.image.parent.name
            image = read_image(rec.image)  # every listed image must decode
            if options.size is None:
                link_or_copy(rec.image, dst_dir / rec.image.name)
            else:
                write_png(dst_dir / f"{rec.image.stem}.png", image, size=options.size, gray=False)
            copied += 1
    options.log(f"isic2018: {copied} images checked and copied")
    test = inventory.records["test"]
    counts = {
        "train": len(inventory.records["train"]),
        "test_normal": sum(r.label == 0 for r in test),
        "test_abnormal": sum(r.label == 1 for r in test),
    }
    return {
        "rule": "normal: NV (melanocytic nevus); abnormal: MEL, BCC, AKIEC, BKL, DF, VASC; "
        "train: NV training images; test: the official test set",
        "counts": counts,
        "paper_counts": benchmark("isic2018").counts.as_dict(),
        "counts_rule": "official split",
        "available": {
            "training_images": counts["train"] + len(inventory.records["train_abnormal"]),
            "test_images": len(test),
        },
    }
