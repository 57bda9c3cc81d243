"""GANomaly and f-AnoGAN: trained by the one engine, scored in eval mode, parts checked by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from medad import engine
from medad.data.base import get_dataset
from medad.data.loading import load_split
from medad.evaluation import evaluate
from medad.methods.base import build_config, method_class
from medad.methods.parts.gan import Discriminator, gradient_penalty
from tests.conftest import SMALL
from tests.methods.common import SMALL_BRAIN, train_and_predict

#: the small synth-brain with lesions twice as conspicuous: at the default difficulty (0.5) even the
#: plain AE ranks images at only ≈0.6 AUROC after a few epochs, too close to the bar to tell a GAN
#: that learned something from one that did not
EASY_BRAIN = {**SMALL_BRAIN, "difficulty": 0.0}
#: short budgets; batch 16 gives 6 steps per epoch on 96 images. Image AUROC of seeds 0 / 1 / 2:
#: GANomaly FIGURES_G, f-AnoGAN FIGURES_F
GANOMALY_BUDGET = {"epochs": 25, "batch_size": 16}
#: the GAN stage at 3× f-AnoGAN's lr and 2 critic steps, and a 10× encoder lr, to fit in seconds
FANOGAN_BUDGET = {
    "gan_epochs": 15, "encoder_epochs": 5, "batch_size": 16,
    "n_critic": 2, "lr": 3e-4, "encoder_lr": 1e-3,
}  # fmt: skip


def _small_split(name: str, overrides: dict, split: str = "train"):
    cls = method_class(name)
    ds = get_dataset("synth-brain", **SMALL)
    config = build_config(cls, overrides)
    pre = cls.preprocess(config, ds.channels)
    return cls, config, pre, load_split(ds, split, pre)


def test_ganomaly_ranks_planted_anomalies_above_normals():
    _, pred = train_and_predict("ganomaly", GANOMALY_BUDGET, data_options=EASY_BRAIN)
    m = evaluate(pred)
    assert pred.maps is None and "pixel_auroc" not in m  # GANomaly has no anomaly map
    assert m["image_auroc"] > 0.6, m


def test_fanogan_ranks_planted_anomalies_above_normals():
    _, pred = train_and_predict("f-anogan", FANOGAN_BUDGET, data_options=EASY_BRAIN)
    m = evaluate(pred)
    n = SMALL_BRAIN["n_test_normal"] + SMALL_BRAIN["n_test_abnormal"]
    assert pred.maps is not None and pred.maps.shape == (n, 64, 64)
    assert m["image_auroc"] > 0.6, m
    assert "pixel_auroc" in m and 0.0 <= m["aupro"] <= 1.0


def test_ganomaly_score_is_the_latent_distance_in_eval_mode():
    cls, config, pre, train = _small_split("ganomaly", {"epochs": 1, "batch_size": 32})
    method = engine.create_method(cls, config, 1, seed=0)
    engine.train(method, train, pre, seed=0, device="cpu", progress=False)
    pred = engine.predict(method, train, pre, device="cpu", batch_size=40)
    x = engine.to_float(train.images, pre, torch.device("cpu"))
    method.eval()
    with torch.no_grad():
        z = method.autoencoder.encoder(x)
        z = method.autoencoder.bottleneck.encode(z)
        z_hat = method.encoder2(method.autoencoder.decoder(method.autoencoder.bottleneck.decode(z)))
        by_hand = ((z - z_hat) ** 2).mean(dim=1).double().numpy()
        again = method.score(x).image_scores.double().numpy()
        # eval mode: an image's score does not depend on the rest of its batch
        alone = method.score(x[:5]).image_scores.double().numpy()
    twice = engine.predict(method, train, pre, device="cpu", batch_size=40).image_scores
    np.testing.assert_allclose(pred.image_scores, by_hand, rtol=1e-4, atol=1e-7)
    np.testing.assert_array_equal(pred.image_scores, twice)
    np.testing.assert_allclose(again, by_hand, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(alone, by_hand[:5], rtol=1e-4, atol=1e-7)


def test_ganomaly_has_the_studys_networks():
    # MedIAnomaly's GANomaly (reconstruction/networks/ganomaly.py) at 64 px grayscale: the AE's
    # conv blocks, FC layers without BatchNorm, a discriminator with an FC(1024) → ReLU feature
    # layer
    method = method_class("ganomaly")(build_config(method_class("ganomaly"), {}), 1)
    assert not any(isinstance(m, nn.BatchNorm1d) for m in method.modules())

    def count(module: nn.Module) -> int:
        return sum(p.numel() for p in module.parameters())

    bn = 2 * (16 + 32 + 64 + 64)
    conv_encoder = 1 * 16 * 16 + 16 * 32 * 16 + 32 * 64 * 16 + 64 * 64 * 16 + bn
    conv_decoder = 64 * 64 * 16 + 64 * 32 * 16 + 32 * 16 * 16 + 16 * 1 * 16 + bn - 2 * 64
    fc_encode = (1024 * 1024 + 1024) + (1024 * 16 + 16)
    fc_decode = (16 * 1024 + 1024) + (1024 * 1024 + 1024)
    assert count(method.autoencoder) == conv_encoder + fc_encode + fc_decode + conv_decoder
    assert count(method.autoencoder) == 2_351_184 - 4 * 1024  # the AE less its two BatchNorm1d
    assert count(method.encoder2) == conv_encoder + fc_encode
    assert count(method.discriminator) == conv_encoder + (1024 * 1024 + 1024) + (1024 + 1)
    x = torch.randn(3, 1, 64, 64)
    method.eval()
    with torch.no_grad():
        f = method.discriminator.features(x)
        assert f.shape == (3, 1024) and float(f.min()) >= 0.0  # after the FC layer's ReLU
        torch.testing.assert_close(method.discriminator(x), method.discriminator.head(f)[:, 0])
    config = build_config(method_class("ganomaly"), {})
    assert (config.beta1, config.rec_loss, config.lr) == (0.9, "l2", 1e-3)  # the study's recipe


def test_gradient_penalty_of_a_linear_critic_is_the_weight_norm_gap():
    torch.manual_seed(0)
    critic = nn.Sequential(nn.Flatten(), nn.Linear(12, 1))
    real, fake = torch.randn(5, 3, 2, 2), torch.randn(5, 3, 2, 2)
    gp = gradient_penalty(lambda t: critic(t).squeeze(1), real, fake)
    w = critic[1].weight.detach()
    expected = (w.norm() - 1) ** 2  # ∇D = w everywhere, whatever the interpolation
    torch.testing.assert_close(gp, expected)
    gp.backward()  # the penalty trains the critic: d/dw (‖w‖ − 1)² = 2(‖w‖ − 1)·w/‖w‖
    torch.testing.assert_close(critic[1].weight.grad, 2 * (w.norm() - 1) * w / w.norm())


def test_gradient_penalty_of_a_cubic_critic_matches_a_hand_computation():
    real, fake = torch.randn(4, 1, 3, 3), torch.randn(4, 1, 3, 3)
    alpha = torch.rand(4, 1, 1, 1)
    gp = gradient_penalty(lambda t: (t**3).flatten(1).sum(dim=1), real, fake, alpha=alpha)
    mixed = alpha * real + (1 - alpha) * fake
    slopes = (3 * mixed**2).flatten(1).norm(dim=1)  # ∇ Σ t³ = 3t²
    torch.testing.assert_close(gp, ((slopes - 1) ** 2).mean())


def test_discriminator_features_feed_its_logit_and_reset_draws_new_weights():
    d = Discriminator(1, 64, 16, norm="layer")
    x = torch.randn(3, 1, 64, 64)
    assert d.features(x).shape == (3, 64 * 4 * 4)
    torch.testing.assert_close(d(x), d.head(d.features(x)).squeeze(1))
    before = [p.detach().clone() for p in d.parameters()]
    d.reset()
    assert any(not torch.equal(a, b) for a, b in zip(before, d.parameters(), strict=True))


def test_fanogan_stage_budgets_split_the_epochs():
    cls = method_class("f-anogan")
    assert build_config(cls, {}).stage_epochs() == (200, 50)  # the paper's 250 epochs
    assert build_config(cls, {"epochs": 600}).stage_epochs() == (480, 120)  # Brain Tumor
    assert build_config(cls, {"gan_epochs": 3, "encoder_epochs": 2}).stage_epochs() == (3, 2)
    method = cls(build_config(cls, {"gan_epochs": 2, "encoder_epochs": 0}), 1)
    assert [s.name for s in method.stages()] == ["gan"]
    (critic, generator) = method.stages()[0].phases
    assert (critic.name, critic.repeats, critic.betas, critic.lr) == ("critic", 5, (0.0, 0.9), 1e-4)
    assert generator.name == "generator"


def _state(modules: list[nn.Module]) -> dict[str, torch.Tensor]:
    return {
        f"{i}.{k}": v.detach().clone()
        for i, m in enumerate(modules)
        for k, v in m.state_dict().items()
    }


def test_fanogan_encoder_stage_leaves_generator_and_critic_unchanged():
    cls, config, pre, train = _small_split(
        "f-anogan", {"gan_epochs": 1, "encoder_epochs": 2, "batch_size": 48, "n_critic": 2}
    )
    method = engine.create_method(cls, config, 1, seed=0)
    ae = method.autoencoder
    gan_parts = [ae.bottleneck.decode_fc, ae.decoder, method.critic]
    encoder_parts = [ae.encoder, ae.bottleneck.encode]
    start = _state(gan_parts)
    at_stage_2: dict[str, dict[str, torch.Tensor]] = {}
    training_loss = method.training_loss

    def spy(x: torch.Tensor, stage: str, phase: str):
        if stage == "encoder" and not at_stage_2:
            at_stage_2.update(gan=_state(gan_parts), encoder=_state(encoder_parts))
        return training_loss(x, stage, phase)

    method.training_loss = spy  # type: ignore[method-assign]
    history = engine.train(method, train, pre, seed=0, device="cpu", progress=False)
    assert [e["stage"] for e in history.epochs] == ["gan", "encoder", "encoder"]
    # stage 1 trained G and D ...
    assert any(not torch.equal(v, at_stage_2["gan"][k]) for k, v in start.items())
    # ... stage 2 changed neither (weights nor BatchNorm statistics), only the encoder
    for k, v in _state(gan_parts).items():
        assert torch.equal(v, at_stage_2["gan"][k]), k
    assert any(
        not torch.equal(v, at_stage_2["encoder"][k]) for k, v in _state(encoder_parts).items()
    )


@pytest.mark.parametrize("name", ["ganomaly", "f-anogan"])
def test_gan_methods_are_registered_in_the_reconstruction_family(name):
    cls = method_class(name)
    assert cls.family == "reconstruction" and cls.description
