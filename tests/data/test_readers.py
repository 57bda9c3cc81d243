"""Tests for medad.data.readers against files written here (Pillow, pydicom, nibabel) and the
real DICOM / NIfTI files that ship with pydicom and nibabel."""

from __future__ import annotations

import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from medad.data.readers import (
    SUPPORTED_SUFFIXES,
    apply_window,
    is_image_file,
    nifti_axial_label_slices,
    nifti_axial_slices,
    read_dicom,
    read_image,
    read_mask,
    read_nifti_volume,
    to_channels,
)
from medad.errors import MedadError

NIBABEL_DATA = Path(nib.__file__).parent / "tests" / "data"


def f32(values: np.ndarray | float) -> np.ndarray:
    """The float32 a hand computation in float64 rounds to (what the readers return)."""
    return np.asarray(values, dtype=np.float64).astype(np.float32)


def raises_naming(path: Path):
    """pytest.raises(MedadError) whose message must name the file."""
    return pytest.raises(MedadError, match=re.escape(path.name))


# --------------------------------------------------------------------------------------------
# Pillow formats


def test_png_8bit_exact(tmp_path: Path) -> None:
    pixels = np.arange(256, dtype=np.uint8).reshape(16, 16)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    img = read_image(tmp_path / "a.png")
    assert img.dtype == np.float32 and img.shape == (16, 16)
    np.testing.assert_array_equal(img, f32(pixels / 255.0))


def test_png_16bit_exact(tmp_path: Path) -> None:
    pixels = np.array([[0, 1, 32768], [65535, 1000, 40000]], dtype=np.uint16)
    Image.fromarray(pixels).save(tmp_path / "a16.png")
    img = read_image(tmp_path / "a16.png")
    assert img[1, 0] == 1.0 and img[0, 0] == 0.0
    assert img[0, 2] == np.float32(32768 / 65535)
    np.testing.assert_array_equal(img, f32(pixels / 65535.0))


def test_tiff_16bit_and_big_endian(tmp_path: Path) -> None:
    pixels = np.array([[0, 513, 65535]], dtype=np.uint16)
    Image.fromarray(pixels).save(tmp_path / "a.tif")
    np.testing.assert_array_equal(read_image(tmp_path / "a.tif"), f32(pixels / 65535.0))
    big = Image.frombytes("I;16B", (3, 1), pixels.astype(">u2").tobytes())
    big.save(tmp_path / "b.tiff")
    np.testing.assert_array_equal(read_image(tmp_path / "b.tiff"), f32(pixels / 65535.0))


def test_tiff_int32_and_float(tmp_path: Path) -> None:
    small = np.array([[0, 65535]], dtype=np.int32)  # 16-bit data stored as mode "I"
    Image.fromarray(small).save(tmp_path / "i16.tif")
    np.testing.assert_array_equal(read_image(tmp_path / "i16.tif"), [[0.0, 1.0]])
    big = np.array([[0, 100_000, 2**31 - 1]], dtype=np.int32)
    Image.fromarray(big).save(tmp_path / "i32.tif")
    np.testing.assert_array_equal(read_image(tmp_path / "i32.tif"), f32(big / (2**31 - 1)))
    signed = np.array([[-10, 0, 30]], dtype=np.int32)
    Image.fromarray(signed).save(tmp_path / "signed.tif")
    np.testing.assert_array_equal(read_image(tmp_path / "signed.tif"), f32([[0, 0.25, 1]]))

    inside = np.array([[0.0, 0.25, 1.0]], dtype=np.float32)
    Image.fromarray(inside).save(tmp_path / "f.tif")
    np.testing.assert_array_equal(read_image(tmp_path / "f.tif"), inside)
    outside = np.array([[-1.0, 1.0, 3.0]], dtype=np.float32)
    Image.fromarray(outside).save(tmp_path / "g.tif")
    np.testing.assert_array_equal(read_image(tmp_path / "g.tif"), f32([[0, 0.5, 1]]))


def test_rgb_rgba_la_and_palette(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (6, 7, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    np.testing.assert_array_equal(read_image(tmp_path / "rgb.png"), f32(rgb / 255.0))

    alpha = rng.integers(0, 256, (6, 7, 1), dtype=np.uint8)
    Image.fromarray(np.concatenate([rgb, alpha], axis=-1)).save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(read_image(tmp_path / "rgba.png"), f32(rgb / 255.0))

    gray = rgb[..., 0]
    Image.fromarray(np.stack([gray, alpha[..., 0]], axis=-1), mode="LA").save(tmp_path / "la.png")
    np.testing.assert_array_equal(read_image(tmp_path / "la.png"), f32(gray / 255.0))

    # grayscale content stored as RGB stays 3-channel
    Image.fromarray(np.repeat(gray[..., None], 3, axis=-1)).save(tmp_path / "gray_rgb.png")
    assert read_image(tmp_path / "gray_rgb.png").shape == (6, 7, 3)

    colour = Image.fromarray(rgb).quantize(colors=8)
    colour.save(tmp_path / "pal.png")
    expected = np.asarray(colour.convert("RGB")) / 255.0
    np.testing.assert_array_equal(read_image(tmp_path / "pal.png"), f32(expected))

    gray_palette = Image.fromarray(gray).convert("P")  # Pillow's web palette keeps only grays
    gray_palette.putpalette([v for i in range(256) for v in (i, i, i)])
    gray_palette.save(tmp_path / "graypal.png")
    img = read_image(tmp_path / "graypal.png")
    assert img.shape == (6, 7)
    np.testing.assert_array_equal(img, f32(np.asarray(gray_palette) / 255.0))


def test_jpeg_and_bmp(tmp_path: Path) -> None:
    ramp = np.tile(np.linspace(0, 255, 32).astype(np.uint8), (32, 1))
    Image.fromarray(ramp).save(tmp_path / "a.jpg", quality=95)
    Image.fromarray(ramp).save(tmp_path / "a.BMP")
    np.testing.assert_allclose(read_image(tmp_path / "a.jpg"), ramp / 255.0, atol=0.03)
    np.testing.assert_array_equal(read_image(tmp_path / "a.BMP"), f32(ramp / 255.0))
    colour = np.stack([ramp, ramp[::-1], np.full_like(ramp, 128)], axis=-1)
    Image.fromarray(colour).save(tmp_path / "c.jpeg", quality=95)
    assert read_image(tmp_path / "c.jpeg").shape == (32, 32, 3)


def test_window_on_16bit_png(tmp_path: Path) -> None:
    pixels = np.array([[0, 1000, 1100, 1200, 5000]], dtype=np.uint16)
    Image.fromarray(pixels).save(tmp_path / "ct.png")
    img = read_image(tmp_path / "ct.png", window=(1100, 200))
    np.testing.assert_array_equal(img, f32([[0, 0, 0.5, 1, 1]]))


def test_multipage_tiff_refused(tmp_path: Path) -> None:
    pages = [Image.fromarray(np.full((4, 4), v, dtype=np.uint8)) for v in (0, 9)]
    path = tmp_path / "stack.tif"
    pages[0].save(path, save_all=True, append_images=pages[1:])
    with raises_naming(path):
        read_image(path)


def test_to_channels_matches_pillow_luma() -> None:
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (9, 11, 3), dtype=np.uint8)
    np.testing.assert_array_equal(
        to_channels(rgb, 1), np.asarray(Image.fromarray(rgb).convert("L"))
    )
    as_float = to_channels(rgb / 255.0, 1)
    assert as_float.dtype == np.float32 and as_float.shape == (9, 11)
    np.testing.assert_allclose(as_float, rgb @ np.array([0.299, 0.587, 0.114]) / 255, rtol=1e-6)
    gray = rng.random((5, 4)).astype(np.float32)
    tripled = to_channels(gray, 3)
    assert tripled.shape == (5, 4, 3)
    assert all(np.array_equal(tripled[..., c], gray) for c in range(3))
    assert to_channels(gray, 1) is gray
    np.testing.assert_allclose(to_channels(tripled, 1), gray, rtol=1e-6)
    with pytest.raises(MedadError):
        to_channels(gray, 2)


def test_read_mask_variants(tmp_path: Path) -> None:
    mask = np.zeros((8, 8), dtype=bool)
    mask[2:5, 3:7] = True
    Image.fromarray(mask.astype(np.uint8) * 255).save(tmp_path / "m.png")
    out = read_mask(tmp_path / "m.png")
    assert out.dtype == np.bool_
    np.testing.assert_array_equal(out, mask)

    Image.fromarray(mask).save(tmp_path / "m1.png")  # mode "1"
    np.testing.assert_array_equal(read_mask(tmp_path / "m1.png"), mask)

    rgb = np.zeros((8, 8, 3), dtype=np.uint8)
    rgb[2:5, 3:5, 0] = 200
    rgb[2:5, 5:7, 2] = 1
    Image.fromarray(rgb).save(tmp_path / "m_rgb.png")
    with pytest.raises(MedadError, match="mask is not binary: it holds 3 values"):
        read_mask(tmp_path / "m_rgb.png")  # two colours on black: a label map, not a mask
    np.testing.assert_array_equal(read_mask(tmp_path / "m_rgb.png", threshold=0), mask)

    # a palette mask whose white sits at index 0: judged by colour, not by index
    pal = Image.fromarray(np.where(mask, 0, 1).astype(np.uint8), mode="P")
    pal.putpalette([255, 255, 255, 0, 0, 0])
    pal.save(tmp_path / "m_pal.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "m_pal.png"), mask)


# --------------------------------------------------------------------------------------------
# DICOM


def write_dicom(
    path: Path,
    pixels: np.ndarray,
    *,
    photometric: str = "MONOCHROME2",
    preamble: bool = True,
    **attributes: object,
) -> Path:
    """Write a minimal Secondary Capture DICOM of uint8/uint16 pixels (frames first if 3-D gray)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "OT"
    colour = photometric in ("RGB", "YBR_FULL")
    ds.Rows, ds.Columns = pixels.shape[-3:-1] if colour else pixels.shape[-2:]
    ds.SamplesPerPixel = 3 if colour else 1
    if colour:
        ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = ds.BitsStored = pixels.dtype.itemsize * 8
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 0
    for name, value in attributes.items():
        setattr(ds, name, value)
    ds.PixelData = pixels.tobytes()
    if preamble:
        ds.preamble = b"\0" * 128
        ds.save_as(path, enforce_file_format=True)
    else:
        del ds.file_meta
        ds.save_as(path, implicit_vr=True, little_endian=True)
    return path


# stored values chosen to land below, inside and above the window after rescaling
STORED = np.array([[0, 100, 250, 300], [350, 400, 600, 65535]], dtype=np.uint16)


def hand_linear_window(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """DICOM PS3.3 C.11.2.1.2.1, written piecewise as in the standard."""
    low = center - 0.5 - (width - 1) / 2
    high = center - 0.5 + (width - 1) / 2
    ramp = (values - (center - 0.5)) / (width - 1) + 0.5
    return np.where(values <= low, 0.0, np.where(values > high, 1.0, ramp))


@pytest.mark.parametrize("photometric", ["MONOCHROME2", "MONOCHROME1"])
def test_dicom_rescale_window_and_photometric(tmp_path: Path, photometric: str) -> None:
    path = write_dicom(
        tmp_path / "a.dcm",
        STORED,
        photometric=photometric,
        RescaleSlope=2,
        RescaleIntercept=-100,
        WindowCenter=500,
        WindowWidth=1001,
    )
    modality = STORED * 2.0 - 100.0
    expected = hand_linear_window(modality, 500, 1001)
    assert 0 < expected[1, 0] < 1 and expected[0, 0] == 0 and expected[1, 3] == 1
    if photometric == "MONOCHROME1":
        expected = 1.0 - expected
    img = read_image(path)
    assert img.dtype == np.float32 and img.shape == (2, 4)
    np.testing.assert_array_equal(img, f32(expected))


def test_dicom_window_choice(tmp_path: Path) -> None:
    modality = STORED * 2.0 - 100.0
    multi = write_dicom(
        tmp_path / "multi.dcm",
        STORED,
        RescaleSlope=2,
        RescaleIntercept=-100,
        WindowCenter=[500, 40],
        WindowWidth=[1001, 400],
    )
    np.testing.assert_array_equal(read_dicom(multi), f32(hand_linear_window(modality, 500, 1001)))
    # the explicit argument wins over the file's window
    np.testing.assert_array_equal(
        read_image(multi, window=(300, 201)), f32(hand_linear_window(modality, 300, 201))
    )
    bare = write_dicom(tmp_path / "bare.dcm", STORED, RescaleSlope=2, RescaleIntercept=-100)
    expected = (modality - modality.min()) / (modality.max() - modality.min())
    np.testing.assert_array_equal(read_dicom(bare), f32(expected))
    with raises_naming(bare):
        read_dicom(bare, window=(0, 0.5))


def test_dicom_without_extension_or_preamble(tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "IM0001", STORED)
    assert is_image_file(path)
    np.testing.assert_array_equal(read_image(path), f32(STORED / 65535.0))
    raw = write_dicom(tmp_path / "raw.dcm", STORED, preamble=False)
    assert raw.read_bytes()[128:132] != b"DICM"
    np.testing.assert_array_equal(read_image(raw), f32(STORED / 65535.0))


def test_dicom_rgb(tmp_path: Path) -> None:
    rgb = np.random.default_rng(2).integers(0, 256, (5, 6, 3), dtype=np.uint8)
    path = write_dicom(tmp_path / "rgb.dcm", rgb, photometric="RGB")
    img = read_image(path)
    assert img.shape == (5, 6, 3)
    np.testing.assert_array_equal(img, f32(rgb / 255.0))
    with raises_naming(path):
        read_image(path, window=(100, 50))


def test_dicom_multiframe(tmp_path: Path) -> None:
    frames = np.stack([STORED, STORED[:, ::-1]])
    path = write_dicom(tmp_path / "cine.dcm", frames, NumberOfFrames=2)
    with pytest.raises(MedadError, match="2 frames"):
        read_image(path)
    np.testing.assert_array_equal(read_dicom(path, frame=1), f32(STORED[:, ::-1] / 65535.0))
    with raises_naming(path):
        read_dicom(path, frame=2)


@pytest.mark.parametrize(
    ("name", "shape"), [("CT_small.dcm", (128, 128)), ("MR_small.dcm", (64, 64))]
)
def test_real_pydicom_files(name: str, shape: tuple[int, int]) -> None:
    path = get_testdata_file(name)
    img = read_image(path)
    assert img.shape == shape and img.dtype == np.float32
    assert img.min() >= 0.0 and img.max() <= 1.0 and img.max() > img.min()

    ds = pydicom.dcmread(path)
    modality = ds.pixel_array * float(ds.get("RescaleSlope", 1)) + float(
        ds.get("RescaleIntercept", 0)
    )
    if "WindowCenter" in ds:
        expected = hand_linear_window(modality, float(ds.WindowCenter), float(ds.WindowWidth))
    else:
        expected = (modality - modality.min()) / (modality.max() - modality.min())
    np.testing.assert_allclose(img, expected, atol=1e-6)
    # a monotone non-decreasing function of the rescaled values
    order = np.argsort(modality, axis=None, kind="stable")
    assert np.all(np.diff(img.ravel()[order]) >= 0)
    assert np.unravel_index(np.argmin(img), shape) == np.unravel_index(np.argmin(modality), shape)


def test_apply_window_functions() -> None:
    x = np.array([-10.0, 0.0, 10.0])
    np.testing.assert_allclose(apply_window(x, 0, 20, function="LINEAR_EXACT"), [0, 0.5, 1])
    np.testing.assert_allclose(apply_window(x, 0, 20, function="SIGMOID")[1], 0.5)
    np.testing.assert_array_equal(apply_window(x, 0, 1), [0, 1, 1])  # step at center - 0.5
    with pytest.raises(MedadError):
        apply_window(x, 0, 0.5)


# --------------------------------------------------------------------------------------------
# NIfTI

SHAPE = (5, 6, 4)  # x, y, z in RAS+


def ras_pattern() -> np.ndarray:
    """An asymmetric RAS+ volume with distinct values and no zeros: v = 100 x + 10 y + z + 1."""
    x, y, z = np.meshgrid(*(np.arange(n) for n in SHAPE), indexing="ij")
    return (100 * x + 10 * y + z + 1).astype(np.float32)


def save_nifti(path: Path, data: np.ndarray, affine: np.ndarray) -> Path:
    nib.save(nib.Nifti1Image(data, affine), path)
    return path


def lps_permuted(data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The same object stored as (y, x, z) with y running A->P and x running R->L (LPS-like).

    Voxel (j, i, k) of the stored array is RAS voxel (X-1-i, Y-1-j, k) and sits at the same world
    position, so canonical reorientation must give back `data` and the RAS affine.
    """
    nx, ny, _ = data.shape
    stored = np.transpose(data[::-1, ::-1, :], (1, 0, 2))
    affine = np.array(
        [[0.0, -1.0, 0.0, nx - 1.0], [-1.0, 0.0, 0.0, ny - 1.0], [0, 0, 1, 0], [0, 0, 0, 1]]
    )
    return np.ascontiguousarray(stored), affine


def test_canonical_reorientation_matches_ras(tmp_path: Path) -> None:
    data = ras_pattern()
    ras = save_nifti(tmp_path / "ras.nii", data, np.eye(4))
    stored, affine = lps_permuted(data)
    lps = save_nifti(tmp_path / "lps.nii.gz", stored, affine)

    volume = read_nifti_volume(lps)
    np.testing.assert_array_equal(volume.data, data)
    np.testing.assert_allclose(volume.affine, np.eye(4), atol=1e-6)
    reference = nib.as_closest_canonical(nib.load(lps))
    np.testing.assert_array_equal(volume.data, reference.get_fdata())
    np.testing.assert_allclose(volume.affine, reference.affine)

    slices = nifti_axial_slices(lps)
    np.testing.assert_array_equal(slices, nifti_axial_slices(ras))
    assert slices.shape == (4, 6, 5) and slices.dtype == np.float32


def test_axial_display_orientation(tmp_path: Path) -> None:
    """Top row = most anterior, left column = patient's right (radiological convention)."""
    data = ras_pattern()
    stored, affine = lps_permuted(data)
    slices = nifti_axial_slices(
        save_nifti(tmp_path / "lps.nii", stored, affine), percentiles=(0, 100)
    )
    k = 2
    expected_raw = data[:, :, k].T[::-1, ::-1]  # rows y = Y-1..0, columns x = X-1..0
    lo, hi = data.min(), data.max()
    np.testing.assert_allclose(slices[k], (expected_raw - lo) / (hi - lo), atol=1e-6)
    # the right-anterior voxel (x, y max) is top-left; left-posterior is bottom-right
    assert slices[k][0, 0] == slices[k].max() and slices[k][-1, -1] == slices[k].min()


def test_slice_indices_and_percentiles(tmp_path: Path) -> None:
    data = ras_pattern()
    data[0] = 0.0  # a zero background, excluded from the percentiles
    path = save_nifti(tmp_path / "v.nii", data, np.diag([2.0, 2.0, 3.0, 1.0]))
    every = nifti_axial_slices(path, percentiles=(10, 90))
    assert every.shape[0] == SHAPE[2]
    np.testing.assert_array_equal(
        nifti_axial_slices(path, indices=[3, 1], percentiles=(10, 90)), every[[3, 1]]
    )
    lo, hi = np.percentile(data[data != 0], [10, 90])
    expected = np.clip((data - lo) / (hi - lo), 0, 1)[:, :, 1].T[::-1, ::-1]
    np.testing.assert_allclose(every[1], expected, atol=1e-6)
    assert every.min() == 0.0 and every.max() == 1.0
    with raises_naming(path):
        nifti_axial_slices(path, indices=[4])
    with raises_naming(path):
        nifti_axial_slices(path, percentiles=(90, 10))
    ct = nifti_axial_slices(path, indices=[0], window=(301, 200))
    np.testing.assert_allclose(
        ct[0], np.clip((data[:, :, 0].T[::-1, ::-1] - 301) / 200 + 0.5, 0, 1), atol=1e-6
    )


def test_label_slices_align_with_image_slices(tmp_path: Path) -> None:
    data = ras_pattern()
    stored, affine = lps_permuted(data)
    image = save_nifti(tmp_path / "img_flair.nii.gz", stored, affine)
    seg = save_nifti(tmp_path / "img_seg.nii.gz", (stored > 250.5).astype(np.uint8), affine)
    labels = nifti_axial_label_slices(seg)
    assert labels.dtype == np.bool_ and labels.shape == (4, 6, 5)
    slices = nifti_axial_slices(image, percentiles=(0, 100))
    threshold = (250.5 - data.min()) / (data.max() - data.min())
    np.testing.assert_array_equal(labels, slices > threshold)
    np.testing.assert_array_equal(nifti_axial_label_slices(seg, indices=[2]), labels[[2]])


def test_nifti_2d_images_and_masks(tmp_path: Path) -> None:
    data = ras_pattern()[:, :, 0]
    flat = save_nifti(tmp_path / "flat.nii", data, np.eye(4))
    singleton = save_nifti(tmp_path / "single.nii.gz", data[..., None], np.eye(4))
    volume = save_nifti(tmp_path / "vol.nii", ras_pattern(), np.eye(4))
    img = read_image(flat)
    np.testing.assert_array_equal(img, read_image(singleton))
    np.testing.assert_array_equal(img, nifti_axial_slices(singleton)[0])
    mask = save_nifti(tmp_path / "mask.nii", (data > 250).astype(np.uint8), np.eye(4))
    np.testing.assert_array_equal(read_mask(mask), nifti_axial_label_slices(mask)[0])
    np.testing.assert_array_equal(read_mask(mask), (data > 250).T[::-1, ::-1])
    with pytest.raises(MedadError, match="nifti_axial_slices"):
        read_image(volume)

    coronal = save_nifti(tmp_path / "coronal.nii", ras_pattern()[:, 2:3, :], np.eye(4))
    plane = read_image(coronal, window=(0, 1000))
    assert plane.shape == (4, 5)  # rows: z (superior at top), columns: x
    assert plane[0, 0] == plane.max()

    four_d = save_nifti(tmp_path / "t.nii", ras_pattern()[..., None], np.eye(4))
    assert read_nifti_volume(four_d).data.shape == SHAPE


def test_nibabel_anatomical_las() -> None:
    """nibabel's anatomical.nii is stored LAS: canonical flips x, display undoes it again."""
    path = NIBABEL_DATA / "anatomical.nii"
    if not path.exists():
        pytest.skip("nibabel's test data is not installed")
    raw_img = nib.load(path)
    assert nib.aff2axcodes(raw_img.affine) == ("L", "A", "S")
    raw = raw_img.get_fdata()
    volume = read_nifti_volume(path)
    np.testing.assert_array_equal(volume.data, raw[::-1, :, :].astype(np.float32))
    assert nib.aff2axcodes(volume.affine) == ("R", "A", "S")
    np.testing.assert_allclose(volume.affine, nib.as_closest_canonical(raw_img).affine)

    slices = nifti_axial_slices(path, percentiles=(0, 100))
    assert slices.shape == (25, 41, 33)
    nonzero = raw[raw != 0]
    lo, hi = nonzero.min(), nonzero.max()
    k = 12
    expected = np.clip((raw[:, :, k].T[::-1, :] - lo) / (hi - lo), 0, 1)  # LAS: x already R->L
    np.testing.assert_allclose(slices[k], expected, atol=1e-6)


def test_nibabel_4d_refused() -> None:
    path = NIBABEL_DATA / "example4d.nii.gz"
    if not path.exists():
        pytest.skip("nibabel's test data is not installed")
    with pytest.raises(MedadError, match="4-D"):
        nifti_axial_slices(path)


# --------------------------------------------------------------------------------------------
# bad input and dispatch


def test_supported_suffixes_and_is_image_file(tmp_path: Path) -> None:
    assert {".png", ".jpg", ".tif", ".dcm", ".nii", ".nii.gz"} <= SUPPORTED_SUFFIXES
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "b.PNG").write_bytes(b"")
    (tmp_path / "scan.nii.gz").write_bytes(b"")
    assert not is_image_file(tmp_path / "notes.txt")
    assert is_image_file(tmp_path / "b.PNG")
    assert is_image_file(tmp_path / "scan.nii.gz")
    assert not is_image_file(tmp_path / "missing.png")


def test_missing_and_unsupported(tmp_path: Path) -> None:
    with raises_naming(tmp_path / "nowhere.png"):
        read_image(tmp_path / "nowhere.png")
    gif = tmp_path / "a.gif"
    Image.new("L", (4, 4)).save(gif)
    with pytest.raises(MedadError, match=r"a\.gif.*\.png"):  # lists what is supported
        read_image(gif)
    with raises_naming(tmp_path):
        read_image(tmp_path)


def test_corrupt_files(tmp_path: Path) -> None:
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (64, 64), np.uint8)).save(
        tmp_path / "whole.png"
    )
    whole = (tmp_path / "whole.png").read_bytes()
    truncated_png = tmp_path / "half.png"
    truncated_png.write_bytes(whole[: len(whole) // 2])
    text_png = tmp_path / "text.png"
    text_png.write_text("this is not an image\n")
    ct = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    truncated_dcm = tmp_path / "ct_half.dcm"
    truncated_dcm.write_bytes(ct[: len(ct) // 2])
    header_only = tmp_path / "header_only.dcm"
    header_only.write_bytes(ct[:200])
    text_dcm = tmp_path / "text.dcm"
    text_dcm.write_text("not dicom either\n")
    truncated_nii = tmp_path / "cut.nii.gz"
    save_nifti(tmp_path / "ok.nii.gz", ras_pattern(), np.eye(4))
    good = (tmp_path / "ok.nii.gz").read_bytes()
    truncated_nii.write_bytes(good[: len(good) // 2])
    garbage_nii = tmp_path / "garbage.nii"
    garbage_nii.write_bytes(b"\x00\x01" * 300)
    text_niigz = tmp_path / "plain.nii.gz"
    text_niigz.write_text("no gzip here")
    for path in (truncated_png, text_png, truncated_dcm, header_only, text_dcm):
        with raises_naming(path):
            read_image(path)
        with raises_naming(path):
            read_mask(path)
    for path in (truncated_nii, garbage_nii, text_niigz):
        with raises_naming(path):
            nifti_axial_slices(path)
        with raises_naming(path):
            read_image(path)


def test_dicom_without_pixel_data(tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "nopix.dcm", STORED)
    ds = pydicom.dcmread(path)
    del ds.PixelData
    ds.save_as(path)
    with pytest.raises(MedadError, match=r"nopix\.dcm.*no pixel data"):
        read_image(path)


def test_empty_images(tmp_path: Path) -> None:
    empty_nii = save_nifti(tmp_path / "empty.nii", np.zeros((0, 4, 3), np.float32), np.eye(4))
    with pytest.raises(MedadError, match=r"empty\.nii.*empty"):
        nifti_axial_slices(empty_nii)
    empty_dcm = write_dicom(tmp_path / "empty.dcm", np.zeros((0, 0), np.uint16))
    with raises_naming(empty_dcm):
        read_image(empty_dcm)


def test_png_data_and_the_run_command_load_neither_pydicom_nor_nibabel(tmp_path: Path) -> None:
    # they cost a tenth of a second at start-up; only DICOM and NIfTI files need them
    import os
    import subprocess
    import sys

    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "a.png")
    code = (
        "import sys\n"
        "import medad.cli, medad.runs\n"
        "from medad.data.readers import read_image\n"
        f"read_image({str(tmp_path / 'a.png')!r})\n"
        "print(sorted(m for m in ('pydicom', 'nibabel') if m in sys.modules))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert done.stdout.strip() == "[]"
