"""Folder layouts (medad's generic one and the paper's data.json) and the decode-once cache."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medad.data.base import get_dataset
from medad.data.check import check_data
from medad.data.layouts import DataJsonDataset, FolderDataset
from medad.data.loading import Preprocess, load_split
from medad.errors import MedadError
from tests.data import raw_sources as rs
from tests.test_cli import make_folder_dataset, write_png


def test_split_folder_layout(tmp_path):
    ds = FolderDataset(make_folder_dataset(tmp_path / "d", n=5))
    train, test = ds.records("train"), ds.records("test")
    assert len(train) == 5 and all(r.label == 0 for r in train)
    assert [r.label for r in test] == [0] * 5 + [1] * 5
    assert all(r.mask is not None for r in test if r.label == 1)
    assert ds.has_masks


def test_flat_layout_splits_normals_deterministically(tmp_path):
    rng = np.random.default_rng(1)
    for i in range(10):
        write_png(tmp_path / "normal" / f"n{i}.png", rng.integers(0, 255, (8, 8), np.uint8))
    for i in range(3):
        write_png(tmp_path / "abnormal" / f"a{i}.png", rng.integers(0, 255, (8, 8), np.uint8))
        write_png(tmp_path / "masks" / f"a{i}_mask.png", np.full((8, 8), 255, np.uint8))
    a, b = FolderDataset(tmp_path), FolderDataset(tmp_path)
    assert [r.id for r in a.records("train")] == [r.id for r in b.records("train")]
    assert len(a.records("train")) == 7 and len(a.records("test")) == 6
    train_ids = {r.image for r in a.records("train")}
    assert not train_ids & {r.image for r in a.records("test")}
    assert FolderDataset(tmp_path, split_seed=5).records("train") != a.records("train")


def test_missing_mask_is_named(tmp_path):
    root = make_folder_dataset(tmp_path / "d", n=3)
    (root / "test/masks/img1.png").unlink()
    with pytest.raises(MedadError, match="img1.png"):
        FolderDataset(root)


def test_empty_class_folder_is_named(tmp_path):
    root = make_folder_dataset(tmp_path / "d", n=2)
    for p in (root / "test/abnormal").iterdir():
        p.unlink()
    with pytest.raises(MedadError, match="abnormal: no image files"):
        FolderDataset(root)


def test_datajson_layout(tmp_path):
    rng = np.random.default_rng(0)
    names = {"train": [f"t{i}.png" for i in range(4)], "n": ["n0.png", "n1.png"], "a": ["a0.png"]}
    for group in names.values():
        for name in group:
            write_png(tmp_path / "images" / name, rng.integers(0, 255, (12, 10), np.uint8))
    spec = {
        "train": {"0": names["train"], "unlabeled": ["x.png"]},
        "test": {"0": names["n"], "1": names["a"]},
    }
    (tmp_path / "data.json").write_text(json.dumps(spec))
    ds = get_dataset("datajson", tmp_path)
    assert isinstance(ds, DataJsonDataset)
    assert [r.label for r in ds.records("test")] == [0, 0, 1]
    split = load_split(ds, "train", Preprocess(size=16))
    assert split.images.shape == (4, 1, 16, 16) and split.images.dtype == np.uint8


def test_datajson_errors_name_the_file(tmp_path):
    (tmp_path / "data.json").write_text('{"train": {"0": ["missing.png"]}}')
    with pytest.raises(MedadError, match="missing.png"):
        DataJsonDataset(tmp_path)
    (tmp_path / "data.json").write_text("{not json")
    with pytest.raises(MedadError, match="data.json"):
        DataJsonDataset(tmp_path)


def test_cache_is_reused_and_matches_a_fresh_decode(tmp_path):
    ds = FolderDataset(make_folder_dataset(tmp_path / "d", n=3, size=50))
    pre = Preprocess(size=32)
    first = load_split(ds, "test", pre, tmp_path / "cache")
    (cache_file,) = (tmp_path / "cache").iterdir()
    again = load_split(ds, "test", pre, tmp_path / "cache")
    fresh = load_split(ds, "test", pre, None)
    for other in (again, fresh):
        np.testing.assert_array_equal(first.images, other.images)
        np.testing.assert_array_equal(first.masks, other.masks)
        assert first.ids == other.ids
    assert first.masks[3:].any() and not first.masks[:3].any()
    # a damaged cache file is rebuilt, not trusted
    cache_file.write_bytes(b"garbage")
    np.testing.assert_array_equal(
        load_split(ds, "test", pre, tmp_path / "cache").images, first.images
    )


def test_preprocess_keeps_grayscale_single_channel_and_resizes(tmp_path):
    ds = FolderDataset(make_folder_dataset(tmp_path / "d", n=2, size=48))
    gray = load_split(ds, "train", Preprocess(size=32, channels=1))
    rgb = load_split(ds, "train", Preprocess(size=32, channels=3))
    short = load_split(ds, "train", Preprocess(size=32, resize="shorter"))
    assert gray.images.shape == (2, 1, 32, 32)
    assert rgb.images.shape == (2, 3, 32, 32)
    np.testing.assert_array_equal(rgb.images[:, 0], rgb.images[:, 1])
    assert short.images.shape == (2, 1, 32, 32)


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink"])
def test_datajson_entries_outside_the_dataset_are_refused(tmp_path, kind):

    root = rs.datajson_release(tmp_path / "RSNA")
    outside = write_png(tmp_path / "elsewhere" / "x.png", np.zeros((24, 20), np.uint8))
    spec = json.loads((root / "data.json").read_text())
    if kind == "dotdot":
        entry = "../../elsewhere/x.png"
    elif kind == "absolute":
        entry = str(outside)
    else:
        (root / "images" / "link.png").symlink_to(outside)
        entry = "link.png"
    spec["train"]["0"].append(entry)
    (root / "data.json").write_text(json.dumps(spec))
    with pytest.raises(MedadError, match=f'entry \'{entry}\' in "train" → "0" points outside'):
        DataJsonDataset(root)
    found = [str(p) for p in check_data(root)]
    assert len(found) == 1 and "points outside the dataset folder" in found[0]
    assert repr(entry) in found[0]


def test_datajson_images_folder_may_be_a_link(tmp_path):
    real = rs.datajson_release(tmp_path / "real")
    root = tmp_path / "RSNA"
    root.mkdir()
    (root / "images").symlink_to(real / "images")
    (root / "data.json").write_text((real / "data.json").read_text())
    assert len(DataJsonDataset(root).records("train")) == 3
