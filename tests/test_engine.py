"""The engine trains any method deterministically and scores into image scores and maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medad import engine
from medad.data.base import get_dataset
from medad.data.loading import load_split
from medad.errors import MedadError
from medad.evaluation import evaluate
from medad.methods.base import build_config, method_class
from medad.runs import RunSpec, evaluate_run, execute
from tests.conftest import SMALL


def _train_and_predict(seed: int, epochs: int = 2):
    cls = method_class("ae")
    ds = get_dataset("synth-brain", **SMALL)
    config = build_config(cls, {"epochs": epochs, "batch_size": 32})
    pre = cls.preprocess(config, ds.channels)
    train, test = load_split(ds, "train", pre), load_split(ds, "test", pre)
    method = engine.create_method(cls, config, ds.channels, seed)
    history = engine.train(method, train, pre, seed=seed, device="cpu", progress=False)
    return history, engine.predict(method, test, pre, device="cpu")


def test_same_seed_gives_identical_results():
    h1, p1 = _train_and_predict(seed=3)
    h2, p2 = _train_and_predict(seed=3)
    assert h1.epochs == h2.epochs
    np.testing.assert_array_equal(p1.image_scores, p2.image_scores)
    np.testing.assert_array_equal(p1.maps, p2.maps)
    assert evaluate(p1) == evaluate(p2)


def test_different_seeds_differ():
    _, p1 = _train_and_predict(seed=0, epochs=1)
    _, p2 = _train_and_predict(seed=1, epochs=1)
    assert not np.array_equal(p1.image_scores, p2.image_scores)


def test_predictions_have_maps_of_the_input_size_and_masks():
    history, pred = _train_and_predict(seed=0, epochs=1)
    assert history.steps == 3  # 96 images / batch 32, one epoch
    assert pred.maps is not None and pred.maps.shape == (64, 64, 64)
    assert pred.masks is not None and pred.masks.shape == (64, 64, 64)
    assert pred.masks[pred.labels == 1].any(axis=(1, 2)).all()
    assert not pred.masks[pred.labels == 0].any()
    # the image score of AE is the mean of its map (PAPER.md)
    np.testing.assert_allclose(pred.image_scores, pred.maps.mean(axis=(1, 2)), rtol=1e-5)


def test_ae_ranks_planted_anomalies_above_normals(tmp_path):
    result = execute(
        RunSpec("ae", "synth-brain", seed=0, overrides={"epochs": 15}, dataset_options=SMALL),
        tmp_path,
        device="cpu",
        progress=False,
    )
    m = result.metrics
    assert m["image_auroc"] > 0.6, m
    assert m["pixel_auroc"] > 0.6, m
    assert 0.0 < m["best_dice"] <= 1.0 and 0.0 <= m["aupro"] <= 1.0
    # evaluating again from the saved predictions gives the same numbers
    assert evaluate_run(result.run_dir) == m


def test_run_folder_is_complete_and_recorded(tmp_path):
    from medad.results.store import ResultsStore

    spec = RunSpec("ae", "synth-chest", overrides={"epochs": 1}, dataset_options=SMALL)
    result = execute(spec, tmp_path, device="cpu", progress=False)
    names = {p.name for p in result.run_dir.iterdir()}
    assert {"config.yaml", "predictions.npz", "metrics.json", "checkpoint.pt", "log.txt"} <= names
    rows = ResultsStore(tmp_path).rows()
    assert [(r.method, r.dataset, r.status) for r in rows] == [("ae", "synth-chest", "done")]
    assert rows[0].metrics == result.metrics
    assert not (tmp_path / "runs" / ".tmp").exists()  # staging removed once the run is in place
    # the checkpoint restores the trained method
    cls = method_class("ae")
    method = cls(build_config(cls, {"epochs": 1}), 1)
    method.load_state_dict(torch.load(result.run_dir / "checkpoint.pt"))


def test_a_failed_run_leaves_no_folder_and_a_failed_row(tmp_path):
    from medad.results.store import ResultsStore

    spec = RunSpec("ae", "synth-brain", overrides={"epochs": 1, "lr": 1e30}, dataset_options=SMALL)
    with pytest.raises(MedadError, match="loss became"):
        execute(spec, tmp_path, device="cpu", progress=False)
    assert not (tmp_path / "runs" / "synth-brain").exists()
    (row,) = ResultsStore(tmp_path).rows()
    assert row.status == "failed" and "loss became" in row.error


def test_bad_config_values_are_rejected():
    with pytest.raises(MedadError, match="latent_sise"):
        build_config(method_class("ae"), {"latent_sise": 4})
    with pytest.raises(MedadError, match="latent_size"):
        build_config(method_class("ae"), {"latent_size": "big"})
