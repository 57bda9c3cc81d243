"""Methods on pretrained features beyond the study (STFPM, EfficientAD, AnomalyDINO): their
papers' defaults, their loss and score rules on small cases, and a brief run on synth-brain
(random-init backbones at a small size) that ranks planted lesions above normals, with maps."""

from __future__ import annotations

import pytest
import torch

from medad.evaluation import evaluate
from medad.methods.base import build_config, method_class
from tests.methods.common import train_and_predict


def test_stfpm_defaults_and_optimiser_are_the_papers():
    cls = method_class("stfpm")
    c = build_config(cls, {})
    assert (c.epochs, c.batch_size, c.image_size, c.backbone, c.weights) == (
        100, 32, 256, "resnet18", "imagenet"
    )  # fmt: skip
    assert c.layers == ("layer1", "layer2", "layer3") and c.image_score == "max"
    method = cls(build_config(cls, {"weights": "random", "image_size": 64}), 1)
    (stage,) = method.stages()
    (phase,) = stage.phases
    options = (phase.optimizer, phase.lr, phase.momentum, phase.weight_decay)
    assert options == ("sgd", 0.4, 0.9, 1e-4)
    assert {id(p) for p in phase.params} == {id(p) for p in method.student.parameters()}
    assert cls.family == "feature-reference"
    assert not any(k.startswith("teacher") for k in method.state_dict())


def test_stfpm_loss_and_map_are_the_normalised_squared_distances():
    cls = method_class("stfpm")
    method = cls(build_config(cls, {"weights": "random", "image_size": 64}), 1).eval()
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        t, s = method.features(x)
    expected_loss = 0.0
    expected_map = torch.ones(2, 64, 64)
    for a, b in zip(t, s, strict=True):
        d = ((torch.nn.functional.normalize(a, dim=1) - torch.nn.functional.normalize(b, dim=1))
             ** 2).sum(1)  # fmt: skip
        expected_loss += float(d.mean())
        up = torch.nn.functional.interpolate(d[:, None], size=(64, 64), mode="bilinear")
        expected_map = expected_map * up[:, 0]
    with torch.no_grad():
        loss = method.training_loss(x, "train", "model")
    assert float(loss) == pytest.approx(expected_loss, rel=1e-4)
    out = method.score(x)
    torch.testing.assert_close(out.maps, expected_map, rtol=1e-3, atol=1e-6)
    torch.testing.assert_close(out.image_scores, expected_map.flatten(1).amax(1), rtol=1e-3, atol=0)


def test_stfpm_ranks_lesions():
    overrides = {"weights": "random", "image_size": 64, "epochs": 5, "batch_size": 16}
    _, pred = train_and_predict("stfpm", overrides, seed=0)
    assert pred.maps is not None and pred.maps.shape[1:] == (64, 64)
    metrics = evaluate(pred)
    assert metrics["image_auroc"] > 0.6, metrics
