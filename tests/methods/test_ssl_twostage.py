"""Two-stage self-supervised methods, the frozen ResNet18 reference and their Gaussian density."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from sklearn.covariance import LedoitWolf

from medad import engine
from medad.errors import MedadError
from medad.evaluation import evaluate
from medad.methods.base import build_config, method_class
from medad.methods.parts.density import GaussianDensity
from medad.methods.parts.pretrained import weights_file_name
from medad.methods.ssl_twostage import colour_jitter_batch
from tests.methods.common import method_metrics, train_and_predict

#: ResNet18 at 64 px and a few epochs keep each training test within ~40 s on two cores
SMALL = {"image_size": 64, "batch_size": 32}
#: one pass of the 96 training images per epoch instead of the study's 256 steps
STEPS = {"steps_per_epoch": 3}


@pytest.fixture(scope="module")
def fake_torch_home(tmp_path_factory):
    """A TORCH_HOME whose hub cache holds (random) resnet18 weights under torchvision's name."""
    home = tmp_path_factory.mktemp("torch_home")
    name, _ = weights_file_name("resnet18")
    (home / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(
        torchvision.models.resnet18(weights=None).state_dict(), home / "hub" / "checkpoints" / name
    )
    return home


# --- GaussianDensity ------------------------------------------------------------------------


def _numpy_mahalanobis(train: np.ndarray, test: np.ndarray) -> np.ndarray:
    unit = lambda z: z / np.linalg.norm(z, axis=1, keepdims=True)  # noqa: E731
    lw = LedoitWolf().fit(unit(train))
    delta = unit(test) - unit(train).mean(axis=0)
    return np.sqrt(np.einsum("nd,de,ne->n", delta, np.linalg.inv(lw.covariance_), delta))


# fewer and more samples than dimensions; 96 × 512 is the small test's ResNet18 setting
@pytest.mark.parametrize(("n_train", "dim"), [(12, 32), (200, 32), (96, 512)])
def test_density_matches_a_hand_computation(n_train, dim):
    rng = np.random.default_rng(0)
    mixing = rng.normal(size=(dim, dim))
    train = rng.normal(size=(n_train, dim)) @ mixing + 3.0
    test = rng.normal(size=(20, dim)) @ mixing * 1.5 + 3.0
    density = GaussianDensity(dim)
    density.fit(torch.tensor(train, dtype=torch.float32))
    got = density(torch.tensor(test, dtype=torch.float32)).numpy()
    np.testing.assert_allclose(got, _numpy_mahalanobis(train, test), rtol=1e-5)


def test_density_without_normalisation_is_plain_mahalanobis():
    rng = np.random.default_rng(1)
    train, test = rng.normal(size=(50, 8)), rng.normal(size=(5, 8)) * 3
    density = GaussianDensity(8, normalize=False)
    density.fit(torch.tensor(train))
    lw = LedoitWolf().fit(train)
    delta = test - train.mean(axis=0)
    want = np.sqrt(np.einsum("nd,de,ne->n", delta, lw.precision_, delta))
    np.testing.assert_allclose(density(torch.tensor(test)).numpy(), want, rtol=1e-4)


def test_density_round_trips_through_state_dict():
    density = GaussianDensity(16)
    density.fit(torch.randn(40, 16))
    x = torch.randn(7, 16)
    restored = GaussianDensity(16)
    with pytest.raises(MedadError, match="fit"):
        restored(x)
    restored.load_state_dict(density.state_dict())
    assert restored.fitted
    torch.testing.assert_close(restored(x), density(x))


def test_density_rejects_bad_input():
    density = GaussianDensity(4)
    with pytest.raises(MedadError, match="at least 2"):
        density.fit(torch.randn(1, 4))
    with pytest.raises(MedadError, match=r"\[N, 4\]"):
        density.fit(torch.randn(10, 5))


# --- colour jitter -------------------------------------------------------------------------


def test_colour_jitter_is_seeded_mild_and_keeps_shape():
    x = torch.rand(4, 1, 16, 16)
    a = colour_jitter_batch(x, 0.1, np.random.default_rng(0))
    b = colour_jitter_batch(x, 0.1, np.random.default_rng(0))
    assert a.shape == x.shape and torch.equal(a, b)
    assert 0 < (a - x).abs().max() < 0.25 and a.min() >= 0 and a.max() <= 1
    rgb = torch.rand(2, 3, 16, 16)
    assert colour_jitter_batch(rgb, 0.1, np.random.default_rng(0)).shape == rgb.shape


# --- methods --------------------------------------------------------------------------------


@pytest.mark.slow
def test_cutpaste_2stage_ranks_planted_anomalies_above_normals():
    # 4 epochs = 12 steps of the study's SGD and cosine schedule (with Adam 1e-3: AUROC 0.70)
    metrics = method_metrics("cutpaste-2stage", {**SMALL, **STEPS, "epochs": 4})
    assert set(metrics) == {"image_auroc", "image_ap", "sens_at_95spec"}  # no pixel metrics
    assert metrics["image_auroc"] > 0.6


@pytest.mark.slow
def test_anatpaste_ranks_planted_anomalies_above_normals():
    metrics = method_metrics("anatpaste", {**SMALL, **STEPS, "epochs": 4})
    assert set(metrics) == {"image_auroc", "image_ap", "sens_at_95spec"}
    assert metrics["image_auroc"] > 0.6


def test_cutpaste_variants_set_the_classes_and_pretrained_weights_freeze_first(fake_torch_home):
    cls = method_class("cutpaste-2stage")
    default = cls(build_config(cls, {**SMALL, "epochs": 3}), channels=1)
    assert default.head[-1].out_features == 2  # the study's binary normal vs CutPaste
    assert default.anomaly_kinds() == ("cutpaste",)
    three = cls(build_config(cls, {**SMALL, "epochs": 3, "variant": "3way"}), channels=1)
    assert three.head[-1].out_features == 3
    assert [(s.name, s.epochs) for s in three.stages()] == [("train", 3)]
    weights = next((fake_torch_home / "hub" / "checkpoints").iterdir())
    config = {**SMALL, "epochs": 30, "weights": str(weights)}
    two = cls(build_config(cls, config), channels=1)
    assert two.head[-1].out_features == 2
    head, train = two.stages()
    assert (head.name, head.epochs, train.name, train.epochs) == ("head", 20, "train", 10)
    assert {id(p) for p in head.phases[0].params} == {id(p) for p in two.head.parameters()}
    loss = three.training_loss(torch.rand(4, 1, 64, 64), "train", "model")
    assert loss["loss"].requires_grad and 0 <= float(loss["accuracy"]) <= 1


def test_resnet18_imagenet_with_random_features_ranks_anomalies_and_stays_frozen():
    cls = method_class("resnet18-imagenet")
    config = {**SMALL, "weights": "random"}
    # the engine seeds weight init, so this is the network train_and_predict starts from
    fresh = engine.create_method(cls, build_config(cls, config), channels=1, seed=0)
    method, pred = train_and_predict("resnet18-imagenet", config, seed=0)
    assert pred.maps is None
    assert evaluate(pred)["image_auroc"] > 0.6  # 0.63 at seed 0 (0.69, 0.66 at seeds 1, 2)
    assert method.stages() == [] and not any(p.requires_grad for p in method.parameters())
    assert method.density.fitted
    method.train()  # even in training mode, BatchNorm statistics stay ImageNet's
    method.embedding(torch.rand(4, 1, 64, 64))
    before, after = fresh.embedding.frozen.state_dict(), method.embedding.frozen.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_resnet18_imagenet_loads_from_the_hub_cache(tmp_path, monkeypatch, fake_torch_home):
    cls = method_class("resnet18-imagenet")
    config = build_config(cls, SMALL)
    assert config.weights == "imagenet"  # the default
    name, _ = weights_file_name("resnet18")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty cache: the error names the file
    with pytest.raises(MedadError, match=name):
        cls(config, channels=1)
    monkeypatch.setenv("TORCH_HOME", str(fake_torch_home))
    method = cls(config, channels=1)
    saved = torch.load(fake_torch_home / "hub" / "checkpoints" / name, weights_only=True)
    torch.testing.assert_close(method.embedding.frozen.backbone.conv1.weight, saved["conv1.weight"])
