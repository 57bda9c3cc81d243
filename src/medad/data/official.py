"""The seven benchmark datasets of the MedIAnomaly study, read in the paper's release layout.

Registered by name under a data root (``--data-root`` or ``$MEDAD_DATA``). Each loader finds its
folder as ``ROOT/<release folder>`` (names in `medad.data.catalog`, e.g. ``RSNA``), or accepts
``ROOT`` pointing at the dataset folder itself. ``medad prepare NAME`` builds these folders from
the official raw downloads.

==============  =====================  ================================================  =========
name            folder                 layout                                            channels
==============  =====================  ================================================  =========
``rsna``        ``RSNA/``              ``images/*`` + ``data.json``                      1
``vincxr``      ``VinCXR/``            ``images/*`` + ``data.json``                      1
``brain-tumor`` ``BrainTumor/``        ``images/*`` + ``data.json``                      1
``lag``         ``LAG/``               ``images/*`` + ``data.json``                      1
``isic2018``    ``ISIC2018/``          official ``ISIC2018_Task3_*`` folders (below)     1
``camelyon16``  ``Camelyon16/``        ``train/good``, ``test/good``, ``test/Ungood``    3
``brats2021``   ``BraTS2021/``         ``train/``, ``test/{normal,tumor,annotation}``    1, masks
==============  =====================  ================================================  =========

``data.json`` is read by `medad.data.layouts.DataJsonDataset`. ISIC 2018 Task 3 keeps the
challenge's own folders (the release's ``ISIC2018_Task3/`` name is accepted too)::

    ISIC2018_Task3_Training_Input/ISIC_*.jpg
    ISIC2018_Task3_Training_GroundTruth/ISIC2018_Task3_Training_GroundTruth.csv
    ISIC2018_Task3_Test_Input/ISIC_*.jpg
    ISIC2018_Task3_Test_GroundTruth/ISIC2018_Task3_Test_GroundTruth.csv

The ground-truth CSVs have a column ``image`` and one-hot columns MEL, NV, BCC, AKIEC, BKL, DF,
VASC; NV (melanocytic nevus) is normal, the other six abnormal. Training uses the NV images of the
training set (6705), testing the whole test set (909 NV + 603 others), as in PAPER.md. An image is
found by its name with any image extension (the challenge ships ``.jpg``; ``prepare --size``
writes ``.png``).

BraTS2021 masks sit in ``test/annotation`` and are named like their image with ``flair``
replaced by ``seg`` (``BraTS2021_00000_flair_80.png`` ↔ ``BraTS2021_00000_seg_80.png``).

Channels follow the paper's reconstruction protocol (grayscale except Camelyon16); every loader
takes ``channels=3`` (``--data-option channels=3``) to keep colour, e.g. for LAG or ISIC2018.
Epoch budgets per dataset (Brain Tumor 600 for the reconstruction family, ...) are the methods'
business: `medad.methods.budgets`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from medad.data.base import DatasetSource, Record, register_dataset
from medad.data.catalog import BENCHMARKS, Benchmark, benchmark
from medad.data.csvfiles import read_csv_rows
from medad.data.inventory import (
    Inventory,
    InventoryDataset,
    file_stem,
    images_in,
    locate,
    match_masks,
    relative_id,
)
from medad.data.layouts import DataJsonDataset
from medad.data.readers import is_image_file
from medad.errors import MedadError

#: ISIC 2018 Task 3 diagnosis columns, in the order of the official CSVs; NV is normal
ISIC_CLASSES = ("MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC")
ISIC_NORMAL = "NV"
#: (split, part of the official folder names)
ISIC_PARTS = (("train", "Training"), ("test", "Test"))


def isic_input_dir(root: Path, part: str) -> Path:
    return root / f"ISIC2018_Task3_{part}_Input"


def isic_ground_truth_dir(root: Path, part: str) -> Path:
    return root / f"ISIC2018_Task3_{part}_GroundTruth"


# --------------------------------------------------------------------------------------------
# layout scanners


def _class_dirs(split_dir: Path, cls: str) -> tuple[Path, Path]:
    """Image and label folders of class `cls` in a good/Ungood split folder.

    ``<split>/<cls>/`` holds the images directly (Camelyon16, BMAD's image-level sets) or in
    ``img/`` beside ``label/`` (BMAD's pixel-level sets); some archives put the class inside
    instead (``<split>/img/<cls>/`` and ``<split>/label/<cls>/``).
    """
    if (split_dir / "img" / cls).is_dir():
        return split_dir / "img" / cls, split_dir / "label" / cls
    cls_dir = split_dir / cls
    images = cls_dir / "img" if (cls_dir / "img").is_dir() else cls_dir
    return images, cls_dir / "label"


def scan_good_ungood(
    root: Path, *, eval_split: str = "test", layout: str = "good-ungood"
) -> Inventory:
    """``train/good`` (normal training), ``<eval_split>/good`` and ``<eval_split>/Ungood``.

    Masks are read from the ``label`` folder of Ungood when there is one, matched by name.
    """
    inv = Inventory(layout, root)
    train_dir, _ = _class_dirs(root / "train", "good")
    inv.records["train"] = [
        Record(relative_id(p, root), 0, p)
        for p in images_in(train_dir, inv, "the normal training images")
    ]
    test: list[Record] = []
    for label, cls in ((0, "good"), (1, "Ungood")):
        image_dir, label_dir = _class_dirs(root / eval_split, cls)
        what = f"the {'abnormal' if label else 'normal'} {eval_split} images"
        images = images_in(image_dir, inv, what)
        if label == 1 and label_dir.is_dir():
            masks = match_masks(images, label_dir, lambda s: [s], inv)
        else:
            masks = [None] * len(images)
        test += [
            Record(relative_id(p, root), label, p, m) for p, m in zip(images, masks, strict=True)
        ]
    inv.records["test"] = test
    return inv


def flair_to_seg(stem: str) -> str:
    """The BraTS2021 release's mask name: the image's, with its last ``flair`` → ``seg``."""
    i = stem.rfind("flair")
    return stem if i < 0 else f"{stem[:i]}seg{stem[i + len('flair') :]}"


def scan_split_folders(
    root: Path,
    *,
    layout: str,
    train: str,
    normal: str,
    abnormal: str,
    masks: str,
    mask_names: Callable[[str], list[str]],
    masks_required: bool,
) -> Inventory:
    """Normal training images, normal and abnormal test images, and masks, in four folders."""
    inv = Inventory(layout, root)
    inv.records["train"] = [
        Record(relative_id(p, root), 0, p)
        for p in images_in(root / train, inv, "the normal training images")
    ]
    normals = images_in(root / normal, inv, "the normal test images")
    abnormals = images_in(root / abnormal, inv, "the abnormal test images")
    if masks_required or (root / masks).is_dir():
        found = match_masks(abnormals, root / masks, mask_names, inv)
    else:
        found = [None] * len(abnormals)
    inv.records["test"] = [Record(relative_id(p, root), 0, p) for p in normals] + [
        Record(relative_id(p, root), 1, p, m) for p, m in zip(abnormals, found, strict=True)
    ]
    return inv


def scan_brats2021(root: Path) -> Inventory:
    """The BraTS2021 release: ``train/``, ``test/normal``, ``test/tumor``, ``test/annotation``."""
    return scan_split_folders(
        root,
        layout="brats",
        train="train",
        normal="test/normal",
        abnormal="test/tumor",
        masks="test/annotation",
        mask_names=lambda s: [flair_to_seg(s), s],
        masks_required=True,
    )


def isic_ground_truth_csv(folder: Path) -> Path:
    """The ground-truth CSV in an ``ISIC2018_Task3_*_GroundTruth`` folder.

    The official name is ``<folder name>.csv``; otherwise the folder's only CSV file is taken.
    """
    official = folder / f"{folder.name}.csv"
    if official.is_file() or not folder.is_dir():
        return official
    csvs = sorted(folder.glob("*.csv"))
    return csvs[0] if len(csvs) == 1 else official


def scan_isic2018(root: Path, *, keep_train_abnormal: bool = False) -> Inventory:
    """The official ISIC 2018 Task 3 folders; see the module docs for the label rule.

    With `keep_train_abnormal`, the abnormal training images (not used for training) are listed
    too, under the extra split ``train_abnormal`` (for `medad prepare`, which copies them).
    """
    inv = Inventory("isic2018", root)
    for split, part in ISIC_PARTS:
        input_dir, gt_dir = isic_input_dir(root, part), isic_ground_truth_dir(root, part)
        if not input_dir.is_dir():
            inv.add(input_dir, f"folder not found (the official {part.lower()} images)")
            continue
        csv_path = isic_ground_truth_csv(gt_dir)
        try:
            rows = read_csv_rows(csv_path, ("image", *ISIC_CLASSES))
        except MedadError as exc:
            inv.add(csv_path, str(exc).removeprefix(f"{csv_path}: "))
            continue
        by_stem = {file_stem(p): p for p in input_dir.iterdir() if p.is_file() and is_image_file(p)}
        records: list[Record] = []
        for line, row in rows:
            label = _isic_label(row, csv_path, line, inv)
            if label is None or (split == "train" and label == 1 and not keep_train_abnormal):
                continue
            image = by_stem.get(row["image"])
            if image is None:
                inv.add(input_dir / f"{row['image']}.jpg", f"listed in {csv_path} but not found")
                continue
            records.append(Record(relative_id(image, root), label, image))
        if split == "train":
            if keep_train_abnormal:
                inv.records["train_abnormal"] = [r for r in records if r.label == 1]
            records = [r for r in records if r.label == 0]
        if split == "train" and not records:
            inv.add(csv_path, f"no {ISIC_NORMAL} (normal) training image is listed")
        if split == "test" and rows and len({r.label for r in records}) < 2:
            inv.add(csv_path, "the test set needs both NV (normal) and other (abnormal) images")
        inv.records[split] = records
    return inv


def _isic_label(row: dict[str, str], csv_path: Path, line: int, inv: Inventory) -> int | None:
    """0 for NV, 1 for the other classes; None (and a problem) for a malformed row."""
    try:
        values = {c: float(row[c]) for c in ISIC_CLASSES}
    except ValueError:
        inv.add(csv_path, f"line {line}: class values must be numbers (0 or 1)")
        return None
    positive = [c for c, v in values.items() if v >= 0.5]
    if not row.get("image") or len(positive) != 1:
        inv.add(csv_path, f"line {line}: expected an image name and exactly one class set to 1")
        return None
    return 0 if positive[0] == ISIC_NORMAL else 1


# --------------------------------------------------------------------------------------------
# loaders


def _looks_like(layout: str) -> Callable[[Path], bool]:
    checks: dict[str, Callable[[Path], bool]] = {
        "datajson": lambda p: (p / "data.json").is_file(),
        "isic2018": lambda p: any(isic_input_dir(p, part).is_dir() for _, part in ISIC_PARTS),
        "good-ungood": lambda p: (p / "train").is_dir() and (p / "test").is_dir(),
        "brats": lambda p: (p / "train").is_dir() and (p / "test" / "tumor").is_dir(),
    }
    return checks[layout]


LAYOUT_TEXT = {
    "datajson": "images/ + data.json",
    "isic2018": "ISIC2018_Task3_{Training,Test}_{Input,GroundTruth}/",
    "good-ungood": "train/good/, test/good/, test/Ungood/",
    "brats": "train/, test/normal/, test/tumor/, test/annotation/",
}


def find_benchmark_folder(b: Benchmark, root: Path) -> Path:
    """``root/<release folder>``, or `root` itself when it holds the layout."""
    root = Path(root)
    if not root.is_dir():
        raise MedadError(f"{root}: data root not found")
    folder = locate(root, b.folders, _looks_like(b.layout))
    if folder is None:
        raise MedadError(
            f"{root}: no {b.title} dataset here; expected {root / b.folder}/ holding "
            f"{LAYOUT_TEXT[b.layout]} (build it from the official download with "
            f"`medad prepare {b.name} --source RAW --out {root / b.folder}`)"
        )
    return folder


def check_channels(channels: int | None, default: int) -> int:
    if channels is None:
        return default
    if channels not in (1, 3):
        raise MedadError(f"channels must be 1 or 3, got {channels!r}")
    return int(channels)


def open_benchmark(
    name: str, root: Path, *, channels: int | None = None, mask_threshold: float | None = None
) -> DatasetSource:
    """Open benchmark `name` (see `medad.data.catalog`) under the data root `root`.

    `mask_threshold` (datasets with masks) accepts masks that are not two-valued (`read_mask`).
    """
    b = benchmark(name)
    if mask_threshold is not None and not b.has_masks:
        raise MedadError(f"dataset {name!r} has no masks; mask_threshold does not apply")
    folder = find_benchmark_folder(b, root)
    ch = check_channels(channels, b.channels)
    if b.layout == "datajson":
        ds = DataJsonDataset(folder, channels=ch, name=b.name)
        ds.modality = b.modality
        return ds
    scan = {"isic2018": scan_isic2018, "good-ungood": scan_good_ungood, "brats": scan_brats2021}
    return InventoryDataset(
        scan[b.layout](folder),
        name=b.name,
        modality=b.modality,
        channels=ch,
        has_masks=b.has_masks,
        mask_threshold=mask_threshold,
    )


def _register(b: Benchmark) -> None:
    @register_dataset(
        b.name,
        modality=b.modality,
        description=f"{b.title}: {b.folder}/{LAYOUT_TEXT[b.layout]} under --data-root "
        f"(`medad prepare {b.name}` builds it)",
        needs_root=True,
    )
    def factory(root: Path | None, **options: object) -> DatasetSource:
        from medad.data.registry import _require_root

        return open_benchmark(b.name, _require_root(b.name, root), **options)  # type: ignore[arg-type]


for _b in BENCHMARKS.values():
    _register(_b)
