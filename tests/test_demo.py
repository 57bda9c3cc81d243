"""`make demo` stays a demo: minutes on a 2-core CPU, medad alone installed, tables that fit a
100-column terminal."""

from __future__ import annotations

import re
from pathlib import Path

from rich.console import Console

from medad.bench import load_experiment, plan_cells
from medad.results.tables import Stat, Summary, to_rich

ROOT = Path(__file__).resolve().parents[1]
MAKEFILE = (ROOT / "Makefile").read_text()
#: the demo's training work, in image passes (train images × epochs, summed over cells): today's
#: grid does 11 520 (10 cells × 96 images × 12 epochs of the AE family at 64 px), the most that
#: keeps `make demo` to a few minutes on two cores; a demo that grows past it needs measuring again
PASS_BUDGET = 12_000


def demo_cells():
    return plan_cells(load_experiment(ROOT / "configs" / "demo.yaml"), open_data=False)


def test_demo_is_small():
    passes = 0
    for cell in demo_cells():
        options = cell.planned.spec.dataset_options
        assert options.get("size", 128) <= 64, "generate the embedded data at the size used"
        passes += options.get("n_train", 400) * cell.planned.config.epochs
    assert passes <= PASS_BUDGET


def test_demo_installs_medad_alone():
    demo = re.search(r"^demo: (.*)$", MAKEFILE, flags=re.M)
    assert demo is not None
    stamp = demo.group(1).split()[0]
    recipe = re.search(rf"^{re.escape(stamp)}:.*?\n((?:\t.*\n)+)", MAKEFILE, flags=re.M)
    assert recipe is not None
    installs = re.findall(r"pip install .*", recipe.group(1))
    assert installs[-1].endswith("-e .") and "[dev]" not in recipe.group(1)


def test_demo_tables_fit_100_columns():
    metrics = re.findall(r"--metric (\w+)", re.search(r"^DEMO_METRICS :=(.*)$", MAKEFILE, re.M)[1])
    tables = re.findall(r"medad table .*--dataset (\S+)", MAKEFILE)
    cells = demo_cells()
    assert sorted(tables) == sorted({c.planned.spec.dataset for c in cells})
    labels = sorted({c.label for c in cells})
    for dataset in tables:
        summary = Summary(methods=labels, datasets=[dataset], metrics=metrics)
        for label in labels:
            for m in metrics:  # the widest cells: three seeds, two-digit spread
                summary.values[(label, dataset, m)] = Stat(0.999, 0.111, 3)
        console = Console(width=100, color_system=None)
        with console.capture() as captured:
            console.print(to_rich(summary, title="demo"))
        lines = captured.get().splitlines()
        assert max(map(len, lines)) <= 100
        # headers may wrap at a space; every row of figures stays on one line, whole
        rows = [x for x in lines if "99.9 ± 11.1" in x]
        assert len(rows) == len(labels), captured.get()
        assert all(x.count("99.9 ± 11.1") == len(metrics) for x in rows), captured.get()
        assert [x.split("│")[1].strip() for x in rows] == labels
