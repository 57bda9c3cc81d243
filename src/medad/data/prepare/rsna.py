"""RSNA Pneumonia Detection Challenge → ``RSNA/images/*.png`` + ``data.json``.

Source: the Kaggle competition ``rsna-pneumonia-detection-challenge`` (stage 2 training set; the
stage 1 file names are accepted too)::

    stage_2_train_images/<patientId>.dcm
    stage_2_train_labels.csv           patientId,x,y,width,height,Target (one row per box)
    stage_2_detailed_class_info.csv    patientId,class (recommended)

Rule (the paper compares normal radiographs with lung opacity): an image is *abnormal* when its
Target is 1 (lung opacity, class "Lung Opacity"); *normal* when its Target is 0 and its class is
"Normal". Class "No Lung Opacity / Not Normal" images are neither and are left out. Without the
class file, normal falls back to Target 0, which also takes in the "not normal" images;
``prepare.json`` says which rule was applied. One image per patient, so patients are the groups.
DICOM images are windowed by `medad.data.readers.read_dicom` and written as grayscale PNG, longer
side 512 px unless ``--size`` says otherwise (1024 px natively).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medad.data.csvfiles import files_listed, read_csv_rows
from medad.data.prepare.base import PrepareOptions, build_datajson_release, register_preparer
from medad.data.prepare.splits import Candidate
from medad.errors import MedadError

NORMAL_CLASS = "Normal"


def _find(source: Path, suffix: str) -> Path:
    for stage in ("stage_2", "stage_1"):
        if (source / f"{stage}_{suffix}").exists():
            return source / f"{stage}_{suffix}"
    return source / f"stage_2_{suffix}"


def read_targets(path: Path) -> dict[str, int]:
    """patientId → Target (1 if any of its rows has Target 1)."""
    targets: dict[str, int] = {}
    for line, row in read_csv_rows(path, ("patientId", "Target")):
        try:
            target = int(float(row["Target"]))
        except ValueError:
            target = -1
        if target not in (0, 1) or not row["patientId"]:
            raise MedadError(f"{path}: line {line}: expected a patientId and Target 0 or 1")
        targets[row["patientId"]] = max(target, targets.get(row["patientId"], 0))
    if not targets:
        raise MedadError(f"{path}: the labels file lists no image")
    return targets


@register_preparer(
    "rsna",
    source_layout="stage_2_train_images/*.dcm, stage_2_train_labels.csv and "
    "stage_2_detailed_class_info.csv",
    default_size=512,
)
def build(source: Path, out: Path, options: PrepareOptions) -> dict[str, Any]:
    labels_csv = _find(source, "train_labels.csv")
    targets = read_targets(labels_csv)
    class_csv = _find(source, "detailed_class_info.csv")
    if class_csv.is_file():
        classes = {
            row["patientId"]: row["class"]
            for _, row in read_csv_rows(class_csv, ("patientId", "class"))
        }
        normal = [p for p, t in targets.items() if t == 0 and classes.get(p) == NORMAL_CLASS]
        rule = (
            'abnormal: Target 1 (lung opacity); normal: Target 0 and class "Normal"; '
            '"No Lung Opacity / Not Normal" left out'
        )
    else:
        normal = [p for p, t in targets.items() if t == 0]
        rule = (
            "abnormal: Target 1 (lung opacity); normal: Target 0 (no class file, so this "
            'includes "No Lung Opacity / Not Normal" images)'
        )
    abnormal = [p for p, t in targets.items() if t == 1]
    files = files_listed(normal + abnormal, _find(source, "train_images"), (".dcm",), labels_csv)
    candidates = [
        Candidate(label, pid, pid, files[pid], kind="Lung Opacity" if label else NORMAL_CLASS)
        for label, ids in ((0, normal), (1, abnormal))
        for pid in ids
    ]
    fields = build_datajson_release("rsna", candidates, out, options, gray=True, rule=rule)
    labels = [p.name for p in (labels_csv, class_csv) if p.is_file()]
    return {**fields, "excluded": len(targets) - len(candidates), "label_files": labels}
