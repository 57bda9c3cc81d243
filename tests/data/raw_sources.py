"""Small fake raw datasets in each official format, for `medad prepare` and the loaders.

Every file has its own random content, so no two images are byte-identical (check-data would
flag duplicates). DICOMs are copies of pydicom's real test files (MR_small.dcm, CT_small.dcm)
with new UIDs and noise added to their pixels; one BraTS patient is nibabel's real test volume
``anatomical.nii``.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
from nibabel.testing import data_path as nibabel_data
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

REAL_NIFTI = Path(nibabel_data) / "anatomical.nii"


def write_image(path: Path, rng: np.random.Generator, size=(40, 48), rgb: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (size[1], size[0], 3) if rgb else (size[1], size[0])
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(path)
    return path


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def fake_dicom(
    path: Path,
    rng: np.random.Generator,
    *,
    template: str = "MR_small.dcm",
    monochrome1: bool = False,
) -> Path:
    """A copy of a real pydicom test file with new UIDs and noise added to its pixels."""
    ds = pydicom.dcmread(get_testdata_file(template))
    pixels = ds.pixel_array
    noisy = pixels.astype(np.int32) + rng.integers(0, 40, pixels.shape)
    info = np.iinfo(pixels.dtype)
    ds.PixelData = np.clip(noisy, info.min, info.max).astype(pixels.dtype).tobytes()
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    if monochrome1:
        ds.PhotometricInterpretation = "MONOCHROME1"
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path)
    return path


def make_rsna(root: Path, n_normal=6, n_opacity=4, n_other=2, seed=0) -> Path:
    """stage_2_train_images/*.dcm + labels CSV (several boxes per opacity) + class CSV."""
    rng = np.random.default_rng(seed)
    labels, classes = [], []
    for i in range(n_normal + n_opacity + n_other):
        pid = f"pid-{i:04d}"
        fake_dicom(root / "stage_2_train_images" / f"{pid}.dcm", rng)
        if i < n_normal:
            labels.append([pid, "", "", "", "", 0])
            classes.append([pid, "Normal"])
        elif i < n_normal + n_opacity:
            labels += [[pid, 10, 10, 20, 20, 1], [pid, 30, 30, 10, 10, 1]]
            classes += [[pid, "Lung Opacity"]] * 2
        else:
            labels.append([pid, "", "", "", "", 0])
            classes.append([pid, "No Lung Opacity / Not Normal"])
    write_csv(
        root / "stage_2_train_labels.csv",
        ["patientId", "x", "y", "width", "height", "Target"],
        labels,
    )
    write_csv(root / "stage_2_detailed_class_info.csv", ["patientId", "class"], classes)
    return root


def make_vincxr(root: Path, n_normal=6, n_abnormal=4, seed=0, physionet: bool = False) -> Path:
    """train/*.dicom (CT_small copies, one MONOCHROME1) with Kaggle or PhysioNet labels.

    Three readers per image; the first abnormal image has only one reader reporting a finding.
    """
    rng = np.random.default_rng(seed)
    long_rows, wide_rows = [], []
    for i in range(n_normal + n_abnormal):
        image_id = f"img{i:03d}"
        fake_dicom(
            root / "train" / f"{image_id}.dicom", rng, template="CT_small.dcm", monochrome1=i == 1
        )
        for reader in ("R1", "R2", "R3"):
            finding = i >= n_normal and (reader == "R1" or i > n_normal)
            name = "Nodule/Mass" if finding else "No finding"
            long_rows.append([image_id, name, 8 if finding else 14, reader, "", "", "", ""])
            wide_rows.append([image_id, reader, int(finding), 0, int(not finding)])
    if physionet:
        header = ["image_id", "rad_ID", "Nodule/Mass", "Pneumonia", "No finding"]
        write_csv(root / "annotations" / "image_labels_train.csv", header, wide_rows)
    else:
        header = [
            "image_id",
            "class_name",
            "class_id",
            "rad_id",
            "x_min",
            "y_min",
            "x_max",
            "y_max",
        ]
        write_csv(root / "train.csv", header, long_rows)
    return root


def make_brain_tumor(root: Path, n_normal=4, n_per_tumour=2, seed=0) -> Path:
    """Training/ and Testing/ class folders of JPEGs (names as in the Kaggle dataset)."""
    rng = np.random.default_rng(seed)
    codes = {"glioma": "gl", "meningioma": "me", "notumor": "no", "pituitary": "pi"}
    for split, tag in (("Training", "Tr"), ("Testing", "Te")):
        for cls, code in codes.items():
            n = n_normal if cls == "notumor" else n_per_tumour
            for i in range(n):
                write_image(root / split / cls / f"{tag}-{code}_{i:04d}.jpg", rng, rgb=i % 2 == 0)
    return root


def make_lag(root: Path, n_normal=8, n_glaucoma=4, seed=0) -> Path:
    """LAG_database_part_1/{non_glaucoma,suspicious_glaucoma}/image/*.jpg (names may repeat)."""
    rng = np.random.default_rng(seed)
    base = root / "LAG_database_part_1"
    for cls, n in (("non_glaucoma", n_normal), ("suspicious_glaucoma", n_glaucoma)):
        for i in range(n):
            write_image(base / cls / "image" / f"{i + 1}.jpg", rng, size=(50, 50), rgb=True)
            write_image(base / cls / "attention_map" / f"{i + 1}.jpg", rng, size=(50, 50))
    return root


ISIC_HEADER = ["image", "MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"]


def make_isic(root: Path, train=(6, 3), test=(3, 2), seed=0) -> Path:
    """The four official ISIC 2018 Task 3 folders: (NV, other) images per split."""
    rng = np.random.default_rng(seed)
    k = 0
    for part, (n_nv, n_other) in (("Training", train), ("Test", test)):
        rows = []
        for i in range(n_nv + n_other):
            name = f"ISIC_{k:07d}"
            k += 1
            write_image(root / f"ISIC2018_Task3_{part}_Input" / f"{name}.jpg", rng, rgb=True)
            onehot = [0.0] * 7
            onehot[1 if i < n_nv else 2 + i % 5] = 1.0
            rows.append([name, *onehot])
        (root / f"ISIC2018_Task3_{part}_Input" / "LICENSE.txt").write_text("CC-BY-NC\n")
        gt = root / f"ISIC2018_Task3_{part}_GroundTruth"
        write_csv(gt / f"{gt.name}.csv", ISIC_HEADER, rows)
    return root


def make_camelyon_patches(root: Path, slides=4, per_slide=(4, 2), seed=0) -> Path:
    """normal/<slide>/*.png and tumor/<slide>/*.png RGB patches."""
    rng = np.random.default_rng(seed)
    for s in range(slides):
        for cls, n in (("normal", per_slide[0]), ("tumor", per_slide[1] if s % 2 else 0)):
            for i in range(n):
                write_image(root / cls / f"slide{s}" / f"p{i}.png", rng, size=(32, 32), rgb=True)
    return root


def make_bmad_histopathology(root: Path, n=(5, 2, 2, 3, 3), seed=0) -> Path:
    """BMAD's Histopathology_AD: train/good, valid/{good,Ungood}, test/{good,Ungood}."""
    rng = np.random.default_rng(seed)
    base = root / "Histopathology_AD"
    folders = ("train/good", "valid/good", "valid/Ungood", "test/good", "test/Ungood")
    for folder, k in zip(folders, n, strict=True):
        for i in range(k):  # names repeat across folders, as in the release
            write_image(base / folder / f"{1000 + i}.png", rng, size=(32, 32), rgb=True)
    return root


def _brain_volume(rng: np.random.Generator, shape=(24, 28, 10)) -> np.ndarray:
    x, y, z = np.meshgrid(*(np.linspace(-1, 1, n) for n in shape), indexing="ij")
    brain = (x / 0.8) ** 2 + (y / 0.85) ** 2 + (z / 0.8) ** 2 <= 1.0
    return np.where(brain, 200 + 40 * rng.random(shape), 0).astype(np.int16)


def make_brats(root: Path, tumours=(True, True, False, False), real: bool = True, seed=0) -> Path:
    """BraTS2021_XXXXX/{flair,seg,t1}.nii.gz per patient; the last one nibabel's real volume."""
    rng = np.random.default_rng(seed)
    affine = np.diag([-1.0, -1.0, 1.0, 1.0])  # LPS-like storage, as BraTS files
    data = root / "BraTS2021_Training_Data"
    for p, tumour in enumerate(tumours):
        pid = f"BraTS2021_{p:05d}"
        flair = _brain_volume(rng)
        seg = np.zeros(flair.shape, np.uint8)
        if tumour:
            seg[8:14, 10:16, 4:6] = 2
            seg[10:12, 12:14, 5] = 4
        _save(data / pid / f"{pid}_flair.nii.gz", flair, affine)
        _save(data / pid / f"{pid}_seg.nii.gz", seg, affine)
        _save(data / pid / f"{pid}_t1.nii.gz", flair, affine)
    if real:
        pid = f"BraTS2021_{len(tumours):05d}"
        img = nib.load(REAL_NIFTI)
        volume = np.asarray(img.dataobj)
        seg = np.zeros(volume.shape, np.uint8)
        seg[14:20, 18:24, 11:14] = 1
        _save(data / pid / f"{pid}_flair.nii.gz", volume, img.affine)
        _save(data / pid / f"{pid}_seg.nii.gz", seg, img.affine)
    return root


def _save(path: Path, data: np.ndarray, affine: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, affine), path)


# --------------------------------------------------------------------------------------------
# release layouts built directly (for the loaders and check-data, without prepare)


def datajson_release(folder: Path, n=(3, 2, 2), seed=0) -> Path:
    """images/ + data.json with n = (train, test normal, test abnormal) 20x24 images."""
    rng = np.random.default_rng(seed)
    names = {k: [f"{k}{i}.png" for i in range(m)] for k, m in zip("tna", n, strict=True)}
    for group in names.values():
        for name in group:
            write_image(folder / "images" / name, rng, size=(20, 24))
    spec = {
        "train": {"0": names["t"], "unlabeled": {"0": [], "1": []}},
        "test": {"0": names["n"], "1": names["a"]},
    }
    (folder / "data.json").write_text(json.dumps(spec))
    return folder


def brats_release(folder: Path, seed=0) -> Path:
    """train/, test/normal, test/tumor, test/annotation with three 20x24 slices each."""
    rng = np.random.default_rng(seed)
    for i in range(3):
        write_image(folder / "train" / f"BraTS2021_0000{i}_flair_60.png", rng, size=(20, 24))
        write_image(folder / "test" / "normal" / f"BraTS2021_0001{i}_flair_30.png", rng, (20, 24))
        write_image(folder / "test" / "tumor" / f"BraTS2021_0001{i}_flair_70.png", rng, (20, 24))
        mask = np.zeros((24, 20), np.uint8)
        mask[5:10, 5:10] = 255
        annotation = folder / "test" / "annotation"
        annotation.mkdir(parents=True, exist_ok=True)
        Image.fromarray(mask).save(annotation / f"BraTS2021_0001{i}_seg_70.png")
    return folder
