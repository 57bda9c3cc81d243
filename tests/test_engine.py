"""The engine trains any method deterministically and scores into image scores and maps."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest
import torch

from medad import engine
from medad.data.base import get_dataset
from medad.data.loading import ArraySplit, Preprocess, load_split
from medad.errors import MedadError
from medad.evaluation import evaluate
from medad.methods.base import (
    Method,
    MethodConfig,
    Phase,
    ScoreOutput,
    Stage,
    build_config,
    method_class,
)
from medad.methods.optimisation import ParamGroup, Schedule
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


# --- optimisers, schedules and steps per epoch (data on the phase, built by the engine) -------


def _lrs(schedule: Schedule, length: int, lr: float = 0.1) -> list[float]:
    """The rate in force at units 0..length-1 when `schedule` spans `length` units."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    sched = engine.build_scheduler(opt, schedule, length)
    out = []
    for _ in range(length):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        if sched is not None:
            sched.step()
    return out


def _cosine(t: float, span: float, lr: float, floor: float) -> float:
    return floor + (lr - floor) * (1 + math.cos(math.pi * t / span)) / 2


def _restarts(t: int, t0: int, mult: int, lr: float, floor: float) -> float:
    period = t0
    while t >= period:  # SGDR: period i lasts t0 * mult**i units
        t, period = t - period, period * mult
    return _cosine(t, period, lr, floor)


@pytest.mark.parametrize(
    ("schedule", "closed_form"),
    [
        (Schedule(kind="constant"), lambda t: 0.1),
        (Schedule(kind="cosine", eta_min=1e-6), lambda t: _cosine(t, 20, 0.1, 1e-6)),
        (
            Schedule(kind="cosine-restarts", t_0=3, t_mult=2, eta_min=0.001),
            lambda t: _restarts(t, 3, 2, 0.1, 0.001),
        ),
        (Schedule(kind="cosine-restarts"), lambda t: _cosine(t, 20, 0.1, 0.0)),
        (  # DRAEM: ×0.2 at 80 % and 90 % of the epochs (16 and 18 of 20)
            Schedule(kind="step", milestones=(0.8, 0.9), gamma=0.2),
            lambda t: 0.1 * 0.2 ** ((t >= 16) + (t >= 18)),
        ),
        (  # 4 units of linear warm-up from 0.25·lr, then cosine over the other 16
            Schedule(kind="cosine", warmup=4, warmup_start=0.25),
            lambda t: 0.1 * (0.25 + 0.75 * t / 4) if t < 4 else _cosine(t - 4, 16, 0.1, 0.0),
        ),
    ],
    ids=["constant", "cosine", "restarts", "restarts-whole-stage", "step", "warmup-cosine"],
)
def test_schedules_follow_their_closed_form(schedule, closed_form):
    got = _lrs(schedule, 20)
    np.testing.assert_allclose(got, [closed_form(t) for t in range(20)], rtol=1e-9, atol=1e-12)


def test_constant_schedule_builds_no_scheduler():
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))])
    assert engine.build_scheduler(opt, Schedule(), 10) is None


def test_optimisers_and_parameter_groups_are_built_as_declared():
    a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(3))
    sgd = engine.build_optimizer(
        Phase("p", [ParamGroup([a]), ParamGroup([b], lr=0.5)], 0.03, weight_decay=3e-5,
              optimizer="sgd", momentum=0.9, nesterov=True)
    )  # fmt: skip
    assert type(sgd) is torch.optim.SGD
    assert [g["lr"] for g in sgd.param_groups] == [0.03, 0.5]
    assert [g["params"] for g in sgd.param_groups] == [[a], [b]]
    g = sgd.param_groups[0]
    assert (g["momentum"], g["nesterov"], g["weight_decay"]) == (0.9, True, 3e-5)
    adamw = engine.build_optimizer(
        Phase("p", [a, b], 1e-3, betas=(0.5, 0.9), weight_decay=0.01, optimizer="adamw")
    )
    assert type(adamw) is torch.optim.AdamW
    assert adamw.param_groups[0]["betas"] == (0.5, 0.9)
    assert adamw.param_groups[0]["weight_decay"] == 0.01
    assert type(engine.build_optimizer(Phase("p", [a], 1e-3))) is torch.optim.Adam


class _Counter(Method):
    """A one-parameter method that records the size of every training batch it sees."""

    name = "counter"

    def __init__(self, schedule: Schedule, steps: int | None) -> None:
        super().__init__(MethodConfig(epochs=3, batch_size=4), 1)
        self.w = torch.nn.Parameter(torch.ones(1))
        self.schedule, self.steps, self.seen = schedule, steps, []

    def stages(self) -> list[Stage]:
        phase = Phase("model", [self.w], 0.1, optimizer="sgd", schedule=self.schedule)
        return [Stage("train", 3, [phase], steps_per_epoch=self.steps)]

    def training_loss(self, x, stage, phase):
        self.seen.append(x.shape[0])
        return (self.w * x).mean() ** 2


def _tiny_split(n: int) -> ArraySplit:
    images = np.random.default_rng(0).integers(0, 256, (n, 1, 4, 4), dtype=np.uint8)
    return ArraySplit(images, np.zeros(n, dtype=np.int64), None, [str(i) for i in range(n)])


def test_steps_per_epoch_gives_that_many_full_batches():
    method = _Counter(Schedule(), steps=5)
    history = engine.train(method, _tiny_split(7), Preprocess(size=4), device="cpu", progress=False)
    assert history.steps == 15 and method.seen == [4] * 15


def test_without_steps_per_epoch_an_epoch_is_one_pass():
    method = _Counter(Schedule(), steps=None)
    engine.train(method, _tiny_split(7), Preprocess(size=4), device="cpu", progress=False)
    assert method.seen == [4, 3] * 3


def test_a_per_step_schedule_is_stepped_after_every_batch():
    method = _Counter(Schedule(kind="cosine", per="step"), steps=5)
    history = engine.train(method, _tiny_split(7), Preprocess(size=4), device="cpu", progress=False)
    # the rate at the first step of epoch e is the cosine at step 5e of 15
    got = [e["lr"] for e in history.epochs]
    np.testing.assert_allclose(got, [_cosine(5 * e, 15, 0.1, 0.0) for e in range(3)], rtol=1e-9)


def test_a_per_epoch_schedule_is_stepped_after_every_epoch():
    method = _Counter(Schedule(kind="step", milestones=(0.5,), gamma=0.5), steps=None)
    history = engine.train(method, _tiny_split(7), Preprocess(size=4), device="cpu", progress=False)
    assert [e["lr"] for e in history.epochs] == [0.1, 0.1, 0.05]  # milestone round(0.5·3) = 2


class _PixelScorer(Method):
    """Scores an image by its mean and maps it by its own pixels; maps only when asked."""

    name = "pixel-scorer"

    def __init__(self, maps_from_batch: int = 0) -> None:
        super().__init__(MethodConfig(epochs=0, batch_size=3), 1)
        self.maps_from_batch, self.calls = maps_from_batch, 0

    def score(self, x):
        self.calls += 1
        with_maps = self.calls > self.maps_from_batch
        return ScoreOutput(x.mean(dim=(1, 2, 3)), x[:, 0] if with_maps else None)


def test_predict_fills_scores_and_maps_in_image_order():
    data, pre = _tiny_split(7), Preprocess(size=4)
    pred = engine.predict(_PixelScorer(), data, pre, device="cpu")  # batches of 3, 3, 1
    expected = data.images[:, 0].astype(np.float32) * np.float32(2 / 255) - 1
    np.testing.assert_allclose(pred.maps, expected, rtol=1e-6)
    assert pred.maps.dtype == np.float32 and pred.image_scores.dtype == np.float64
    np.testing.assert_allclose(pred.image_scores, expected.mean(axis=(1, 2)), rtol=1e-6)


def test_predict_rejects_maps_for_some_batches_only():
    with pytest.raises(MedadError, match="maps for some batches only"):
        engine.predict(_PixelScorer(maps_from_batch=1), _tiny_split(7), Preprocess(size=4))


class _OutOfMemoryAbove(_PixelScorer):
    """Runs out of device memory on batches larger than `fits` (as a GPU would)."""

    def __init__(self, fits: int, batch_size: int) -> None:
        super().__init__()
        self.config = MethodConfig(epochs=0, batch_size=batch_size)
        self.fits, self.sizes = fits, []

    def score(self, x):
        self.sizes.append(x.shape[0])
        if x.shape[0] > self.fits:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return super().score(x)


def test_predict_halves_the_batch_until_it_fits_and_scores_every_image_once():
    data, pre = _tiny_split(7), Preprocess(size=4)
    method = _OutOfMemoryAbove(fits=3, batch_size=8)
    pred = engine.predict(method, data, pre, device="cpu")
    assert method.sizes == [7, 3, 3, 1]  # 7 (all images) fails; then 3 at a time
    expected = engine.predict(_PixelScorer(), data, pre, device="cpu")
    np.testing.assert_array_equal(pred.image_scores, expected.image_scores)
    np.testing.assert_array_equal(pred.maps, expected.maps)
    with pytest.raises(torch.OutOfMemoryError):  # an explicit batch is the user's to change
        engine.predict(_OutOfMemoryAbove(fits=2, batch_size=6), data, pre, batch_size=4)


def test_scoring_starts_at_the_training_batch_on_cpu_and_larger_on_accelerators():
    method = _PixelScorer()  # training batch 3
    assert engine.scoring_batch_size(method, torch.device("cpu"), 1000) == 3
    accelerated = engine.scoring_batch_size(method, torch.device("cuda"), 1000)
    assert accelerated == engine.SCORING_BATCH_ON_ACCELERATOR
    assert engine.scoring_batch_size(method, torch.device("cuda"), 10) == 10


# --- the device path: uploaded images, deferred loss checks, precision, compile ---------------


class _Linear(Method):
    """A 1×1 convolution trained to reproduce its input (Adam), with a loss that can turn NaN."""

    name = "linear"

    def __init__(self, epochs: int = 3, nan_at_step: int | None = None) -> None:
        super().__init__(MethodConfig(epochs=epochs, batch_size=4, lr=1e-2), 1)
        self.conv = torch.nn.Conv2d(1, 1, 1)
        self.nan_at_step, self.step = nan_at_step, 0

    def training_loss(self, x, stage, phase):
        self.step += 1
        loss = ((self.conv(x) - x) ** 2).mean()
        if self.step == self.nan_at_step:
            loss = loss * float("nan")
        return {"loss": loss, "abs": (self.conv(x) - x).abs().mean()}


def _bare_loop(data: ArraySplit, pre: Preprocess, seed: int, epochs: int):
    """The loop medad ran before the device path, written out: CPU batches from the seeded
    generator, NumPy indexing, a host sync per loss, sums in Python floats."""
    engine.seed_everything(seed)
    torch.manual_seed(seed)
    method = _Linear(epochs)
    engine.seed_everything(seed)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(method.parameters(), lr=1e-2)
    means = []
    for _ in range(epochs):
        sums, count = {"loss": 0.0, "abs": 0.0}, 0
        for idx in engine._batches(len(data), 4, gen):
            x = engine.to_float(data.images[idx], pre, torch.device("cpu"))
            opt.zero_grad(set_to_none=True)
            losses = method.training_loss(x, "train", "model")
            losses["loss"].backward()
            opt.step()
            for k, v in losses.items():
                sums[k] += float(v.detach())
            count += 1
        means.append({k: v / count for k, v in sums.items()})
    return means, method.conv.weight.detach().clone()


def test_training_equals_the_plain_cpu_loop_bit_for_bit():
    data, pre = _tiny_split(11), Preprocess(size=4)
    expected, weight = _bare_loop(data, pre, seed=7, epochs=3)
    engine.seed_everything(7)
    method = _Linear(3)
    history = engine.train(method, data, pre, seed=7, device="cpu", progress=False)
    got = [{k: e[k] for k in ("loss", "abs")} for e in history.epochs]
    assert got == expected  # exact floats, not approximately
    assert torch.equal(method.conv.weight, weight)


@pytest.mark.parametrize("check_every", [1, 2, 1000])
def test_a_nan_loss_stops_the_run_naming_its_epoch(check_every):
    # 11 images, batches of 4 → 3 steps per epoch; step 5 is in epoch 2
    method = _Linear(epochs=4, nan_at_step=5)
    options = engine.TrainOptions(check_every=check_every)
    with pytest.raises(MedadError, match=r"loss became nan in stage 'train', epoch 2;"):
        engine.train(
            method,
            _tiny_split(11),
            Preprocess(size=4),
            device="cpu",
            progress=False,
            options=options,
        )
    assert method.step <= 6  # stopped within the epoch of the NaN


@pytest.mark.parametrize("upload", [True, False, None])
def test_device_images_give_the_batches_of_the_numpy_path(upload):
    data = _tiny_split(9)
    pre = Preprocess(size=4, value_range=(0.0, 1.0))
    images = engine.DeviceImages(data.images, pre, torch.device("cpu"), upload=upload)
    assert (images.images.data_ptr() != torch.from_numpy(data.images).data_ptr()) == bool(upload)
    idx = np.array([7, 0, 3, 3])
    expected = engine.to_float(data.images[idx], pre, torch.device("cpu"))
    assert torch.equal(images.batch(idx), expected)


def test_adam_is_fused_only_when_asked():
    w = torch.nn.Parameter(torch.ones(3))
    plain = engine.build_optimizer(Phase("model", [w], 0.1))
    fused = engine.build_optimizer(Phase("model", [w], 0.1, optimizer="adamw"), fused=True)
    assert not plain.defaults.get("fused") and fused.defaults["fused"] is True


def test_cudnn_autotuning_only_without_deterministic_algorithms(monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    engine._autotune(torch.device("cpu"))
    assert torch.backends.cudnn.benchmark is False
    monkeypatch.setattr(torch, "are_deterministic_algorithms_enabled", lambda: True)
    engine._autotune(torch.device("cuda"))
    assert torch.backends.cudnn.benchmark is False
    monkeypatch.setattr(torch, "are_deterministic_algorithms_enabled", lambda: False)
    engine._autotune(torch.device("cuda"))
    assert torch.backends.cudnn.benchmark is True and torch.backends.cudnn.deterministic is False


def test_precision_and_check_interval_are_validated():
    with pytest.raises(ValueError, match="precision"):
        engine.TrainOptions(precision="fp64")
    with pytest.raises(ValueError, match="check_every"):
        engine.TrainOptions(check_every=0)


def test_bf16_training_runs_on_cpu_and_changes_the_numbers():
    data, pre = _tiny_split(11), Preprocess(size=4)
    runs = {}
    for precision in ("fp32", "bf16"):
        engine.seed_everything(0)
        method = _Linear(2)
        options = engine.TrainOptions(precision=precision)
        history = engine.train(method, data, pre, device="cpu", progress=False, options=options)
        runs[precision] = [e["loss"] for e in history.epochs]
    assert all(math.isfinite(v) for v in runs["bf16"]) and runs["bf16"] != runs["fp32"]
    np.testing.assert_allclose(runs["bf16"], runs["fp32"], rtol=0.1)


def test_compile_wraps_the_training_step(monkeypatch):
    calls = []

    def fake_compile(fn, mode=None):
        calls.append(mode)
        return fn

    monkeypatch.setattr(torch, "compile", fake_compile)
    method = _Linear(1)
    step = engine._training_step(method, torch.device("cpu"), engine.TrainOptions(compile=True))
    assert calls == [None] and step == method.training_loss
    engine._training_step(method, torch.device("cuda"), engine.TrainOptions(compile=True))
    assert calls == [None, "reduce-overhead"]  # CUDA graphs where shapes are static
    engine._training_step(method, torch.device("cpu"), engine.TrainOptions())
    assert len(calls) == 2


@pytest.mark.slow
def test_compiled_training_on_cpu_follows_eager_training():
    data, pre = _tiny_split(11), Preprocess(size=4)
    losses = {}
    for compiled in (False, True):
        engine.seed_everything(0)
        method = _Linear(2)
        options = engine.TrainOptions(compile=compiled)
        history = engine.train(method, data, pre, device="cpu", progress=False, options=options)
        losses[compiled] = [e["loss"] for e in history.epochs]
    np.testing.assert_allclose(losses[True], losses[False], rtol=1e-4)


class _Noisy(_Linear):
    """Draws from `rng` in both `train_transform` and `train_inputs`, like the SSL methods."""

    name = "noisy"
    prefetch = True

    def train_transform(self, x):
        return x + torch.from_numpy(self.rng.normal(0, 0.1, x.shape).astype(np.float32))

    def train_inputs(self, x):
        self.thread = threading.current_thread().name
        return x * float(self.rng.uniform(0.5, 1.5))


@pytest.mark.parametrize("steps", [None, 2])
def test_prefetched_inputs_keep_the_sequence_of_draws(monkeypatch, steps):
    data, pre = _tiny_split(11), Preprocess(size=4)
    runs = {}
    for prefetch in (False, True):
        monkeypatch.setattr(_Noisy, "prefetch", prefetch)
        engine.seed_everything(0)
        method = _Noisy(3)
        method.stages = lambda m=method: [
            Stage("train", 3, [Phase("model", list(m.parameters()), 1e-2)], steps_per_epoch=steps)
        ]
        history = engine.train(method, data, pre, seed=4, device="cpu", progress=False)
        runs[prefetch] = (history.epochs, method.conv.weight.detach().clone(), method.thread)
    assert runs[True][0] == runs[False][0] and torch.equal(runs[True][1], runs[False][1])
    assert runs[True][2].startswith("medad-inputs") and runs[False][2] == "MainThread"


def test_prefetching_ssl_training_equals_synthesis_in_the_step(monkeypatch):
    """The one-stage SSL methods make their anomalies ahead (prefetch): same numbers as when
    `training_loss` makes them itself."""
    cls = method_class("cutpaste-1stage")
    over = {"epochs": 1, "batch_size": 8, "image_size": 48, "train_center_crop": 42}
    config = build_config(cls, {**over, "crop_size": 32, "steps_per_epoch": 2})
    ds = get_dataset("synth-brain", n_train=24, n_test_normal=2, n_test_abnormal=2, size=48)
    pre = cls.preprocess(config, ds.channels)
    train = load_split(ds, "train", pre)
    results = {}
    for prefetch in (True, False):
        monkeypatch.setattr(cls, "prefetch", prefetch)
        method = engine.create_method(cls, config, ds.channels, 1)
        history = engine.train(method, train, pre, seed=1, device="cpu", progress=False)
        results[prefetch] = (history.epochs, [p.detach().clone() for p in method.parameters()])
    assert results[True][0] == results[False][0]
    assert all(torch.equal(a, b) for a, b in zip(results[True][1], results[False][1], strict=True))
