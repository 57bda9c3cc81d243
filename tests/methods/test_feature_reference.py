"""Methods on pretrained features beyond the study (STFPM, EfficientAD, AnomalyDINO): their
papers' defaults, their loss and score rules on small cases, and a brief run on synth-brain
(random-init backbones at a small size) that ranks planted lesions above normals, with maps."""

from __future__ import annotations

import numpy as np
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
    assert metrics["image_auroc"] > 0.6, metrics  # 0.80 at seed 0 (pixel AUROC 0.93)


#: EfficientAD at 64 px with 30 steps of 4 images (the paper's 70 000 steps of one 256 px image
#: at lr 1e-4 are far too slow here; so short a budget needs a higher rate)
SMALL_EAD = {"image_size": 64, "epochs": 3, "steps_per_epoch": 10, "batch_size": 4, "lr": 3e-3}


def test_efficientad_defaults_are_the_papers():
    cls = method_class("efficientad")
    c = build_config(cls, {})
    assert (c.epochs * c.steps_per_epoch, c.batch_size, c.lr, c.weight_decay) == (
        70_000, 1, 1e-4, 1e-5
    )  # fmt: skip
    assert (c.schedule.kind, c.schedule.per, c.schedule.milestones, c.schedule.gamma) == (
        "step", "step", (0.95,), 0.1
    )  # fmt: skip
    assert (c.image_size, c.out_channels, c.hard_quantile, c.map_quantiles) == (
        256, 384, 0.999, (0.9, 0.995)
    )  # fmt: skip
    assert (c.validation_fraction, c.weights, c.imagenet_dir, c.image_score) == (
        0.1, "random", None, "max"
    )  # fmt: skip
    assert cls.family == "feature-reference"


@pytest.mark.parametrize("size", [64, 256])
def test_efficientad_networks_match_the_papers_shapes(size):
    from medad.methods.efficientad import EfficientADAutoencoder, pdn_output_size, pdn_small

    x = torch.rand(1, 3, size, size)
    out = pdn_small(384)(x)
    assert out.shape[-1] == pdn_output_size(size) == size // 4 - 8  # 56 at 256 px (paper)
    assert EfficientADAutoencoder(384, size)(x).shape == out.shape
    if size == 256:
        assert out.shape == (1, 384, 56, 56)


def test_quantile_and_hard_loss():
    from medad.methods.efficientad import hard_feature_loss, quantile

    values = torch.randn(3, 5, 7)
    for q in (0.0, 0.5, 0.9, 0.999, 1.0):
        assert float(quantile(values, q)) == pytest.approx(float(torch.quantile(values, q)))
    d = torch.arange(1000.0)
    assert float(hard_feature_loss(d, 0.99)) == pytest.approx(float(d[d >= 989.01].mean()))


def test_holdout_is_a_seeded_disjoint_part_of_the_train_split():
    from medad.data.loading import ArraySplit
    from medad.engine import split_holdout

    n = 96
    data = ArraySplit(
        np.arange(n, dtype=np.uint8).reshape(n, 1, 1, 1), np.zeros(n, dtype=np.int64), None,
        [str(i) for i in range(n)],
    )  # fmt: skip
    train, held = split_holdout(data, 0.1, seed=0)
    assert held is not None and (len(train), len(held)) == (86, 10)  # the reference's 90 / 10
    assert set(train.ids).isdisjoint(held.ids) and set(train.ids) | set(held.ids) == set(data.ids)
    assert split_holdout(data, 0.1, seed=0)[1].ids == held.ids != split_holdout(data, 0.1, 1)[1].ids
    assert split_holdout(data, 0.0, seed=0) == (data, None)


def test_engine_trains_and_fits_without_the_held_out_images_and_calibrates_on_them():
    from medad import engine
    from medad.data.loading import ArraySplit, Preprocess
    from medad.methods.base import Method, MethodConfig

    seen: dict[str, set[int]] = {"train": set(), "fit": set(), "calibrate": set()}

    def ids(x: torch.Tensor) -> set[int]:
        return {int(round(float(v) * 255)) for v in x[:, 0, 0, 0]}

    class Recorder(Method):
        def __init__(self, config: MethodConfig, channels: int) -> None:
            super().__init__(config, channels)
            self.w = torch.nn.Parameter(torch.zeros(1))

        def holdout_fraction(self) -> float:
            return 0.25

        def training_loss(self, x, stage, phase):  # type: ignore[no-untyped-def]
            seen["train"] |= ids(x)
            return (self.w**2).sum()

        def fit(self, batches) -> None:  # type: ignore[no-untyped-def]
            seen["fit"] |= set().union(*(ids(x) for x in batches()))

        def calibrate(self, batches) -> None:  # type: ignore[no-untyped-def]
            seen["calibrate"] |= set().union(*(ids(x) for x in batches()))

    n = 20
    images = np.arange(n, dtype=np.uint8).reshape(n, 1, 1, 1).repeat(16, 2).repeat(16, 3)
    data = ArraySplit(images, np.zeros(n, dtype=np.int64), None, [str(i) for i in range(n)])
    method = Recorder(MethodConfig(epochs=2, batch_size=4, image_size=16), 1)
    engine.train(method, data, Preprocess(16, 1, value_range=(0.0, 1.0)), progress=False)
    assert len(seen["calibrate"]) == 5 and seen["train"] == seen["fit"]
    assert seen["train"] | seen["calibrate"] == set(range(n))
    assert not seen["train"] & seen["calibrate"]


@pytest.mark.filterwarnings("ignore:efficientad. the teacher is a fixed random PDN")
def test_efficientad_teacher_file_and_penalty_folder(tmp_path):
    from PIL import Image

    from medad.errors import MedadError
    from medad.methods.efficientad import pdn_small

    cls = method_class("efficientad")
    teacher = pdn_small(384)
    torch.save(teacher.state_dict(), tmp_path / "teacher_small.pth")
    method = cls(
        build_config(cls, {**SMALL_EAD, "weights": str(tmp_path / "teacher_small.pth")}), 1
    )
    for a, b in zip(teacher.parameters(), method.teacher.frozen.parameters(), strict=True):
        assert torch.equal(a, b) and not b.requires_grad
    assert not any(k.startswith("teacher.") for k in method.state_dict())
    (tmp_path / "bad.pth").write_bytes(b"not weights")
    with pytest.raises(MedadError, match="bad.pth"):
        cls(build_config(cls, {**SMALL_EAD, "weights": str(tmp_path / "bad.pth")}), 1)

    folder = tmp_path / "imagenet" / "n01440764"
    folder.mkdir(parents=True)
    for i in range(2):
        Image.fromarray(np.full((40, 50, 3), 60 * i, np.uint8)).save(folder / f"{i}.JPEG")
    method = cls(build_config(cls, {**SMALL_EAD, "imagenet_dir": str(tmp_path / "imagenet")}), 1)
    x = torch.rand(2, 1, 64, 64)
    with pytest.warns(UserWarning, match="random PDN"):
        method.prepare(lambda: iter([x]))
    losses = method.training_loss(x, "train", "model")
    assert set(losses) == {"loss", "hard", "penalty", "ae", "stae"}
    off = cls(build_config(cls, SMALL_EAD), 1)
    with pytest.warns(UserWarning, match="ImageNet penalty off"):  # (and the random teacher's)
        off.prepare(lambda: iter([x]))
    assert "penalty" not in off.training_loss(x, "train", "model")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MedadError, match="empty: no JPEG/PNG"):
        cls(build_config(cls, {**SMALL_EAD, "imagenet_dir": str(tmp_path / "empty")}), 1).prepare(
            lambda: iter([x])
        )


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_efficientad_ranks_lesions_with_maps_normalised_on_held_out_images():
    method, pred = train_and_predict("efficientad", SMALL_EAD, seed=0)
    assert pred.maps is not None and pred.maps.shape[1:] == (64, 64)
    (qa_st, qb_st), (qa_ae, qb_ae) = method.map_quantiles.tolist()
    assert 0 <= qa_st < qb_st and 0 <= qa_ae < qb_ae
    metrics = evaluate(pred)
    # 0.74 at seed 0 (pixel AUROC 0.74); at lr 1e-3 0.70, at the paper's 1e-4 only 0.58
    assert metrics["image_auroc"] > 0.6, metrics


#: a random-init DINOv2 ViT-S/14 at 112 px: 8 × 8 patches (the paper's 448 px is too slow here)
SMALL_DINO = {"weights": "random", "image_size": 112}


def test_anomalydino_defaults_are_the_papers():
    cls = method_class("anomalydino")
    c = build_config(cls, {})
    assert (c.backbone, c.weights, c.image_size, c.shots, c.top_fraction, c.sigma) == (
        "dinov2_vits14", "pretrained", 448, None, 0.01, 4.0
    )  # fmt: skip
    assert (c.masking, c.mask_threshold, c.epochs) == (False, 10.0, 0)
    assert cls.family == "feature-reference"


def test_vit_weights_missing_name_the_file_and_the_cache(tmp_path, monkeypatch):
    from medad.errors import MedadError
    from medad.methods.parts import vit

    monkeypatch.setattr(vit, "hub_cache_dir", lambda: tmp_path / "hub")
    cls = method_class("anomalydino")
    with pytest.raises(MedadError, match=r"model\.safetensors .*timm/vit_small_patch14_dinov2"):
        cls(build_config(cls, {"image_size": 112}), 1)
    with pytest.raises(MedadError, match="nope.pth: weights file not found"):
        cls(build_config(cls, {"image_size": 112, "weights": str(tmp_path / "nope.pth")}), 1)
    (tmp_path / "bad.pth").write_bytes(b"not weights")
    with pytest.raises(MedadError, match="bad.pth: cannot read"):
        cls(build_config(cls, {"image_size": 112, "weights": str(tmp_path / "bad.pth")}), 1)


def test_vit_backbones_give_patch_maps_and_load_their_own_files(tmp_path):
    from medad.methods.parts.vit import VIT_BACKBONES, FrozenViT

    assert {n: b.timm_name for n, b in VIT_BACKBONES.items()} == {
        "dino_vits16": "vit_small_patch16_224.dino",
        "dinov2_vits14": "vit_small_patch14_dinov2.lvd142m",
        "mae_vitb16": "vit_base_patch16_224.mae",
    }
    vit = FrozenViT("dino_vits16", "random", 64)
    x = torch.rand(2, 1, 64, 64)
    f = vit(x)
    assert f.shape == (2, 384, 4, 4) and vit.patch_size == 16
    torch.save(vit.frozen.vit.state_dict(), tmp_path / "dino.pth")
    again = FrozenViT("dino_vits16", str(tmp_path / "dino.pth"), 64)
    torch.testing.assert_close(again(x), f)
    # grayscale is replicated at the door: the same as the RGB image of three equal channels
    torch.testing.assert_close(vit(x.expand(-1, 3, -1, -1)), f)
    assert not list(vit.parameters()) and not vit.state_dict()


def test_top_fraction_and_nearest_distance_are_the_brute_force_ones(monkeypatch):
    from medad.methods import anomalydino as ad

    d = torch.rand(3, 250)
    expected = torch.sort(d, dim=1, descending=True).values[:, :2].mean(1)  # ⌊1 % · 250⌋ = 2
    torch.testing.assert_close(ad.mean_top_fraction(d, 0.01), expected)
    torch.testing.assert_close(ad.mean_top_fraction(d[:, :50], 0.01), d[:, :50].amax(1))
    monkeypatch.setattr(ad, "QUERY_CHUNK", 7)
    monkeypatch.setattr(ad, "BANK_CHUNK", 5)
    q, bank = torch.randn(20, 8), torch.nn.functional.normalize(torch.randn(23, 8), dim=1)
    cos = torch.nn.functional.cosine_similarity(q[:, None], bank[None], dim=2)
    torch.testing.assert_close(ad.nearest_cosine_distance(q, bank), 1 - cos.amax(1))


def test_background_mask_keeps_the_object_and_flips_the_component():
    from medad.methods.anomalydino import background_mask

    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(2, 16, 10, 10, generator=gen) * 0.1
    direction = torch.randn(16, generator=gen)
    feats[:, :, 3:7, 3:7] += 30 * direction[:, None, None] / direction.norm()
    expected = torch.zeros(10, 10, dtype=torch.bool)
    expected[2:8, 2:8] = True  # the object, dilated by one patch (closing keeps it)
    for mask in background_mask(feats, threshold=10.0):
        assert torch.equal(mask, expected)


def test_anomalydino_few_shot_bank_checkpoint_and_masking():
    cls = method_class("anomalydino")
    method = cls(build_config(cls, {**SMALL_DINO, "shots": 2}), 1).eval()
    images = torch.rand(5, 1, 112, 112)
    method.fit(lambda: iter([images[:3], images[3:]]))
    assert method.bank.shape == (2 * 64, 384)
    out = method.score(images)
    assert out.maps.shape == (5, 112, 112) and out.image_scores.shape == (5,)
    again = cls(build_config(cls, {**SMALL_DINO, "shots": 2}), 1).eval()
    again.load_state_dict(method.state_dict())
    torch.testing.assert_close(again.score(images).image_scores, out.image_scores)
    masked = cls(build_config(cls, {**SMALL_DINO, "masking": True, "mask_threshold": 1e9}), 1)
    masked.eval().fit(lambda: iter([images]))
    assert float(masked.score(images).image_scores.abs().max()) == 0.0  # every patch masked


def test_anomalydino_ranks_lesions():
    _, pred = train_and_predict("anomalydino", SMALL_DINO, seed=0)
    assert pred.maps is not None and pred.maps.shape[1:] == (112, 112)
    metrics = evaluate(pred)
    assert metrics["image_auroc"] > 0.6, metrics  # 0.92 at seed 0 (pixel AUROC 0.98)
