"""VinDr-CXR → ``VinCXR/images/*.png`` + ``data.json``.

Source: the training set, either from Kaggle (``vinbigdata-chest-xray-abnormalities-detection``)
or from PhysioNet (``vindr-cxr`` 1.0.0)::

    train/<image_id>.dicom                       (``.dcm`` accepted too)
    annotations/image_labels_train.csv           PhysioNet: image_id, rad_id, one 0/1 column
                                                 per label ..., "No finding"
    or train.csv / annotations/annotations_train.csv
                                                 one row per finding: image_id, class_name, ...

The first of these label files found is used. Each image was read by several radiologists
(``rad_id``). Rule: an image is *normal* when every reader reported "No finding", *abnormal* when
any reader reported any finding (local lesion or global label such as "Pneumonia"). Each image is
its own group (one image per study). DICOMs are windowed by `medad.data.readers.read_dicom`
(MONOCHROME1 inverted) and written as grayscale PNG, longer side 512 px unless ``--size`` says
otherwise (about 2500-3000 px natively).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medad.data.csvfiles import files_listed, read_csv_rows
from medad.data.prepare.base import PrepareOptions, build_datajson_release, register_preparer
from medad.data.prepare.splits import Candidate
from medad.errors import MedadError

NO_FINDING = "No finding"
#: label files, in the order they are looked for
LABEL_FILES = (
    "annotations/image_labels_train.csv",
    "image_labels_train.csv",
    "train.csv",
    "annotations/annotations_train.csv",
    "annotations_train.csv",
)


def findings_per_image(path: Path) -> dict[str, set[str]]:
    """image_id → the findings any reader reported (an empty set: "No finding" only)."""
    rows = read_csv_rows(path, ("image_id",))
    if not rows:
        raise MedadError(f"{path}: the label file lists no image")
    header = list(rows[0][1])
    findings: dict[str, set[str]] = {}
    if "class_name" in header:  # one row per finding
        for line, row in rows:
            if not row["image_id"] or not row["class_name"]:
                raise MedadError(f"{path}: line {line}: empty image_id or class_name")
            found = findings.setdefault(row["image_id"], set())
            if row["class_name"] != NO_FINDING:
                found.add(row["class_name"])
        return findings
    if NO_FINDING not in header:
        raise MedadError(
            f"{path}: missing column 'class_name' (one row per finding) or {NO_FINDING!r} "
            f"(one 0/1 column per label); the header has {', '.join(map(repr, header))}"
        )
    labels = [h for h in header if h != "image_id" and h.lower() != "rad_id"]
    for line, row in rows:
        found = findings.setdefault(row["image_id"], set())
        for label in labels:
            try:
                value = float(row[label] or 0)
            except ValueError:
                raise MedadError(
                    f"{path}: line {line}: column {label!r} must be 0 or 1, got {row[label]!r}"
                ) from None
            if value >= 0.5 and label != NO_FINDING:
                found.add(label)
    return findings


@register_preparer(
    "vincxr",
    source_layout="train/*.dicom and annotations/image_labels_train.csv (PhysioNet) "
    "or train.csv (Kaggle)",
    default_size=512,
)
def build(source: Path, out: Path, options: PrepareOptions) -> dict[str, Any]:
    labels = next((source / f for f in LABEL_FILES if (source / f).is_file()), None)
    if labels is None:
        raise MedadError(
            f"{source}: no VinDr-CXR label file; expected one of {', '.join(LABEL_FILES)}"
        )
    findings = findings_per_image(labels)
    ids = sorted(findings)
    files = files_listed(ids, source / "train", (".dicom", ".dcm"), labels)
    candidates = [
        Candidate(
            1 if findings[i] else 0,
            i,
            i,
            files[i],
            kind="finding" if findings[i] else NO_FINDING,
        )
        for i in ids
    ]
    rule = (
        'normal: every reader reported "No finding"; abnormal: any reader reported any '
        "finding (local or global label)"
    )
    fields = build_datajson_release("vincxr", candidates, out, options, gray=True, rule=rule)
    return {**fields, "label_files": [labels.relative_to(source).as_posix()]}
