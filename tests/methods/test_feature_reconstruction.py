"""Feature-reconstruction methods (RD, ...): they train on synth-brain with a random-init ResNet18
and rank planted lesions above normals, with a map; their nets match the teacher's shapes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medad.evaluation import evaluate
from medad.methods.base import build_config, method_class
from medad.methods.fae import object_top_mean
from medad.methods.parts.reverse_resnet import OneClassBottleneck, ReverseResNet, layout_of
from medad.methods.rd import flat_cosine_loss
from medad.methods.rdpp import MultiProjection, feature_cloud, reconstruction_loss
from medad.methods.recontrast import hard_mined_cosine
from tests.methods.common import train_and_predict

#: a random-init ResNet18 at 64 px (the papers' ImageNet teachers and sizes are too slow here)
SMALL_RD = {"backbone": "resnet18", "weights": "random", "image_size": 64}


@pytest.mark.parametrize("arch", ["resnet18", "wide_resnet50_2", "efficientnet_lite0"])
def test_bottleneck_and_student_rebuild_the_teachers_shapes(arch):
    layout = layout_of(arch)
    c1, c2, c3 = layout.channels
    feats = [torch.rand(2, c, 32 // 2**i, 32 // 2**i) for i, c in enumerate((c1, c2, c3))]
    ocbe = OneClassBottleneck(layout)
    z = ocbe(feats)
    assert z.shape == (2, 2 * c3, 4, 4)  # RD4AD: 512 × expansion for every ResNet
    out = ReverseResNet(layout, ocbe.channels)(z)
    assert [o.shape for o in out] == [f.shape for f in feats]


def test_rd_student_follows_an_efficientnet_teachers_widths():
    cls = method_class("rd")
    config = build_config(
        cls, {"backbone": "efficientnet_lite0", "weights": "random", "image_size": 64}
    )
    t, s = cls(config, 1).eval().features(torch.rand(2, 1, 64, 64))
    assert [f.shape[1] for f in t] == [24, 40, 112]
    assert [f.shape for f in s] == [f.shape for f in t]


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
    assert metrics["image_auroc"] > 0.6  # 0.72 at seed 0 (pixel AUROC 0.91)
    assert not any(k.startswith("teacher") for k in method.state_dict())
    assert not method.teacher.frozen.training
    (stage,) = method.stages()
    (phase,) = stage.phases
    assert phase.betas == (0.5, 0.999) and phase.optimizer == "adam"
    trained = {id(p) for p in phase.params}
    assert trained == {id(p) for p in method.parameters()}
    assert not trained & {id(p) for p in method.teacher.frozen.parameters()}


def test_fae_defaults_are_the_papers():
    c = build_config(method_class("fae"), {})
    assert (c.batch_size, c.lr, c.image_size, c.hidden, c.dropout, c.ssim_window) == (
        32, 2e-4, 128, (100, 150, 200, 300), 0.1, 5
    )  # fmt: skip
    assert c.epochs * c.steps_per_epoch == 10_000 and c.backbone == "resnet18"


def test_fae_features_are_a_quarter_of_the_input_and_the_ae_keeps_their_shape():
    cls = method_class("fae")
    method = cls(build_config(cls, {"weights": "random", "image_size": 64}), 1).eval()
    f = method.features(torch.rand(2, 1, 64, 64))
    assert f.shape == (2, 64 + 128 + 256, 16, 16)
    assert method.ae(f).shape == f.shape
    assert not any(k.startswith("extractor") for k in method.state_dict())


def test_fae_score_is_the_mean_of_the_objects_top_tenth():
    maps = torch.arange(200.0).view(2, 10, 10)
    x = torch.zeros(2, 1, 10, 10)
    x[0, :, :5] = 1  # object: the first 50 values 0..49 of image 0
    scores = object_top_mean(maps, x, 0.1)
    assert scores[0] == pytest.approx(torch.tensor([45.0, 46, 47, 48, 49]).mean().item())
    assert scores[1] == pytest.approx(torch.arange(190.0, 200).mean().item())  # no object: all


def test_fae_ranks_lesions():
    overrides = {"weights": "random", "image_size": 64, "epochs": 6, "steps_per_epoch": None}
    _, pred = train_and_predict("fae", overrides, seed=0)
    assert pred.maps is not None and pred.maps.shape[1:] == (64, 64)
    assert evaluate(pred)["image_auroc"] > 0.6  # 0.70 at seed 0 (pixel AUROC 0.92)


def test_recontrast_defaults_and_optimiser_are_the_papers():
    cls = method_class("recontrast")
    c = build_config(cls, {})
    assert (c.optimizer, c.lr, c.encoder_lr, c.weight_decay, c.batch_size) == (
        "adamw", 2e-3, 1e-5, 1e-5, 32
    )  # fmt: skip
    assert c.epochs * c.steps_per_epoch == 2000 and (c.alpha_start, c.alpha_end) == (-3.0, 1.0)
    method = cls(build_config(cls, {"weights": "random", "backbone": "resnet18"}), 1)
    (stage,) = method.stages()
    (phase,) = stage.phases
    head, encoder = phase.params
    assert phase.optimizer == "adamw" and phase.lr == 2e-3 and encoder.lr == 1e-5
    assert {id(p) for p in encoder.params} == {id(p) for p in method.encoder.parameters()}
    # the trained encoder starts as the frozen copy and is saved; the copy is not
    for a, b in zip(method.encoder.parameters(), method.frozen.frozen.parameters(), strict=True):
        assert torch.equal(a, b) and a.requires_grad and not b.requires_grad
    keys = method.state_dict()
    assert any(k.startswith("encoder.") for k in keys)
    assert not any(k.startswith("frozen") for k in keys)
    method.prepare(lambda: iter(()))
    assert method.total_iterations == 2000 and method.alpha() == -3.0
    method.iteration = 100
    assert method.alpha() == pytest.approx(-1.0)
    method.iteration = 1500
    assert method.alpha() == 1.0


def test_hard_mining_zeroes_the_gradient_of_easy_points():
    target = torch.randn(2, 4, 3, 3)
    rebuilt = target.clone()
    rebuilt[0, :, 0, 0] = torch.randn(4)  # one hard point, the others rebuilt exactly
    rebuilt.requires_grad_(True)
    hard_mined_cosine([target], [rebuilt], alpha=1.0).backward()
    grad = rebuilt.grad.abs().sum(dim=1)
    assert grad[0, 0, 0] > 0 and grad.sum() == grad[0, 0, 0]
    loss = hard_mined_cosine([target], [rebuilt.detach()], alpha=1.0)
    expected = (
        sum(
            1 - torch.cosine_similarity(target[n].flatten(), rebuilt.detach()[n].flatten(), dim=0)
            for n in range(2)
        )
        / 2
    )
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)


@pytest.mark.slow
def test_recontrast_ranks_lesions():
    # 60 iterations: with hard mining from the 7th on, fewer do not rank at this tiny scale
    overrides = {**SMALL_RD, "epochs": 10, "steps_per_epoch": None, "batch_size": 16}
    method, pred = train_and_predict("recontrast", {**overrides, "image_score": "max"}, seed=0)
    assert pred.maps is not None and pred.maps.shape[1:] == (64, 64)
    # 0.65 at seed 0 (the default mean score 0.615; pixel AUROC 0.84)
    assert evaluate(pred)["image_auroc"] > 0.6
    assert method.iteration == method.total_iterations == 60


def test_rdpp_defaults_and_optimiser_are_the_official_codes():
    cls = method_class("rdpp")
    c = build_config(cls, {})
    assert (c.lr, c.proj_lr, c.betas, c.batch_size, c.image_size, c.backbone) == (
        0.005, 0.001, (0.5, 0.999), 16, 256, "wide_resnet50_2"
    )  # fmt: skip
    assert (c.proj_weight, c.ssot_weight, c.recon_weight, c.contrast_weight) == (0.2, 1, 0.01, 0.1)
    assert (c.sinkhorn_blur, c.sinkhorn_scaling) == (0.05, 0.95)
    assert (c.noise_octaves, c.noise_persistence, c.noise_amplitude) == (6, 0.6, 0.2)
    assert cls.family == "feature-reconstruction"
    method = cls(build_config(cls, {**SMALL_RD, "epochs": 1}), 1)
    (stage,) = method.stages()
    (phase,) = stage.phases
    distill, proj = phase.params
    assert phase.optimizer == "adam" and phase.betas == (0.5, 0.999) and phase.lr == 0.005
    assert distill.lr is None and proj.lr == 0.001
    assert {id(p) for p in proj.params} == {id(p) for p in method.projection.parameters()}
    assert {id(p) for p in distill.params} | {id(p) for p in proj.params} == {
        id(p) for p in method.parameters()
    }
    assert not any(k.startswith("teacher") for k in method.state_dict())


def test_rdpp_projections_keep_each_scales_shape_and_halve_then_quarter_it():
    mpl = MultiProjection((24, 40, 112))
    feats = [torch.rand(2, c, 16 // 2**i, 16 // 2**i) for i, c in enumerate((24, 40, 112))]
    assert [f.shape for f in mpl(feats)] == [f.shape for f in feats]
    convs = [m for m in mpl.scales[2].modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(m.in_channels, m.out_channels) for m in convs] == [
        (112, 56), (56, 28), (28, 56), (56, 112)
    ]  # fmt: skip


def test_rdpp_clouds_are_softmaxed_positions_and_the_recon_loss_is_per_position():
    f = torch.randn(2, 5, 8, 8)
    cloud = feature_cloud(f, grid=4)
    assert cloud.shape == (2, 16, 5)
    torch.testing.assert_close(cloud.sum(-1), torch.ones(2, 16))
    assert feature_cloud(f, grid=32).shape == (2, 64, 5)
    a, b = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    expected = sum(
        1 - float(a[n, :, i, j] @ b[n, :, i, j] / a[n, :, i, j].norm() / b[n, :, i, j].norm())
        for n in range(2) for i in range(4) for j in range(4)
    ) / 32  # fmt: skip
    assert float(reconstruction_loss([a], [b])) == pytest.approx(expected, rel=1e-5)


def test_rdpp_pseudo_anomalies_add_noise_to_one_rectangle_per_image():
    cls = method_class("rdpp")
    method = cls(build_config(cls, SMALL_RD), 1)
    x = torch.rand(4, 1, 64, 64)
    diff = (method.pseudo_anomalies(x) - x)[:, 0]
    for d in diff:
        rows, cols = torch.nonzero(d, as_tuple=True)
        h, w = int(rows.max() - rows.min()) + 1, int(cols.max() - cols.min()) + 1
        assert 2 <= h < 8 and 2 <= w < 8 and len(rows) > 0.9 * h * w


def test_rdpp_ranks_lesions_and_trains_its_projections():
    # a coarser Sinkhorn (clouds of ≤ 8 × 8 positions, ε-scaling 0.8) keeps the test short
    overrides = {**SMALL_RD, "epochs": 5, "ssot_grid": 8, "sinkhorn_scaling": 0.8}
    method, pred = train_and_predict("rdpp", overrides, seed=0)
    assert pred.maps is not None and pred.maps.shape[1:] == (64, 64)
    assert evaluate(pred)["image_auroc"] > 0.6  # 0.71 at seed 0 (pixel AUROC 0.92)
    method.rng = np.random.default_rng(0)  # then its permutation of 4 pairs image 1 with 3
    losses = method.train().training_loss(torch.rand(4, 1, 64, 64), "train", "model")
    assert set(losses) == {"loss", "distill", "ssot", "recon", "contrast"}
    assert all(torch.isfinite(v) for v in losses.values()) and losses["ssot"] > 0
