"""One-stage SSL methods (CutPaste one-stage, FPI, PII, NSA) and DRAEM.

Each method trains briefly on a small synth-brain and must rank the planted lesions above normal
images; hand-made checks cover the crop / paste-back geometry, the BCE target, DRAEM's focal loss
and determinism per seed.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from medad.anomalies import make_anomaly
from medad.errors import MedadError
from medad.methods.base import build_config, method_class
from medad.methods.draem import focal_loss
from medad.methods.parts.resnet_unet import ResNetUNet
from medad.methods.parts.synthetic_batch import source_offset
from medad.methods.ssl_onestage import MEDIANOMALY_INTERPOLATION
from tests.methods.common import method_metrics, train_and_predict

#: the paper's 256 / 230 / 224 geometry scaled to the 64 px test images
SMALL_SSL = {"image_size": 64, "train_center_crop": 58, "crop_size": 56}
#: budgets that pass on the small synth-brain (seed 0). The study's plain encoder-decoder (no
#: skips) and the study's generators need more than these budgets: NSA ranks at 0.40-0.67 image
#: AUROC (96-192 images, one or two threads; pixel AUROC 0.86-0.90), so NSA's test trains its
#: generator, loss and score with the U-Net skip option (0.84 image, 0.99 pixel AUROC on the 96
#: images). CutPaste (one-stage, shifted patches) 0.56 on 96 images, 0.76 with 192 images (50 + 50
#: test images); DRAEM 0.82.
MORE_IMAGES = {"n_train": 192, "n_test_normal": 32, "n_test_abnormal": 32, "size": 64}
BUDGETS = {
    "cutpaste-1stage": {**SMALL_SSL, "epochs": 8, "batch_size": 8},
    "nsa": {**SMALL_SSL, "epochs": 8, "batch_size": 8, "skip_connections": True},
    "draem": {
        "image_size": 64,
        "reconstructive_width": 16,
        "discriminative_width": 8,
        "smoothing_kernel": 5,
        "epochs": 8,
        "batch_size": 8,
        "lr": 1e-3,
    },
}
DATA = {
    "cutpaste-1stage": {**MORE_IMAGES, "n_test_normal": 50, "n_test_abnormal": 50},
}
PIXEL_KEYS = ("pixel_auroc", "pixel_ap", "best_dice", "aupro")


@pytest.mark.parametrize("name", list(BUDGETS))
def test_ranks_planted_lesions(name: str) -> None:
    metrics = method_metrics(name, BUDGETS[name], data_options=DATA.get(name))
    assert metrics["image_auroc"] > 0.6, metrics
    for key in PIXEL_KEYS:
        assert np.isfinite(metrics[key]), (key, metrics)


def test_fpi_ranks_planted_lesions_by_its_map_maximum() -> None:
    """FPI with MedIAnomaly's patch setting, scored by the map's maximum (``image_score="max"``).

    Measured at seed 0, 64 px geometry, 256 training images, 8 epochs, with U-Net skips: max
    0.66 (the study's plain encoder-decoder: 0.48 at this budget); before the skips were
    dropped from the default, top 2 % 0.73, the paper's mean rule 0.57. An
    interpolation of two normal images never leaves their intensity range, so the network learns
    that brighter-than-normal tissue is not "foreign" and its map has a hole on the hyperintense
    lesions, lit around them; the mean is dominated by the diffuse response on normal anatomy."""
    data = {"n_train": 256, "n_test_normal": 50, "n_test_abnormal": 50, "size": 64}
    overrides = {
        **SMALL_SSL,
        "epochs": 8,
        "batch_size": 8,
        "image_score": "max",
        "skip_connections": True,
    }
    metrics = method_metrics("fpi", overrides, data_options=data)
    assert metrics["image_auroc"] > 0.6, metrics
    for key in PIXEL_KEYS:
        assert np.isfinite(metrics[key]), (key, metrics)


def test_pii_ranks_planted_lesions() -> None:
    """PII as MedIAnomaly runs it (mixed-gradient cloning, the stronger gradient weighted by
    alpha). With the study's plain encoder-decoder it localises the lesions at this budget (pixel
    AUROC 0.86, seed 0, 192 images, 6 epochs) but ranks images near chance (0.45-0.55, by thread
    count); with the U-Net skip option, tested here, 0.78 image and 0.98 pixel AUROC. Before the
    alpha fix, when the blend ignored alpha, it ranked at 0.94. Tan et al.'s interpolated
    gradients (``"blend": "interpolated"``) rank the same lesions below normals (0.30, see
    `PIIConfig`)."""
    data = {"n_train": 192, "n_test_normal": 50, "n_test_abnormal": 50, "size": 64}
    config = {**SMALL_SSL, "epochs": 6, "batch_size": 8, "skip_connections": True}
    metrics = method_metrics("pii", config, data_options=data)
    assert metrics["image_auroc"] > 0.6, metrics
    assert metrics["pixel_auroc"] > 0.8, metrics


class PixelLogit(torch.nn.Module):
    """A stand-in network whose logit at each pixel is a function of that pixel's value."""

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return (t - 0.5) * 8.0


def _method(name: str, **overrides):
    cls = method_class(name)
    torch.manual_seed(0)
    return cls(build_config(cls, {**SMALL_SSL, **overrides}), 1)


def test_map_of_the_crop_lands_on_its_pixels() -> None:
    method = _method("nsa").eval()
    method.net = PixelLogit()
    x = torch.rand(3, 1, 64, 64)
    out = method.score(x)
    assert out.maps is not None and out.maps.shape == (3, 64, 64)
    inside = torch.sigmoid((x[:, 0, 4:60, 4:60] - 0.5) * 8.0)
    torch.testing.assert_close(out.maps[:, 4:60, 4:60], inside)
    border = out.maps.clone()
    border[:, 4:60, 4:60] = 0
    assert border.abs().max() == 0
    torch.testing.assert_close(out.image_scores, inside.flatten(1).mean(1))


def test_image_score_rules() -> None:
    x = torch.rand(2, 1, 64, 64)
    scores = {}
    for rule in ("mean", "max", "topk"):
        method = _method("fpi", image_score=rule, topk_fraction=0.1).eval()
        method.net = PixelLogit()
        scores[rule] = method.score(x).image_scores
    prob = torch.sigmoid((x[:, 0, 4:60, 4:60] - 0.5) * 8.0).flatten(1)
    torch.testing.assert_close(scores["max"], prob.amax(1))
    k = round(0.1 * 56 * 56)
    torch.testing.assert_close(scores["topk"], prob.sort(1, descending=True).values[:, :k].mean(1))


def test_train_transform_rotates_and_crops() -> None:
    method = _method("pii", rotation=0.0)
    x = torch.arange(64.0).repeat(64, 1)[None, None].repeat(4, 1, 1, 1) / 64  # column index
    out = method.train_transform(x)
    assert out.shape == (4, 1, 56, 56)
    # without rotation every crop is a window of the central 58 px: first column 3, 4 or 5
    assert set((out[:, 0, 0, 0] * 64).round().tolist()) <= {3.0, 4.0, 5.0}
    method = _method("pii", rotation=3.0)
    assert method.train_transform(x).shape == (4, 1, 56, 56)


def test_bce_target_is_the_generators_label() -> None:
    method = _method("fpi").eval()
    x = torch.rand(4, 1, 56, 56)
    method.rng = np.random.default_rng(7)
    loss = method.training_loss(x, "train", "model")

    rng = np.random.default_rng(7)
    images = x[:, 0].numpy()
    k = source_offset(4, rng)
    pairs = [
        make_anomaly("fpi", images[i], rng, source=images[(i + k) % 4], **MEDIANOMALY_INTERPOLATION)
        for i in range(4)
    ]
    anomalous = torch.from_numpy(np.stack([p[0] for p in pairs]))[:, None]
    label = torch.from_numpy(np.stack([p[1] for p in pairs]))
    assert label.max() > 0
    method.rng = np.random.default_rng(7)
    synth_x, synth_label = method.synthesize(x)
    torch.testing.assert_close(synth_x, anomalous)
    torch.testing.assert_close(synth_label, label)
    with torch.no_grad():
        expected = F.binary_cross_entropy_with_logits(method.net(anomalous)[:, 0], label)
    torch.testing.assert_close(loss.detach(), expected)


def test_focal_loss_matches_hand_formula() -> None:
    gen = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(2, 2, 5, 5, generator=gen), dim=1)
    target = (torch.rand(2, 5, 5, generator=gen) > 0.5).float()
    smooth, gamma = 1e-5, 2.0
    total = 0.0
    for b in range(2):
        for i in range(5):
            for j in range(5):
                t = int(target[b, i, j])
                onehot = [smooth, 1 - smooth] if t == 1 else [1 - smooth, smooth]
                pt = onehot[0] * float(probs[b, 0, i, j]) + onehot[1] * float(probs[b, 1, i, j])
                pt += smooth
                total += -((1 - pt) ** gamma) * np.log(pt)
    assert float(focal_loss(probs, target, gamma)) == pytest.approx(total / 50, rel=1e-5)
    # γ = 0 is the (smoothed) cross-entropy
    ce = F.nll_loss(probs.log(), target.long())
    assert float(focal_loss(probs, target, 0.0)) == pytest.approx(float(ce), abs=1e-4)


@pytest.mark.parametrize("name", ["nsa", "draem"])
def test_training_is_deterministic_per_seed(name: str) -> None:
    overrides = {**BUDGETS[name], "epochs": 1}
    tiny = {"n_train": 16, "n_test_normal": 4, "n_test_abnormal": 4, "size": 64}
    runs = [train_and_predict(name, overrides, data_options=tiny, seed=s)[1] for s in (3, 3, 4)]
    np.testing.assert_array_equal(runs[0].image_scores, runs[1].image_scores)
    np.testing.assert_array_equal(runs[0].maps, runs[1].maps)
    assert not np.array_equal(runs[0].image_scores, runs[2].image_scores)


def test_config_checks() -> None:
    cls = method_class("nsa")
    with pytest.raises(MedadError, match="train_center_crop"):
        build_config(cls, {"image_size": 64, "crop_size": 60, "train_center_crop": 58})
    with pytest.raises(MedadError, match="unknown parameter"):
        cls(build_config(cls, {**SMALL_SSL, "anomaly_params": {"nope": 1}}), 1)
    with pytest.raises(MedadError, match="smoothing_kernel"):
        build_config(method_class("draem"), {"smoothing_kernel": 4})


def test_network_output_matches_input_size() -> None:
    for skips in (True, False):
        net = ResNetUNet(1, skips=skips).eval()
        with torch.no_grad():
            assert net(torch.rand(2, 1, 56, 56)).shape == (2, 1, 56, 56)
            assert net(torch.rand(1, 1, 50, 70)).shape == (1, 1, 50, 70)


def test_network_is_the_studys_plain_encoder_decoder_by_default() -> None:
    """MedIAnomaly's ``resnet18_enc_dec`` has no skip connections; U-Net skips are an option."""
    for name in ("cutpaste-1stage", "fpi", "pii", "nsa"):
        cls = method_class(name)
        assert not cls(build_config(cls, SMALL_SSL), 1).net.skips
    assert ResNetUNet(1).skips is False
    method = _method("nsa", skip_connections=True)
    assert method.net.skips
    plain, skipped = (sum(p.numel() for p in ResNetUNet(1, skips=s).parameters()) for s in (0, 1))
    assert round(plain / 1e6, 1) == 11.5 and round(skipped / 1e6, 1) == 11.7
