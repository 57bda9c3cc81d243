"""DAE (coarse-noise denoising U-Net) and AE-PL (perceptual-loss AE): rules checked by hand, and
each trained briefly on the small synth-brain must rank lesion images above normal ones."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from scipy import ndimage

from medad import engine
from medad.data.base import get_dataset
from medad.data.loading import load_split
from medad.errors import MedadError
from medad.evaluation import evaluate
from medad.methods.base import build_config, method_class
from medad.methods.dae import coarse_noise
from medad.methods.parts.perceptual import VGG19_LAYERS, load_feature_stats, relative_l1_map
from medad.methods.parts.pretrained import IMAGENET_MEAN, IMAGENET_STD, weights_file_name
from medad.methods.parts.unet import UNet, group_count
from tests.methods.common import train_and_predict


def build(name: str, **values):
    cls = method_class(name)
    return cls(build_config(cls, values), 1)


class Scale(torch.nn.Module):
    """A stand-in network x ↦ a·x that records its input."""

    def __init__(self, a: float) -> None:
        super().__init__()
        self.a, self.seen = a, []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        return self.a * x


# ---------------------------------------------------------------------------------- DAE


def test_unet_shapes_and_kascenas_size():
    net = UNet(1, depth=4, base_width=64)
    assert sum(p.numel() for p in net.parameters()) == 7_701_825
    assert [group_count(c) for c in (64, 128, 256, 512)] == [8, 16, 16, 32]
    assert UNet(3, depth=3, base_width=4)(torch.zeros(2, 3, 32, 32)).shape == (2, 3, 32, 32)


def test_dae_default_unet_is_the_studys_depth_5():
    cls = method_class("dae")
    config = build_config(cls, {})
    assert config.depth == 5 and cls.preprocess(config, 1).size == 128
    net = cls(config, 1).net
    assert sum(p.numel() for p in net.parameters()) == 31_042_369  # MedIAnomaly: 31.0 M
    assert net(torch.zeros(1, 1, 128, 128)).shape == (1, 1, 128, 128)
    assert build("dae", depth=3).net.depth == 3  # still configurable


def test_unet_ignores_a_constant_shift_of_its_input():
    # why the study's −1 noise offset changes nothing (dae.py docstring): weight-standardised
    # first conv after reflection padding
    net = UNet(1, depth=2, base_width=8).eval()
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(net(x - 1.0), net(x), rtol=1e-4, atol=1e-4)


def test_coarse_noise_is_coarse_zero_mean_and_of_the_asked_std():
    noise = coarse_noise(300, 1, 64, res=16, std=0.2, rng=np.random.default_rng(0))[:, 0]
    assert noise.shape == (300, 64, 64)
    # zero-mean: not shifted like MedIAnomaly's (ns - 0.5) * 2
    assert abs(float(noise.mean())) < 0.005
    # bilinear interpolation between lattice values: mean variance (2/3)² σ², per pixel alike
    assert float(noise.std()) == pytest.approx(0.2 * 2 / 3, rel=0.04)
    per_pixel = noise.std(dim=0)
    assert float(per_pixel.min()) > 0.10 and float(per_pixel.max()) < 0.17
    # coarse: neighbours strongly correlated, two lattice cells apart nearly independent

    def corr(lag: int) -> float:
        return float((noise[:, :, lag:] * noise[:, :, :-lag]).mean() / (noise**2).mean())

    assert corr(1) > 0.85 and abs(corr(9)) < 0.1
    # without upsampling the pixels are the lattice: std σ
    flat = coarse_noise(300, 1, 16, res=16, std=0.2, rng=np.random.default_rng(0))
    assert float(flat.std()) == pytest.approx(0.2, rel=0.03)


def test_coarse_noise_is_rolled_per_image_and_deterministic():
    a = coarse_noise(8, 2, 64, res=16, std=0.2, rng=np.random.default_rng(3))
    assert torch.equal(a, coarse_noise(8, 2, 64, res=16, std=0.2, rng=np.random.default_rng(3)))
    assert not torch.equal(a, coarse_noise(8, 2, 64, res=16, std=0.2, rng=np.random.default_rng(4)))
    # rebuild the same draws by hand: lattice, aligned-corner upsampling, one shift per image
    rng = np.random.default_rng(3)
    lattice = torch.from_numpy(rng.standard_normal((8, 2, 16, 16), dtype=np.float32)) * 0.2
    up = F.interpolate(lattice, size=(64, 64), mode="bilinear", align_corners=True)
    shifts = rng.integers(0, 64, size=(8, 2))
    assert len({tuple(s) for s in shifts}) == 8
    for i, (dy, dx) in enumerate(shifts):
        torch.testing.assert_close(a[i], torch.roll(up[i], (int(dy), int(dx)), dims=(-2, -1)))


def test_dae_noise_follows_the_engine_seed_and_only_hits_the_foreground():
    dae = build("dae", image_size=32, depth=2, base_width=4, mask_erosion=1)
    x = -torch.ones(4, 1, 32, 32)
    x[:, :, 8:24, 8:24] = 0.3  # foreground square on a black background
    dae.rng = np.random.default_rng(11)
    n1 = dae.noise(x)
    dae.rng = np.random.default_rng(11)
    torch.testing.assert_close(dae.noise(x), n1)
    # σ = 0.2 in [0, 1] units is 0.4 in the [-1, 1] units of x
    ref = coarse_noise(4, 1, 32, res=16, std=0.4, rng=np.random.default_rng(11))
    torch.testing.assert_close(n1, ref)
    fg = dae.foreground(x)
    assert torch.equal(fg[0, 0] > 0, x[0, 0] > -1)
    dae.net = Scale(1.0)
    dae.rng = np.random.default_rng(11)
    loss = dae.training_loss(x, "train", "model")
    noisy = dae.net.seen[0]
    assert torch.equal(noisy[fg == 0], x[fg == 0])  # background untouched
    torch.testing.assert_close(noisy - x, n1 * fg)
    torch.testing.assert_close(loss, torch.mean((n1 * fg) ** 2))


def test_dae_score_is_masked_squared_error():
    dae = build("dae", image_size=32, depth=2, base_width=4, mask_erosion=2)
    dae.net = Scale(0.5)
    x = -torch.ones(2, 1, 32, 32)
    x[0, 0, 4:28, 6:30] = torch.linspace(-0.5, 0.9, 24)
    x[1, 0, 10:20, 10:20] = 0.0
    out = dae.score(x)
    fg = (x[:, 0] + 1) / 2 > 0.01
    eroded = np.stack(
        [ndimage.binary_erosion(m, np.ones((5, 5)), border_value=1) for m in fg.numpy()]
    )
    expected = (x[:, 0] - 0.5 * x[:, 0]) ** 2 * torch.from_numpy(eroded)
    torch.testing.assert_close(out.maps, expected)
    torch.testing.assert_close(out.image_scores, expected.flatten(1).mean(1))
    unmasked = build("dae", image_size=32, depth=2, base_width=4, foreground_mask=False)
    unmasked.net = Scale(0.5)
    torch.testing.assert_close(unmasked.score(x).maps, (0.5 * x[:, 0]) ** 2)


def test_dae_config_defaults_and_checks():
    cfg = build_config(method_class("dae"), {})
    assert (cfg.image_size, cfg.batch_size, cfg.noise_res, cfg.noise_std) == (128, 16, 16, 0.2)
    assert method_class("dae").preprocess(cfg, 1).size == 128
    with pytest.raises(MedadError, match="divide"):
        build_config(method_class("dae"), {"image_size": 32, "depth": 7})


def test_dae_ranks_lesions_above_normals():
    # 64 px and a quarter-width U-Net of depth 4 (16…128 channels) to fit the CPU test budget
    overrides = {"image_size": 64, "depth": 4, "base_width": 16, "epochs": 5}
    _, pred = train_and_predict("dae", overrides)
    assert pred.maps is not None and pred.maps.shape == (64, 64, 64)
    m = evaluate(pred)
    assert m["image_auroc"] > 0.6 and m["pixel_auroc"] > 0.8


# ---------------------------------------------------------------------------------- AE-PL


@pytest.fixture(scope="module")
def tiny_brain():
    ds = get_dataset("synth-brain", n_train=16, n_test_normal=4, n_test_abnormal=4, size=32)
    return ds


def vgg_params(method) -> list[torch.Tensor]:
    return list(method.perceptual.features.frozen.parameters())


def test_vgg19_layer_table():
    assert VGG19_LAYERS["relu4_2"] == (23, 512, 8)
    assert VGG19_LAYERS["relu1_1"] == (2, 64, 1) and VGG19_LAYERS["relu5_4"] == (36, 512, 16)
    features = torchvision.models.vgg19(weights=None).features
    for end, _, _ in VGG19_LAYERS.values():
        assert isinstance(features[end - 1], torch.nn.ReLU)


def test_ae_pl_vgg_is_frozen_outside_optimiser_and_checkpoint(tiny_brain):
    cls = method_class("ae-pl")
    config = build_config(
        cls, {"weights": "random", "image_size": 32, "epochs": 2, "batch_size": 8}
    )
    pre = cls.preprocess(config, 1)
    method = cls(config, 1)
    frozen = vgg_params(method)
    before = [p.detach().clone() for p in frozen]
    assert all(not p.requires_grad for p in frozen)
    ids = {id(p) for p in frozen}
    optimised = [p for s in method.stages() for ph in s.phases for p in ph.params]
    assert optimised and not any(id(p) in ids for p in optimised)
    assert not any(id(p) in ids for p in method.parameters())
    assert not any("frozen" in k for k in method.state_dict())
    engine.train(method, load_split(tiny_brain, "train", pre), pre, seed=0, device="cpu",
                 progress=False)  # fmt: skip
    assert all(torch.equal(a, b) for a, b in zip(before, vgg_params(method), strict=True))
    # the estimated statistics travel with the checkpoint
    again = cls(config, 1)
    again.load_state_dict(method.state_dict())
    assert bool(again.perceptual.ready) and torch.equal(again.perceptual.std, method.perceptual.std)


def test_ae_pl_loss_and_map_equal_the_formula():
    method = build("ae-pl", weights="random", image_size=32).eval()
    x = torch.rand(6, 1, 32, 32) * 2 - 1
    method.prepare(lambda: iter([x]))  # a training split of these 6 images: estimates μ, σ
    loss = method.training_loss(x, "train", "model")
    # by hand: a fresh torchvision VGG19 with the same weights, ImageNet input normalisation
    vgg = torchvision.models.vgg19(weights=None).features[:23].eval()
    vgg.load_state_dict(method.perceptual.features.frozen.backbone.features.state_dict())
    mean, std = (
        torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1),
        torch.tensor(IMAGENET_STD).view(1, 3, 1, 1),
    )

    def feats(img):
        return vgg(((img + 1) / 2).repeat(1, 3, 1, 1).sub(mean).div(std))

    with torch.no_grad():
        x_hat = method.net(x)
        fx, fy = feats(x), feats(x_hat)
    assert fx.shape == (6, 512, 4, 4)
    per_channel = fx.transpose(0, 1).reshape(512, -1)
    mu, sigma = per_channel.mean(1), per_channel.std(1)
    sigma = sigma.clamp_min(0.01 * float(sigma.mean()))
    torch.testing.assert_close(method.perceptual.mean, mu)
    torch.testing.assert_close(method.perceptual.std, sigma)
    nx = (fx - mu.view(1, -1, 1, 1)) / sigma.view(1, -1, 1, 1)
    ny = (fy - mu.view(1, -1, 1, 1)) / sigma.view(1, -1, 1, 1)
    per_image = nx.abs().mean(dim=(1, 2, 3)).view(-1, 1, 1)
    d = (nx - ny).abs().mean(dim=1) / per_image
    torch.testing.assert_close(loss, d.mean())
    with torch.no_grad():
        out = method.score(x)
    up = F.interpolate(d[:, None], size=(32, 32), mode="bilinear", align_corners=False)[:, 0]
    torch.testing.assert_close(out.maps, up)
    torch.testing.assert_close(out.image_scores, up.flatten(1).mean(1))


def test_ae_pl_statistics_cover_the_whole_training_split(tiny_brain):
    cls = method_class("ae-pl")
    config = build_config(
        cls, {"weights": "random", "image_size": 32, "epochs": 1, "batch_size": 4}
    )
    pre = cls.preprocess(config, 1)
    train = load_split(tiny_brain, "train", pre)
    method = engine.create_method(cls, config, 1, seed=0)
    engine.train(method, train, pre, seed=0, device="cpu", progress=False)
    # by hand: features of all 16 training images at once, not of the first batch of 4
    x = engine.to_float(train.images, pre, torch.device("cpu"))
    with torch.no_grad():
        f = method.perceptual.features(x).transpose(0, 1).flatten(1).double()
    mu, sigma = f.mean(1), f.std(1)
    sigma = sigma.clamp_min(0.01 * float(sigma.mean()))
    torch.testing.assert_close(method.perceptual.mean, mu.float(), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(method.perceptual.std, sigma.float(), rtol=1e-4, atol=1e-5)
    with torch.no_grad():
        first = method.perceptual.features(x[:4]).transpose(0, 1).flatten(1)
    assert not torch.allclose(method.perceptual.mean, first.mean(1), rtol=1e-2)


def test_ae_pl_statistics_file_is_used_and_kept(tmp_path, tiny_brain):
    mean, std = torch.rand(512), torch.rand(512) + 0.5
    path = tmp_path / "imagenet_relu4_2.npz"
    np.savez(path, mean=mean.numpy(), std=std.numpy())
    cls = method_class("ae-pl")
    values = {"weights": "random", "image_size": 32, "epochs": 1, "batch_size": 8}
    config = build_config(cls, {**values, "feature_stats": str(path)})
    pre = cls.preprocess(config, 1)
    method = engine.create_method(cls, config, 1, seed=0)
    engine.train(method, load_split(tiny_brain, "train", pre), pre, seed=0, device="cpu",
                 progress=False)  # fmt: skip
    assert torch.equal(method.perceptual.mean, mean) and torch.equal(method.perceptual.std, std)
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    with torch.no_grad():
        fx, fy = method.perceptual.features(x), method.perceptual.features(method.net(x))
        expected = relative_l1_map(fx, fy, mean, std)
        torch.testing.assert_close(method.perceptual(x, method.net(x)), expected)
    bad = tmp_path / "bad.npz"
    np.savez(bad, mean=mean.numpy())
    with pytest.raises(MedadError, match="bad.npz.*'mean' and 'std'"):
        build("ae-pl", weights="random", image_size=32, feature_stats=str(bad))


def test_ae_pl_needs_the_vgg19_file_for_imagenet(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    name, _ = weights_file_name("vgg19")
    with pytest.raises(MedadError) as err:
        build("ae-pl", weights="imagenet")
    assert name in str(err.value) and str(tmp_path) in str(err.value)


def test_feature_statistics_files(tmp_path):
    mean, var = torch.rand(1, 512, 1, 1), torch.rand(1, 512, 1, 1) + 0.5
    original = tmp_path / "vgg19_mean_var.pt"
    torch.save({"r42": (mean, var), "r11": (torch.zeros(64), torch.ones(64))}, original)
    m, s = load_feature_stats(original, "relu4_2", 512)
    assert torch.equal(m, mean.flatten()) and torch.equal(s, var.flatten())
    method = build("ae-pl", weights="random", image_size=32, feature_stats=str(original))
    assert bool(method.perceptual.ready) and torch.equal(method.perceptual.std, var.flatten())
    plain = tmp_path / "stats.pt"
    torch.save({"mean": torch.zeros(512), "std": torch.full((512,), 2.0)}, plain)
    assert float(load_feature_stats(plain, "relu4_2", 512)[1][0]) == 2.0
    none = build("ae-pl", weights="random", image_size=32, feature_stats="none")
    assert bool(none.perceptual.ready) and float(none.perceptual.std.min()) == 1.0
    with pytest.raises(MedadError, match="not found"):
        load_feature_stats(tmp_path / "missing.pt", "relu4_2", 512)
    bad = tmp_path / "bad.pt"
    torch.save({"x": torch.zeros(1)}, bad)
    with pytest.raises(MedadError, match="'r42'"):
        load_feature_stats(bad, "relu4_2", 512)
    with pytest.raises(MedadError, match="512 values"):
        load_feature_stats(original, "relu1_1", 512)
    with pytest.raises(MedadError, match="unknown VGG19 layer"):
        build_config(method_class("ae-pl"), {"layer": "relu9_9"})


def test_ae_pl_ranks_lesions_above_normals():
    overrides = {"weights": "random", "image_size": 32, "epochs": 10}
    data = {"n_train": 96, "n_test_normal": 32, "n_test_abnormal": 32, "size": 32}
    _, pred = train_and_predict("ae-pl", overrides, data_options=data)
    assert pred.maps is not None and pred.maps.shape == (64, 32, 32)
    assert evaluate(pred)["image_auroc"] > 0.6
