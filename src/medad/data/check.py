"""``medad check-data DIR``: everything wrong with a dataset folder, each problem naming a file.

The layout is recognised from what the folder holds:

- ``data.json`` + ``images/``: RSNA, VinCXR, BrainTumor, LAG (the paper's release);
- ``ISIC2018_Task3_*`` folders: ISIC 2018 Task 3;
- ``train/`` + ``test/tumor`` (+ ``test/normal``, ``test/annotation``): BraTS2021;
- ``train/good`` + ``ground_truth/``: an MVTec AD category;
- ``train/good`` + ``test/{good,Ungood}`` (and BMAD's ``valid/``): Camelyon16, BMAD;
- ``train/normal`` + ``test/{normal,abnormal}`` (+ ``test/masks``): medad's generic layout.

Checks: folders and listed files that are missing, data.json entries outside the dataset folder,
classes with no image, CSV and JSON errors (line numbers), images that do not decode or are larger
than the reader's pixel cap, masks that are missing, do not decode, are not two-valued or whose
size differs from their image's, masks without an image, files identical (byte for byte) in train
and in a test split, and, when ``prepare.json`` is present, counts that no longer match it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from medad.data.base import Record
from medad.data.catalog import MANIFEST_NAME
from medad.data.external import scan_mvtec
from medad.data.inventory import Inventory, Problem
from medad.data.layouts import datajson_entry_problem
from medad.data.official import (
    isic_input_dir,
    scan_brats2021,
    scan_good_ungood,
    scan_isic2018,
    scan_split_folders,
)
from medad.data.readers import (
    check_mask_threshold,
    file_format,
    nifti_axial_label_slices,
    nifti_axial_slices,
    nifti_depth,
    read_image,
    read_mask,
)
from medad.errors import MedadError


@dataclass
class DataReport:
    """What `inspect_data` found: the layout, images per split and label, and the problems."""

    root: Path
    layout: str
    counts: dict[str, int]
    problems: list[Problem]

    @property
    def ok(self) -> bool:
        return not self.problems


def scan_datajson(root: Path) -> Inventory:
    """The ``images/`` + ``data.json`` layout, listing every problem instead of stopping."""
    inv = Inventory("datajson", root)
    spec_path, image_dir = root / "data.json", root / "images"
    try:
        spec = json.loads(spec_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        inv.add(spec_path, f"cannot read this JSON file ({exc})")
        return inv
    if not image_dir.is_dir():
        inv.add(image_dir, "folder not found (the images listed in data.json)")
    for split, label, what in (
        ("train", "0", "normal training images"),
        ("test", "0", "normal test images"),
        ("test", "1", "abnormal test images"),
    ):
        part = spec.get(split) if isinstance(spec, dict) else None
        names = part.get(label) if isinstance(part, dict) else None
        if not isinstance(names, list):
            inv.add(spec_path, f'missing the list "{split}" → "{label}" ({what})')
            continue
        if not names:
            inv.add(spec_path, f'"{split}" → "{label}" is empty: no {what}')
        seen: set[str] = set()
        where = f'"{split}" → "{label}"'
        for name in names:
            if isinstance(name, str) and name in seen:
                inv.add(spec_path, f"{name} is listed twice in {where}")
                continue
            problem = datajson_entry_problem(name, root, where)
            if problem is not None:
                inv.add(*problem)
                continue
            seen.add(name)
            inv.records[split].append(Record(name, int(label), image_dir / name))
    return inv


def scan_generic_folders(root: Path) -> Inventory:
    """medad's generic split layout (`medad.data.layouts.FolderDataset`)."""
    return scan_split_folders(
        root,
        layout="folder",
        train="train/normal",
        normal="test/normal",
        abnormal="test/abnormal",
        masks="test/masks",
        mask_names=lambda s: [s, f"{s}_mask", f"{s}_seg"],
        masks_required=False,
    )


def scan_any(root: Path) -> Inventory:
    """Recognise the layout of `root` (see module docs) and scan it."""
    if (root / "data.json").is_file():
        return scan_datajson(root)
    if isic_input_dir(root, "Training").is_dir() or isic_input_dir(root, "Test").is_dir():
        return scan_isic2018(root)
    if (root / "test" / "tumor").is_dir():
        return scan_brats2021(root)
    if (root / "train" / "good").is_dir() and (root / "ground_truth").is_dir():
        return scan_mvtec(root)
    if (root / "train" / "good").is_dir():
        inv = scan_good_ungood(root)
        if (root / "valid").is_dir():
            valid = scan_good_ungood(root, eval_split="valid")
            inv.records["valid"] = valid.records["test"]
            train = root / "train"
            inv.problems += [
                p for p in valid.problems if p.path != train and train not in p.path.parents
            ]
            inv.warnings += valid.warnings
        return inv
    if (root / "train" / "normal").is_dir():
        return scan_generic_folders(root)
    inv = Inventory("unknown", root)
    inv.add(
        root,
        "not a dataset layout medad knows: expected data.json + images/, the "
        "ISIC2018_Task3_* folders, train/ + test/{normal,tumor,annotation}, "
        "train/good + test/{good,Ungood}, an MVTec AD category, or train/normal + "
        "test/{normal,abnormal}",
    )
    return inv


def _is_volume(path: Path) -> bool:
    """A 3-D NIfTI volume, read slice by slice (`medad.data.layouts.expand_volumes`)."""
    return file_format(path) == "nifti" and nifti_depth(path) > 1


def _without_prefix(exc: MedadError, path: Path) -> str:
    return str(exc).removeprefix(f"{path}: ")


def content_problems(inv: Inventory, mask_threshold: float | None = None) -> list[Problem]:
    """Decode every image and mask; compare mask sizes; find train/test duplicates.

    Masks must be two-valued unless `mask_threshold` is given (`read_mask`)."""
    problems: list[Problem] = []
    train_hashes: dict[str, Path] = {}
    splits = sorted(inv.records, key=lambda s: s != "train")  # train first
    for split in splits:
        for rec in inv.records[split]:
            if not isinstance(rec.image, Path):
                continue
            try:
                if _is_volume(rec.image):  # its axial plane; every slice has the same
                    shape = nifti_axial_slices(rec.image, indices=[0]).shape[1:]
                else:
                    shape = read_image(rec.image).shape[:2]
            except MedadError as exc:
                problems.append(Problem(rec.image, _without_prefix(exc, rec.image)))
                shape = None
            digest = hashlib.sha256(rec.image.read_bytes()).hexdigest()
            if split == "train":
                train_hashes.setdefault(digest, rec.image)
            elif digest in train_hashes:
                twin = train_hashes[digest]
                message = (
                    f"listed in both train and {split}"
                    if twin == rec.image
                    else f"identical to the training image {twin} (train and {split} overlap)"
                )
                problems.append(Problem(rec.image, message))
            if isinstance(rec.mask, Path):
                try:
                    if _is_volume(rec.mask):
                        mask_shape = nifti_axial_label_slices(rec.mask, indices=[0]).shape[1:]
                    else:
                        mask_shape = read_mask(rec.mask, threshold=mask_threshold).shape
                except MedadError as exc:
                    problems.append(Problem(rec.mask, _without_prefix(exc, rec.mask)))
                    continue
                if shape is not None and mask_shape != shape:
                    problems.append(
                        Problem(
                            rec.mask,
                            f"mask is {mask_shape[1]}x{mask_shape[0]} but its image "
                            f"{rec.image.name} is {shape[1]}x{shape[0]}",
                        )
                    )
    return problems


def _counts(inv: Inventory) -> dict[str, int]:
    out = {"train": len(inv.records.get("train", []))}
    for split, recs in inv.records.items():
        if split != "train":
            out[f"{split}_normal"] = sum(r.label == 0 for r in recs)
            out[f"{split}_abnormal"] = sum(r.label == 1 for r in recs)
    return out


def _manifest_problems(root: Path, counts: dict[str, int]) -> list[Problem]:
    path = root / MANIFEST_NAME
    if not path.is_file():
        return []
    try:
        recorded = json.loads(path.read_text()).get("counts", {})
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError) as exc:
        return [Problem(path, f"cannot read this JSON file ({exc})")]
    differ = {k: (v, counts.get(k)) for k, v in recorded.items() if counts.get(k) != v}
    if not differ:
        return []
    text = ", ".join(f"{k} {want} recorded, {got} found" for k, (want, got) in differ.items())
    return [Problem(path, f"the folder no longer matches its preparation: {text}")]


def inspect_data(root: Path | str, *, mask_threshold: float | None = None) -> DataReport:
    """Scan and fully check the dataset folder `root` (see module docs); `mask_threshold` accepts
    masks that are not two-valued, as the loaders' ``mask_threshold`` option does."""
    root = Path(root)
    mask_threshold = check_mask_threshold(mask_threshold)
    if not root.is_dir():
        raise MedadError(f"{root}: dataset folder not found")
    inv = scan_any(root)
    counts = _counts(inv)
    problems = list(inv.problems) + inv.warnings + content_problems(inv, mask_threshold)
    if not inv.problems:
        problems += _manifest_problems(root, counts)
    return DataReport(root, inv.layout, counts, problems)


def check_data(root: Path | str) -> list[Problem]:
    """Every problem of the dataset folder `root`; an empty list when it is ready to use."""
    return inspect_data(root).problems


__all__ = ["DataReport", "Problem", "check_data", "inspect_data"]
