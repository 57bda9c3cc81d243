"""BraTS 2021 volumes → ``BraTS2021/`` FLAIR axial slices: ``train/``, ``test/normal``,
``test/tumor`` and ``test/annotation``.

Source: the BraTS 2021 Task 1 training data (``BraTS2021_Training_Data``), one folder per patient
(directly in ``--source`` or one folder deeper)::

    BraTS2021_00000/BraTS2021_00000_flair.nii.gz
    BraTS2021_00000/BraTS2021_00000_seg.nii.gz      (t1, t1ce, t2 are not used)

Rules:

- Slices are the axial slices of the FLAIR volume reoriented to RAS+, in display orientation
  (`medad.data.readers.nifti_axial_slices`: anterior up, patient's right on the left), intensities
  mapped to [0, 1] by the volume's 0.5 and 99.5 percentiles of its nonzero voxels. Slice numbers
  count from the most inferior slice.
- Only *brain-containing* slices are kept: at least `BRAIN_FRACTION` (5 %) of the slice's voxels
  are nonzero in the FLAIR volume (BraTS volumes are skull-stripped with a zero background; this
  drops the empty slices and the tiny caps at the top and bottom of the brain).
- A slice is abnormal when any voxel of the segmentation is labelled (> 0: necrosis, oedema or
  enhancing tumour), normal otherwise. Its mask (``test/annotation``) is the binary segmentation
  slice, written 0/255.
- The split is by patient: no patient has slices in both train and test (train holds normal
  slices of training patients only). Sizes follow the paper (4211 train, 828 + 1948 test), scaled
  when the source is smaller; whole patients move to test until both test quotas are filled, then
  slices are drawn at random (see `medad.data.prepare.splits`).

Files are named ``<flair file stem>_<slice>.png`` (``BraTS2021_00000_flair_77.png``) and masks
``BraTS2021_00000_seg_77.png``, as in the paper's release. Slices keep their native size
(240 × 240) unless ``--size`` is given (longer side, bilinear for images, nearest for masks).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from medad.data.catalog import benchmark
from medad.data.inventory import file_stem
from medad.data.official import flair_to_seg
from medad.data.prepare.base import PrepareOptions, register_preparer
from medad.data.prepare.class_folders import subfolders
from medad.data.prepare.output import write_mask_png, write_png
from medad.data.prepare.splits import Candidate, split_candidates
from medad.data.readers import nifti_axial_label_slices, nifti_axial_slices, read_nifti_volume
from medad.errors import MedadError

#: a slice is brain-containing when at least this fraction of its voxels is nonzero in FLAIR
BRAIN_FRACTION = 0.05


def _has_flair(folder: Path) -> bool:
    return any(folder.glob("*_flair.nii*"))


def patient_folders(source: Path) -> list[Path]:
    """Folders holding a ``*_flair.nii[.gz]`` volume: in `source` or one level deeper."""
    found = [d for d in subfolders(source) if _has_flair(d)]
    if not found:
        found = [p for d in subfolders(source) for p in subfolders(d) if _has_flair(p)]
    if not found:
        raise MedadError(
            f"{source}: no BraTS patient folders (expected BraTS2021_XXXXX/ folders holding "
            "BraTS2021_XXXXX_flair.nii.gz and BraTS2021_XXXXX_seg.nii.gz)"
        )
    return found


def volume_file(patient: Path, modality: str) -> Path:
    """The patient's ``*_<modality>.nii.gz`` (or ``.nii``) volume; errors name the folder."""
    files = sorted(patient.glob(f"*_{modality}.nii.gz")) + sorted(patient.glob(f"*_{modality}.nii"))
    if not files:
        raise MedadError(
            f"{patient}: no {modality} volume (expected {patient.name}_{modality}.nii.gz); "
            + ("every patient needs its segmentation" if modality == "seg" else "")
        )
    if len(files) > 1:
        raise MedadError(f"{patient}: several {modality} volumes: {[f.name for f in files]}")
    return files[0]


def slice_candidates(patient: Path) -> list[Candidate]:
    """The patient's brain-containing slices, labelled by the segmentation (see module docs)."""
    flair, seg = volume_file(patient, "flair"), volume_file(patient, "seg")
    volume = read_nifti_volume(flair).data
    x, y, z = volume.shape
    brain = (volume != 0).reshape(x * y, z).sum(axis=0) >= BRAIN_FRACTION * x * y
    labels = nifti_axial_label_slices(seg)
    if labels.shape != (z, y, x):
        raise MedadError(
            f"{seg}: segmentation grid {labels.shape[2]}x{labels.shape[1]}x{labels.shape[0]} "
            f"differs from the FLAIR volume's {x}x{y}x{z} ({flair.name})"
        )
    tumour = labels.reshape(z, -1).any(axis=1)
    stem = file_stem(flair)
    return [
        Candidate(int(tumour[k]), f"{stem}_{k}", patient.name, flair, int(k))
        for k in np.flatnonzero(brain)
    ]


@register_preparer(
    "brats2021",
    source_layout="one folder per patient: BraTS2021_XXXXX/BraTS2021_XXXXX_{flair,seg}.nii.gz",
)
def build(source: Path, out: Path, options: PrepareOptions) -> dict[str, Any]:
    patients = patient_folders(source)
    options.log(f"brats2021: reading {len(patients)} patients")
    candidates = [c for p in patients for c in slice_candidates(p)]
    paper = benchmark("brats2021").counts
    selection = split_candidates(candidates, paper, seed=options.seed, requested=options.counts)
    c = selection.counts()
    options.log(f"brats2021: writing {c.train} train, {c.test_normal} + {c.test_abnormal} slices")
    folders = {"train": out / "train", "normal": out / "test" / "normal"}
    folders |= {"tumor": out / "test" / "tumor", "annotation": out / "test" / "annotation"}
    for folder in folders.values():
        folder.mkdir(parents=True)
    per_volume: dict[Path, list[tuple[Candidate, str]]] = defaultdict(list)
    for where, cands in (
        ("train", selection.train),
        ("normal", selection.test_normal),
        ("tumor", selection.test_abnormal),
    ):
        for cand in cands:
            per_volume[cand.source].append((cand, where))
    for flair, items in sorted(per_volume.items()):
        indices = [cand.index for cand, _ in items]
        images = nifti_axial_slices(flair, indices=indices)
        tumour = [i for i, (_, where) in enumerate(items) if where == "tumor"]
        for image, (cand, where) in zip(images, items, strict=True):
            write_png(folders[where] / f"{cand.name}.png", image, size=options.size, gray=True)
        if tumour:
            seg = volume_file(flair.parent, "seg")
            masks = nifti_axial_label_slices(seg, indices=[indices[i] for i in tumour])
            for i, mask in zip(tumour, masks, strict=True):
                name = flair_to_seg(items[i][0].name)
                write_mask_png(folders["annotation"] / f"{name}.png", mask, size=options.size)
    rule = (
        f"FLAIR axial slices with >= {BRAIN_FRACTION:.0%} nonzero voxels; abnormal: any "
        "segmentation label > 0 in the slice; split by patient"
    )
    return {
        "rule": rule,
        "brain_fraction": BRAIN_FRACTION,
        **selection.manifest(paper),
        "patients": len(patients),
    }
