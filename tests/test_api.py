"""The Python API: Detector over arrays and dataset names, save/load, fit/load_run on runs."""

from __future__ import annotations

import numpy as np
import pytest

import medad
from medad.data.synthetic import generate_brain
from medad.errors import MedadError
from medad.predictions import Predictions

SMALL = {"n_train": 64, "n_test_normal": 16, "n_test_abnormal": 16, "size": 64}


@pytest.fixture(scope="module")
def brains() -> dict[str, np.ndarray]:
    """Normal synthetic brains, and the test normals with a saturated 16 px square planted (an
    anomaly a briefly trained AE cannot reconstruct, so the test checks the API, not the AE)."""
    train, _ = generate_brain(48, size=64, seed=0)
    normal, _ = generate_brain(12, size=64, seed=0, stream=1)
    abnormal = normal.copy()
    abnormal[:, 24:40, 24:40] = 255
    return {"train": train, "normal": normal, "abnormal": abnormal}


@pytest.fixture(scope="module")
def fitted(brains) -> medad.Detector:
    return medad.Detector("ae", epochs=3, batch_size=16, lr=3e-3).fit(brains["train"])


def test_detector_ranks_planted_anomalies_above_normals(fitted, brains):
    from medad.metrics import image_auroc

    s = fitted.score_samples(np.concatenate([brains["normal"], brains["abnormal"]]))
    labels = np.array([0] * 12 + [1] * 12)
    assert s.shape == (24,) and s.dtype == np.float64
    assert image_auroc(s, labels) > 0.9
    maps = fitted.anomaly_maps(brains["abnormal"])
    inside = np.zeros((64, 64), bool)
    inside[24:40, 24:40] = True
    assert maps[:, inside].mean() > 3 * maps[:, ~inside].mean()


def test_shapes_and_input_forms(fitted, brains):
    x = brains["normal"][:4]
    maps = fitted.anomaly_maps(x)
    assert maps.shape == (4, 64, 64) and fitted.image_size == 64
    base = fitted.score_samples(x)
    # [N, C, H, W], floats in [0, 1], and a list of images of different sizes all score alike
    np.testing.assert_allclose(fitted.score_samples(x[:, None]), base)
    np.testing.assert_allclose(fitted.score_samples(x.astype(np.float32) / 255), base, rtol=1e-4)
    mixed = [x[0], np.kron(x[1], np.ones((2, 2), np.uint8))]  # 64 and 128 px
    assert fitted.score_samples(mixed).shape == (2,)


@pytest.mark.parametrize(
    ("bad", "needle"),
    [
        (np.zeros((2, 5, 8, 8), np.uint8), "C 1 or 3"),
        (np.full((2, 8, 8), 300.0), "float images must lie in [0, 1]"),
        (np.zeros((2, 8, 8), np.int32), "uint8 or float"),
        (np.zeros((8, 8), np.uint8), "[N, H, W] or [N, C, H, W]"),
        ("images/", "got the path"),
    ],
)
def test_bad_arrays_are_named(fitted, bad, needle):
    with pytest.raises(MedadError, match=None) as info:
        fitted.score_samples(bad)
    assert needle in str(info.value)


def test_unfitted_and_bad_config():
    with pytest.raises(MedadError, match="not fitted"):
        medad.Detector("ae").score_samples(np.zeros((1, 64, 64), np.uint8))
    with pytest.raises(MedadError, match="latent_sise"):
        medad.Detector("ae", latent_sise=3)
    with pytest.raises(MedadError, match="unknown method"):
        medad.Detector("nope")


def test_save_load_round_trip(fitted, brains, tmp_path):
    path = fitted.save(str(tmp_path / "det.pt"))
    again = medad.Detector.load(str(path))
    x = brains["abnormal"][:5]
    np.testing.assert_array_equal(again.score_samples(x), fitted.score_samples(x))
    assert again.config == {"epochs": 3, "batch_size": 16, "lr": 3e-3}
    with pytest.raises(MedadError, match="already exists"):
        fitted.save(path)
    fitted.save(path, overwrite=True)
    foreign = tmp_path / "notes.txt"
    foreign.write_text("mine")
    with pytest.raises(MedadError, match="not a medad detector"):
        fitted.save(foreign, overwrite=True)
    assert foreign.read_text() == "mine"


def test_fit_on_a_dataset_name_uses_its_train_split():
    det = medad.Detector("ae", epochs=1, batch_size=32).fit("synth-brain", **SMALL)
    assert det.score_samples(generate_brain(3, size=64, seed=5)[0]).shape == (3,)
    with pytest.raises(MedadError, match="dataset name"):
        medad.Detector("ae", epochs=1).fit(np.zeros((4, 64, 64), np.uint8), n_train=3)


def test_maps_of_an_image_score_method_raise():
    det = medad.Detector("ganomaly", epochs=1, batch_size=16)
    det.fit(generate_brain(32, size=64, seed=0)[0])
    with pytest.raises(MedadError, match="no anomaly maps"):
        det.anomaly_maps(generate_brain(2, size=64, seed=1)[0])


def test_fit_and_load_run(tmp_path):
    out = tmp_path / "runs"
    run = medad.fit("ae", "synth-brain", out=out, dataset_options=SMALL, epochs=1, latent_size=8)
    assert set(run.metrics) >= {"image_auroc", "pixel_ap"} and not run.reused
    assert run.run_id.startswith("synth-brain/ae/")
    pred = run.predictions
    assert isinstance(pred, Predictions) and len(pred.ids) == 32
    assert run.history["epochs"][0]["epoch"] == 1
    # the run's detector scores the test images as the run did
    opened = medad.load_run(str(run.run_dir))
    assert opened.run_id == run.run_id and opened.metrics == run.metrics
    test_images = generate_brain(16, size=64, seed=0, stream=1)[0]
    scores = opened.detector.score_samples(test_images)
    assert opened.detector.config["latent_size"] == 8
    np.testing.assert_allclose(scores, pred.image_scores[pred.labels == 0], rtol=1e-5)
    again = medad.fit("ae", "synth-brain", out=out, dataset_options=SMALL, epochs=1, latent_size=8)
    assert again.reused and again.run_dir == run.run_dir
    with pytest.raises(MedadError, match="Detector"):
        medad.fit("ae", np.zeros((2, 8, 8)))  # type: ignore[arg-type]
    with pytest.raises(MedadError, match="run folder"):
        medad.load_run(tmp_path)


def test_predictions_load_accepts_str(tmp_path):
    p = Predictions(["a", "b"], np.array([0, 1]), np.array([0.1, 0.9]))
    p.save(str(tmp_path / "p.npz"))
    assert Predictions.load(str(tmp_path / "p.npz")).ids == ["a", "b"]


def test_import_medad_does_not_load_torch():
    import subprocess
    import sys

    code = "import sys, medad; assert 'torch' not in sys.modules; print(medad.__version__)"
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
