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
