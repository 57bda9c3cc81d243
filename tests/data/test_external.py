"""MVTec AD and BMAD layouts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medad.data.base import get_dataset
from medad.data.loading import Preprocess, load_split
from medad.errors import MedadError
from tests.data import raw_sources as rs
from tests.test_cli import write_png

RNG = np.random.default_rng(1)


def image(path: Path, rng: np.random.Generator, rgb: bool = False) -> Path:
    return rs.write_image(path, rng, size=(20, 24), rgb=rgb)


def mask(path: Path, size=(20, 24)) -> None:
    m = np.zeros((size[1], size[0]), np.uint8)
    m[2:8, 3:9] = 255
    write_png(path, m)


def mvtec_category(root: Path) -> Path:
    for i in range(3):
        image(root / "train" / "good" / f"{i:03d}.png", RNG, rgb=True)
    image(root / "test" / "good" / "000.png", RNG, rgb=True)
    for defect in ("crack", "scratch"):
        for i in range(2):
            image(root / "test" / defect / f"{i:03d}.png", RNG, rgb=True)
            mask(root / "ground_truth" / defect / f"{i:03d}_mask.png")
    return root


def test_mvtec_category_from_the_archive_folder(tmp_path):
    mvtec_category(tmp_path / "mvtec_anomaly_detection" / "bottle")
    ds = get_dataset("mvtec", tmp_path, category="bottle")
    test = ds.records("test")
    assert [r.label for r in test] == [0, 1, 1, 1, 1] and test[0].mask is None
    assert test[1].mask.name == "000_mask.png" and test[1].mask.parent.name == "crack"
    assert ds.channels == 3 and ds.has_masks
    arrays = load_split(ds, "test", Preprocess(size=16, channels=3))
    assert arrays.masks[1:].any() and not arrays.masks[0].any()
    # the category folder itself is a valid root
    assert (
        len(get_dataset("mvtec", tmp_path / "mvtec_anomaly_detection" / "bottle").records("test"))
        == 5
    )


def test_mvtec_errors(tmp_path):
    root = mvtec_category(tmp_path / "bottle")
    with pytest.raises(MedadError, match="categories here: bottle"):
        get_dataset("mvtec", tmp_path)
    with pytest.raises(MedadError, match="'carpet' not found"):
        get_dataset("mvtec", tmp_path, category="carpet")
    (root / "ground_truth" / "scratch" / "001_mask.png").unlink()
    with pytest.raises(MedadError, match="scratch/001.png: no mask"):
        get_dataset("mvtec", tmp_path, category="bottle")


def bmad_pixel_subset(root: Path, nested_class_first: bool = True) -> Path:
    """BMAD Brain: <split>/<class>/img (+ label for Ungood), train/good/img."""
    for i in range(3):
        image(root / "train" / "good" / "img" / f"0000{i}_60.png", RNG)
    for split in ("valid", "test"):
        for cls in ("good", "Ungood"):
            for i in range(2):
                name = f"0010{i}_{70 + i}.png"
                if nested_class_first:
                    img, lab = root / split / cls / "img", root / split / cls / "label"
                else:
                    img, lab = root / split / "img" / cls, root / split / "label" / cls
                image(img / name, RNG)
                if cls == "Ungood":
                    mask(lab / name)
    return root


@pytest.mark.parametrize("nested_class_first", [True, False])
def test_bmad_pixel_level_subset(tmp_path, nested_class_first):
    bmad_pixel_subset(tmp_path / "Brain_AD", nested_class_first)
    ds = get_dataset("bmad", tmp_path, subset="brain")
    assert ds.has_masks and ds.channels == 1 and ds.modality == "brain MRI"
    test = ds.records("test")
    assert [r.label for r in test] == [0, 0, 1, 1]
    assert all(r.mask is not None and r.mask.name == Path(r.image).name for r in test[2:])
    valid = get_dataset("bmad", tmp_path, subset="Brain", split="valid").records("test")
    assert all("valid" in r.id for r in valid)
    assert load_split(ds, "test", Preprocess(size=16)).masks[2:].any()


def test_bmad_image_level_subset_and_errors(tmp_path):
    rs.make_bmad_histopathology(tmp_path)
    ds = get_dataset("bmad", tmp_path, subset="Histopathology")
    assert ds.channels == 3 and not ds.has_masks
    assert len(ds.records("train")) == 5 and len(ds.records("test")) == 6
    assert get_dataset("bmad", tmp_path / "Histopathology_AD").channels == 3
    with pytest.raises(MedadError, match="unknown BMAD subset 'knee'"):
        get_dataset("bmad", tmp_path, subset="knee")
    with pytest.raises(MedadError, match="subset=Brain"):
        get_dataset("bmad", tmp_path)
    with pytest.raises(MedadError, match="'test' or 'valid'"):
        get_dataset("bmad", tmp_path, subset="Histopathology", split="train")
