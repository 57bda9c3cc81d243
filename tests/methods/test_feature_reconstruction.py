"""Feature-reconstruction methods (RD, ...): they train on synth-brain with a random-init ResNet18
and rank planted lesions above normals, with a map; their nets match the teacher's shapes."""

from __future__ import annotations

import pytest
import torch

from medad.evaluation import evaluate
from medad.methods.base import build_config, method_class
from medad.methods.parts.reverse_resnet import OneClassBottleneck, ReverseResNet, layout_of
from medad.methods.rd import flat_cosine_loss
from tests.methods.common import train_and_predict

#: a random-init ResNet18 at 64 px (the papers' ImageNet teachers and sizes are too slow here)
SMALL_RD = {"backbone": "resnet18", "weights": "random", "image_size": 64}


@pytest.mark.parametrize("arch", ["resnet18", "wide_resnet50_2"])
def test_bottleneck_and_student_rebuild_the_teachers_shapes(arch):
    layout = layout_of(arch)
    c1, c2, c3 = layout.channels
    feats = [torch.rand(2, c, 32 // 2**i, 32 // 2**i) for i, c in enumerate((c1, c2, c3))]
    ocbe = OneClassBottleneck(layout)
    z = ocbe(feats)
    assert z.shape == (2, 512 * layout.expansion, 4, 4)
    out = ReverseResNet(layout, ocbe.channels)(z)
    assert [o.shape for o in out] == [f.shape for f in feats]


def test_rd_loss_is_the_flattened_cosine_sum():
    a = [torch.randn(3, 4, 5, 5), torch.randn(3, 2, 2, 2)]
    b = [torch.randn(3, 4, 5, 5), torch.randn(3, 2, 2, 2)]
    expected = 0.0
    for x, y in zip(a, b, strict=True):
        for n in range(3):
            u, v = x[n].flatten(), y[n].flatten()
            expected += float(1 - u @ v / u.norm() / v.norm()) / 3
    assert float(flat_cosine_loss(a, b)) == pytest.approx(expected, rel=1e-5)


def test_rd_defaults_are_the_papers():
    c = build_config(method_class("rd"), {})
    assert (c.epochs, c.batch_size, c.lr, c.betas, c.image_size) == (
        200, 16, 0.005, (0.5, 0.999), 256
    )  # fmt: skip
    assert (c.backbone, c.weights, c.combine, c.sigma, c.image_score) == (
        "wide_resnet50_2", "imagenet", "sum", 4.0, "max"
    )  # fmt: skip
    assert method_class("rd").family == "feature-reconstruction"


def test_rd_ranks_lesions_and_keeps_its_teacher_frozen():
    method, pred = train_and_predict("rd", {**SMALL_RD, "epochs": 5}, seed=0)
    assert pred.maps is not None and pred.maps.shape[1:] == (64, 64)
    metrics = evaluate(pred)
    assert metrics["image_auroc"] > 0.6  # 0.695 at seed 0 (pixel AUROC 0.90)
    assert not any(k.startswith("teacher") for k in method.state_dict())
    assert not method.teacher.frozen.training
    (stage,) = method.stages()
    (phase,) = stage.phases
    assert phase.betas == (0.5, 0.999) and phase.optimizer == "adam"
    trained = {id(p) for p in phase.params}
    assert trained == {id(p) for p in method.parameters()}
    assert not trained & {id(p) for p in method.teacher.frozen.parameters()}
