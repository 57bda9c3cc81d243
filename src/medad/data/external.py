"""Layouts of other benchmarks users compare with: MVTec AD and BMAD.

MVTec AD (Bergmann et al., CVPR 2019), one folder per category (``mvtec``, option ``category``)::

    <category>/train/good/*.png                     normal training images
    <category>/test/good/*.png                      normal test images
    <category>/test/<defect>/*.png                  abnormal test images, one folder per defect
    <category>/ground_truth/<defect>/<name>_mask.png

The data root may hold the categories directly or inside ``mvtec_anomaly_detection/`` (the
archive's folder), or be a category folder itself (then ``category`` is not needed). Images are
RGB (a few categories are stored as grayscale; they are replicated), so ``channels`` defaults to 3.

BMAD (Bao et al., "BMAD: Benchmarks for Medical Anomaly Detection", 2023; release described in
github.com/DorisBao/BMAD), one folder per subset (``bmad``, option ``subset``): ``Brain``
(BraTS2021 MRI), ``Liver`` (BTCV + LiTS CT), ``Retina_RESC`` and ``Retina_OCT2017`` (OCT),
``Chest`` (RSNA X-ray), ``Histopathology`` (Camelyon16). The release's archives unpack to
``<subset>_AD`` (e.g. ``Brain_AD``); ``<subset>`` alone is accepted too::

    train/good/                  normal training images
    valid/good/, valid/Ungood/   a small labelled validation split
    test/good/, test/Ungood/     the test split

In the pixel-labelled subsets (Brain, Liver, Retina_RESC) each class folder holds ``img/`` and
``Ungood`` also ``label/`` (a mask with the image's name); the image-level subsets hold the
images directly. Some archives nest the other way round (``test/img/good``, ``test/label/Ungood``);
both are read. Option ``split`` picks the evaluation split: ``test`` (default) or ``valid``.
"""

from __future__ import annotations

from pathlib import Path

from medad.data.base import DatasetSource, Record, register_dataset
from medad.data.inventory import (
    Inventory,
    InventoryDataset,
    images_in,
    match_masks,
    relative_id,
)
from medad.data.official import check_channels, scan_good_ungood
from medad.errors import MedadError

MVTEC_CATEGORIES = (
    "bottle",
    "cable",
    "capsule",
    "carpet",
    "grid",
    "hazelnut",
    "leather",
    "metal_nut",
    "pill",
    "screw",
    "tile",
    "toothbrush",
    "transistor",
    "wood",
    "zipper",
)

#: BMAD subsets: (modality, channels, pixel masks)
BMAD_SUBSETS: dict[str, tuple[str, int, bool]] = {
    "Brain": ("brain MRI", 1, True),
    "Liver": ("liver CT", 1, True),
    "Retina_RESC": ("retinal OCT", 1, True),
    "Retina_OCT2017": ("retinal OCT", 1, False),
    "Chest": ("chest X-ray", 1, False),
    "Histopathology": ("histopathology", 3, False),
}


def scan_mvtec(root: Path) -> Inventory:
    """One MVTec AD category folder (see the module docs)."""
    inv = Inventory("mvtec", root)
    inv.records["train"] = [
        Record(relative_id(p, root), 0, p)
        for p in images_in(root / "train" / "good", inv, "the normal training images")
    ]
    test_dir = root / "test"
    normals = images_in(test_dir / "good", inv, "the normal test images")
    records = [Record(relative_id(p, root), 0, p) for p in normals]
    defects = (
        sorted(d for d in test_dir.iterdir() if d.is_dir() and d.name != "good")
        if test_dir.is_dir()
        else []
    )
    if test_dir.is_dir() and not defects:
        inv.add(test_dir, "no defect folders (test/<defect>/ holds the abnormal images)")
    for defect in defects:
        images = images_in(defect, inv, f"the abnormal test images of defect {defect.name}")
        masks = match_masks(
            images, root / "ground_truth" / defect.name, lambda s: [f"{s}_mask", s], inv
        )
        records += [
            Record(relative_id(p, root), 1, p, m) for p, m in zip(images, masks, strict=True)
        ]
    inv.records["test"] = records
    return inv


def _is_mvtec_category(path: Path) -> bool:
    return (path / "train" / "good").is_dir() and (path / "ground_truth").is_dir()


def find_mvtec_category(root: Path, category: str | None) -> Path:
    root = Path(root)
    if category is None:
        if _is_mvtec_category(root):
            return root
        found = [
            d.name
            for base in (root, root / "mvtec_anomaly_detection")
            if base.is_dir()
            for d in sorted(base.iterdir())
            if _is_mvtec_category(d)
        ]
        hint = f"; categories here: {', '.join(found)}" if found else ""
        raise MedadError(
            f"{root}: give the MVTec AD category, e.g. --data-option category=bottle{hint}"
        )
    for base in (root, root / "mvtec_anomaly_detection"):
        if (base / category).is_dir():
            return base / category
    raise MedadError(
        f"{root}: MVTec AD category {category!r} not found (looked for {root / category} and "
        f"{root / 'mvtec_anomaly_detection' / category}); categories: "
        f"{', '.join(MVTEC_CATEGORIES)}"
    )


def open_mvtec(
    root: Path,
    *,
    category: str | None = None,
    channels: int | None = None,
    mask_threshold: float | None = None,
) -> DatasetSource:
    folder = find_mvtec_category(root, category)
    return InventoryDataset(
        scan_mvtec(folder),
        name="mvtec",
        modality="industrial (MVTec AD)",
        channels=check_channels(channels, 3),
        has_masks=True,
        mask_threshold=mask_threshold,
    )


def _bmad_subset_name(subset: str) -> str:
    by_lower = {s.lower(): s for s in BMAD_SUBSETS}
    key = subset.lower().removesuffix("_ad").removesuffix("-ad")
    if key not in by_lower:
        raise MedadError(f"unknown BMAD subset {subset!r}; subsets: {', '.join(BMAD_SUBSETS)}")
    return by_lower[key]


def find_bmad_subset(root: Path, subset: str | None) -> tuple[Path, str | None]:
    """The subset folder and its canonical name (None when unknown: `root` is the folder)."""
    root = Path(root)
    if subset is None:
        if (root / "train").is_dir():
            name = root.name.removesuffix("_AD").removesuffix("-AD")
            return root, name if name in BMAD_SUBSETS else None
        raise MedadError(
            f"{root}: give the BMAD subset, e.g. --data-option subset=Brain "
            f"(one of {', '.join(BMAD_SUBSETS)})"
        )
    name = _bmad_subset_name(subset)
    for folder in (f"{name}_AD", f"{name}-AD", name):
        if (root / folder).is_dir():
            return root / folder, name
    if root.name in (f"{name}_AD", f"{name}-AD", name) and (root / "train").is_dir():
        return root, name
    raise MedadError(f"{root}: BMAD subset folder {name}_AD (or {name}) not found")


def open_bmad(
    root: Path,
    *,
    subset: str | None = None,
    split: str = "test",
    channels: int | None = None,
    mask_threshold: float | None = None,
) -> DatasetSource:
    if split not in ("test", "valid"):
        raise MedadError(f"BMAD split must be 'test' or 'valid', got {split!r}")
    folder, name = find_bmad_subset(root, subset)
    modality, default_channels, _ = BMAD_SUBSETS.get(name or "", ("medical (BMAD)", 1, False))
    inv = scan_good_ungood(folder, eval_split=split, layout="bmad")
    return InventoryDataset(
        inv,
        name="bmad",
        modality=modality,
        channels=check_channels(channels, default_channels),
        has_masks=any(r.mask is not None for r in inv.records["test"]),
        mask_threshold=mask_threshold,
    )


@register_dataset(
    "mvtec",
    modality="industrial (MVTec AD)",
    description="MVTec AD: <category>/train/good, test/<defect>, ground_truth/<defect> under "
    "--data-root (option category=bottle, ...)",
    needs_root=True,
)
def _mvtec(root: Path | None, **options) -> DatasetSource:
    from medad.data.registry import _require_root

    return open_mvtec(_require_root("mvtec", root), **options)


@register_dataset(
    "bmad",
    modality="medical (BMAD)",
    description="BMAD release: <subset>_AD/train/good, {valid,test}/{good,Ungood} (with img/ "
    "and label/ in the pixel-labelled subsets) "
    "under --data-root (option subset=Brain, Liver, Retina_RESC, Retina_OCT2017, Chest, "
    "Histopathology; split=test|valid)",
    needs_root=True,
)
def _bmad(root: Path | None, **options) -> DatasetSource:
    from medad.data.registry import _require_root

    return open_bmad(_require_root("bmad", root), **options)
