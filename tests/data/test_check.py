"""``medad check-data``: every problem named, "ok" when there is none."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from medad.data.check import check_data, inspect_data
from medad.data.prepare import prepare
from tests.data import raw_sources as rs
from tests.test_cli import invoke, make_folder_dataset, write_png


def messages(root: Path) -> list[str]:
    return [str(p) for p in check_data(root)]


def test_clean_datasets_are_ok(tmp_path):
    rs.datajson_release(tmp_path / "RSNA")
    rs.brats_release(tmp_path / "BraTS2021")
    make_folder_dataset(tmp_path / "mine", n=3, size=24)
    for name, layout in (("RSNA", "datajson"), ("BraTS2021", "brats"), ("mine", "folder")):
        report = inspect_data(tmp_path / name)
        assert report.ok and report.layout == layout, report.problems
    res = invoke("check-data", tmp_path / "BraTS2021")
    assert res.exit_code == 0 and "ok" in res.stdout and "test_abnormal 3" in res.stdout


def test_datajson_problems_each_name_a_file(tmp_path):
    root = rs.datajson_release(tmp_path / "RSNA", n=(3, 2, 2))
    spec = json.loads((root / "data.json").read_text())
    (root / "images" / "n1.png").unlink()  # missing
    (root / "images" / "a0.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")  # unreadable
    shutil.copyfile(root / "images" / "t0.png", root / "images" / "a1.png")  # train/test twin
    spec["test"]["0"].append("t1.png")  # listed in both splits
    (root / "data.json").write_text(json.dumps(spec))
    found = messages(root)
    assert f"{root / 'images' / 'n1.png'}: listed in data.json" in found[0]
    assert any(m.startswith(f"{root / 'images' / 'a0.png'}: cannot read") for m in found)
    twin = f"{root / 'images' / 'a1.png'}: identical to the training image {root / 'images'}"
    assert any(m.startswith(f"{twin}/t0.png") for m in found)
    assert f"{root / 'images' / 't1.png'}: listed in both train and test" in found
    assert len(found) == 4


def test_mask_size_and_empty_class(tmp_path):
    root = rs.brats_release(tmp_path / "BraTS2021")
    bad = root / "test" / "annotation" / "BraTS2021_00012_seg_70.png"
    write_png(bad, np.zeros((10, 10), np.uint8))
    shutil.rmtree(root / "test" / "normal")
    (root / "test" / "normal").mkdir()
    found = messages(root)
    assert found == [
        f"{root / 'test' / 'normal'}: no image files in this folder "
        "(it should hold the normal test images)",
        f"{bad}: mask is 10x10 but its image BraTS2021_00012_flair_70.png is 20x24",
    ]


def test_cli_lists_problems_and_exits_1(tmp_path):
    root = rs.brats_release(tmp_path / "BraTS2021")
    (root / "test" / "annotation" / "BraTS2021_00010_seg_70.png").unlink()
    res = invoke("check-data", root)
    assert res.exit_code == 1
    assert "BraTS2021_00010_flair_70.png: no mask" in res.stdout
    res = invoke("check-data", root, "--json")
    obj = json.loads(res.stdout)
    assert res.exit_code == 1 and not obj["ok"] and obj["layout"] == "brats"
    res = invoke("check-data", tmp_path / "nowhere")
    assert res.exit_code == 2 and "not found" in res.output


def test_unknown_layout_and_changed_prepared_folder(tmp_path):
    (tmp_path / "stuff").mkdir()
    assert "not a dataset layout medad knows" in messages(tmp_path / "stuff")[0]
    raw = rs.make_camelyon_patches(tmp_path / "raw")
    out = prepare("camelyon16", raw, tmp_path / "Camelyon16").out
    assert check_data(out) == []
    next((out / "train" / "good").iterdir()).unlink()
    assert messages(out) == [
        f"{out / 'prepare.json'}: the folder no longer matches its preparation: "
        "train 8 recorded, 7 found"
    ]


def test_bmad_valid_split_is_checked_too(tmp_path):
    root = rs.make_bmad_histopathology(tmp_path) / "Histopathology_AD"
    shutil.copyfile(root / "train" / "good" / "1000.png", root / "valid" / "good" / "1000.png")
    found = messages(root)
    assert found == [
        f"{root / 'valid' / 'good' / '1000.png'}: identical to the training image "
        f"{root / 'train' / 'good' / '1000.png'} (train and valid overlap)"
    ]


def test_mask_without_an_image_is_reported(tmp_path):
    folder = make_folder_dataset(tmp_path / "mine", n=2, size=24)
    orphan = write_png(folder / "test" / "masks" / "lost.png", np.zeros((24, 24), np.uint8))
    brats = rs.brats_release(tmp_path / "BraTS2021")
    seg = write_png(
        brats / "test/annotation/BraTS2021_00099_seg_70.png", np.zeros((24, 20), np.uint8)
    )
    assert messages(folder) == [f"{orphan}: mask without an image (no image has this name)"]
    assert messages(brats) == [f"{seg}: mask without an image (no image has this name)"]
    res = invoke("check-data", folder)
    assert res.exit_code != 0 and "lost.png" in res.stdout + res.stderr
