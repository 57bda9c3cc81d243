"""Honest thresholds: fixed on normal images held out before training (or, by default, on the
training images, labelled so), saved with the run, and the metrics at them."""

from __future__ import annotations

import json

import pytest

from medad import runs
from medad.errors import MedadError
from medad.evaluation import THRESHOLD_METRICS, Thresholds

TINY = {"n_train": 16, "n_test_normal": 4, "n_test_abnormal": 4, "size": 32}


def _spec(**protocol) -> runs.RunSpec:
    return runs.RunSpec(
        "ae", "synth-brain", 0, {"epochs": 1, "batch_size": 8, **protocol}, dict(TINY)
    )


def test_default_protocol_keeps_the_run_id_and_sets_thresholds_on_training_images(tmp_path):
    _, resolved = runs.resolve_config(_spec())
    assert "protocol" not in resolved  # the study's protocol: run ids as before
    result = runs.execute(_spec(), tmp_path, device="cpu", progress=False)
    saved = json.loads((result.run_dir / "thresholds.json").read_text())
    assert saved["source"] == "train" and saved["n_images"] == 16
    assert saved["image_threshold"] > 0 and saved["pixel_threshold"] > 0
    assert set(THRESHOLD_METRICS) <= set(result.metrics)
    assert "sens_at_95spec" in result.metrics
    # recomputed from the saved predictions and thresholds: the same numbers
    assert runs.evaluate_run(result.run_dir) == result.metrics


def test_a_validation_split_is_held_out_before_training(tmp_path):
    spec = _spec(validation_fraction=0.25, threshold_fpr=0.1)
    _, resolved = runs.resolve_config(spec)
    assert resolved["protocol"] == {"validation_fraction": 0.25, "threshold_fpr": 0.1}
    assert "validation_fraction" not in resolved["config"]
    result = runs.execute(spec, tmp_path, device="cpu", progress=False)
    thresholds = Thresholds.load(result.run_dir)
    assert thresholds.source == "validation" and thresholds.n_images == 4
    assert thresholds.target_fpr == 0.1
    assert "4 normal images held out" in (result.run_dir / "log.txt").read_text()
    default = runs.execute(_spec(), tmp_path, device="cpu", progress=False)
    assert default.run_id != result.run_id


def test_fewer_training_images_can_set_the_thresholds_of_a_slow_scorer(tmp_path):
    """`threshold_images` bounds the in-sample images scored for the thresholds (a diffusion
    method on a CPU takes tens of seconds per image); it is a protocol change: its own run id."""
    spec = _spec(threshold_images=5)
    _, resolved = runs.resolve_config(spec)
    assert resolved["protocol"] == {"threshold_images": 5}
    result = runs.execute(spec, tmp_path, device="cpu", progress=False)
    thresholds = Thresholds.load(result.run_dir)
    assert thresholds.source == "train" and thresholds.n_images == 5
    assert result.run_id != runs.plan(_spec()).run_id


def test_a_bad_protocol_is_a_clear_error():
    with pytest.raises(MedadError, match="validation_fraction"):
        runs.resolve_config(_spec(validation_fraction=1.5))
    with pytest.raises(MedadError, match="threshold_images"):
        runs.resolve_config(_spec(threshold_images=0))


def test_a_bench_file_sets_the_protocol_for_every_method():
    from medad.bench import plan_cells
    from medad.bench.config import parse_experiment

    exp = parse_experiment(
        "name: t\nseeds: [0]\nset: {validation_fraction: 0.25}\nmethods: [ae, ae-l1]\n"
        "datasets:\n  - {name: synth-brain, options: {n_train: 16, size: 32}}\n"
    )
    cells = plan_cells(exp, open_data=False)
    assert all(c.planned.resolved["protocol"] == {"validation_fraction": 0.25} for c in cells)
