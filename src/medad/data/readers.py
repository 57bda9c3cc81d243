"""Decode the image files medical anomaly-detection datasets come in, behind one interface.

`read_image` turns one 2-D image file into float32 values in [0, 1], shape (H, W) for grayscale or
(H, W, 3) for colour; `read_mask` turns a two-valued mask file into a bool (H, W) array. The format
is chosen by content first (the DICOM "DICM" magic at byte 128, the PNG/JPEG/TIFF/BMP signatures),
then by file name (`SUPPORTED_SUFFIXES`), so DICOM files without an extension are read too.

Formats and how their values reach [0, 1]:

- PNG, JPEG, TIFF, BMP (Pillow): 8-bit / 255; 16-bit (modes ``I;16``, ``I;16B``, ...) / 65535;
  32-bit integer mode ``I``: / 65535 when all values fit in [0, 65535] (older Pillow versions and
  some TIFF writers store 16-bit data this way), else / 2**31 - 1 (the int32 maximum) when no value
  is negative, else min-max; float mode ``F``: unchanged when already inside [0, 1], else min-max.
  Palette images become RGB (or gray when the palette is gray), ``LA`` becomes ``L``, ``RGBA`` and
  other colour modes become ``RGB`` (alpha is dropped, not composited). Grayscale content stored as
  RGB stays 3-channel; `to_channels` converts. EXIF orientation is not applied (as with a plain
  ``PIL.Image.open``). Multi-page files are refused.
- DICOM (pydicom): see `read_dicom` (rescale, windowing, MONOCHROME1, RGB).
- NIfTI (nibabel): volumes are reoriented to RAS+ and cut into axial slices by `nifti_axial_slices`;
  `read_image` accepts only a 2-D image (or a volume with one singleton axis).

Display orientation of NIfTI slices (used for images and segmentations alike): in the canonical
RAS+ array (x towards the patient's Right, y Anterior, z Superior) an axial slice ``vol[:, :, k]``
is transposed and flipped on both axes, so that image rows run anterior (top) to posterior and
image columns run from the patient's right (left of the image) to the patient's left: the
radiological convention. Slices with a singleton y or x axis (coronal, sagittal) get the same rule
(transpose, flip both axes), which puts superior at the top.

Every reader refuses, from the file's header and before decoding, a file larger than `pixel_cap`
(`DEFAULT_MAX_PIXELS`, or ``$MEDAD_MAX_PIXELS``). Every failure raises `medad.errors.MedadError`
naming the file and the problem.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Literal, NamedTuple

import numpy as np
from PIL import Image

from medad.errors import MedadError

if TYPE_CHECKING:
    import pydicom

# pydicom and nibabel are imported by the functions that read DICOM and NIfTI (a tenth of a second
# at start-up that PNG and JPEG data, and `medad --help`, need not pay)

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_PERCENTILES",
    "SUPPORTED_SUFFIXES",
    "NiftiVolume",
    "apply_window",
    "file_format",
    "check_mask_threshold",
    "is_image_file",
    "nifti_axial_label_slices",
    "nifti_axial_slices",
    "nifti_depth",
    "nifti_volume_from_axial",
    "pixel_cap",
    "read_dicom",
    "read_image",
    "read_mask",
    "read_nifti_volume",
    "to_channels",
]

Window = tuple[float, float]
Format = Literal["pillow", "dicom", "nifti"]

_PILLOW_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"})
_DICOM_SUFFIXES = frozenset({".dcm", ".dicom"})
_NIFTI_SUFFIXES = frozenset({".nii", ".nii.gz"})
#: file name endings `read_image` and `read_mask` accept (DICOM files are also found by content)
SUPPORTED_SUFFIXES: frozenset[str] = _PILLOW_SUFFIXES | _DICOM_SUFFIXES | _NIFTI_SUFFIXES

_PILLOW_MAGIC = (
    b"\x89PNG\r\n\x1a\n",  # PNG
    b"\xff\xd8\xff",  # JPEG
    b"II*\x00",  # TIFF, little endian
    b"MM\x00*",  # TIFF, big endian
    b"II+\x00",  # BigTIFF, little endian
    b"MM\x00+",  # BigTIFF, big endian
    b"BM",  # BMP
)
_GZIP_MAGIC = b"\x1f\x8b"
#: NIfTI intensity percentiles mapped to 0 and 1: robust to the few extreme voxels MRI volumes
#: carry, a common choice in brain-MRI anomaly detection preprocessing
DEFAULT_PERCENTILES: tuple[float, float] = (0.5, 99.5)
_HEADER_BYTES = 132  # enough for the DICOM preamble (128 bytes) and "DICM"

# ITU-R BT.601 luma weights, the ones Pillow's convert("L") uses.
_LUMA = np.array([0.299, 0.587, 0.114])


# --------------------------------------------------------------------------------------------
# dispatch


def read_image(
    path: str | os.PathLike[str], *, window: Window | None = None, max_pixels: int | None = None
) -> np.ndarray:
    """Decode one 2-D image into float32 in [0, 1], shape (H, W) or (H, W, 3).

    Args:
        path: a PNG, JPEG, TIFF, BMP, DICOM (any name, found by its "DICM" magic) or 2-D NIfTI file.
        window: optional ``(center, width)`` intensity window in the file's value units: modality
            units after Rescale Slope/Intercept for DICOM (e.g. Hounsfield units; applied with the
            DICOM LINEAR function), scaled voxel values for NIfTI and stored pixel values for the
            other formats (both with the exact linear map ``(x - center) / width + 0.5``, clipped).
            It replaces the format's default normalisation; refused for colour images.
        max_pixels: the most pixels the file may decode to (see `pixel_cap`); checked from the
            file's header before anything is decoded.

    Raises:
        MedadError: the file is missing, unsupported, unreadable, empty, larger than the pixel
            cap, or not a 2-D image.
    """
    path = _existing_file(path)
    kind = _detect_format(path)
    if kind == "dicom":
        return read_dicom(path, window=window, max_pixels=max_pixels)
    if kind == "nifti":
        plane = _nifti_plane(path, labels=False, max_pixels=max_pixels)
        if window is not None:
            return _as_image(_apply_user_window(plane, window, "LINEAR_EXACT", path))
        return _as_image(_percentile_normalise(plane, DEFAULT_PERCENTILES, path))
    raw = _decode_pillow(path, max_pixels=max_pixels)
    if window is not None:
        if raw.ndim == 3:
            raise MedadError(f"{path}: window= applies to grayscale images; this one is RGB")
        return _as_image(_apply_user_window(raw, window, "LINEAR_EXACT", path))
    return _as_image(_pillow_to_unit(raw))


def read_mask(
    path: str | os.PathLike[str],
    *,
    threshold: float | None = None,
    max_pixels: int | None = None,
) -> np.ndarray:
    """Decode a mask file into bool (H, W): True where the value is > `threshold` (any channel).

    A mask must be two-valued: zero and one other value (0/1, 0/255, a bool PNG, a colour on
    black). Anything else (soft 0…255 edges, JPEG artefacts, a multi-class label map) is refused
    naming the file, because binarising it silently at > 0 turns every faint edge pixel into
    anomaly and changes pixel-level metrics; pass `threshold` (``--data-option mask_threshold=T``)
    to accept such a mask explicitly, binarised at > T. Values are checked on the decoded file,
    before any resizing (loading resizes masks with nearest neighbour, which adds no value).

    Accepts the formats of `read_image` (and its `max_pixels` cap). Palette images are judged by
    their colours, not their indices (an optimised 0/255 mask may store white at index 0). DICOM
    masks are compared after Rescale Slope/Intercept; a 2-D NIfTI mask gets the same display
    orientation as `read_image`.
    """
    path = _existing_file(path)
    kind = _detect_format(path)
    if kind == "dicom":
        ds, pixels = _dicom_pixels(path, frame=None, max_pixels=max_pixels)
        values = pixels if pixels.ndim == 3 else _dicom_modality_values(ds, pixels)
    elif kind == "nifti":
        values = _nifti_plane(path, labels=False, max_pixels=max_pixels)
    else:
        values = _decode_pillow(path, max_pixels=max_pixels)
    if values.ndim == 3:
        values = values.max(axis=-1)  # > T in any channel is > T in the brightest one
    if threshold is None:
        levels = np.unique(values)
        if np.count_nonzero(levels) > 1:
            shown = ", ".join(f"{v:g}" for v in levels[:5].tolist())
            raise MedadError(
                f"{path}: mask is not binary: it holds {levels.size} values ({shown}"
                f"{', ...' if levels.size > 5 else ''}), a mask holds 0 and one other value; "
                "set mask_threshold=T to binarise it at > T (`--data-option mask_threshold=T`, "
                "`check-data --mask-threshold T`)"
            )
        threshold = 0.0
    return np.ascontiguousarray(values > threshold)


def check_mask_threshold(value: object) -> float | None:
    """A ``mask_threshold`` data option as a float >= 0 (None: masks must be two-valued)."""
    if value is None:
        return None
    try:
        threshold = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        threshold = float("nan")
    if not threshold >= 0 or isinstance(value, bool):
        raise MedadError(f"mask_threshold must be a number >= 0, got {value!r}")
    return threshold


def is_image_file(path: str | os.PathLike[str]) -> bool:
    """Whether `path` is a file `read_image` would try: a supported name, or DICOM content.

    Files whose name is not in `SUPPORTED_SUFFIXES` are opened and checked for the DICOM magic
    (DICOM series are often stored as ``IM0001`` or ``1.2.840....``); DICOMDIR index files are not
    images and are skipped.
    """
    path = Path(path)
    if not path.is_file():
        return False
    if _suffix(path) in SUPPORTED_SUFFIXES:
        return True
    if path.name.upper() == "DICOMDIR":
        return False
    try:
        return _is_dicom_header(_read_header(path))
    except MedadError:  # unreadable (e.g. permissions): not something read_image could decode
        return False


def file_format(path: str | os.PathLike[str]) -> Format:
    """Which decoder reads `path`: ``"pillow"``, ``"dicom"`` or ``"nifti"`` (content first)."""
    return _detect_format(_existing_file(path))


def _detect_format(path: Path) -> Format:
    """The decoder for `path`: recognised content first, then the file name."""
    header = _read_header(path)
    if _is_dicom_header(header):
        return "dicom"
    if header.startswith(_PILLOW_MAGIC):
        return "pillow"
    suffix = _suffix(path)
    if suffix in _DICOM_SUFFIXES:
        return "dicom"  # a DICOM file without the 128-byte preamble: read with force=True
    if suffix in _NIFTI_SUFFIXES:
        if suffix == ".nii.gz" and not header.startswith(_GZIP_MAGIC):
            raise MedadError(f"{path}: named .nii.gz but not gzip-compressed; rename it to .nii")
        return "nifti"
    if suffix in _PILLOW_SUFFIXES:
        return "pillow"  # unknown content: let Pillow produce the precise complaint
    raise MedadError(
        f"{path}: unsupported file type {suffix or '(no extension)'!r}; medad reads "
        f"{', '.join(sorted(SUPPORTED_SUFFIXES))} and DICOM files of any name"
    )


def _existing_file(path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    if not path.exists():
        raise MedadError(f"{path}: no such file")
    if not path.is_file():
        raise MedadError(f"{path}: not a file")
    return path


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else Path(name).suffix


def _read_header(path: Path) -> bytes:
    try:
        with path.open("rb") as handle:
            return handle.read(_HEADER_BYTES)
    except OSError as exc:
        raise MedadError(f"{path}: cannot open ({exc.strerror or exc})") from exc


def _is_dicom_header(header: bytes) -> bool:
    return header[128:132] == b"DICM"


@contextmanager
def _decoding(path: Path, what: str) -> Iterator[None]:
    """Turn any error of a third-party decoder into a MedadError naming the file.

    Pillow, pydicom and nibabel raise many exception types for bad files (OSError, SyntaxError,
    ValueError, EOFError, struct.error, zlib.error, ...), so the boundary catches them all.
    """
    try:
        yield
    except (MedadError, MemoryError):
        raise
    except Image.DecompressionBombError as exc:
        raise MedadError(
            f"{path}: {str(exc).rstrip('.')}; medad does not read images this large"
        ) from None
    except Exception as exc:
        raise MedadError(
            f"{path}: cannot read this {what} file, it may be truncated or corrupt "
            f"({type(exc).__name__}: {exc})"
        ) from exc


#: default cap on the pixels (voxels for NIfTI) one file may decode to: 2**26 = 67 M, e.g. 8192 x
#: 8192. The largest 2-D medical images medad reads (full-field mammograms about 4000 x 5000,
#: large-detector radiographs about 4300 x 4300, BraTS volumes 240 x 240 x 155 = 9 M voxels) fit
#: with room to spare, while a "decompression bomb" (a tiny PNG that claims 100 M pixels, decoded
#: at several GB once converted to float) is refused. Whole-slide pathology images (gigapixels)
#: are not read by this reader: tile them first. Raise it with ``$MEDAD_MAX_PIXELS`` or the
#: readers' ``max_pixels`` argument.
DEFAULT_MAX_PIXELS = 2**26
MAX_PIXELS_ENV = "MEDAD_MAX_PIXELS"


def pixel_cap(max_pixels: int | None = None) -> int:
    """The decoded-size cap in force: `max_pixels`, else ``$MEDAD_MAX_PIXELS``, else
    `DEFAULT_MAX_PIXELS`."""
    if max_pixels is not None:
        value: object = max_pixels
    else:
        value = os.environ.get(MAX_PIXELS_ENV) or DEFAULT_MAX_PIXELS
    try:
        cap = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        cap = 0
    if cap < 1:
        where = "max_pixels" if max_pixels is not None else f"${MAX_PIXELS_ENV}"
        raise MedadError(f"{where} must be a whole number of pixels >= 1, got {value!r}")
    return cap


def _check_decoded_size(path: Path, shape: Sequence[int], max_pixels: int | None) -> None:
    """Refuse, from the header's `shape`, a file that would decode to more than the pixel cap."""
    n = int(np.prod([int(v) for v in shape], dtype=np.float64))
    cap = pixel_cap(max_pixels)
    if n > cap:
        size = " x ".join(str(int(v)) for v in shape)
        raise MedadError(
            f"{path}: the file declares {size} = {n:,} pixels, above the cap of {cap:,} "
            f"(a guard against decompression bombs); if the image is genuine, raise the cap, "
            f"e.g. {MAX_PIXELS_ENV}={n}"
        )


def _as_image(values: np.ndarray) -> np.ndarray:
    """float32, clipped to [0, 1], C-contiguous (flipped views would trip torch.from_numpy)."""
    return np.ascontiguousarray(np.clip(values, 0.0, 1.0), dtype=np.float32)


def _check_not_empty(values: np.ndarray, path: Path) -> None:
    if values.size == 0:
        raise MedadError(f"{path}: the image is empty (shape {values.shape})")


# --------------------------------------------------------------------------------------------
# intensity helpers


def apply_window(
    values: np.ndarray,
    center: float,
    width: float,
    *,
    function: Literal["LINEAR", "LINEAR_EXACT", "SIGMOID"] = "LINEAR",
) -> np.ndarray:
    """Map values through a VOI window onto [0, 1] (float64), as DICOM PS3.3 C.11.2.1.2 defines.

    LINEAR (width >= 1) is the DICOM default with its half-unit offsets for integer data;
    LINEAR_EXACT is ``(x - center) / width + 0.5`` clipped; SIGMOID is
    ``1 / (1 + exp(-4 (x - center) / width))``.
    """
    center, width = float(center), float(width)
    x = np.asarray(values, dtype=np.float64)
    if function == "LINEAR":
        if not width >= 1:
            raise MedadError(f"window width {width} is invalid: the DICOM LINEAR window needs >= 1")
        if width == 1:  # a step at center - 0.5 (the standard's piecewise rule with no ramp)
            return (x > center - 0.5).astype(np.float64)
        return np.clip((x - (center - 0.5)) / (width - 1) + 0.5, 0.0, 1.0)
    if not width > 0:
        raise MedadError(f"window width {width} is invalid: it must be > 0")
    if function == "LINEAR_EXACT":
        return np.clip((x - center) / width + 0.5, 0.0, 1.0)
    if function == "SIGMOID":
        return 1.0 / (1.0 + np.exp(-4.0 * (x - center) / width))
    raise MedadError(f"unknown VOI LUT function {function!r}: use LINEAR, LINEAR_EXACT or SIGMOID")


def _apply_user_window(
    values: np.ndarray,
    window: Window,
    function: Literal["LINEAR", "LINEAR_EXACT"],
    path: Path,
) -> np.ndarray:
    """`apply_window` for a ``window=`` argument, with errors that name the file."""
    try:
        center, width = (float(v) for v in window)
        return apply_window(values, center, width, function=function)
    except (TypeError, ValueError) as exc:
        raise MedadError(f"{path}: window must be (center, width), got {window!r}") from exc
    except MedadError as exc:
        raise MedadError(f"{path}: {exc}") from None


def _min_max(values: np.ndarray) -> np.ndarray:
    """Min-max to [0, 1] in float64 over the finite values; a constant image gives zeros."""
    x = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(x)
    if not finite.any():
        return np.zeros(x.shape)
    lo, hi = float(x[finite].min()), float(x[finite].max())
    if hi <= lo:
        return np.zeros(x.shape)
    return np.where(finite, (x - lo) / (hi - lo), 0.0)


def _percentile_normalise(
    values: np.ndarray, percentiles: tuple[float, float], path: Path
) -> np.ndarray:
    """Map the ``percentiles`` of the nonzero finite values to 0 and 1, clipped (float64).

    Nonzero voxels only, when there are any, so that the background of skull-stripped MRI does not
    set the low end. When the two percentiles coincide (e.g. a binary volume) it falls back to
    min-max over the whole array. Non-finite voxels become 0.
    """
    low, high = (float(p) for p in percentiles)
    if not 0.0 <= low < high <= 100.0:
        raise MedadError(
            f"{path}: percentiles must satisfy 0 <= low < high <= 100, got {percentiles}"
        )
    x = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(x)
    sample = x[finite & (x != 0)]
    if sample.size == 0:
        sample = x[finite]
    if sample.size == 0:
        return np.zeros(x.shape)
    lo, hi = np.percentile(sample, [low, high])
    if hi <= lo:
        return _min_max(x)
    return np.where(finite, np.clip((x - lo) / (hi - lo), 0.0, 1.0), 0.0)


def to_channels(img: np.ndarray, channels: int) -> np.ndarray:
    """Give an image `channels` channels: 1 gives (H, W), 3 gives (H, W, 3).

    Gray to RGB replicates the plane; RGB to gray takes the ITU-R BT.601 luma
    ``0.299 R + 0.587 G + 0.114 B``, as Pillow's ``convert("L")`` does (integer inputs are rounded
    back to their dtype, float inputs give float32). An image that already has the requested
    channels is returned unchanged; (H, W, 1) counts as gray.
    """
    if channels not in (1, 3):
        raise MedadError(f"channels must be 1 or 3, got {channels}")
    img = np.asarray(img)
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    if img.ndim == 2:
        return img if channels == 1 else np.repeat(img[..., None], 3, axis=-1)
    if img.ndim != 3 or img.shape[-1] != 3:
        raise MedadError(f"expected an image of shape (H, W) or (H, W, 3), got {img.shape}")
    if channels == 3:
        return img
    luma = img.astype(np.float64) @ _LUMA
    if np.issubdtype(img.dtype, np.integer):
        info = np.iinfo(img.dtype)
        return np.clip(np.rint(luma), info.min, info.max).astype(img.dtype)
    return luma.astype(np.float32)


# --------------------------------------------------------------------------------------------
# Pillow: PNG, JPEG, TIFF, BMP


@contextmanager
def _open_pillow(path: Path) -> Iterator[Image.Image]:
    """``Image.open`` (lazy: header only) without Pillow's size warning, which `pixel_cap`
    replaces; Pillow's own hard limit (twice its warning size) still applies."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        im = Image.open(path)
    with im:
        yield im


def _decode_pillow(path: Path, *, max_pixels: int | None = None) -> np.ndarray:
    """The stored values: bool, uint8 or uint16 or int32 or float32 (H, W), or uint8 (H, W, 3).

    The size is checked against `pixel_cap` from the header (``Image.open`` is lazy) before the
    pixels are decoded.
    """
    fmt = _suffix(path).lstrip(".").upper() or "image"
    with _decoding(path, fmt), _open_pillow(path) as im:
        _check_decoded_size(path, im.size, max_pixels)
        if getattr(im, "n_frames", 1) > 1:
            raise MedadError(
                f"{path}: holds {im.n_frames} frames/pages; medad reads single 2-D images"
            )
        im.load()
        mode = im.mode
        if mode in ("P", "PA"):
            palette = im.getpalette() or []
            gray = all(
                palette[i] == palette[i + 1] == palette[i + 2]
                for i in range(0, len(palette) - 2, 3)
            )
            im = im.convert("L") if gray else im.convert("RGBA").convert("RGB")
        elif mode in ("LA", "La"):
            im = im.getchannel(0)
        elif mode not in ("1", "L", "RGB", "I", "F") and not mode.startswith("I;16"):
            im = im.convert("RGB")  # RGBA, RGBa, RGBX, CMYK, YCbCr, LAB, HSV
        values = np.asarray(im)
    if values.dtype.byteorder not in ("=", "|"):  # I;16B arrives big-endian
        values = values.astype(values.dtype.newbyteorder("="))
    _check_not_empty(values, path)
    return values


def _pillow_to_unit(values: np.ndarray) -> np.ndarray:
    """Scale stored Pillow values to [0, 1] (float64) by their bit depth; see the module doc."""
    if values.dtype == np.bool_:
        return values.astype(np.float64)
    if values.dtype == np.uint8:
        return values / 255.0
    if values.dtype == np.uint16:
        return values / 65535.0
    if np.issubdtype(values.dtype, np.integer):  # mode "I", int32
        lo, hi = int(values.min()), int(values.max())
        if lo >= 0 and hi <= 65535:
            return values / 65535.0
        if lo >= 0:
            return values / float(np.iinfo(np.int32).max)
        return _min_max(values)
    x = values.astype(np.float64)  # mode "F"
    finite = np.isfinite(x)
    if finite.all() and x.min() >= 0.0 and x.max() <= 1.0:
        return x
    return _min_max(x)


# --------------------------------------------------------------------------------------------
# DICOM


def read_dicom(
    path: str | os.PathLike[str],
    *,
    window: Window | None = None,
    frame: int | None = None,
    max_pixels: int | None = None,
) -> np.ndarray:
    """Decode a DICOM image into float32 in [0, 1]: (H, W), or (H, W, 3) for colour.

    Grayscale pipeline, following the DICOM display chain:

    1. stored values times Rescale Slope plus Rescale Intercept (modality units, e.g. HU);
    2. a VOI window: `window` = ``(center, width)`` if given (DICOM LINEAR function), else the
       file's first Window Center / Window Width (with its VOI LUT Function, LINEAR by default),
       else min-max of the image;
    3. MONOCHROME1 (high values shown dark) is inverted, ``1 - y``, after the window, so that the
       window keeps the file's units and bright always means high display intensity.

    RGB and YBR colour images (pydicom >= 3 returns YBR as RGB) are divided by
    ``2**BitsStored - 1``; windows do not apply to them. PALETTE COLOR images are refused.

    Args:
        path: the DICOM file; any name (DICOM content is recognised by its magic).
        window: optional ``(center, width)`` in modality units; width >= 1.
        frame: which frame of a multi-frame file to read. Multi-frame files are volumes or
            sequences, so without `frame` they are refused rather than silently cut.
        max_pixels: cap on Rows x Columns x frames, checked before decoding (`pixel_cap`).
    """
    path = _existing_file(path)
    ds, pixels = _dicom_pixels(path, frame=frame, max_pixels=max_pixels)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    if pixels.ndim == 3:
        if window is not None:
            raise MedadError(
                f"{path}: window= applies to grayscale DICOM; this one is {photometric}"
            )
        bits = int(ds.get("BitsStored") or pixels.dtype.itemsize * 8)
        return _as_image(pixels / float(2**bits - 1))
    if photometric == "PALETTE COLOR":
        raise MedadError(f"{path}: PALETTE COLOR DICOM is not supported; convert it to RGB first")
    values = _dicom_modality_values(ds, pixels)
    if window is not None:
        unit = _apply_user_window(values, window, "LINEAR", path)
    elif (file_window := _dicom_file_window(ds)) is not None:
        center, width, function = file_window
        unit = apply_window(values, center, width, function=function)
    else:
        unit = _min_max(values)
    if photometric == "MONOCHROME1":
        unit = 1.0 - unit
    return _as_image(unit)


def _dicom_pixels(
    path: Path, *, frame: int | None, max_pixels: int | None = None
) -> tuple[pydicom.Dataset, np.ndarray]:
    """The dataset and its decoded pixels of one frame: (H, W) or (H, W, samples)."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    with _decoding(path, "DICOM"):
        try:
            ds = pydicom.dcmread(path)
        except InvalidDicomError:
            ds = pydicom.dcmread(path, force=True)  # no preamble: raw data set
    if not any(tag in ds for tag in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise MedadError(f"{path}: DICOM file has no pixel data (not an image, or truncated)")
    photometric = str(ds.get("PhotometricInterpretation", "")).upper()
    if photometric.startswith("YBR") and int(pydicom.__version__.split(".")[0]) < 3:
        raise MedadError(f"{path}: {photometric} DICOM needs pydicom >= 3 (it converts to RGB)")
    frames = int(ds.get("NumberOfFrames") or 1)
    if frames > 1 and frame is None:
        raise MedadError(
            f"{path}: DICOM holds {frames} frames, i.e. a volume or a sequence; "
            "read one with read_dicom(path, frame=i)"
        )
    if frame is not None and not 0 <= frame < frames:
        raise MedadError(f"{path}: frame {frame} out of range, the file has {frames} frame(s)")
    with _decoding(path, "DICOM"):
        declared = (int(ds.get("Columns") or 0), int(ds.get("Rows") or 0))
    _check_decoded_size(path, (*declared, frames) if frames > 1 else declared, max_pixels)
    with _decoding(path, "DICOM"):
        _ensure_transfer_syntax(ds)
        pixels = np.asarray(ds.pixel_array)
    if frames > 1:
        pixels = pixels[frame]
    _check_not_empty(pixels, path)
    return ds, pixels


def _ensure_transfer_syntax(ds: pydicom.Dataset) -> None:
    """Give a data set read without file meta (no preamble) the transfer syntax it was read with.

    pydicom needs (0002,0010) to decode pixels; for a raw data set it guessed the encoding while
    reading (``original_encoding``: implicit VR?, little endian?), which is what the file uses.
    """
    from pydicom import uid
    from pydicom.dataset import FileMetaDataset

    meta = getattr(ds, "file_meta", None)
    if meta is not None and "TransferSyntaxUID" in meta:
        return
    if hasattr(ds, "original_encoding"):  # pydicom >= 3
        implicit, little = ds.original_encoding
    else:
        implicit, little = ds.is_implicit_VR, ds.is_little_endian
    if implicit:
        syntax = uid.ImplicitVRLittleEndian
    else:
        syntax = uid.ExplicitVRLittleEndian if little else uid.ExplicitVRBigEndian
    if meta is None:
        ds.file_meta = meta = FileMetaDataset()
    meta.TransferSyntaxUID = syntax


def _dicom_modality_values(ds: pydicom.Dataset, pixels: np.ndarray) -> np.ndarray:
    """Stored values to modality units: ``pixels * RescaleSlope + RescaleIntercept`` (float64)."""
    slope = ds.get("RescaleSlope")
    intercept = ds.get("RescaleIntercept")
    slope = 1.0 if slope in (None, "") else float(slope)
    intercept = 0.0 if intercept in (None, "") else float(intercept)
    return pixels.astype(np.float64) * slope + intercept


def _dicom_file_window(ds: pydicom.Dataset) -> tuple[float, float, str] | None:
    """The first (center, width, function) the file declares, or None if it has no usable one."""

    from pydicom.multival import MultiValue

    def first(value: object) -> float | None:
        if isinstance(value, MultiValue | list | tuple):
            value = value[0] if len(value) else None
        return None if value in (None, "") else float(value)  # type: ignore[arg-type]

    center, width = first(ds.get("WindowCenter")), first(ds.get("WindowWidth"))
    function = str(ds.get("VOILUTFunction") or "LINEAR").strip().upper()
    if function not in ("LINEAR", "LINEAR_EXACT", "SIGMOID"):
        function = "LINEAR"
    if center is None or width is None:
        return None
    valid = width >= 1 if function == "LINEAR" else width > 0
    if not valid:
        return None  # an invalid window in the file: fall back to min-max
    return center, width, function


# --------------------------------------------------------------------------------------------
# NIfTI


class NiftiVolume(NamedTuple):
    """A NIfTI volume in canonical RAS+ orientation: axial slices are ``data[:, :, k]``."""

    #: voxel values (after the file's scl_slope/scl_inter), float32, shape (X, Y, Z)
    data: np.ndarray
    #: voxel-to-world (RAS+ mm) affine of `data`, float64 (4, 4)
    affine: np.ndarray


def read_nifti_volume(path: str | os.PathLike[str]) -> NiftiVolume:
    """Load a 3-D NIfTI volume reoriented to RAS+, as ``nibabel.as_closest_canonical`` does.

    The voxel axes are permuted and flipped (no resampling) so that they point closest to
    Right, Anterior and Superior; the returned affine describes the reoriented array. A 2-D file
    becomes (X, Y, 1) before reorienting; trailing singleton axes beyond the third are dropped; a
    true 4-D series is refused.
    """
    data, affine = _load_canonical(Path(path), labels=False)
    return NiftiVolume(data, affine)


def nifti_axial_slices(
    volume_path: str | os.PathLike[str],
    *,
    indices: Sequence[int] | None = None,
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
    window: Window | None = None,
) -> np.ndarray:
    """Axial slices of a NIfTI volume as float32 [K, H, W] in [0, 1], in display orientation.

    Args:
        volume_path: a 3-D ``.nii`` or ``.nii.gz`` file (any orientation; it is made RAS+).
        indices: axial indices k in the RAS+ volume (0 = most inferior); None for all slices.
        percentiles: volume-wide low/high percentiles, over the nonzero voxels when there are any,
            mapped to 0 and 1 and clipped (`DEFAULT_PERCENTILES`).
        window: optional ``(center, width)`` in voxel units (e.g. HU for CT), used instead of the
            percentiles, with the exact linear map.

    Each slice ``vol[:, :, k]`` (x, y) is transposed and flipped on both axes, giving rows from
    anterior (top) to posterior and columns from the patient's right to left (radiological
    convention), H = Y and W = X. `nifti_axial_label_slices` uses the same transform.
    """
    path = Path(volume_path)
    data, _ = _load_canonical(path, labels=False)
    if window is not None:
        unit = _apply_user_window(data, window, "LINEAR_EXACT", path)
    else:
        unit = _percentile_normalise(data, percentiles, path)
    return _as_image(_axial_display(unit, _slice_indices(indices, data.shape[2], path)))


def nifti_axial_label_slices(
    volume_path: str | os.PathLike[str], *, indices: Sequence[int] | None = None
) -> np.ndarray:
    """Axial slices of a segmentation volume as bool [K, H, W] (label > 0).

    Same reorientation and display transform as `nifti_axial_slices`, so slice k of an image
    volume and slice k of its segmentation (same grid) line up pixel for pixel.
    """
    path = Path(volume_path)
    labels, _ = _load_canonical(path, labels=True)
    return np.ascontiguousarray(
        _axial_display(labels, _slice_indices(indices, labels.shape[2], path))
    )


def nifti_depth(volume_path: str | os.PathLike[str]) -> int:
    """The number of axial slices `nifti_axial_slices` gives, read from the header alone.

    0 when the file's only plane is coronal or sagittal (a singleton x or y axis in RAS+), which
    `read_image` reads as one 2-D image instead.
    """
    path = _existing_file(volume_path)
    import nibabel as nib
    from nibabel import orientations

    with _decoding(path, "NIfTI"):
        img = nib.load(path)
        shape = tuple(img.shape) + (1,) * max(0, 3 - len(img.shape))
        ornt = orientations.io_orientation(np.asarray(img.affine, dtype=np.float64))
    if np.isnan(ornt).any():
        raise MedadError(f"{path}: the NIfTI affine is degenerate; its orientation is unknown")
    canonical = [0, 0, 0]
    for axis, (to, _) in enumerate(ornt[:3]):
        canonical[int(to)] = int(shape[axis])
    if canonical[2] > 1 and 1 in canonical[:2]:
        return 0
    return canonical[2]


def nifti_volume_from_axial(stack: np.ndarray, volume_path: str | os.PathLike[str]) -> np.ndarray:
    """Put display-oriented axial planes [K, H, W] back into the voxel grid of `volume_path`.

    The inverse of the geometry of `nifti_axial_slices` (display flips, transpose, RAS+
    reorientation), so that an array computed per slice (an anomaly map) can be saved with the
    file's own affine and header and overlaid on it by any viewer. Returns the file's voxel
    shape (3-D, or the file's shape when it carries trailing singleton axes).
    """
    path = _existing_file(volume_path)
    import nibabel as nib
    from nibabel import orientations

    with _decoding(path, "NIfTI"):
        img = nib.load(path)
        shape = tuple(img.shape)
        ornt = orientations.io_orientation(np.asarray(img.affine, dtype=np.float64))
    grid = shape[:3] + (1,) * max(0, 3 - len(shape))
    canonical = np.transpose(np.flip(np.asarray(stack), axis=(1, 2)), (2, 1, 0))
    back = orientations.ornt_transform(orientations.axcodes2ornt(("R", "A", "S")), ornt)
    voxels = orientations.apply_orientation(canonical, back)
    if voxels.shape != grid:
        raise MedadError(
            f"{path}: {stack.shape[0]} planes of {stack.shape[1]}x{stack.shape[2]} do not fill "
            f"its voxel grid {grid}"
        )
    return np.ascontiguousarray(voxels).reshape(shape)


def _load_canonical(
    path: Path, *, labels: bool, max_pixels: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """RAS+ array (float32 values, or bool ``> 0`` when `labels`) and its affine."""
    path = _existing_file(path)
    if _detect_format(path) != "nifti":
        raise MedadError(f"{path}: not a NIfTI file (.nii or .nii.gz)")
    import nibabel as nib
    from nibabel import orientations

    with _decoding(path, "NIfTI"):
        img = nib.load(path)
        if not hasattr(img, "dataobj") or getattr(img, "affine", None) is None:
            raise MedadError(f"{path}: nibabel loaded no image with an affine")
        affine = np.asarray(img.affine, dtype=np.float64)
        shape = tuple(img.shape)
        if len(shape) > 3 and any(n != 1 for n in shape[3:]):
            raise MedadError(
                f"{path}: NIfTI is {len(shape)}-D with shape {shape}; medad reads 3-D volumes, "
                "extract one first (e.g. nibabel's img.slicer[..., t])"
            )
        _check_decoded_size(path, shape, max_pixels)
        values = np.asanyarray(img.dataobj)  # applies scl_slope / scl_inter
    values = values > 0 if labels else values.astype(np.float32, copy=False)
    if values.ndim == 2:
        values = values[..., None]
    values = values.reshape(values.shape[:3]) if values.ndim > 3 else values
    _check_not_empty(values, path)
    with _decoding(path, "NIfTI"):
        ornt = orientations.io_orientation(affine)
        if np.isnan(ornt).any():
            raise MedadError(f"{path}: the NIfTI affine is degenerate; its orientation is unknown")
        canonical = orientations.apply_orientation(values, ornt)
        canonical_affine = affine @ orientations.inv_ornt_aff(ornt, values.shape)
    return canonical, canonical_affine


def _nifti_plane(path: Path, *, labels: bool, max_pixels: int | None = None) -> np.ndarray:
    """The single plane of a 2-D NIfTI (or a volume with a singleton axis), display-oriented."""
    volume, _ = _load_canonical(path, labels=labels, max_pixels=max_pixels)
    for axis in (2, 1, 0):  # axial, coronal, sagittal
        if volume.shape[axis] == 1:
            plane = np.take(volume, 0, axis=axis)
            return np.flip(plane.T, axis=(0, 1))
    raise MedadError(
        f"{path}: NIfTI is a 3-D volume of shape {volume.shape}; read its slices with "
        "nifti_axial_slices (and segmentations with nifti_axial_label_slices)"
    )


def _slice_indices(indices: Sequence[int] | None, depth: int, path: Path) -> np.ndarray:
    if indices is None:
        return np.arange(depth)
    picked = np.asarray(indices)
    if picked.ndim != 1 or (picked.size and not np.issubdtype(picked.dtype, np.integer)):
        raise MedadError(f"{path}: indices must be a sequence of integers, got {indices!r}")
    bad = picked[(picked < 0) | (picked >= depth)]
    if bad.size:
        raise MedadError(f"{path}: slice index {int(bad[0])} out of range 0..{depth - 1}")
    return picked.astype(np.intp)


def _axial_display(volume: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """(X, Y, Z) RAS+ -> [K, Y, X] with anterior at the top and the patient's right on the left."""
    stack = np.transpose(volume[:, :, indices], (2, 1, 0))
    return np.flip(stack, axis=(1, 2))
