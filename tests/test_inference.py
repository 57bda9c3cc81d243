"""`medad predict`: scores new PNG, DICOM and NIfTI images with a trained run, in their geometry."""

from __future__ import annotations

import csv
import json
import shutil

import nibabel as nib
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from medad.cli import app
from medad.data.loading import Preprocess, map_to_source
from medad.data.readers import nifti_axial_slices
from medad.data.synthetic import generate_brain
from medad.errors import MedadError
from medad.inference import predict_folder
from medad.runs import RunSpec, execute
from tests.conftest import SMALL


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    spec = RunSpec(
        "ae", "synth-brain", overrides={"epochs": 8, "batch_size": 32}, dataset_options=SMALL
    )
    return execute(spec, out, device="cpu", progress=False).run_dir


def _rows(folder):
    return {r["file"]: r for r in csv.DictReader(open(folder / "scores.csv"))}


def _predict(run, src, out, *extra):
    res = CliRunner().invoke(
        app,
        ["predict", str(run), "--input", str(src), "--out", str(out), "--device", "cpu", *extra],
    )
    assert res.exit_code == 0, res.output
    return _rows(out)


def _mr_dicom(path, pixels):
    """An MR DICOM file holding `pixels` (uint16 [H, W]), from pydicom's MR_small test file."""
    import pydicom
    from pydicom.data import get_testdata_file

    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    ds.Rows, ds.Columns = pixels.shape
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    for tag in ("WindowCenter", "WindowWidth"):
        if tag in ds:
            delattr(ds, tag)
    ds.save_as(path)
    return ds


def test_predict_scores_png_dicom_and_nifti(trained_run, tmp_path):
    import pydicom
    from pydicom.data import get_testdata_file

    src = tmp_path / "in"
    src.mkdir()
    normal, _ = generate_brain(2, size=64, seed=7, stream=9)
    lesion, _ = generate_brain(2, size=64, seed=7, stream=10, abnormal=True)
    for i, img in enumerate(normal):
        Image.fromarray(img).save(src / f"normal{i}.png")
    for i, img in enumerate(lesion):
        Image.fromarray(img).save(src / f"lesion{i}.png")
    pydicom.dcmread(get_testdata_file("MR_small.dcm")).save_as(src / "mr.dcm")
    vol = np.stack([normal[0], normal[1], lesion[0]], axis=-1).astype(np.float32)
    nib.save(nib.Nifti1Image(vol, np.eye(4)), src / "vol.nii.gz")
    slice0 = nifti_axial_slices(src / "vol.nii.gz")[0]
    Image.fromarray(np.uint8(np.rint(slice0 * 255))).save(src / "slice0.png")

    rows = _predict(trained_run, src, tmp_path / "pred")
    # one row per input file: a volume is one row (its slices are in slices.csv)
    assert sorted(rows) == sorted(
        ["normal0.png", "normal1.png", "lesion0.png", "lesion1.png", "mr.dcm", "vol.nii.gz"]
        + ["slice0.png"]
    )
    for r in rows.values():
        assert float(r["score"]) >= 0 and 0 <= float(r["normal_percentile"]) <= 100
        assert r["label"] in ("normal", "anomalous")
        assert (tmp_path / "pred" / r["map"]).is_file() and (
            tmp_path / "pred" / r["mask"]
        ).is_file()
    assert rows["vol.nii.gz"]["map"] == "maps/vol.nii.gz" and not rows["vol.nii.gz"]["overlay"]
    assert rows["mr.dcm"]["overlay"] == "overlays/mr.png"
    assert (tmp_path / "pred" / "overlays" / "mr.dcm").is_file()
    slices = list(csv.DictReader(open(tmp_path / "pred" / "slices.csv")))
    assert [(s["file"], s["slice"]) for s in slices] == [("vol.nii.gz", str(k)) for k in range(3)]
    slice_scores = [float(s["score"]) for s in slices]
    # 3 slices: the volume score (top 10 %, at least one slice) is the largest slice score
    assert float(rows["vol.nii.gz"]["score"]) == pytest.approx(max(slice_scores), rel=1e-5)
    # the same image scores the same whatever container it came in
    assert slice_scores[0] == pytest.approx(float(rows["slice0.png"]["score"]), rel=1e-3)
    summary = json.loads((tmp_path / "pred" / "predict.json").read_text())
    # every run stores thresholds fixed on normal training images (`medad.evaluation.Thresholds`)
    assert summary["image_threshold_source"] == "run: thresholds.json (train images)"
    assert summary["colour_scale_source"] == "run: normal test maps"


def test_nifti_map_has_the_inputs_affine_header_and_geometry(trained_run, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    imgs, _ = generate_brain(3, size=80, seed=3, stream=11, abnormal=True)
    imgs = imgs[:, :, :72]  # 80 rows x 72 columns: not the run's 64 x 64
    # stored in an order nibabel must reorient: voxel axes (z, x, y) with x and z flipped,
    # anisotropic 1.2 x 0.9 x 3 mm voxels, an offset origin
    display = np.stack(imgs).astype(np.float32)  # [K, H = y (A at top), W = x (R at left)]
    ras = np.flip(display, axis=(1, 2)).transpose(2, 1, 0)  # canonical (x, y, z)
    data = np.flip(ras.transpose(2, 0, 1), axis=(0, 1)).copy()  # stored (z, x, y), z and x flipped
    affine = np.array(
        [[0, -1.2, 0, 40.0], [0, 0, 0.9, -30.0], [-3.0, 0, 0, 12.0], [0, 0, 0, 1]],
    )
    img = nib.Nifti1Image(data, affine)
    img.header.set_xyzt_units("mm", "sec")
    nib.save(img, src / "case.nii.gz")
    lo, hi = display[display > 0].min(), display.max()  # the reader's min-max over nonzero
    expected = np.clip((display - lo) / (hi - lo), 0, 1)
    assert np.allclose(nifti_axial_slices(src / "case.nii.gz", percentiles=(0, 100)), expected)
    planes = nifti_axial_slices(src / "case.nii.gz")  # the same slices as 2-D images
    for k, plane in enumerate(planes):
        Image.fromarray(np.uint8(np.rint(plane * 255))).save(src / f"plane{k}.png")

    _predict(trained_run, src, tmp_path / "pred")
    img = nib.load(src / "case.nii.gz")  # as stored (the header keeps the affine in float32)
    out = nib.load(tmp_path / "pred" / "maps" / "case.nii.gz")
    assert out.shape == data.shape
    np.testing.assert_array_equal(out.affine, img.affine)
    assert out.header.get_qform_quaternion().tolist() == img.header.get_qform_quaternion().tolist()
    assert int(out.header["sform_code"]) == int(img.header["sform_code"])
    np.testing.assert_array_equal(out.header.get_zooms(), img.header.get_zooms())
    assert out.header.get_xyzt_units() == ("mm", "sec")
    mask = nib.load(tmp_path / "pred" / "masks" / "case.nii.gz")
    np.testing.assert_array_equal(mask.affine, img.affine)
    assert mask.shape == data.shape and set(np.unique(mask.get_fdata())) <= {0, 1}
    # the map voxel under each image pixel is that pixel's map: read the volume back the
    # radiological way and compare slice k with the map of the same plane given as a PNG
    canon = nib.as_closest_canonical(out).get_fdata()
    for k in range(3):
        from_volume = np.flip(canon[:, :, k].T, axis=(0, 1))
        from_png = np.asarray(Image.open(tmp_path / "pred" / "maps" / f"plane{k}.tif"))
        assert from_volume.shape == from_png.shape == (80, 72)
        assert np.corrcoef(from_volume.ravel(), from_png.ravel())[0, 1] > 0.999
        for mirrored in (from_volume[::-1], from_volume[:, ::-1]):  # a flip would show
            assert np.corrcoef(mirrored.ravel(), from_png.ravel())[0, 1] < 0.95


def test_png_and_dicom_maps_at_the_inputs_size(trained_run, tmp_path):
    import pydicom

    src = tmp_path / "in"
    src.mkdir()
    img, _ = generate_brain(1, size=100, seed=5, stream=12, abnormal=True)
    Image.fromarray(img[0][:70]).save(src / "wide.png")  # 70 rows x 100 columns
    mr = _mr_dicom(src / "scan.dcm", img[0][:90, :84].astype(np.uint16) * 16)
    rows = _predict(trained_run, src, tmp_path / "pred")
    pred = tmp_path / "pred"
    for name, (h, w) in (("wide", (70, 100)), ("scan", (90, 84))):
        for kind in ("map", "mask", "overlay"):
            assert Image.open(
                pred / rows[f"{name}.{'png' if name == 'wide' else 'dcm'}"][kind]
            ).size == (w, h)
    sc = pydicom.dcmread(pred / "overlays" / "scan.dcm")
    assert (sc.Rows, sc.Columns, sc.SamplesPerPixel) == (90, 84, 3)
    assert sc.SOPClassUID == pydicom.uid.SecondaryCaptureImageStorage
    assert sc.StudyInstanceUID == mr.StudyInstanceUID and sc.PatientID == mr.PatientID
    assert sc.SeriesInstanceUID != mr.SeriesInstanceUID
    assert sc.SourceImageSequence[0].ReferencedSOPInstanceUID == mr.SOPInstanceUID
    assert list(sc.PixelSpacing) == list(mr.PixelSpacing)
    np.testing.assert_array_equal(
        sc.pixel_array, np.asarray(Image.open(pred / "overlays/scan.png"))
    )


def test_same_image_same_overlay_whatever_the_batch(trained_run, tmp_path):
    normal, _ = generate_brain(1, size=64, seed=8, stream=13)
    lesions, _ = generate_brain(5, size=64, seed=8, stream=14, abnormal=True, difficulty=1.0)
    alone, crowd = tmp_path / "alone", tmp_path / "crowd"
    for folder in (alone, crowd):
        folder.mkdir()
        Image.fromarray(normal[0]).save(folder / "x.png")
    for i, img in enumerate(lesions):
        Image.fromarray(img).save(crowd / f"lesion{i}.png")
    _predict(trained_run, alone, tmp_path / "p1", "--batch-size", "1")
    _predict(trained_run, crowd, tmp_path / "p2", "--batch-size", "4")
    a = np.asarray(Image.open(tmp_path / "p1" / "overlays" / "x.png"), dtype=int)
    b = np.asarray(Image.open(tmp_path / "p2" / "overlays" / "x.png"), dtype=int)
    assert np.abs(a - b).max() <= 1
    s1 = json.loads((tmp_path / "p1" / "predict.json").read_text())
    s2 = json.loads((tmp_path / "p2" / "predict.json").read_text())
    assert s1["colour_scale"] == s2["colour_scale"]


def test_thresholds_given_stored_and_fallback(trained_run, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    imgs, _ = generate_brain(4, size=64, seed=9, stream=15, abnormal=True)
    for i, img in enumerate(imgs):
        Image.fromarray(img).save(src / f"im{i}.png")
    rows = _predict(trained_run, src, tmp_path / "a")
    scores = sorted(float(r["score"]) for r in rows.values())
    cut = (scores[1] + scores[2]) / 2
    rows = _predict(
        trained_run, src, tmp_path / "b", "--threshold", str(cut), "--pixel-threshold", "0.05"
    )
    assert sorted(r["label"] for r in rows.values()) == ["anomalous"] * 2 + ["normal"] * 2
    for r in rows.values():
        assert (r["label"] == "anomalous") == (float(r["score"]) >= cut)
        amap = np.asarray(Image.open(tmp_path / "b" / r["map"]))
        mask = np.asarray(Image.open(tmp_path / "b" / r["mask"])) > 0
        np.testing.assert_array_equal(mask, amap >= 0.05)
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    stored = json.loads((run / "thresholds.json").read_text())
    stored.update(source="validation", image_threshold=1e9, pixel_threshold=1e9)
    (run / "thresholds.json").write_text(json.dumps(stored))
    rows = _predict(run, src, tmp_path / "c")
    assert {r["label"] for r in rows.values()} == {"normal"}
    for r in rows.values():
        assert not np.asarray(Image.open(tmp_path / "c" / r["mask"])).any()
    summary = json.loads((tmp_path / "c" / "predict.json").read_text())
    assert summary["image_threshold"] == 1e9 and summary["pixel_threshold_source"].startswith("run")
    (run / "thresholds.json").unlink()  # a run made before thresholds were stored
    _predict(run, src, tmp_path / "d")
    summary = json.loads((tmp_path / "d" / "predict.json").read_text())
    assert summary["image_threshold_source"].startswith("fallback")


def test_warns_on_inputs_unlike_the_training_data(trained_run, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    normal, _ = generate_brain(1, size=64, seed=7, stream=9)
    Image.fromarray(normal[0]).save(src / "like.png")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(200, 256, (300, 64, 3), dtype=np.uint8)).save(src / "photo.png")
    res = CliRunner().invoke(
        app, ["predict", str(trained_run), "--input", str(src), "--out", str(tmp_path / "o")]
    )
    assert res.exit_code == 0, res.output
    rows = _rows(tmp_path / "o")
    assert rows["like.png"]["warning"] == ""
    warning = rows["photo.png"]["warning"]
    assert "3 channel(s)" in warning and "height 300" in warning and "mean intensity" in warning
    assert "photo.png: unlike the training images" in res.output


def test_methods_without_maps_get_scores_and_labels_only(tmp_path):
    spec = RunSpec(
        "ganomaly",
        "synth-brain",
        overrides={"epochs": 1, "batch_size": 16},
        dataset_options={**SMALL, "n_train": 32, "n_test_normal": 8, "n_test_abnormal": 8},
    )
    run = execute(spec, tmp_path / "runs", device="cpu", progress=False).run_dir
    src = tmp_path / "in"
    src.mkdir()
    img, _ = generate_brain(1, size=64, seed=4, stream=16)
    Image.fromarray(img[0]).save(src / "a.png")
    row = _predict(run, src, tmp_path / "o")["a.png"]
    assert row["label"] in ("normal", "anomalous") and float(row["score"]) >= 0
    assert row["map"] == row["mask"] == row["overlay"] == ""
    assert sorted(p.name for p in (tmp_path / "o").iterdir() if not p.name.startswith(".")) == [
        "predict.json",
        "scores.csv",
    ]


def test_map_to_source_inverts_the_preprocessing_geometry():
    amap = np.zeros((8, 8), dtype=np.float32)
    amap[2:4, 4:8] = 1.0  # top right quarter-ish
    back = map_to_source(amap, (40, 24), Preprocess(size=8))
    assert back.shape == (40, 24)
    assert back[12, 20] > 0.9 and back[35, 3] == 0.0
    # shorter side to 8 then a centre crop: the map covers the centre, the rest gets its minimum
    amap = np.full((8, 8), 2.0, dtype=np.float32)
    amap[4, 4] = 5.0
    back = map_to_source(amap, (16, 32), Preprocess(size=8, resize="shorter"))
    assert back.shape == (16, 32)
    assert back[:, :4].max() == 2.0 and back[:, -4:].max() == 2.0
    assert np.unravel_index(back.argmax(), back.shape) in {(8, 16), (8, 17), (9, 16), (9, 17)}


def test_predict_bad_input_is_named(trained_run, tmp_path):
    with pytest.raises(MedadError, match="nothing-here"):
        predict_folder(trained_run, tmp_path / "nothing-here", tmp_path / "o")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MedadError, match="no image files"):
        predict_folder(trained_run, tmp_path / "empty", tmp_path / "o")
    with pytest.raises(MedadError, match="config.yaml"):
        predict_folder(tmp_path, tmp_path / "empty", tmp_path / "o")
    assert not (tmp_path / "o").exists()
