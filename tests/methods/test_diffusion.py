"""The shared DDPM part and the four diffusion methods (AnoDDPM Gaussian/Simplex, AutoDDPM,
pDDPM): forward process against the schedule, seeded noise, batch-size-independent scoring, and
each method ranking synth-brain's planted lesions above normals with a tiny U-Net and few steps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medad import engine
from medad.anomalies.simplex import fractal_simplex_noise, fractal_simplex_noise_batch
from medad.data.base import get_dataset
from medad.data.loading import ArraySplit, load_split
from medad.evaluation import evaluate
from medad.methods.base import build_config, method_class, method_infos
from medad.methods.parts.ddpm import (
    EMA,
    NoiseSchedule,
    PerImageNoise,
    beta_schedule,
    reverse,
    step_sequence,
)
from medad.methods.parts.diffusion_unet import DiffusionUNet
from medad.predictions import Predictions
from tests.methods.common import SMALL_BRAIN

#: a tiny U-Net at 32 px, a high rate for a short run (180 steps), 5 DDIM steps from t_start:
#: the test settings of every diffusion method
TINY = {
    "lr": 3e-3,
    "image_size": 32,
    "base_width": 8,
    "channel_mults": (1, 2),
    "res_blocks": 1,
    "attention_sides": (),
    "batch_size": 16,
    "sampler": "ddim",
    "sample_steps": 5,
}
#: synth-brain at the tests' size: 96 train, 32 + 32 test images
DATA = {**SMALL_BRAIN, "size": 32}
DIFFUSION = ["anoddpm-gaussian", "anoddpm-simplex", "autoddpm", "pddpm"]


def test_the_family_holds_the_four_methods():
    assert sorted(i.name for i in method_infos("diffusion")) == sorted(DIFFUSION)


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_forward_process_mean_and_variance_match_the_schedule(kind):
    sched = NoiseSchedule(1000, kind)
    abar = torch.cumprod(1 - beta_schedule(1000, kind), 0)
    gen = torch.Generator().manual_seed(0)
    x0 = torch.full((20000, 1, 1, 1), 0.6)
    for t in (0, 249, 999):
        xt = sched.q_sample(x0, t, torch.randn(x0.shape, generator=gen))
        a = float(abar[t])
        assert float(xt.mean()) == pytest.approx(np.sqrt(a) * 0.6, abs=0.03)
        assert float(xt.var()) == pytest.approx(1 - a, rel=0.05, abs=2e-4)
    # per-image steps, and index −1 is the clean image
    t = torch.tensor([0, 500])
    assert torch.allclose(sched.abar(t), abar[t].float())
    assert torch.equal(sched.q_sample(x0[:2], -1, torch.ones_like(x0[:2])), x0[:2])


def test_linear_schedule_is_ho_et_al():
    b = beta_schedule(1000)
    assert float(b[0]) == pytest.approx(1e-4) and float(b[-1]) == pytest.approx(0.02)


def test_simplex_noise_is_seeded_in_range_and_batches_exactly():
    a = fractal_simplex_noise((64, 64), np.random.default_rng(5))
    b = fractal_simplex_noise((64, 64), np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)
    assert -1.0 <= a.min() < 0 < a.max() <= 1.0 and a.std() > 0.05
    batch = fractal_simplex_noise_batch((64, 64), [np.random.default_rng(s) for s in (5, 6)])
    np.testing.assert_array_equal(batch[0], a)
    assert not np.allclose(batch[1], a)


@pytest.mark.parametrize("kind", ["gaussian", "simplex"])
def test_per_image_noise_depends_on_the_image_not_the_batch(kind):
    like = torch.zeros(4, 1, 32, 32)
    whole = PerImageNoise(7, [0, 1, 2, 3], kind).draw(like)
    part = PerImageNoise(7, [2, 3], kind).draw(like[:2])
    assert torch.equal(whole[2:], part)
    assert not torch.allclose(whole[0], whole[1])
    # unit variance (simplex scaled per image), so the forward process keeps the schedule
    assert float(whole.var()) == pytest.approx(1.0, rel=0.1)
    assert not torch.equal(whole, PerImageNoise(8, [0, 1, 2, 3], kind).draw(like))


def test_unet_shapes_and_zero_initial_output():
    net = DiffusionUNet(2, 2, image_size=32, base_width=8, channel_mults=(1, 2), res_blocks=1)
    out = net(torch.randn(3, 2, 32, 32), torch.tensor([0, 10, 999]))
    assert out.shape == (3, 2, 32, 32) and float(out.detach().abs().max()) == 0.0


def test_reverse_with_an_oracle_denoiser_returns_the_image():
    """Both samplers recover x_0 exactly when the denoiser knows it (posterior algebra)."""
    sched = NoiseSchedule()
    x0 = torch.rand(2, 1, 8, 8) * 2 - 1
    noise = PerImageNoise(0, [0, 1])
    xt = sched.q_sample(x0, 99, noise.draw(x0))
    for sampler, steps in (("ddpm", None), ("ddpm", 7), ("ddim", 7)):
        out = reverse(sched, lambda x, t: x0, xt, 100, noise, sampler=sampler, steps=steps)
        assert torch.allclose(out, x0, atol=1e-4), sampler
    assert step_sequence(250, None)[:2] == [249, 248] and step_sequence(250, 5)[-1] == 0


def test_ema_warms_up_and_follows_the_weights():
    net = torch.nn.Linear(2, 2)
    ema = EMA(net, 0.9999)
    with torch.no_grad():
        net.weight.add_(1.0)
    ema.update(net)  # first decay min(0.9999, 1/10) = 0.1: mostly the new weights
    assert torch.allclose(ema.net.weight, net.weight - 0.1, atol=1e-6)
    assert not ema.net.weight.requires_grad


def _trained(name: str, overrides: dict, epochs: int, seed: int = 0):
    cls = method_class(name)
    ds = get_dataset("synth-brain", **DATA)
    config = build_config(cls, {**TINY, "epochs": epochs, **overrides})
    pre = cls.preprocess(config, ds.channels)
    train, test = load_split(ds, "train", pre), load_split(ds, "test", pre)
    method = engine.create_method(cls, config, ds.channels, seed)
    engine.train(method, train, pre, seed=seed, device="cpu", progress=False)
    return method, test, pre


def test_scores_do_not_depend_on_the_batch_size_or_on_a_rerun():
    method, test, pre = _trained("anoddpm-simplex", {"sampler": "ddpm"}, epochs=1)
    keep = np.r_[0:6, len(test) - 6 : len(test)]  # normals and lesions
    first = ArraySplit(
        test.images[keep], test.labels[keep], test.masks[keep], [test.ids[i] for i in keep]
    )
    a = engine.predict(method, first, pre, device="cpu", batch_size=12)
    b = engine.predict(method, first, pre, device="cpu", batch_size=5)
    c = engine.predict(method, first, pre, device="cpu", batch_size=12)
    np.testing.assert_allclose(a.image_scores, b.image_scores, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(a.maps, b.maps, rtol=1e-3, atol=1e-6)
    np.testing.assert_array_equal(a.image_scores, c.image_scores)


#: (method, its overrides at the test, epochs); image / pixel AUROC at seed 0 in the comments
#: (at lr 1e-3 instead of 3e-3: 0.67 / 0.86, 0.60 / 0.82, 0.74 / 0.92, 0.64 / 0.48)
RANKING = [
    ("anoddpm-gaussian", {}, 30),  # 0.70 / 0.88
    ("anoddpm-simplex", {}, 30),  # 0.68 / 0.88
    ("autoddpm", {"perceptual_layers": ("layer1", "layer2"), "inpaint_steps": 5,
                  "resample_steps": 2}, 30),  # 0.77 / 0.93
    ("pddpm", {}, 30),  # 0.62 / 0.92
]  # fmt: skip


@pytest.mark.parametrize(("name", "overrides", "epochs"), RANKING)
def test_ranks_planted_lesions_above_normals(name, overrides, epochs):
    method, test, pre = _trained(name, overrides, epochs)
    pred: Predictions = engine.predict(method, test, pre, device="cpu")
    assert pred.maps is not None and pred.maps.shape == (len(test), 32, 32)
    metrics = evaluate(pred)
    assert metrics["image_auroc"] > 0.6 or metrics["pixel_auroc"] > 0.8, metrics
