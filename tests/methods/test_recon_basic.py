"""The basic image-reconstruction methods: each ranks planted anomalies above normals after a short
training on the small synth-brain, and each score rule matches a computation by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from medad.cli import parse_assignments
from medad.errors import MedadError
from medad.methods.base import build_config, method_class
from medad.methods.parts.memory import Memory, attention_entropy, hard_shrink_relu
from medad.methods.parts.ssim import ssim_map
from tests.methods.common import SMALL_BRAIN, method_metrics

#: epochs per method on the small synth-brain (96 train images, batch 32): enough for AUROC > 0.6
EPOCHS = {
    "ae-l1": 15,
    "ae-ssim": 15,
    "ae-spatial": 15,
    "constrae": 15,
    "ceae": 15,
    "memae": 40,
    "ae-u": 15,
}


#: AE-SSIM sees synth-brain rendered at 256 px and downsampled to its 64 px input, as real scans
#: are. Rendered at 64 px, each pixel keeps the full acquisition noise (σ up to 0.03), SSIM's
#: contrast term then mostly measures an image's noise level, and the mean 1 − SSIM ranks images
#: at chance (0.48 at this budget) although its map finds the lesions (pixel AUROC 0.79).
DATA = {"ae-ssim": {**SMALL_BRAIN, "size": 256}}


@pytest.mark.parametrize("name", sorted(EPOCHS))
def test_ranks_planted_anomalies_above_normals(name: str) -> None:
    metrics = method_metrics(
        name, {"epochs": EPOCHS[name], "batch_size": 32}, data_options=DATA.get(name)
    )
    assert "pixel_auroc" in metrics  # maps of the input size were produced and evaluated
    assert metrics["image_auroc"] > 0.6, metrics


@pytest.mark.parametrize("name", sorted(EPOCHS))
def test_registered_in_the_reconstruction_family(name: str) -> None:
    cls = method_class(name)
    assert cls.name == name and cls.family == "reconstruction" and cls.description
    # every config field has a default, so `build_config(cls, {})` is the paper's setting
    build_config(cls, {})


def _method(name: str, seed: int = 0, **overrides):
    torch.manual_seed(seed)
    cls = method_class(name)
    return cls(build_config(cls, overrides), 1)


def _batch(seed: int = 0, b: int = 4, c: int = 1, size: int = 64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, c, size, size, generator=g) * 2 - 1


def _check_score_is_map_mean(out) -> None:
    assert out.maps.shape == (4, 64, 64)
    torch.testing.assert_close(out.image_scores, out.maps.flatten(1).mean(1))


def test_ae_l1_map_is_the_absolute_error():
    m = _method("ae-l1").eval()
    x = _batch()
    with torch.no_grad():
        x_hat = m.net(x)
        out = m.score(x)
    torch.testing.assert_close(out.maps, (x - x_hat).abs().sum(1))
    _check_score_is_map_mean(out)
    m.train()
    loss = m.training_loss(x, "train", "model")
    torch.testing.assert_close(loss, (m.net(x) - x).abs().mean())


def test_ae_ssim_map_is_one_minus_ssim_on_unit_range_images():
    m = _method("ae-ssim").eval()
    x = _batch()
    with torch.no_grad():
        x_hat = m.net(x)
        out = m.score(x)
    expected = 1 - ssim_map(
        ((x + 1) / 2).clamp(0, 1), ((x_hat + 1) / 2).clamp(0, 1), window_size=11
    )
    torch.testing.assert_close(out.maps, expected)
    _check_score_is_map_mean(out)
    # a perfect reconstruction scores 0
    torch.testing.assert_close(m.error_map(x, x), torch.zeros(4, 64, 64), atol=1e-5, rtol=0)


def test_ae_spatial_latent_is_a_small_map():
    m = _method("ae-spatial").eval()
    x = _batch()
    with torch.no_grad():
        z = m.net.encode(x)
    assert z.shape == (4, 16, 4, 4)  # the MedIAnomaly code's 16 latent channels
    # the bottleneck is 1×1 convolutions only: no fully connected layer
    assert not any(isinstance(mod, torch.nn.Linear) for mod in m.modules())
    with torch.no_grad():
        x_hat = m.net(x)
        out = m.score(x)
    torch.testing.assert_close(out.maps, ((x - x_hat) ** 2).sum(1))
    _check_score_is_map_mean(out)
    narrow = _method("ae-spatial", latent_channels=1).eval()
    with torch.no_grad():  # 16 numbers, the size of the AE's FC latent
        z = narrow.net.encode(x)
    assert z.shape == (4, 1, 4, 4)
    assert z.flatten(1).shape[1] == build_config(method_class("ae"), {}).latent_size


def test_constrae_loss_is_mse_plus_weighted_latent_consistency():
    m = _method("constrae", latent_weight=0.5).train()
    x = _batch()
    losses = m.training_loss(x, "train", "model")
    z = m.net.encode(x)
    x_hat = m.net.decode(z)
    mse = ((x - x_hat) ** 2).mean()
    latent = ((z - m.net.encode(x_hat)) ** 2).mean()
    torch.testing.assert_close(losses["recon"], mse.detach())
    torch.testing.assert_close(losses["latent"], latent.detach())
    torch.testing.assert_close(losses["loss"], mse + 0.5 * latent)
    assert build_config(method_class("constrae"), {}).latent_weight == 1.0
    m.eval()
    with torch.no_grad():
        out = m.score(x)
        torch.testing.assert_close(out.maps, ((x - m.net(x)) ** 2).sum(1))


def test_ceae_erases_one_square_of_about_2_4_percent_per_image():
    m = _method("ceae")
    m.rng = np.random.default_rng(7)
    x = torch.ones(16, 1, 64, 64)
    erased = m.erase(x)
    assert torch.equal(x, torch.ones_like(x))  # the clean input is left untouched
    holes = erased[:, 0] == -1.0  # filled with the bottom of the [-1, 1] range
    per_image = holes.flatten(1).sum(1)
    assert (per_image == 100).all()  # one 10 × 10 square: round(√(0.024 · 64²)) = 10
    assert abs(per_image[0].item() / 64**2 - 0.024) < 0.001
    for hole in holes:
        rows, cols = hole.any(1).nonzero(), hole.any(0).nonzero()
        assert len(rows) == len(cols) == 10
        assert rows.max() - rows.min() == cols.max() - cols.min() == 9
    # positions come from the seeded generator: reproducible, and different between images
    m.rng = np.random.default_rng(7)
    assert torch.equal(m.erase(x), erased)
    assert not all(torch.equal(holes[0], h) for h in holes[1:])
    # all channels of an RGB image are erased at the same place
    rgb = m.erase(torch.ones(2, 3, 64, 64))
    assert torch.equal(rgb[:, 0] == -1, rgb[:, 2] == -1)


def test_ceae_trains_on_erased_inputs_against_clean_targets_and_scores_clean_inputs():
    m = _method("ceae").train()
    x = _batch()
    m.rng = np.random.default_rng(3)
    loss = m.training_loss(x, "train", "model")
    m.rng = np.random.default_rng(3)
    torch.testing.assert_close(loss, ((m.net(m.erase(x)) - x) ** 2).mean())
    m.eval()
    with torch.no_grad():
        torch.testing.assert_close(m.score(x).maps, ((x - m.net(x)) ** 2).sum(1))


def test_memae_hard_shrinkage_on_a_hand_made_attention_vector():
    lam = 0.0025
    w = torch.tensor([[0.6, 0.3966, 0.0024, 0.001, 0.0]], dtype=torch.float64)
    shrunk = hard_shrink_relu(w, lam)
    torch.testing.assert_close(
        shrunk, torch.tensor([[0.6, 0.3966, 0.0, 0.0, 0.0]], dtype=torch.float64)
    )
    # the rule itself: relu(w − λ) · w / (|w − λ| + ε)
    eps = 1e-12
    torch.testing.assert_close(shrunk, torch.relu(w - lam) * w / ((w - lam).abs() + eps))
    # Memory: softmax → shrink → L1 re-normalisation → weighted sum of the items
    mem = Memory(slots=4, dim=3, shrink_threshold=0.2).double()
    with torch.no_grad():
        mem.items.copy_(torch.eye(4, 3, dtype=torch.float64) * 3)
    z = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.2, 0.1]], dtype=torch.float64)
    att_soft = torch.softmax(z @ mem.items.t(), dim=1)
    kept = torch.where(att_soft > 0.2, att_soft, torch.zeros_like(att_soft))
    expected = kept / kept.sum(1, keepdim=True)
    z_hat, att = mem(z)
    torch.testing.assert_close(att, expected, atol=1e-9, rtol=0)
    torch.testing.assert_close(z_hat, expected @ mem.items)
    torch.testing.assert_close(att.sum(1), torch.ones(2, dtype=torch.float64))


def test_memae_entropy_loss_and_defaults():
    one_hot = torch.zeros(3, 25)
    one_hot[:, 4] = 1
    assert attention_entropy(one_hot).item() == pytest.approx(0.0, abs=1e-9)
    uniform = torch.full((3, 25), 1 / 25)
    assert attention_entropy(uniform).item() == pytest.approx(math.log(25), rel=1e-6)
    config = build_config(method_class("memae"), {})
    assert (config.memory_slots, config.shrink_threshold, config.entropy_weight) == (
        25,
        0.0025,
        2e-4,
    )
    m = _method("memae").train()
    x = _batch()
    losses = m.training_loss(x, "train", "model")
    x_hat, att = m.net.forward_with_attention(x)
    assert att.shape == (4, 25)
    torch.testing.assert_close(losses["recon"], ((x - x_hat) ** 2).mean().detach())
    torch.testing.assert_close(
        losses["loss"], ((x - x_hat) ** 2).mean() + 2e-4 * attention_entropy(att)
    )
    m.eval()
    with torch.no_grad():
        torch.testing.assert_close(m.score(x).maps, ((x - m.net(x)) ** 2).sum(1))


def test_ae_u_map_is_the_variance_weighted_squared_error():
    m = _method("ae-u").eval()
    x = _batch()
    with torch.no_grad():
        raw = m.net(x)
        out = m.score(x)
    assert raw.shape == (4, 2, 64, 64)  # x̂ and one log σ² channel per image channel
    x_hat, log_var = raw[:, :1], raw[:, 1:]
    torch.testing.assert_close(out.maps, (torch.exp(-log_var) * (x - x_hat) ** 2).sum(1))
    _check_score_is_map_mean(out)
    m.train()
    losses = m.training_loss(x, "train", "model")
    raw = m.net(x)
    x_hat, log_var = raw[:, :1], raw[:, 1:]
    expected = torch.mean(torch.exp(-log_var) * (x - x_hat) ** 2 + log_var)
    torch.testing.assert_close(losses["loss"], expected)


def test_set_style_overrides_fill_the_typed_configs():
    cases = {
        "ae-l1": ["latent_size=32"],
        "ae-ssim": ["window_size=7", "sigma=1.0"],
        "ae-spatial": ["latent_channels=1", "mid_size=256"],
        "constrae": ["latent_weight=0.1"],
        "ceae": ["erase_fraction=0.05", "erase_value=0"],
        "memae": ["memory_slots=50", "shrink_threshold=0.004", "entropy_weight=0.001"],
        "ae-u": ["latent_size=8", "epochs=3"],
    }
    for name, items in cases.items():
        values = parse_assignments(items, "--set")
        config = build_config(method_class(name), values)
        for key, value in values.items():
            assert getattr(config, key) == value, (name, key)
    with pytest.raises(MedadError, match="window_size"):
        build_config(method_class("ae-ssim"), {"window_size": 8})
    with pytest.raises(MedadError, match="latent_channels"):
        build_config(method_class("ae-spatial"), {"latent_channels": 0})
    with pytest.raises(MedadError, match="fields:"):
        build_config(method_class("memae"), {"memory_size": 10})


@pytest.mark.parametrize("name", ["ae", "ae-l1", "ae-u", "ae-grad", "vae-grad-combi", "dae"])
def test_image_score_rule_is_configurable_on_the_same_map(name: str) -> None:
    extra = {"image_size": 64, "base_width": 8} if name == "dae" else {}
    x = _batch()
    scores, maps = {}, {}
    for rule in ("mean", "max", "topk"):
        m = _method(name, image_score=rule, topk_fraction=0.05, **extra).eval()
        with torch.no_grad():
            out = m.score(x)
        scores[rule], maps[rule] = out.image_scores, out.maps
    torch.testing.assert_close(maps["max"], maps["mean"])  # same weights (seed), same map
    flat = maps["mean"].flatten(1)
    torch.testing.assert_close(scores["mean"], flat.mean(1))
    torch.testing.assert_close(scores["max"], flat.amax(1))
    k = round(0.05 * flat.shape[1])
    torch.testing.assert_close(scores["topk"], flat.sort(1, descending=True).values[:, :k].mean(1))
