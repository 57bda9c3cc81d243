"""The shared frozen backbone: frozen, in eval mode, outside the checkpoint, 1 → 3 channels."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from medad.errors import MedadError
from medad.methods.parts.backbone import BackboneFeatures, FrozenBackbone
from medad.methods.parts.pretrained import IMAGENET_MEAN, IMAGENET_STD, weights_file_name

LAYERS = ["layer1", "layer2", "layer3"]


class Owner(nn.Module):
    """A method-like module: one trainable layer beside a frozen backbone."""

    def __init__(self) -> None:
        super().__init__()
        self.teacher = FrozenBackbone("resnet18", LAYERS, "random")
        self.head = nn.Conv2d(1, 1, 1)


def test_features_of_named_layers_equal_the_torchvision_model():
    torch.manual_seed(0)
    backbone = FrozenBackbone("resnet18", LAYERS, "random", value_range=(0.0, 1.0))
    assert backbone.channels == [64, 128, 256]
    reference = torchvision.models.resnet18(weights=None).eval()
    reference.load_state_dict(backbone.frozen.backbone.state_dict(), strict=False)
    x = torch.rand(2, 1, 32, 32)
    mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
    h = (x.repeat(1, 3, 1, 1) - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)  # replicated at door
    h = reference.maxpool(reference.relu(reference.bn1(reference.conv1(h))))
    expected = []
    for name in LAYERS:
        h = getattr(reference, name)(h)
        expected.append(h)
    with torch.no_grad():
        got = backbone(x)
    assert [tuple(f.shape) for f in got] == [(2, 64, 8, 8), (2, 128, 4, 4), (2, 256, 2, 2)]
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b)
    # three identical channels are the replicated grayscale image
    torch.testing.assert_close(backbone(x.repeat(1, 3, 1, 1))[2], got[2])


def test_frozen_in_eval_mode_after_train_and_outside_parameters_and_checkpoint():
    owner = Owner().train()
    frozen = list(owner.teacher.frozen.parameters())
    assert frozen and not any(p.requires_grad for p in frozen)
    assert not owner.teacher.frozen.training
    assert all(not m.training for m in owner.teacher.frozen.modules())
    ids = {id(p) for p in frozen}
    assert [id(p) for p in owner.parameters()] == [id(p) for p in owner.head.parameters()]
    assert not ids & {id(t) for t in owner.state_dict().values()}
    assert set(owner.state_dict()) == {"head.weight", "head.bias"}
    # BatchNorm running statistics do not move in "training" mode
    bn = owner.teacher.frozen.backbone.bn1
    before = bn.running_mean.clone()
    owner.teacher(torch.rand(4, 1, 32, 32) * 5)
    assert torch.equal(bn.running_mean, before)
    # a checkpoint loads into a fresh owner (strict), the backbone rebuilt from its weights
    again = Owner()
    again.load_state_dict(owner.state_dict())
    owner.double()
    assert owner.teacher.frozen.backbone.conv1.weight.dtype == torch.float64


def test_trainable_features_train_and_are_saved():
    net = BackboneFeatures("resnet18", "layer2", "random")
    assert net.channels == 128 and all(p.requires_grad for p in net.parameters())
    assert "backbone.conv1.weight" in net.state_dict()
    assert not any(k.startswith("backbone.layer3") for k in net.state_dict())  # truncated
    net.train()
    assert net.backbone.bn1.training


def test_unknown_layer_and_missing_weights_are_named(tmp_path, monkeypatch):
    with pytest.raises(MedadError, match="no layer layer9"):
        FrozenBackbone("resnet18", ["layer1", "layer9"], "random")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    name, _ = weights_file_name("wide_resnet50_2")
    with pytest.raises(MedadError, match=name):
        FrozenBackbone("wide_resnet50_2", LAYERS, "imagenet")
    with pytest.raises(MedadError, match="teacher.pth"):
        FrozenBackbone("resnet18", LAYERS, str(tmp_path / "teacher.pth"))


def test_random_weights_are_one_fixed_network_and_leave_the_global_seed_alone():
    torch.manual_seed(1)
    a = FrozenBackbone("resnet18", "layer1", "random")
    after_a = torch.rand(3)
    torch.manual_seed(1)
    expected = torch.rand(3)
    torch.manual_seed(2)
    b = FrozenBackbone("resnet18", "layer1", "random")
    assert torch.equal(after_a, expected)  # building it drew nothing from the global generator
    for p, q in zip(a.frozen.parameters(), b.frozen.parameters(), strict=True):
        assert torch.equal(p, q)  # so a checkpoint reloads against the same features
