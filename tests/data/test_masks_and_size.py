"""Masks that are not two-valued, oversized images and damaged caches: refused or repaired."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pytest

from medad.data.base import get_dataset
from medad.data.check import check_data, inspect_data
from medad.data.loading import Preprocess, load_split
from medad.data.readers import read_image, read_mask
from medad.errors import MedadError
from tests.data import raw_sources as rs
from tests.test_cli import invoke, make_folder_dataset, write_png


def soft_mask(size: int) -> np.ndarray:
    """A blurred-edge 0…255 mask, as anti-aliased or resized masks come."""
    yy, xx = np.mgrid[:size, :size]
    return np.clip(255 - 20 * np.hypot(yy - size / 2, xx - size / 2), 0, 255).astype(np.uint8)


def test_read_mask_refuses_soft_values_unless_thresholded(tmp_path):
    path = write_png(tmp_path / "m.png", soft_mask(24))
    with pytest.raises(MedadError, match=r"m\.png: mask is not binary: it holds \d+ values"):
        read_mask(path)
    assert read_mask(path, threshold=127).sum() == (soft_mask(24) > 127).sum()
    binary = write_png(tmp_path / "b.png", np.where(soft_mask(24) > 0, 255, 0).astype(np.uint8))
    assert read_mask(binary).sum() == (soft_mask(24) > 0).sum()
    colour = np.zeros((8, 8, 3), np.uint8)
    colour[2:4, 2:4] = (255, 0, 0)
    assert read_mask(write_png(tmp_path / "c.png", colour)).sum() == 4


@pytest.mark.parametrize("layout", ["folder", "brats", "mvtec", "bmad"])
def test_every_layout_with_masks_refuses_soft_masks(tmp_path, layout):
    if layout == "folder":
        root = make_folder_dataset(tmp_path / "d", n=2, size=24)
        mask = root / "test" / "masks" / "img1.png"
        opts: dict = {}
    elif layout == "brats":
        root = rs.brats_release(tmp_path / "BraTS2021")
        mask = root / "test" / "annotation" / "BraTS2021_00011_seg_70.png"
        layout, opts = "brats2021", {}
    else:
        category = tmp_path / ("bottle" if layout == "mvtec" else "Brain_AD")
        masks = "ground_truth/broken" if layout == "mvtec" else "test/Ungood/label"
        abnormal = "test/broken" if layout == "mvtec" else "test/Ungood/img"
        good = "" if layout == "mvtec" else "img/"
        rng = np.random.default_rng(0)
        for folder in (f"train/good/{good}", f"test/good/{good}", f"{abnormal}/"):
            write_png(category / f"{folder}a.png", rng.integers(0, 255, (24, 24), np.uint8))
        suffix = "_mask" if layout == "mvtec" else ""
        mask = write_png(category / masks / f"a{suffix}.png", np.zeros((24, 24), np.uint8))
        root, opts = category, {}
    shape = np.asarray(read_image(mask)).shape[:2]
    soft = np.zeros(shape, np.uint8)
    soft[:, : shape[1] // 2] = 128
    soft[:, shape[1] // 2 :] = 255
    write_png(mask, soft)
    ds = get_dataset(layout, root, **opts)
    with pytest.raises(MedadError, match=f"{mask}: mask is not binary"):
        load_split(ds, "test", Preprocess(size=16))
    assert any(str(p).startswith(f"{mask}: mask is not binary") for p in check_data(root))
    assert not [p for p in inspect_data(root, mask_threshold=200).problems if "binary" in str(p)]
    ds = get_dataset(layout, root, mask_threshold=200, **opts)
    test = load_split(ds, "test", Preprocess(size=16), cache_dir=tmp_path / "cache")
    assert test.masks is not None and test.masks.any() and not test.masks.all()


def test_mask_threshold_is_checked(tmp_path):
    root = make_folder_dataset(tmp_path / "d", n=2, size=24)
    with pytest.raises(MedadError, match="mask_threshold must be a number >= 0"):
        get_dataset("folder", root, mask_threshold=-1)
    with pytest.raises(MedadError, match="has no masks; mask_threshold"):
        get_dataset("rsna", rs.datajson_release(tmp_path / "RSNA"), mask_threshold=0)


def solid_png(path: Path, width: int, height: int) -> Path:
    """A valid gray PNG of width x height zeros, written without allocating the image."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    packer = zlib.compressobj(9)
    row = bytes(width + 1)  # filter byte 0 then the row
    data = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
    )
    return path


def test_huge_png_is_refused_before_decoding(tmp_path, monkeypatch):
    bomb = solid_png(tmp_path / "bomb.png", 10_000, 10_000)  # 100 M pixels, ~100 KB on disk
    assert bomb.stat().st_size < 200_000
    with pytest.raises(MedadError, match=r"bomb\.png: the file declares 10000 x 10000 = 100,000"):
        read_image(bomb)
    with pytest.raises(MedadError, match="MEDAD_MAX_PIXELS=100000000"):
        read_mask(bomb)
    small = solid_png(tmp_path / "small.png", 64, 32)
    assert read_image(small).shape == (32, 64)
    monkeypatch.setenv("MEDAD_MAX_PIXELS", "1000")
    with pytest.raises(MedadError, match="64 x 32 = 2,048 pixels, above the cap of 1,000"):
        read_image(small)
    assert read_image(small, max_pixels=2048).shape == (32, 64)
    monkeypatch.setenv("MEDAD_MAX_PIXELS", "lots")
    with pytest.raises(MedadError, match=r"\$MEDAD_MAX_PIXELS must be a whole number"):
        read_image(small)


def test_huge_dicom_and_nifti_are_refused_from_the_header(tmp_path):
    import nibabel as nib

    from tests.data.test_readers import write_dicom  # noqa: PLC0415

    nifti = tmp_path / "v.nii"
    nib.save(nib.Nifti1Image(np.zeros((40, 30, 1), np.float32), np.eye(4)), nifti)
    with pytest.raises(MedadError, match="40 x 30 x 1 = 1,200 pixels, above the cap of 1,000"):
        read_image(nifti, max_pixels=1000)
    dcm = write_dicom(tmp_path / "x.dcm", np.zeros((30, 40), np.uint16))
    with pytest.raises(MedadError, match="40 x 30 = 1,200 pixels"):
        read_image(dcm, max_pixels=1000)


def test_damaged_cache_is_rebuilt(tmp_path):
    root = make_folder_dataset(tmp_path / "d", n=2, size=24)
    ds, pre, cache = get_dataset("folder", root), Preprocess(size=16), tmp_path / "cache"
    fresh = load_split(ds, "test", pre, cache)
    (entry,) = cache.glob("*.npz")
    entry.write_bytes(entry.read_bytes()[: entry.stat().st_size // 2])  # truncated zip
    again = load_split(ds, "test", pre, cache)
    assert np.array_equal(again.images, fresh.images) and again.ids == fresh.ids
    assert np.load(entry)["images"].shape == fresh.images.shape  # rewritten whole
    entry.write_bytes(b"PK\x03\x04 not a zip")
    assert np.array_equal(load_split(ds, "test", pre, cache).masks, fresh.masks)


def test_check_data_command_accepts_a_mask_threshold(tmp_path):
    root = make_folder_dataset(tmp_path / "d", n=2, size=24)
    write_png(root / "test" / "masks" / "img0.png", soft_mask(24))
    res = invoke("check-data", root)
    assert res.exit_code == 1 and "img0.png: mask is not binary" in res.stdout
    assert invoke("check-data", root, "--mask-threshold", "100").exit_code == 0
