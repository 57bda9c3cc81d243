"""The seven benchmark loaders on hand-made release folders (no `prepare` involved)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medad.data.base import dataset_infos, get_dataset
from medad.data.catalog import BENCHMARKS
from medad.data.loading import Preprocess, load_split
from medad.errors import MedadError
from tests.data import raw_sources as rs

RNG = np.random.default_rng(0)


def image(path: Path, size=(20, 24), rgb=False) -> Path:
    return rs.write_image(path, RNG, size=size, rgb=rgb)


def test_all_seven_are_registered_and_need_a_root():
    infos = {i.name: i for i in dataset_infos()}
    for name, b in BENCHMARKS.items():
        assert infos[name].needs_root and infos[name].modality == b.modality
        assert b.folder in infos[name].description
    with pytest.raises(MedadError, match="--data-root"):
        get_dataset("rsna")


@pytest.mark.parametrize("name", ["rsna", "vincxr", "brain-tumor", "lag"])
def test_datajson_benchmarks_under_the_root_or_as_the_root(tmp_path, name):
    folder = rs.datajson_release(tmp_path / BENCHMARKS[name].folder)
    for root in (tmp_path, folder):
        ds = get_dataset(name, root)
        assert ds.name == name and ds.modality == BENCHMARKS[name].modality
        assert [r.label for r in ds.records("test")] == [0, 0, 1, 1]
        assert len(ds.records("train")) == 3 and ds.channels == 1


def test_missing_release_folder_says_how_to_prepare_it(tmp_path):
    with pytest.raises(MedadError, match="medad prepare vincxr --source RAW") as info:
        get_dataset("vincxr", tmp_path)
    assert str(tmp_path / "VinCXR") in str(info.value)


def test_channels_option_and_its_check(tmp_path):
    rs.datajson_release(tmp_path / "LAG")
    assert get_dataset("lag", tmp_path, channels=3).channels == 3
    with pytest.raises(MedadError, match="channels must be 1 or 3"):
        get_dataset("lag", tmp_path, channels=2)
    with pytest.raises(MedadError, match="has no option"):
        get_dataset("lag", tmp_path, category="x")


def test_isic2018_labels_from_the_official_csvs(tmp_path):
    rs.make_isic(tmp_path / "ISIC2018_Task3", train=(4, 3), test=(2, 3))
    ds = get_dataset("isic2018", tmp_path)  # the release's folder name is accepted
    assert len(ds.records("train")) == 4  # NV only; other training classes are not used
    assert [r.label for r in ds.records("test")] == [0, 0, 1, 1, 1]
    train = load_split(ds, "train", Preprocess(size=16))
    assert train.images.shape == (4, 1, 16, 16)


def test_isic2018_errors_name_the_file(tmp_path):
    root = rs.make_isic(tmp_path / "ISIC2018", train=(2, 1), test=(1, 1))
    gone = root / "ISIC2018_Task3_Test_Input" / "ISIC_0000004.jpg"
    gone.unlink()
    with pytest.raises(MedadError, match="ISIC_0000004.jpg: listed in"):
        get_dataset("isic2018", tmp_path)
    csv = root / "ISIC2018_Task3_Training_GroundTruth" / "ISIC2018_Task3_Training_GroundTruth.csv"
    csv.write_text(csv.read_text().replace("1.0", "x", 1))
    with pytest.raises(MedadError, match="line 2: class values must be numbers"):
        get_dataset("isic2018", tmp_path)


def test_camelyon16_release_is_rgb(tmp_path):
    for folder, n in (("train/good", 3), ("test/good", 2), ("test/Ungood", 2)):
        for i in range(n):
            image(tmp_path / "Camelyon16" / folder / f"{i}.png", rgb=True)
    ds = get_dataset("camelyon16", tmp_path)
    assert ds.channels == 3 and not ds.has_masks
    assert [r.id for r in ds.records("test")][-1] == "test/Ungood/1.png"
    assert load_split(ds, "test", Preprocess(size=16, channels=3)).images.shape == (4, 3, 16, 16)


def test_brats2021_masks_follow_the_flair_to_seg_rule(tmp_path):
    rs.brats_release(tmp_path / "BraTS2021")
    ds = get_dataset("brats2021", tmp_path)
    assert ds.has_masks
    tumours = [r for r in ds.records("test") if r.label == 1]
    assert [r.mask.name for r in tumours] == [f"BraTS2021_0001{i}_seg_70.png" for i in range(3)]
    test = load_split(ds, "test", Preprocess(size=16))
    assert test.masks is not None and test.masks[3:].any() and not test.masks[:3].any()


def test_brats2021_missing_mask_is_named(tmp_path):
    root = rs.brats_release(tmp_path / "BraTS2021")
    (root / "test" / "annotation" / "BraTS2021_00011_seg_70.png").unlink()
    with pytest.raises(MedadError, match="BraTS2021_00011_flair_70.png: no mask"):
        get_dataset("brats2021", root)


def test_empty_class_folder_is_named_with_a_count_of_the_rest(tmp_path):
    root = rs.brats_release(tmp_path / "BraTS2021")
    for p in (root / "train").iterdir():
        p.unlink()
    (root / "test" / "annotation" / "BraTS2021_00011_seg_70.png").unlink()
    with pytest.raises(MedadError, match=r"train: no image files.*1 more problem") as info:
        get_dataset("brats2021", root)
    assert "medad check-data" in str(info.value)
