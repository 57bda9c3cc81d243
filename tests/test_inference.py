"""`medad predict`: scores new PNG, DICOM and NIfTI images with a trained run."""

from __future__ import annotations

import csv

import nibabel as nib
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from medad.cli import app
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

    res = CliRunner().invoke(
        app,
        [
            "predict",
            str(trained_run),
            "--input",
            str(src),
            "--out",
            str(tmp_path / "pred"),
            "--device",
            "cpu",
        ],
    )
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(open(tmp_path / "pred" / "scores.csv")))
    files = [r["file"] for r in rows]
    assert "mr.dcm" in files and "vol.nii.gz#2" in files and len(rows) == 9
    for r in rows:
        assert float(r["score"]) >= 0 and 0 <= float(r["normal_percentile"]) <= 100
        assert (tmp_path / "pred" / r["map"]).is_file()
    score = {r["file"]: float(r["score"]) for r in rows}
    # the same image scores the same whatever container it came in
    assert score["vol.nii.gz#0"] == pytest.approx(score["slice0.png"], rel=1e-3)


def test_predict_bad_input_is_named(trained_run, tmp_path):
    with pytest.raises(MedadError, match="nothing-here"):
        predict_folder(trained_run, tmp_path / "nothing-here", tmp_path / "o")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MedadError, match="no image files"):
        predict_folder(trained_run, tmp_path / "empty", tmp_path / "o")
    with pytest.raises(MedadError, match="config.yaml"):
        predict_folder(tmp_path, tmp_path / "empty", tmp_path / "o")
    assert not (tmp_path / "o").exists()
