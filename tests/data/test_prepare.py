"""`medad prepare`: fake raw downloads in every official format → release layout → loader → AE."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medad.data.base import get_dataset
from medad.data.catalog import BENCHMARKS, SplitCounts
from medad.data.check import check_data
from medad.data.prepare import atomic_output_dir, prepare
from medad.data.readers import nifti_axial_label_slices, read_dicom
from medad.errors import MedadError
from medad.runs import RunSpec, execute
from tests.data import raw_sources as rs
from tests.test_cli import invoke

MAKERS = {
    "rsna": rs.make_rsna,
    "vincxr": rs.make_vincxr,
    "brain-tumor": rs.make_brain_tumor,
    "lag": rs.make_lag,
    "isic2018": rs.make_isic,
    "camelyon16": rs.make_camelyon_patches,
    "brats2021": rs.make_brats,
}


def png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def no_leftovers(parent: Path) -> bool:
    staging = (".partial-", ".medad-staging-", ".medad-old-")
    return not parent.exists() or not any(s in p.name for p in parent.iterdir() for s in staging)


@pytest.mark.parametrize("name", list(BENCHMARKS))
def test_prepare_then_load_then_train_one_epoch(tmp_path, name):
    raw = MAKERS[name](tmp_path / "raw")
    data_root = tmp_path / "data"
    out = data_root / BENCHMARKS[name].folder
    res = invoke("prepare", name, "--source", raw, "--out", out, "--json")
    assert res.exit_code == 0, res.output
    manifest = json.loads(res.stdout)
    assert manifest == json.loads((out / "prepare.json").read_text())
    assert manifest["dataset"] == name and manifest["seed"] == 0
    assert manifest["source"] == str(raw.resolve())
    assert manifest["paper_counts"] == BENCHMARKS[name].counts.as_dict()
    assert check_data(out) == []
    assert no_leftovers(data_root)

    ds = get_dataset(name, data_root)
    train, test = ds.records("train"), ds.records("test")
    counts = manifest["counts"]
    assert len(train) == counts["train"] and all(r.label == 0 for r in train)
    assert sum(r.label == 0 for r in test) == counts["test_normal"] > 0
    assert sum(r.label == 1 for r in test) == counts["test_abnormal"] > 0
    assert ds.channels == BENCHMARKS[name].channels and ds.has_masks == (name == "brats2021")

    result = execute(
        RunSpec("ae", name, overrides={"epochs": 1, "batch_size": 4}),
        tmp_path / "runs",
        data_root=data_root,
        device="cpu",
        progress=False,
    )
    assert 0.0 <= result.metrics["image_auroc"] <= 1.0
    assert ("pixel_ap" in result.metrics) == (name == "brats2021")


# --------------------------------------------------------------------------------------------
# per-source rules


def test_rsna_keeps_real_dicom_pixels_and_leaves_out_not_normal(tmp_path):
    raw = rs.make_rsna(tmp_path / "raw", n_normal=6, n_opacity=3, n_other=3)
    out = tmp_path / "RSNA"
    result = prepare("rsna", raw, out, size=0, counts=SplitCounts(5, 1, 3))
    spec = json.loads((out / "data.json").read_text())
    used = spec["train"]["0"] + spec["test"]["0"] + spec["test"]["1"]
    assert sorted(spec["test"]["1"]) == ["pid-0006.png", "pid-0007.png", "pid-0008.png"]
    assert all(int(n[4:8]) < 6 for n in spec["train"]["0"] + spec["test"]["0"])
    assert result.manifest["excluded"] == 3 and "left out" in result.manifest["rule"]
    for name in used:  # native size: exactly the reader's windowed values, in 8 bits
        src = raw / "stage_2_train_images" / name.replace(".png", ".dcm")
        expected = np.rint(read_dicom(src) * 255).astype(np.uint8)
        np.testing.assert_array_equal(png(out / "images" / name), expected)


def test_rsna_without_class_file_falls_back_to_target(tmp_path):
    raw = rs.make_rsna(tmp_path / "raw", n_normal=4, n_opacity=2, n_other=2)
    (raw / "stage_2_detailed_class_info.csv").unlink()
    result = prepare("rsna", raw, tmp_path / "RSNA", counts=SplitCounts(5, 1, 2))
    assert result.manifest["available"]["normal"] == 6  # "not normal" counted as normal
    assert "no class file" in result.manifest["rule"]
    assert png(next((tmp_path / "RSNA" / "images").iterdir())).shape == (512, 512)


def test_vincxr_physionet_labels_reader_disagreement_and_monochrome1(tmp_path):
    raw = rs.make_vincxr(tmp_path / "raw", n_normal=5, n_abnormal=3, physionet=True)
    out = tmp_path / "VinCXR"
    result = prepare("vincxr", raw, out, size=0, counts=SplitCounts(4, 1, 3))
    spec = json.loads((out / "data.json").read_text())
    # img005 has a finding from one reader out of three: abnormal
    assert spec["test"]["1"] == ["img005.png", "img006.png", "img007.png"]
    assert result.manifest["label_files"] == ["annotations/image_labels_train.csv"]
    names = spec["train"]["0"] + spec["test"]["0"]
    assert "img001.png" in names  # MONOCHROME1: inverted after windowing
    expected = np.rint(read_dicom(raw / "train" / "img001.dicom") * 255).astype(np.uint8)
    np.testing.assert_array_equal(png(out / "images" / "img001.png"), expected)
    assert png(out / "images" / "img001.png").shape == (128, 128)


def test_split_sizes_scale_with_the_source_and_follow_counts(tmp_path):
    raw = rs.make_brain_tumor(tmp_path / "raw", n_normal=10, n_per_tumour=4)
    scaled = prepare("brain-tumor", raw, tmp_path / "a").manifest
    # 20 normal images for the paper's 1000 + 600: one factor 20/1600 for all three sizes
    assert scaled["counts_rule"] == "scaled to the source"
    assert scaled["counts"] == {"train": 12, "test_normal": 7, "test_abnormal": 7}
    assert scaled["scale"] == pytest.approx(20 / 1600)
    chosen = prepare("brain-tumor", raw, tmp_path / "b", counts=SplitCounts(3, 2, 5)).manifest
    assert chosen["counts"] == {"train": 3, "test_normal": 2, "test_abnormal": 5}
    assert chosen["counts_rule"] == "--counts"
    with pytest.raises(MedadError, match="more than the source holds"):
        prepare("brain-tumor", raw, tmp_path / "c", counts=SplitCounts(20, 5, 1))
    assert not (tmp_path / "c").exists()


def test_split_is_deterministic_for_a_seed(tmp_path):
    raw = rs.make_lag(tmp_path / "raw", n_normal=12, n_glaucoma=6)
    specs = [
        json.loads((prepare("lag", raw, tmp_path / f"o{i}", seed=s).out / "data.json").read_text())
        for i, s in enumerate((3, 3, 4))
    ]
    assert specs[0] == specs[1] and specs[0] != specs[2]
    # LAG reuses file names across classes: every name gets its class folder as a prefix
    assert all(n.startswith("non_glaucoma_") for n in specs[0]["train"]["0"])
    assert all(n.startswith("suspicious_glaucoma_") for n in specs[0]["test"]["1"])


def test_brain_tumor_pools_training_and_testing_and_keeps_original_files(tmp_path):
    raw = rs.make_brain_tumor(tmp_path / "raw", n_normal=3, n_per_tumour=2)
    result = prepare("brain-tumor", raw, tmp_path / "BT", counts=SplitCounts(4, 2, 12))
    spec = json.loads((tmp_path / "BT" / "data.json").read_text())
    assert {n[:2] for n in spec["train"]["0"] + spec["test"]["0"]} == {"Tr", "Te"}
    assert result.manifest["classes"]["test_abnormal"] == {
        "glioma": 4,
        "meningioma": 4,
        "pituitary": 4,
    }
    name = spec["train"]["0"][0]
    source = next(raw.rglob(name))
    assert (tmp_path / "BT" / "images" / name).read_bytes() == source.read_bytes()
    resized = prepare("brain-tumor", raw, tmp_path / "BT2", size=32, counts=SplitCounts(4, 2, 6))
    images = sorted((resized.out / "images").iterdir())
    assert all(p.suffix == ".png" and png(p).shape == (32, 27) for p in images)  # 40x48 RGB


def test_brats_slices_masks_and_patient_level_split(tmp_path):
    raw = rs.make_brats(tmp_path / "raw", tumours=(True, True, True, False, False, False))
    out = tmp_path / "BraTS2021"
    result = prepare("brats2021", raw, out, counts=SplitCounts(8, 4, 5))
    assert result.manifest["patients"] == 7

    def patients(folder: str) -> set[str]:
        return {p.name[:15] for p in (out / folder).iterdir()}

    train, test = patients("train"), patients("test/normal") | patients("test/tumor")
    assert train and test and not train & test
    slices = {
        int(p.stem.rsplit("_", 1)[1]) for p in (out / "train").iterdir() if "00006" not in p.name
    }
    assert slices and slices <= set(range(1, 9))  # the empty top and bottom slices are left out
    for image in (out / "test" / "tumor").iterdir():
        mask_path = out / "test" / "annotation" / image.name.replace("flair", "seg")
        mask = png(mask_path)
        assert mask.shape == png(image).shape and set(np.unique(mask)) <= {0, 255}
        pid, k = image.stem.split("_flair_")
        seg = raw / "BraTS2021_Training_Data" / pid / f"{pid}_seg.nii.gz"
        expected = nifti_axial_label_slices(seg, indices=[int(k)])[0]
        np.testing.assert_array_equal(mask > 0, expected)
        assert expected.any()
    for image in (out / "test" / "normal").iterdir():
        assert not (out / "test" / "annotation" / image.name.replace("flair", "seg")).exists()


def test_isic2018_is_validated_and_copied_as_released(tmp_path):
    rs.make_isic(tmp_path / "raw" / "ISIC2018_Task3", train=(4, 3), test=(2, 2))
    out = tmp_path / "ISIC2018"
    result = prepare("isic2018", tmp_path / "raw", out)
    assert result.manifest["counts"] == {"train": 4, "test_normal": 2, "test_abnormal": 2}
    assert result.manifest["counts_rule"] == "official split"
    training = sorted(p.name for p in (out / "ISIC2018_Task3_Training_Input").iterdir())
    assert len(training) == 8 and "LICENSE.txt" in training  # all classes kept, and the licence
    with pytest.raises(MedadError, match="official split"):
        prepare("isic2018", tmp_path / "raw", tmp_path / "x", counts=SplitCounts(1, 1, 1))
    resized = prepare("isic2018", tmp_path / "raw", tmp_path / "small", size=20)
    assert get_dataset("isic2018", resized.out).records("test")[0].image.suffix == ".png"


def test_camelyon16_from_bmad_release_keeps_its_split(tmp_path):
    raw = rs.make_bmad_histopathology(tmp_path / "raw", n=(5, 2, 2, 3, 3))
    out = tmp_path / "Camelyon16"
    result = prepare("camelyon16", raw, out)
    assert result.manifest["counts"] == {"train": 5, "test_normal": 5, "test_abnormal": 5}
    good = sorted(p.name for p in (out / "test" / "good").iterdir())
    assert good == ["1000.png", "1001.png", "1002.png", "valid_1000.png", "valid_1001.png"]
    assert check_data(out) == []


def test_camelyon16_patches_of_one_slide_stay_together(tmp_path):
    raw = rs.make_camelyon_patches(tmp_path / "raw", slides=6, per_slide=(3, 2))
    out = tmp_path / "Camelyon16"
    prepare("camelyon16", raw, out, counts=SplitCounts(6, 3, 2))

    def slides(folder: str) -> set[str]:
        return {p.name.split("_")[0] for p in (out / folder).iterdir()}

    assert not slides("train/good") & (slides("test/good") | slides("test/Ungood"))
    assert png(next((out / "train" / "good").iterdir())).shape == (32, 32, 3)


# --------------------------------------------------------------------------------------------
# bad input: a clear error naming the file, and nothing left in the output folder


def _truncated_dicom(raw: Path) -> Path:
    bad = raw / "stage_2_train_images" / "pid-0000.dcm"
    bad.write_bytes(bad.read_bytes()[:3000])
    return bad


def _missing_seg(raw: Path) -> Path:
    patient = raw / "BraTS2021_Training_Data" / "BraTS2021_00001"
    (patient / "BraTS2021_00001_seg.nii.gz").unlink()
    return patient


def _csv_without_target(raw: Path) -> Path:
    path = raw / "stage_2_train_labels.csv"
    rows = [line.rsplit(",", 1)[0] for line in path.read_text().splitlines()]
    path.write_text("\n".join(rows) + "\n")
    return path


def _isic_csv_without_nv(raw: Path) -> Path:
    path = raw / "ISIC2018_Task3_Test_GroundTruth" / "ISIC2018_Task3_Test_GroundTruth.csv"
    path.write_text(path.read_text().replace(",NV,", ",NEVUS,"))
    return path


def _empty_class_folder(raw: Path) -> Path:
    for split in ("Training", "Testing"):
        for p in (raw / split / "notumor").iterdir():
            p.unlink()
    return raw / "Training" / "notumor"


@pytest.mark.parametrize(
    ("name", "damage", "message"),
    [
        ("rsna", _truncated_dicom, "truncated or corrupt"),
        ("brats2021", _missing_seg, "no seg volume"),
        ("rsna", _csv_without_target, "missing column 'Target'"),
        ("isic2018", _isic_csv_without_nv, "missing column 'NV'"),
        ("brain-tumor", _empty_class_folder, "no image files in this folder"),
    ],
)
def test_bad_source_is_named_and_nothing_is_written(tmp_path, name, damage, message):
    raw = MAKERS[name](tmp_path / "raw")
    bad = damage(raw)
    out = tmp_path / "data" / BENCHMARKS[name].folder
    counts = [] if name == "isic2018" else ["--counts", "5,1,1"]  # every normal image is used
    res = invoke("prepare", name, "--source", raw, "--out", out, *counts)
    assert res.exit_code == 2
    assert str(bad) in res.output and message in res.output
    assert not out.exists() and no_leftovers(out.parent)


def test_out_must_be_empty_unless_overwrite(tmp_path):
    raw = rs.make_camelyon_patches(tmp_path / "raw")
    out = tmp_path / "Camelyon16"
    (out / "old").mkdir(parents=True)
    with pytest.raises(MedadError, match="not empty"):
        prepare("camelyon16", raw, out)
    assert (out / "old").is_dir()
    with pytest.raises(MedadError, match="not a dataset medad prepared"):
        prepare("camelyon16", raw, out, overwrite=True)
    (out / "old").rmdir()
    prepare("camelyon16", raw, out)
    first = json.loads((out / "prepare.json").read_text())
    (out / "extra.txt").write_text("x")  # a file medad did not write: --overwrite keeps it
    with pytest.raises(MedadError, match="extra.txt"):
        prepare("camelyon16", raw, out, overwrite=True, seed=1)
    assert (out / "extra.txt").read_text() == "x" and no_leftovers(tmp_path)
    (out / "extra.txt").unlink()
    prepare("camelyon16", raw, out, overwrite=True, seed=1)
    assert json.loads((out / "prepare.json").read_text())["seed"] == 1 != first["seed"]
    assert no_leftovers(tmp_path) and ".medad-output.json" in os.listdir(out)
    with pytest.raises(MedadError, match="outside --source"):
        prepare("camelyon16", raw, raw / "prepared")
    with pytest.raises(MedadError, match="outside --source"):
        prepare("camelyon16", raw, tmp_path, overwrite=True)
    assert raw.is_dir()


def test_atomic_output_dir_renames_on_success_and_cleans_up_on_failure(tmp_path):
    with atomic_output_dir(tmp_path / "ok") as tmp:
        (tmp / "a.txt").write_text("a")
        assert not (tmp_path / "ok").exists()
    assert (tmp_path / "ok" / "a.txt").read_text() == "a"
    with pytest.raises(RuntimeError), atomic_output_dir(tmp_path / "bad") as tmp:
        (tmp / "a.txt").write_text("a")
        raise RuntimeError("boom")
    assert not (tmp_path / "bad").exists() and no_leftovers(tmp_path)


def test_unknown_dataset_and_bad_counts_are_clear(tmp_path):
    res = invoke("prepare", "chexpert", "--source", tmp_path, "--out", tmp_path / "o")
    assert res.exit_code == 2 and "rsna" in res.output
    res = invoke(
        "prepare", "rsna", "--source", tmp_path, "--out", tmp_path / "o", "--counts", "1,2"
    )
    assert res.exit_code == 2 and "TRAIN,TEST_NORMAL,TEST_ABNORMAL" in res.output
