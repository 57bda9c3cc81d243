"""A run is trained once: reused when finished (unless forced), never started twice, and a
failure (a full disk) is named and leaves earlier results intact."""

from __future__ import annotations

import errno
import os

import numpy as np
import pytest
from typer.testing import CliRunner

from medad import runs
from medad.cli import app
from medad.errors import MedadError
from medad.predictions import Predictions
from medad.results.store import ResultsStore

TINY = {"n_train": 16, "n_test_normal": 4, "n_test_abnormal": 4, "size": 32}


def _spec(seed: int = 0) -> runs.RunSpec:
    return runs.RunSpec("ae", "synth-brain", seed, {"epochs": 1, "batch_size": 8}, dict(TINY))


def test_a_finished_run_is_reused_unless_forced(tmp_path):
    first = runs.execute(_spec(), tmp_path, device="cpu", progress=False)
    checkpoint = first.run_dir / "checkpoint.pt"
    stamp = checkpoint.stat().st_mtime_ns
    again = runs.execute(_spec(), tmp_path, device="cpu", progress=False)
    assert again.reused and not first.reused
    assert (again.run_id, again.run_dir, again.metrics) == (
        first.run_id,
        first.run_dir,
        first.metrics,
    )
    assert checkpoint.stat().st_mtime_ns == stamp  # not trained again
    forced = runs.execute(_spec(), tmp_path, device="cpu", progress=False, force=True)
    assert not forced.reused and forced.metrics == first.metrics  # same seed, same numbers
    assert (first.run_dir / "checkpoint.pt").stat().st_mtime_ns != stamp
    (row,) = ResultsStore(tmp_path).rows()
    assert row.status == "done"


def test_cli_run_says_a_finished_run_is_reused(tmp_path):
    args = ["run", "-m", "ae", "-d", "synth-brain", "--epochs", "1", "--set", "batch_size=8"]
    args += [f"--data-option={k}={v}" for k, v in TINY.items()]
    args += ["--out", str(tmp_path), "--device", "cpu"]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    assert "already done: " in again.output and "--force to retrain" in again.output
    forced = CliRunner().invoke(app, [*args, "--force"])
    assert forced.exit_code == 0 and "already done" not in forced.output


def test_a_run_another_process_trains_is_not_started_twice(tmp_path):
    planned = runs.plan(_spec())
    other = ResultsStore(tmp_path)
    other.pid = os.getppid()  # a live process of this host holds the run
    assert other.claim(planned.row("running")).outcome == "claimed"
    with pytest.raises(runs.RunningElsewhere, match=f"running elsewhere .*pid {os.getppid()}"):
        runs.execute(_spec(), tmp_path, device="cpu", progress=False)
    assert ResultsStore(tmp_path).get(planned.run_id).status == "running"


def test_a_full_disk_is_named_and_earlier_results_stay(tmp_path, monkeypatch):
    kept = runs.execute(_spec(0), tmp_path, device="cpu", progress=False)

    def full(self, path, **_options):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(Predictions, "save", full)
    with pytest.raises(MedadError, match=r"^no space left on device: .*predictions\.npz$"):
        runs.execute(_spec(1), tmp_path, device="cpu", progress=False)
    rows = {r.seed: r for r in ResultsStore(tmp_path).rows()}
    assert rows[0].status == "done" and rows[0].metrics == kept.metrics
    assert rows[1].status == "failed" and rows[1].error.startswith("no space left on device")
    assert (kept.run_dir / "predictions.npz").is_file()
    assert not (tmp_path / "runs" / ".tmp").exists()  # no half-written run folder, no empty staging
    assert ResultsStore(tmp_path).leases() == {}


def test_two_folder_datasets_get_two_run_ids_and_both_runs_survive(tmp_path):
    from medad.bench import plan_cells
    from medad.bench.config import parse_experiment
    from tests.test_cli import make_folder_dataset

    roots = [make_folder_dataset(tmp_path / name, n=4, size=32) for name in ("a", "b")]
    spec = runs.RunSpec("ae", "folder", 0, {"epochs": 1, "batch_size": 4})
    ids = [runs.plan(spec, root).run_id for root in roots]
    assert ids[0] != ids[1]
    assert runs.plan(spec, roots[0]).run_id == ids[0]  # stable
    out = tmp_path / "out"
    done = [runs.execute(spec, out, data_root=r, device="cpu", progress=False) for r in roots]
    assert not any(d.reused for d in done)
    rows = ResultsStore(out).rows()
    assert sorted(r.run_id for r in rows) == sorted(ids) and {r.status for r in rows} == {"done"}
    assert all(d.run_dir.is_dir() for d in done)
    assert rows[0].config["data"]["root"] == str(roots[0].resolve())

    exp = parse_experiment(
        "name: two-folders\nmethods: [ae]\nseeds: [0]\ndatasets:\n"
        + "".join(f"  - {{name: folder, data_root: {r}}}\n" for r in roots)
    )
    assert len(plan_cells(exp)) == 2


def test_the_environment_is_recorded_but_not_hashed(tmp_path):
    import torch
    import yaml

    result = runs.execute(_spec(), tmp_path, device="cpu", progress=False, deterministic=True)
    assert result.run_id == runs.plan(_spec()).run_id  # same id with or without the flag
    written = yaml.safe_load((result.run_dir / "config.yaml").read_text())
    env = written["environment"]
    assert env["torch"] == torch.__version__ and env["numpy"] == np.__version__
    assert env["torch_threads"] == torch.get_num_threads() and env["device"] == "cpu"
    assert env["deterministic"] is True and {"python", "medad", "torchvision"} <= set(env)
    assert "environment" not in result.config
    (row,) = ResultsStore(tmp_path).rows()
    assert row.environment == env


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA GPU")
def test_deterministic_cuda_runs_are_bit_identical(tmp_path):
    import torch

    spec = _spec()
    a = runs.execute(spec, tmp_path / "a", device="cuda", progress=False, deterministic=True)
    b = runs.execute(spec, tmp_path / "b", device="cuda", progress=False, deterministic=True)
    assert a.metrics == b.metrics
    pa = Predictions.load(a.run_dir / "predictions.npz")
    pb = Predictions.load(b.run_dir / "predictions.npz")
    assert np.array_equal(pa.maps, pb.maps)
    assert not torch.are_deterministic_algorithms_enabled()  # restored afterwards
    env = ResultsStore(tmp_path / "a").rows()[0].environment
    assert env["deterministic_algorithms"] and env["cublas_workspace_config"] == ":4096:8"


def test_precision_and_compile_enter_the_run_id_only_when_asked():
    from medad.engine import TrainOptions

    plain = runs.plan(_spec())
    assert "training" not in plain.resolved
    checked = _spec()
    checked.train_options = TrainOptions(check_every=7)  # changes no number: same run
    assert runs.plan(checked).run_id == plain.run_id
    variants = [TrainOptions(precision="bf16"), TrainOptions(compile=True)]
    variants.append(TrainOptions(channels_last=True))
    for options in variants:
        spec = _spec()
        spec.train_options = options
        planned = runs.plan(spec)
        assert planned.run_id != plain.run_id
        assert planned.resolved["training"] == options.model_dump(exclude_defaults=True)


def test_cli_run_trains_in_bf16_and_compresses_predictions_when_asked(tmp_path):
    import zipfile

    args = ["run", "-m", "ae", "-d", "synth-brain", "--epochs", "1", "--set", "batch_size=8"]
    args += [f"--data-option={k}={v}" for k, v in TINY.items()]
    args += ["--out", str(tmp_path), "--device", "cpu", "--json"]
    done = CliRunner().invoke(app, [*args, "--precision", "bf16", "--compress-predictions"])
    assert done.exit_code == 0, done.output
    (row,) = ResultsStore(tmp_path).rows()
    run_dir = tmp_path / row.run_dir
    assert "precision: bf16" in (run_dir / "config.yaml").read_text()
    with zipfile.ZipFile(run_dir / "predictions.npz") as z:
        assert {i.compress_type for i in z.infolist()} == {zipfile.ZIP_DEFLATED}
    bad = CliRunner().invoke(app, [*args, "--precision", "fp64"])
    assert bad.exit_code == 2 and "fp64" in bad.output


def test_cli_run_in_channels_last_scores_a_reloaded_model_in_it_too(tmp_path):
    """`--channels-last` trains and scores with NHWC weights; `load_run` rebuilds the model in
    the same memory format, so `medad predict` scores as the run did."""
    import torch

    from medad.inference import load_run

    args = ["run", "-m", "ae", "-d", "synth-brain", "--epochs", "1", "--set", "batch_size=8"]
    args += [f"--data-option={k}={v}" for k, v in TINY.items()]
    args += ["-r", str(tmp_path), "--device", "cpu", "--json"]
    plain = CliRunner().invoke(app, args)
    assert plain.exit_code == 0, plain.output
    nhwc = CliRunner().invoke(app, [*args, "--channels-last"])
    assert nhwc.exit_code == 0, nhwc.output
    rows = {r.run_id: r for r in ResultsStore(tmp_path).rows()}
    assert len(rows) == 2  # two configurations, two runs
    (run_dir,) = [
        tmp_path / r.run_dir
        for r in rows.values()
        if "channels_last: true" in (tmp_path / r.run_dir / "config.yaml").read_text()
    ]
    loaded = load_run(run_dir, device="cpu")
    conv = next(p for p in loaded.method.parameters() if p.dim() == 4 and p.shape[1] > 1)
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    scores = {r.run_id: r.metrics["image_auroc"] for r in rows.values()}
    values = list(scores.values())
    assert values[0] == pytest.approx(values[1], abs=0.05)  # the same training, other digits
