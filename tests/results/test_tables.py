"""Tables aggregate seeds (mean ± sample std) and mark the best per column in every format."""

from __future__ import annotations

import numpy as np
import pytest

from medad.errors import MedadError
from medad.results.store import ResultsStore, RunRow
from medad.results.tables import render_text, summarize, to_rich


def _rows() -> list[RunRow]:
    rows = []
    values = {
        ("ae", "brain"): [0.80, 0.90, 0.85],
        ("ae_l1", "brain"): [0.70, 0.72, 0.71],
        ("ae", "chest"): [0.60, 0.62, 0.64],
        ("ae_l1", "chest"): [0.66, 0.70, 0.68],
    }
    for (method, dataset), vals in values.items():
        for seed, v in enumerate(vals):
            rows.append(
                RunRow(
                    f"{dataset}/{method}/{seed}",
                    method,
                    dataset,
                    seed,
                    "h",
                    "done",
                    metrics={"image_auroc": v, "image_ap": v - 0.1},
                )
            )
    rows.append(RunRow("x", "ae", "brain", 9, "h", "failed", metrics={}))
    return rows


def test_summary_mean_and_sample_std():
    s = summarize(_rows(), ["image_auroc"])
    stat = s.values[("ae", "brain", "image_auroc")]
    assert stat.n == 3
    assert stat.mean == pytest.approx(0.85)
    assert stat.std == pytest.approx(np.std([0.80, 0.90, 0.85], ddof=1))
    assert s.methods == ["ae", "ae_l1"] and s.datasets == ["brain", "chest"]


def test_formats_mark_the_best_of_each_column():
    s = summarize(_rows(), ["image_auroc"])
    md = render_text(s, "md")
    assert "| ae | **85.0 ± 5.0** | 62.0 ± 2.0 |" in md
    assert "| ae_l1 | 71.0 ± 1.0 | **68.0 ± 2.0** |" in md
    latex = render_text(s, "latex")
    assert r"\textbf{85.0 $\pm$ 5.0}" in latex and r"ae\_l1" in latex
    csv_text = render_text(s, "csv").splitlines()
    assert csv_text[0] == (
        "method,dataset,metric,mean,std,seeds,n_normal,n_abnormal,ci_low,ci_high,ci_level"
    )
    assert "ae,brain,image_auroc,0.850000,0.050000,3,,,,," in csv_text
    assert "mean ± sample std over 3 seeds" in md
    assert to_rich(s).row_count == 2


def test_several_metrics_and_errors(tmp_path):
    s = summarize(_rows(), ["image_auroc", "image_ap", "pixel_ap"])
    assert s.metrics == ["image_auroc", "image_ap"]  # no run has pixel_ap
    with pytest.raises(MedadError, match="unknown metric"):
        summarize(_rows(), ["auroc"])
    with pytest.raises(MedadError, match="no finished runs"):
        summarize([], ["image_auroc"])
    store = ResultsStore(tmp_path)
    for row in _rows():
        store.put(row)
    assert len(store.rows(status="done")) == 12


def _run(seed: int, epochs: int, auroc: float, *, chash: str, label=None, dataset="brain"):
    config = {"method": "ae", "dataset": dataset, "dataset_options": {"size": 64}}
    config["config"] = {"epochs": epochs, "latent_size": 16}
    return RunRow(
        f"{dataset}/ae/{chash}-seed{seed}",
        "ae",
        dataset,
        seed,
        chash,
        "done",
        metrics={"image_auroc": auroc},
        config={**config, "seed": seed},
        tag=label,
    )


def test_runs_differing_in_config_are_separate_rows_named_by_what_differs():
    rows = [
        _run(0, 30, 0.60, chash="a30"),
        _run(1, 30, 0.70, chash="a30"),
        _run(0, 3, 0.40, chash="b03"),  # a quick `medad run` next to a bench run
        _run(0, 30, 0.90, chash="c30", dataset="chest"),
    ]
    s = summarize(rows, ["image_auroc"])
    assert s.methods == ["ae (epochs=30)", "ae (epochs=3)"]
    assert s.values[("ae (epochs=30)", "brain", "image_auroc")].n == 2
    assert s.values[("ae (epochs=3)", "brain", "image_auroc")].mean == pytest.approx(0.40)
    assert s.values[("ae (epochs=30)", "chest", "image_auroc")].n == 1
    # same label and config on each dataset: one row, no suffix
    assert summarize(rows[:2] + rows[3:], ["image_auroc"]).methods == ["ae"]


def test_runs_that_no_recorded_field_tells_apart_get_their_config_hash():
    rows = [_run(0, 30, 0.6, chash="a30"), _run(0, 30, 0.8, chash="z99")]
    s = summarize(rows, ["image_auroc"])
    assert s.methods == ["ae [config a30]", "ae [config z99]"]


def test_nested_config_differences_are_named_by_their_dotted_key():
    a, b = _run(0, 30, 0.6, chash="a30"), _run(0, 30, 0.8, chash="b30")
    a.config["config"]["anomaly_params"] = {"blend": "mixed", "max_patches": 4}
    b.config["config"]["anomaly_params"] = {"blend": "interpolated", "max_patches": 4}
    s = summarize([a, b], ["image_auroc"])
    blends = ["mixed", "interpolated"]
    assert s.methods == [f"ae (anomaly_params.blend={b})" for b in blends]


def test_one_seed_shows_no_std_and_says_so():
    rows = [r for r in _rows() if r.seed == 0]
    md = render_text(summarize(rows, ["image_auroc"]), "md")
    assert "±" not in md and "one seed" in md
    assert "| ae | **80.0** | 60.0 |" in md
