"""K cells per GPU: the GPUs a process grid uses, the memory probe, the lowering of K to what fits,
the least-loaded placement, and Ray's GPU shares. No GPU here: CUDA's queries are replaced."""

from __future__ import annotations

import os
import sys
import threading
import time
import types
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from typer.testing import CliRunner

from medad import engine
from medad.bench import grid, placement, plan_cells, run_grid
from medad.bench.config import parse_experiment
from medad.bench.placement import CONTEXT_BYTES, MemoryNeed, Slots, fit_workers
from medad.cli import app
from medad.errors import MedadError

GiB = 1 << 30
EXP = """\
name: gpus
seeds: [0, 1]
methods:
  - ae
  - {name: ae, label: ae-z4, set: {latent_size: 4}}
datasets:
  - {name: synth-brain, options: {n_train: 80, n_test_normal: 8, n_test_abnormal: 8, size: 32}}
quick:
  epochs: 1
  dataset_options: {}
"""


@pytest.fixture
def gpus(monkeypatch):
    """CUDA with `n` visible GPUs, as far as the grid's queries go."""

    def visible(n: int) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: n)

    return visible


def test_cuda_spreads_over_every_visible_gpu_unless_one_is_named(gpus):
    assert placement.cuda_devices("cpu") is None
    with pytest.raises(MedadError, match="no CUDA GPU is available"):
        placement.cuda_devices("cuda")
    gpus(3)
    assert placement.cuda_devices("cuda") == ["cuda:0", "cuda:1", "cuda:2"]
    assert placement.cuda_devices("auto") == ["cuda:0", "cuda:1", "cuda:2"]
    assert placement.cuda_devices("cuda:1") == ["cuda:1"]
    with pytest.raises(MedadError, match="only 3 GPU"):
        placement.cuda_devices("cuda:3")


def need(peak_gib: float, label: str = "ae on synth-brain") -> MemoryNeed:
    return MemoryNeed(label, int(peak_gib * GiB), 0)


def test_k_is_lowered_to_what_fits_in_free_memory_and_the_note_says_so():
    needs = {"ae": need(1.0)}  # 2 GiB per process with the context margin
    assert needs["ae"].per_process == GiB + CONTEXT_BYTES
    fitted = fit_workers(4, needs, {"cuda:0": 5 * GiB})
    assert (fitted.workers, fitted.per_device) == (2, {"cuda:0": 2})
    assert "4 cells at once need 8.00 GiB" in fitted.notes[0]
    assert "running 2 at once instead" in fitted.notes[0]
    roomy = fit_workers(4, needs, {"cuda:0": 20 * GiB})
    assert (roomy.workers, roomy.per_device, roomy.notes) == (4, {"cuda:0": 4}, [])
    # the largest need of the grid decides; a GPU without room for one cell is left out
    mixed = {"ae": need(1.0), "big": need(3.0, "big on synth-chest")}
    fitted = fit_workers(4, mixed, {"cuda:0": 9 * GiB, "cuda:1": 2 * GiB})
    assert fitted.per_device == {"cuda:0": 2} and fitted.workers == 2
    assert any("cuda:1: 2.00 GiB free, too little" in n for n in fitted.notes)


def test_auto_takes_as_many_as_fit_but_one_per_cpu_core():
    needs = {"ae": need(1.0)}
    fitted = fit_workers(None, needs, {"cuda:0": 9 * GiB, "cuda:1": 4 * GiB}, cpus=16)
    assert fitted.workers == 6 and fitted.per_device == {"cuda:0": 4, "cuda:1": 2}
    assert "--workers auto: 6 cell(s) at once" in fitted.notes[0]
    assert fit_workers(None, needs, {"cuda:0": 90 * GiB}, cpus=3).workers == 3


def test_a_cell_that_does_not_fit_even_alone_fails_naming_it():
    with pytest.raises(MedadError) as err:
        fit_workers(2, {"x": need(6.0, "dae on synth-brain")}, {"cuda:0": 4 * GiB})
    msg = str(err.value)
    assert "dae on synth-brain needs 7.00 GiB" in msg and "cuda:0 has 4.00 GiB free" in msg


def test_slots_fill_the_least_loaded_gpu_within_each_limit():
    slots = Slots({"cuda:0": 2, "cuda:1": 1}, total=3)
    assert [slots.take(), slots.take(), slots.take()] == ["cuda:0", "cuda:1", "cuda:0"]
    assert not slots.has_room()
    slots.give_back("cuda:1")
    assert slots.take() == "cuda:1"
    slots.give_back("cuda:0")
    slots.give_back("cuda:0")
    assert slots.take() == "cuda:0"  # least loaded: cuda:0 runs none, cuda:1 one
    assert Slots({"cuda:0": 4, "cuda:1": 4}, total=1).take() == "cuda:0"


def test_the_probe_trains_one_step_and_scores_one_batch_per_distinct_config(monkeypatch, tmp_path):
    calls: list[str] = []
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda d: calls.append("reset"))
    peak = lambda d: calls.append("peak") or 3 * GiB  # noqa: E731
    monkeypatch.setattr(torch.cuda, "max_memory_reserved", peak)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda d: (40 * GiB, 80 * GiB))
    train, predict = engine.train, engine.predict

    def spy_train(*args, **kwargs):
        history = train(*args, **kwargs)
        calls.append(f"train {history.steps} steps on {len(args[1])} images")
        return history

    def spy_predict(method, data, *args, **kwargs):
        calls.append(f"predict {len(data)}")
        return predict(method, data, *args, **kwargs)

    monkeypatch.setattr(engine, "train", spy_train)
    monkeypatch.setattr(engine, "predict", spy_predict)
    cells = plan_cells(parse_experiment(EXP.replace("latent_size: 4", "latent_size: 4, lr: 0.01")))
    assert len(cells) == 4  # two configs × two seeds
    found = placement.measure_needs([c.planned for c in cells], ["cpu"], tmp_path)
    needs, free = found.needs, found.free
    assert free == {"cpu": 40 * GiB} and found.notes == []
    assert len(needs) == 2  # each (method, config) once, not once per seed
    batch = cells[0].planned.config.batch_size
    assert batch < 80  # one batch of the 80 training images, not a pass over them
    step = ["reset", f"train 1 steps on {batch} images", f"predict {min(16, batch)}", "peak"]
    assert calls == step + step
    need = next(iter(needs.values()))
    assert need.label == "ae on synth-brain" and need.peak_bytes == 3 * GiB
    size = cells[0].planned.config.image_size  # the images as the method reads them
    assert need.data_bytes == 80 * size * size  # the uint8 training split the engine uploads


def test_a_probe_out_of_memory_names_the_cell(monkeypatch):
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda d: None)

    def oom(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(engine, "train", oom)
    cell = plan_cells(parse_experiment(EXP))[0]
    with pytest.raises(MedadError, match="ae on synth-brain does not fit on cpu even alone"):
        placement.probe_memory(cell.planned, "cpu")


def test_a_probe_failing_for_another_reason_is_a_note_not_the_end_of_the_grid(monkeypatch):
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda d: None)
    monkeypatch.setattr(torch.cuda, "max_memory_reserved", lambda d: GiB)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda d: (40 * GiB, 80 * GiB))
    train = engine.train

    def no_weights_for_z4(method, *args, **kwargs):
        if method.config.latent_size == 4:
            raise MedadError("ImageNet weights for resnet18 not found")
        return train(method, *args, **kwargs)

    monkeypatch.setattr(engine, "train", no_weights_for_z4)
    cells = plan_cells(parse_experiment(EXP))
    found = placement.measure_needs([c.planned for c in cells], ["cpu"])
    assert len(found.needs) == 1  # the other config is measured; the failing one tried once
    assert found.notes == [
        "ae on synth-brain: its memory could not be measured on cpu (ImageNet weights for "
        "resnet18 not found); its cells run unchecked"
    ]
    unchecked = fit_workers(3, {}, {"cuda:0": GiB, "cuda:1": GiB})  # no probe succeeded
    assert (unchecked.per_device, unchecked.workers) == ({"cuda:0": 3, "cuda:1": 3}, 3)
    assert "unchecked" in unchecked.notes[0]


class ThreadPool(ThreadPoolExecutor):
    """The process pool of the grid, in threads (what each pool is made with is recorded)."""

    made: list[tuple[int, tuple]] = []

    def __init__(self, max_workers, mp_context=None, initializer=None, initargs=()):
        ThreadPool.made.append((max_workers, initargs[1:]))
        super().__init__(max_workers)


def test_a_cuda_process_grid_spreads_cells_over_gpus_within_what_fits(gpus, monkeypatch, tmp_path):
    gpus(2)
    free = {"cuda:0": 5 * GiB, "cuda:1": 3 * GiB}  # room for 2 and 1 cells of 2 GiB

    def measured(todo, devices, cache_dir):
        assert devices == ["cuda:0", "cuda:1"] and len(todo) == 4
        return placement.Measured({"ae": need(1.0)}, free)

    lock, running, most, seen = threading.Lock(), {}, {}, []

    def worker(cell, out, options, threads):
        with lock:
            running[options.device] = running.get(options.device, 0) + 1
            most[options.device] = max(most.get(options.device, 0), running[options.device])
            most["all"] = max(most.get("all", 0), sum(running.values()))
            seen.append(options.device)
        time.sleep(0.05)
        with lock:
            running[options.device] -= 1
        return grid.Outcome("done")

    monkeypatch.setattr(grid, "_measure_in_fresh_process", measured)
    monkeypatch.setattr(grid, "ProcessPoolExecutor", ThreadPool)
    monkeypatch.setattr(grid, "_process_worker", worker)
    ThreadPool.made = []
    notes: list[str] = []
    cells = plan_cells(parse_experiment(EXP), quick=True)
    summary = run_grid(
        cells, tmp_path, executor="process", workers=4, device="cuda", log=notes.append
    )
    assert sorted(summary.done) == sorted(c.run_id for c in cells)
    assert sorted(ThreadPool.made) == [
        (1, ("cuda:1", None)),
        (2, ("cuda:0", None)),
    ]  # a pool per GPU
    assert len(seen) == 4 and set(seen) == {"cuda:0", "cuda:1"}
    assert most["cuda:0"] <= 2 and most["cuda:1"] <= 1 and most["all"] == 3
    assert len(notes) == 1 and "running 3 at once instead" in notes[0]


def test_process_grid_on_the_cpu_is_one_pool_and_auto_is_one_cell_per_core(tmp_path):
    cells = plan_cells(parse_experiment(EXP), quick=True)
    options = grid.RunOptions("cpu")
    where = grid._process_placement(cells, tmp_path, "auto", options, print)
    assert (where.per_device, where.workers) == ({"cpu": os.cpu_count()}, os.cpu_count())
    assert grid._process_placement(cells, tmp_path, 3, options, print).per_device == {"cpu": 3}
    with pytest.raises(MedadError, match="workers must be"):
        run_grid(cells, tmp_path, executor="process", workers=0, device="cpu")


@pytest.mark.parametrize(
    ("share", "expected"),
    [
        ("0.25", None),
        ("1", None),
        ("2", None),
        ("1.5", "<experiment>:4: methods.0.resources.num_gpus: Value error, must be a fraction"),
        ("-1", "methods.0.resources.num_gpus: Value error, must be 0 or more"),
        (".nan", "must be 0 or more"),
    ],
)
def test_gpu_shares_in_the_experiment_are_fractions_or_whole_gpus(share, expected):
    text = f"name: t\nmethods:\n  - name: ae\n    resources: {{num_gpus: {share}}}\n"
    text += "datasets: [synth-brain]\n"
    if expected is None:
        assert parse_experiment(text).methods[0].resources.num_gpus == float(share)
    else:
        with pytest.raises(MedadError) as err:
            parse_experiment(text)
        assert expected in str(err.value)


def test_an_unknown_resource_is_an_error_not_ignored():
    text = "name: t\nmethods:\n  - {name: ae, resources: {num_gpu: 1}}\ndatasets: [synth-brain]\n"
    with pytest.raises(MedadError, match="methods.0.resources.num_gpu: unknown key"):
        parse_experiment(text)


def test_ray_cells_reserve_their_gpu_share_and_train_on_cuda(monkeypatch, tmp_path):
    asked: list[tuple[dict, str | None]] = []

    class Remote:
        def __init__(self, fn):
            self.opts = {}

        def options(self, **opts):
            task = Remote(None)
            task.opts = opts
            return task

        def remote(self, spec, root, options, threads):
            asked.append((self.opts, options.device, threads))
            return len(asked)

    fake = types.SimpleNamespace(
        is_initialized=lambda: True,
        remote=Remote,
        wait=lambda pending, num_returns: ([pending[0]], pending[1:]),
        get=lambda ref: {"error": "no GPU in this test"},
    )
    monkeypatch.setitem(sys.modules, "ray", fake)
    exp = EXP.replace("  - ae\n", "  - {name: ae, resources: {num_gpus: 0.5, num_cpus: 2}}\n")
    cells = plan_cells(parse_experiment(exp.replace("seeds: [0, 1]", "seeds: [0]")), quick=True)
    summary = run_grid(cells, tmp_path, executor="ray", device="auto", gpus_per_cell=0.25)
    assert sorted(summary.failed) == sorted(c.run_id for c in cells)
    got = sorted((opts["num_cpus"], opts["num_gpus"], device, t) for opts, device, t in asked)
    # its own share (and CPUs: its threads), and --gpus-per-cell for the entry that names none
    assert got == [(1, 0.25, "cuda", 1), (2, 0.5, "cuda", 2)]


def test_ray_gpu_defaults_and_contradictions():
    cell = plan_cells(parse_experiment(EXP), quick=True)[0]
    assert grid.ray_request(cell, None, "auto") == ({"num_cpus": 1, "num_gpus": 0.0}, "auto")
    assert grid.ray_request(cell, None, "cuda:1") == ({"num_cpus": 1, "num_gpus": 1.0}, "cuda")
    assert grid.ray_request(cell, 0.125, None) == ({"num_cpus": 1, "num_gpus": 0.125}, "cuda")
    with pytest.raises(MedadError, match="share of 0.25 GPU asked for, but the grid runs on 'cpu'"):
        grid.ray_request(cell, 0.25, "cpu")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--workers", "0"], "--workers must be at least 1"),
        (["--workers", "many"], "--workers must be a whole number or auto"),
        (["--executor", "ray", "--gpus-per-cell", "1.5"], "--gpus-per-cell must be a fraction"),
        (["--gpus-per-cell", "0.5"], "--gpus-per-cell is for --executor ray"),
    ],
)
def test_bench_rejects_bad_workers_and_gpu_shares(args, expected, tmp_path):
    cfg = tmp_path / "grid.yaml"
    cfg.write_text(EXP)
    res = CliRunner().invoke(app, ["bench", str(cfg), "--out", str(tmp_path / "o"), *args])
    assert res.exit_code != 0 and expected in res.output, res.output
    assert not (tmp_path / "o").exists()


def test_a_local_ray_schedules_fractional_gpu_cells_on_cuda(tmp_path):
    ray = pytest.importorskip("ray")
    # a Ray that believes it has one GPU (there is none: the tasks fail when they ask CUDA for it)
    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False)
    try:
        cells = plan_cells(parse_experiment(EXP.replace("seeds: [0, 1]", "seeds: [0]")), quick=True)
        summary = run_grid(cells, tmp_path, executor="ray", device="auto", gpus_per_cell=0.5)
    finally:
        ray.shutdown()
    assert sorted(summary.failed) == sorted(c.run_id for c in cells)  # both scheduled, on "cuda"
    assert all("device 'cuda' was asked for" in e for e in summary.failed.values()), summary.failed


def test_each_worker_of_a_gpu_pool_makes_that_gpu_its_own(monkeypatch):
    chosen: list[str] = []
    monkeypatch.setattr(grid, "_exit_with_parent", lambda parent: None)
    capped: list[tuple[float, str]] = []
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    monkeypatch.setattr(
        torch.cuda, "set_per_process_memory_fraction", lambda f, d: capped.append((f, d))
    )
    grid._init_worker(1, "cuda:1", 0.25)
    grid._init_worker(1, "cuda:0")
    grid._init_worker(1, "cpu", 0.5)
    grid._init_worker(1, None)
    assert chosen == ["cuda:1", "cuda:0"] and capped == [(0.25, "cuda:1")]


def test_each_worker_is_capped_to_its_part_of_the_free_memory():
    """K workers on a GPU each get free / K less the CUDA context, as a share of the GPU: a
    large scoring batch then runs out of memory in its own process, not in its neighbours'."""
    needs = {"ae": need(1.0)}  # 2 GiB per process with the context
    fitted = fit_workers(
        4,
        needs,
        {"cuda:0": 9 * GiB, "cuda:1": 4 * GiB},
        total={"cuda:0": 10 * GiB, "cuda:1": 8 * GiB},
    )
    assert fitted.per_device == {"cuda:0": 4, "cuda:1": 2}
    fraction = fitted.memory_fraction
    assert fraction["cuda:0"] == pytest.approx((9 * GiB // 4 - CONTEXT_BYTES) / (10 * GiB))
    assert fraction["cuda:1"] == pytest.approx((4 * GiB // 2 - CONTEXT_BYTES) / (8 * GiB))
    sizes = {"cuda:0": 10 * GiB, "cuda:1": 8 * GiB}
    for d in fitted.per_device:  # what each worker may hold covers what a cell was measured to need
        assert fraction[d] * sizes[d] >= needs["ae"].peak_bytes + needs["ae"].data_bytes
    assert fit_workers(4, needs, {"cuda:0": 9 * GiB}).memory_fraction == {}  # size unknown
