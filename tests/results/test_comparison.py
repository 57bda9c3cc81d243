"""Paired comparisons of runs on the same test images, and tables with n, seeds and intervals,
from a results store whose predictions the test writes (no training)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from medad.cli import app
from medad.errors import MedadError
from medad.metrics import image_auroc
from medad.predictions import Predictions
from medad.results.comparison import annotate_summary, compare
from medad.results.store import ResultsStore, RunRow
from medad.results.tables import render_text, summarize, to_rich

N_NORMAL, N_ABNORMAL = 30, 20


def _predictions(separation: float, seed: int, *, maps: bool = True, n_normal=N_NORMAL):
    rng = np.random.default_rng(seed)
    labels = np.r_[np.zeros(n_normal), np.ones(N_ABNORMAL)].astype(np.int64)
    masks = np.zeros((labels.size, 8, 8), bool)
    masks[labels == 1, 2:5, 2:5] = True
    pixel_maps = (rng.random(masks.shape) + separation * masks).astype(np.float32)
    return Predictions(
        ids=[f"img{i}" for i in range(labels.size)],
        labels=labels,
        image_scores=rng.normal(size=labels.size) + separation * labels,
        maps=pixel_maps if maps else None,
        masks=masks if maps else None,
    )


def _add_run(store, method, seed, pred, *, dataset="brain", chash="h"):
    rel = f"runs/{dataset}/{method}/{chash}-seed{seed}"
    (store.root / rel).mkdir(parents=True)
    pred.save(store.root / rel / "predictions.npz")
    metrics = {"image_auroc": image_auroc(pred.image_scores, pred.labels)}
    store.put(
        RunRow(
            f"{dataset}/{method}/{chash}-seed{seed}", method, dataset, seed, chash, "done",
            run_dir=rel, metrics=metrics, started=float(seed),
        )
    )  # fmt: skip


@pytest.fixture
def store(tmp_path):
    store = ResultsStore(tmp_path / "out")
    for seed in (0, 1):
        _add_run(store, "good", seed, _predictions(2.0, seed))
        _add_run(store, "poor", seed, _predictions(0.1, 10 + seed))
    _add_run(store, "single", 0, _predictions(1.0, 20))
    return store


def test_compare_pairs_runs_by_seed_and_finds_the_better_method(store):
    found = compare(store.root, "good", "poor", n_boot=300)
    assert [(c.seed_a, c.seed_b) for c in found] == [(0, 0), (1, 1)]
    for c in found:
        assert (c.n_normal, c.n_abnormal) == (N_NORMAL, N_ABNORMAL)
        by_metric = {m.metric: m for m in c.metrics}
        assert set(by_metric) == {"image_auroc", "image_ap", "pixel_auroc", "pixel_ap"}
        auroc = by_metric["image_auroc"]
        assert auroc.test == "DeLong" and auroc.p_value < 0.01
        assert auroc.difference.estimate == pytest.approx(auroc.a - auroc.b)
        assert 0 < auroc.difference.low < auroc.difference.estimate < auroc.difference.high
        assert by_metric["pixel_ap"].difference.low > 0


def test_compare_a_run_against_itself_or_other_test_images_is_refused(store):
    with pytest.raises(MedadError, match="share no dataset and seed"):
        compare(store.root, "brain/good/h-seed0", "brain/good/h-seed0")
    _add_run(store, "other", 0, _predictions(1.0, 3, n_normal=25))
    with pytest.raises(MedadError, match="different test images"):
        compare(store.root, "other", "good")
    with pytest.raises(MedadError, match="no finished run named 'nope'"):
        compare(store.root, "nope", "good")


def test_table_shows_n_seed_count_and_a_single_runs_interval(store):
    summary = summarize(store.rows(), ["image_auroc"])
    annotate_summary(summary, store, intervals=True, n_boot=200)
    md = render_text(summary, "md")
    assert "brain (n=30+20)" in md
    single = summary.values[("single", "brain", "image_auroc")]
    low, high = single.ci
    assert low < single.mean < high
    assert f"{100 * single.mean:.1f} [{100 * low:.1f}, {100 * high:.1f}]" in md
    assert "(2)" in md  # mixed seed counts: each mean ± std says over how many
    assert "95 % bootstrap interval" in md
    records = json.loads(render_text(summary, "json"))["rows"]
    good = next(r for r in records if r["method"] == "good")
    assert good["seeds"] == 2 and good["n_normal"] == 30 and good["ci_low"] is None
    header, *lines = render_text(summary, "csv").splitlines()
    assert header.startswith("method,dataset,metric,mean,std,seeds,n_normal,n_abnormal,ci_low")


def test_cli_compare_and_table(store):
    runner = CliRunner()
    res = runner.invoke(
        app, ["compare", "good", "poor", "--results", str(store.root), "--n-boot", "100", "--json"]
    )
    assert res.exit_code == 0, res.output
    (first, _) = json.loads(res.stdout)
    assert first["metrics"][0]["test"] == "DeLong" and first["metrics"][0]["p_value"] < 0.01
    res = runner.invoke(app, ["compare", "good", "poor", "--results", str(store.root)])
    assert res.exit_code == 0 and "DeLong" in res.stdout and "Pixel AP" in res.stdout
    res = runner.invoke(
        app, ["compare", "good", "poor", "--results", str(store.root), "--pixel-n-boot", "0"]
    )
    assert res.exit_code == 0 and "paired bootstrap" in res.stdout and "Pixel" not in res.stdout
    res = runner.invoke(app, ["table", "--results", str(store.root), "--format", "json", "--ci"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["rows"][0]["n_abnormal"] == N_ABNORMAL
    res = runner.invoke(app, ["compare", "good", "missing", "--results", str(store.root)])
    assert res.exit_code == 2 and "no finished run named" in res.output


def test_the_terminal_table_shows_intervals_and_says_what_they_are(store):
    from rich.console import Console

    summary = summarize(store.rows(), ["image_auroc"])
    annotate_summary(summary, store, intervals=True, n_boot=100)
    console = Console(width=200, record=True)
    console.print(to_rich(summary))
    text = " ".join(console.export_text().split())  # the caption wraps to the table's width
    low, high = summary.values[("single", "brain", "image_auroc")].ci
    assert f"[{100 * low:.1f}, {100 * high:.1f}]" in text
    assert "[low, high]: 95 % bootstrap interval" in text
