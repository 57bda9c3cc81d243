"""What made the report's numbers: versions, device, threads, seeds, epochs, data sizes and
fingerprints, wall time per run, and the resolved configuration behind every row label.

Read from what each run recorded (the store row's ``environment`` and ``config``, the run folder's
``log.txt`` and ``predictions.npz``); nothing is re-run.
"""

from __future__ import annotations

import hashlib
import html
import re
import subprocess
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import yaml

import medad
from medad.results.store import ResultsStore, RunRow

_DATA_LINE = re.compile(r"data \S+: train (\d+), test (\d+)")


def medad_commit() -> str | None:
    """The git commit of the medad sources that write the report, when they sit in a git checkout
    (an installed wheel has none)."""
    try:
        found = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(medad.__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if found.returncode != 0:
        return None
    return found.stdout.strip() or None


def _train_test_sizes(store: ResultsStore, row: RunRow) -> tuple[str, str]:
    folder = store.run_path(row)
    log = folder / "log.txt" if folder is not None else None
    if log is not None and log.is_file():
        found = _DATA_LINE.search(log.read_text(errors="replace"))
        if found:
            return found.group(1), found.group(2)
    return "–", "–"


def fingerprint_of_test_set(store: ResultsStore, row: RunRow) -> str:
    """A short digest of the run's test image ids and labels, plus the dataset's on-disk identity
    when it has one: equal fingerprints mean the same test set, so runs are comparable."""
    folder = store.run_path(row)
    path = folder / "predictions.npz" if folder is not None else None
    digest = hashlib.sha256()
    if path is not None and path.is_file():
        with np.load(path, allow_pickle=False) as z:
            digest.update("\n".join(str(i) for i in z["ids"]).encode())
            digest.update(np.asarray(z["labels"], np.int64).tobytes())
    else:
        return "–"
    data = row.config.get("data")
    if data is not None:
        digest.update(yaml.safe_dump(data, sort_keys=True).encode())
    return digest.hexdigest()[:10]


def _distinct(rows: list[RunRow], key: str) -> str:
    values = sorted({str(r.environment.get(key)) for r in rows if r.environment.get(key)})
    return ", ".join(values) if values else "not recorded"


def provenance_html(store: ResultsStore, rows: list[RunRow], labels: dict[str, str]) -> str:
    """The report's header block: library versions and devices over all runs, then one line per
    run (row label, dataset, seed, epochs, device, threads, data sizes, fingerprint, wall time)."""
    commit = medad_commit()
    seeds = sorted({r.seed for r in rows})
    head = (
        f"<p class='provenance'>Report by medad {html.escape(str(medad.__version__))}"
        f"{f' (commit {html.escape(commit)})' if commit else ''}. Runs made with medad "
        f"{html.escape(_distinct(rows, 'medad'))}; torch {html.escape(_distinct(rows, 'torch'))}; "
        f"numpy {html.escape(_distinct(rows, 'numpy'))}; device "
        f"{html.escape(_distinct(rows, 'device'))}; torch threads "
        f"{html.escape(_distinct(rows, 'torch_threads'))}; seeds {seeds}; total training and "
        f"evaluation time {sum(r.seconds or 0 for r in rows):.0f} s.</p>"
    )
    body = []
    for r in sorted(rows, key=lambda r: (r.dataset, labels[r.run_id], r.seed)):
        train_n, test_n = _train_test_sizes(store, r)
        env = r.environment
        cells = [
            labels[r.run_id],
            r.dataset,
            str(r.seed),
            str(r.config.get("config", {}).get("epochs", "–")),
            str(env.get("device", "–")),
            str(env.get("torch_threads", "–")),
            train_n,
            test_n,
            fingerprint_of_test_set(store, r),
            f"{r.seconds:.1f}" if r.seconds is not None else "–",
        ]
        body.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    columns = "row dataset seed epochs device threads train test test-set&nbsp;fingerprint s"
    header = "".join(f"<th>{c}</th>" for c in columns.split())
    return (
        f"{head}<details class='runs'><summary>How each run was made ({len(rows)} runs)</summary>"
        f"<table class='provenance wide'><caption>train / test: images used; fingerprint: digest "
        f"of the test image ids and labels (same value, same test set); s: wall time of training "
        f"and evaluation</caption><tr>{header}</tr>{''.join(body)}</table></details>"
    )


def configs_html(rows: list[RunRow], labels: dict[str, str]) -> str:
    """The resolved configuration behind each row label (its first run; seeds aside, the runs of
    a row share it: `run_labels` keeps configurations apart)."""
    first: dict[str, RunRow] = {}
    datasets: dict[str, set[str]] = defaultdict(set)
    for r in sorted(rows, key=lambda r: r.seed):
        first.setdefault(labels[r.run_id], r)
        datasets[labels[r.run_id]].add(r.dataset)
    parts = []
    for label, r in first.items():
        shown: dict[str, Any] = {
            k: v for k, v in r.config.items() if k not in ("seed", "dataset", "dataset_options")
        }
        text = yaml.safe_dump(shown, sort_keys=False, default_flow_style=None)
        parts.append(
            f"<details class='config'><summary><code>{html.escape(label)}</code> "
            f"({html.escape(', '.join(sorted(datasets[label])))})</summary>"
            f"<pre>{html.escape(text)}</pre></details>"
        )
    return "".join(parts)
