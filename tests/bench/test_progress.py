"""What `medad bench` shows while a grid runs: plain lines off a terminal, a bar on one; and the
labelled bar of a single run."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass

import numpy as np
from rich.console import Console
from rich.progress import Progress, TextColumn
from typer.testing import CliRunner

from medad import engine
from medad.bench.progress import GridProgress, clock, plain_console
from medad.cli import app
from medad.data.loading import ArraySplit, Preprocess
from medad.methods.base import build_config, method_class


@dataclass
class FakeCell:
    run_id: str
    label: str


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_lines_when_not_a_terminal():
    buf, now = io.StringIO(), Clock()
    a, b, c = FakeCell("d/ae/1-seed0", "ae"), FakeCell("d/vae/2-seed0", "vae"), FakeCell("x", "")
    with GridProgress(3, plain_console(buf), now=now) as shown:
        assert not shown.terminal
        shown.event("skip", c, "done")
        shown.event("start", a, "")
        now.t += 10
        shown.epoch(
            a, {"stage": "train", "epoch": 1, "epochs": 2, "loss": 0.25, "step": 5, "steps": 10}
        )
        now.t += 10
        shown.epoch(
            a, {"stage": "train", "epoch": 2, "epochs": 2, "loss": 0.125, "step": 10, "steps": 10}
        )
        shown.event("done", a, "")
        shown.event("start", b, "")
        now.t += 5
        shown.epoch(
            b,
            {
                "stage": "gan",
                "epoch": 1,
                "epochs": 4,
                "g/loss": 1.5,
                "d/loss": 2.0,
                "step": 1,
                "steps": 4,
            },
        )
        shown.event("failed", b, "boom\ntraceback")
    assert buf.getvalue().splitlines() == [
        "[1/3] x skip (done) (0:00 elapsed, time left unknown yet)",
        "[1/3] d/ae/1-seed0 (ae) start (0:00 elapsed, time left unknown yet)",
        "[1/3] d/ae/1-seed0 (ae) epoch 1/2 loss 0.25 (0:10 elapsed, 0:30 left)",
        "[1/3] d/ae/1-seed0 (ae) epoch 2/2 loss 0.125 (0:20 elapsed, 0:20 left)",
        "[2/3] d/ae/1-seed0 (ae) done (0:20 elapsed, 0:20 left)",
        "[2/3] d/vae/2-seed0 (vae) start (0:20 elapsed, 0:20 left)",
        "[2/3] d/vae/2-seed0 (vae) gan epoch 1/4 loss 1.5 (0:25 elapsed, 0:15 left)",
        "[3/3] d/vae/2-seed0 (vae) failed: boom (0:25 elapsed, 0:00 left)",
    ]
    assert clock(3725) == "1:02:05"


def test_bar_in_a_terminal():
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=160)
    cell = FakeCell("d/ae/1-seed0", "ae")
    with GridProgress(2, console) as shown:
        assert shown.terminal
        shown.event("start", cell, "")
        shown.epoch(
            cell, {"stage": "train", "epoch": 1, "epochs": 2, "loss": 0.5, "step": 1, "steps": 2}
        )
        shown._bar.refresh()  # type: ignore[union-attr]
        shown.event("done", cell, "")
    out = buf.getvalue()
    assert "cells" in out and "epoch 1/2 loss 0.5" in out and "d/ae/1-seed0 (ae)" in out


def test_bench_prints_one_line_per_event_off_a_terminal(tmp_path):
    exp = tmp_path / "exp.yaml"
    exp.write_text(
        "name: tiny\nmethods: [ae]\ndatasets:\n  - name: synth-brain\n    options: "
        "{n_train: 24, n_test_normal: 8, n_test_abnormal: 8, size: 64}\nseeds: [0]\n"
        "set: {epochs: 2}\n"
    )
    res = CliRunner().invoke(app, ["bench", str(exp), "-r", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    pattern = re.compile(r"^\[(\d)/1\] synth-brain/ae/\w+-seed0 \(ae\) (.*?) \(\d+:\d\d elapsed")
    events = [m.groups() for x in res.stderr.splitlines() if (m := pattern.match(x))]
    assert [(n, re.sub(r"loss \S+", "loss L", text)) for n, text in events] == [
        ("0", "start"),
        ("0", "epoch 1/2 loss L"),
        ("0", "epoch 2/2 loss L"),
        ("1", "done"),
    ], res.stderr


def test_bench_summary_is_one_table_per_dataset_that_fits_100_columns(tmp_path, monkeypatch):
    from medad import cli

    exp = tmp_path / "exp.yaml"
    data = "{n_train: 16, n_test_normal: 4, n_test_abnormal: 4, size: 32}"
    exp.write_text(
        "name: two\nmethods: [ae, {name: ae, label: ae-with-a-long-label, set: {lr: 0.002}}]\n"
        f"datasets:\n  - {{name: synth-brain, options: {data}}}\n"
        f"  - {{name: synth-chest, options: {data}}}\nseeds: [0]\nset: {{epochs: 1}}\n"
    )
    buf = io.StringIO()
    monkeypatch.setattr(cli, "console", Console(file=buf, width=100, color_system=None))
    res = CliRunner().invoke(app, ["bench", str(exp), "-r", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    out = buf.getvalue()
    assert "two: synth-brain" in out and "two: synth-chest" in out, out
    assert max(map(len, out.splitlines())) <= 100, out
    figures = [x for x in out.splitlines() if "ae-with-a-long-label" in x]
    assert len(figures) == 2 and all(x.count(".") >= 2 for x in figures), out  # both metrics


def test_run_bar_names_method_and_dataset_and_never_shows_nan(monkeypatch):
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=160)

    def bar(enabled: bool) -> Progress:
        return Progress(TextColumn("{task.description} loss {task.fields[loss]}"), console=console)

    monkeypatch.setattr(engine, "_progress", bar)
    cls = method_class("ae")
    config = build_config(cls, {"epochs": 1, "batch_size": 8})
    rng = np.random.default_rng(0)
    data = ArraySplit(rng.integers(0, 255, (16, 1, 64, 64), np.uint8), np.zeros(16, int), None, [])
    data.ids = [str(i) for i in range(16)]
    seen = []
    method = engine.create_method(cls, config, 1, 0)
    engine.train(method, data, Preprocess(), label="ae on synth-brain", on_epoch=seen.append)
    out = buf.getvalue()
    assert "ae on synth-brain loss" in out and "nan" not in out
    assert (
        seen[0]["epoch"] == 1
        and seen[0]["epochs"] == 1
        and seen[0]["step"] == seen[0]["steps"] == 2
    )
