"""The HTML report renders in a real headless browser with its tables and plots."""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess

import numpy as np
import pytest
from PIL import Image

from medad.bench import plan_cells, run_grid
from medad.bench.config import parse_experiment
from medad.errors import MedadError
from medad.report import build_report
from medad.results.store import ResultsStore, RunRow

GRID = """\
name: report-test
seeds: [0, 1]
study: latent_size
methods:
  - ae
  - {name: ae, label: ae-z4, set: {latent_size: 4}}
datasets:
  - {name: synth-brain, options: {n_train: 48, n_test_normal: 12, n_test_abnormal: 12, size: 64}}
  - {name: synth-chest, options: {n_train: 48, n_test_normal: 12, n_test_abnormal: 12, size: 64}}
quick: {epochs: 1, dataset_options: {}}
"""


def _browser() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    cells = plan_cells(parse_experiment(GRID), quick=True)
    summary = run_grid(cells, out, device="cpu")
    assert len(summary.done) == 8
    return out


def test_report_page_has_tables_plots_and_gallery(results, tmp_path):
    page = build_report(results, tmp_path / "report")
    text = page.read_text()
    assert text.count('<table class="results"') >= 2  # image AUROC, image AP, pixel metrics…
    assert "Gallery" in text and "Component studies" in text
    assert len(re.findall(r'<img class="plot"', text)) >= 4  # ROC/PR, histograms, gallery, study
    # how the numbers were made
    assert "How each run was made (8 runs)" in text and "torch threads" in text
    assert "Resolved configuration of each row" in text and "latent_size: 4" in text
    # captions say what the numbers are; the paper's best Dice is shown
    assert "mean ± sample std over 2 seeds" in text and "synth-brain: n = 12 + 12" in text
    assert 'data-metric="best_dice_paper"' in text
    # statistics: Friedman, the CD diagram, DeLong against the best row, bootstrap intervals
    assert "Friedman test over 2 datasets and 2 rows" in text
    assert 'alt="critical difference diagram"' in text and "DeLong" in text
    assert re.search(r"<td>\d+\.\d \[\d+\.\d, \d+\.\d\]</td>", text)
    # thresholds fixed without test labels, their protocol stated, beside the oracle
    assert "Thresholds fixed without test labels" in text
    assert "5 % FPR on 48 training images" in text and "Dice@thr" in text
    # pixel curves, training losses, study plots with their error bars stated
    for alt in ("pixel ROC/PR synth-brain", "training loss synth-brain"):
        assert f'alt="{alt}"' in text
    # a second report replaces the first (its own output) atomically, only when asked to
    with pytest.raises(MedadError, match="--overwrite"):
        build_report(results, tmp_path / "report")
    assert build_report(results, tmp_path / "report", overwrite=True) == page
    assert [p.name for p in (tmp_path).iterdir()] == ["report"]


def test_report_renders_in_headless_chromium(results, tmp_path):
    browser = _browser()
    if browser is None:
        if os.environ.get("MEDAD_REQUIRE_BROWSER"):
            pytest.fail("MEDAD_REQUIRE_BROWSER is set but no Chromium was found")
        pytest.skip("no Chromium on this machine (make test installs it where it can)")
    page = build_report(results, tmp_path / "report")
    flags = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    shot = tmp_path / "shot.png"
    subprocess.run(
        flags + [f"--screenshot={shot}", "--window-size=1200,2400", page.as_uri()],
        check=True,
        capture_output=True,
        timeout=120,
    )
    dom = subprocess.run(
        flags + ["--dump-dom", "--virtual-time-budget=5000", page.as_uri()],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    loaded = re.search(r'data-plots-loaded="(\d+)"', dom)
    n_plots = page.read_text().count('<img class="plot"')
    assert n_plots >= 10  # per dataset 4 + gallery, CD diagram, study
    assert loaded and int(loaded.group(1)) == n_plots, "plots did not decode in the browser"
    assert "<table" in dom and 'class="statistics wide"' in dom
    img = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert img.shape[0] > 1000 and img.std() > 10  # something was drawn, not a blank page
    assert (img < 128).mean() > 0.01  # text and plot lines


def test_report_without_results_is_a_clear_error(tmp_path):
    with pytest.raises(MedadError, match="no results store"):
        build_report(tmp_path, tmp_path / "r")


def test_a_stray_run_gets_its_own_row_and_keeps_the_study(results, tmp_path):
    copy = tmp_path / "results"
    shutil.copytree(results, copy)
    store = ResultsStore(copy)
    model = next(r for r in store.rows(status="done") if r.tag == "ae")
    config = {**model.config, "config": {**model.config["config"], "epochs": 3}}
    store.put(
        RunRow(
            "stray", "ae", model.dataset, 0, "stray0hash", "done",
            metrics=dict(model.metrics), config=config,
        )
    )  # fmt: skip
    text = build_report(copy, tmp_path / "report").read_text()
    assert "<td>ae (epochs=1)</td>" in text and "<td>ae (epochs=3)</td>" in text
    assert "Component studies" in text and "vs latent_size" in text


def test_one_seed_shows_intervals_not_a_std(results, tmp_path):
    copy = tmp_path / "results"
    shutil.copytree(results, copy)
    with sqlite3.connect(copy / "results.sqlite") as con:
        con.execute("DELETE FROM runs WHERE seed = 1")
    text = build_report(copy, tmp_path / "report").read_text()
    tables = "".join(re.findall(r'<table class="results".*?</table>', text))
    assert "±" not in tables and "one seed" in tables
    assert re.search(r"<td[^>]*>\d+\.\d \[\d+\.\d, \d+\.\d\]</td>", tables)
