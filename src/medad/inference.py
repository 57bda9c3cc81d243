"""Score new images with a trained run (``medad predict``), with results in each input's geometry.

Reads every image in a folder (PNG, JPEG, TIFF, BMP, DICOM, NIfTI), preprocesses it exactly as the
run's training data and scores it. What it writes into the output folder:

- ``scores.csv``: one row per input file: its score, the score's percentile among the run's
  *normal* test scores (a calibration-free way to read it; a volume's among the run's normal
  test volumes, or its normal test images when it was trained on 2-D images), the label at the
  image threshold (``anomalous`` / ``normal``), where its map, mask and overlay are, and any
  warning (an input unlike the training images).
- Maps at the input's own size (the method's map resized back, `map_to_source`):
  ``maps/<name>.tif`` (float32) for 2-D images and DICOM; for a NIfTI volume one
  ``maps/<name>.nii.gz`` volume with the input's affine and header, its slices scored one by one
  (``slices.csv``) and the volume scored by `medad.evaluation.volume_score` (mean of the top 10 %
  of slice scores). The NIfTI map's ``cal_min``/``cal_max`` hold the run's colour scale.
- Masks at the pixel threshold: ``masks/<name>.png`` (0/255) or ``masks/<name>.nii.gz`` (0/1).
- Overlays for 2-D inputs: ``overlays/<name>.png``; for DICOM also ``overlays/<name>.dcm``, an RGB
  Secondary Capture in the input's study (new series, same patient, study and frame of
  reference, pixel spacing and position copied, the source referenced), which a PACS viewer shows
  beside the original. Volumes get no overlay: load the map over the input in a viewer.
- ``predict.json``: the run, the colour scale and thresholds used and where each came from.

Colour scale and thresholds are fixed per run, never per batch, so the same image gives the same
overlay whatever else is in the folder: the scale runs from the median to the 99.9th percentile of
the anomaly-map values of the run's normal test images (`predictions.npz`). Thresholds, in order:
``--threshold`` / ``--pixel-threshold``; the run's stored ones (``thresholds.json``, fixed on
normal validation or training images: `medad.evaluation`); else image scores at or above the 95th
percentile of the run's normal test image scores are ``anomalous`` and pixels at or above the top
of the colour scale are masked (abnormal when score >= threshold, as ``thresholds.json`` states).
Both fallbacks use the run's normal *test* images (labels, never masks): say so when reporting.

Inputs unlike the training images (channels, size, intensity; `medad.data.profile`) are flagged.
Output is assembled in a staging folder and renamed into place when complete (`medad.outputs`:
never over files medad did not write).
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import yaml
from PIL import Image

from medad import engine
from medad.data.base import Record
from medad.data.layouts import _stem
from medad.data.loading import VolumeSlices, decode_records, map_to_source
from medad.data.profile import InputProfile
from medad.data.readers import file_format, is_image_file, nifti_depth, read_image
from medad.errors import MedadError
from medad.methods.base import Method, build_config, method_class
from medad.metrics.volume import volume_score, volume_scores
from medad.outputs import check_output_dir, output_dir
from medad.predictions import Predictions

#: colour scale of maps: from this percentile of the normal test images' map values ...
SCALE_LOW_PERCENTILE = 50.0
#: ... to this one (also the fallback pixel threshold: what saturates the scale is masked)
SCALE_HIGH_PERCENTILE = 99.9
#: at most about this many map values (a regular subsample) are read for the colour scale
SCALE_MAX_VALUES = 10_000_000
#: fallback image threshold: this percentile of the run's normal test image scores (5 % of the
#: normal test images would be called anomalous)
IMAGE_THRESHOLD_PERCENTILE = 95.0
#: the overlay's heat colour map and its opacity at the top of the scale (transparent at the bottom)
OVERLAY_COLORMAP, OVERLAY_ALPHA = "inferno", 0.6


@dataclass
class LoadedRun:
    method: Method
    pre: object
    reference_normal_scores: np.ndarray | None
    #: the run's test predictions (normal and abnormal), for scales and thresholds; None if absent
    reference: Predictions | None = None
    profile: InputProfile | None = None
    stored_thresholds: dict[str, float] = field(default_factory=dict)
    #: which normal images the stored thresholds were read from ("validation", "train")
    thresholds_source: str | None = None


def load_run(run_dir: Path, device: str | None = None) -> LoadedRun:
    """Rebuild a trained method from its run folder (config.yaml + checkpoint.pt)."""
    run_dir = Path(run_dir)
    cfg_path, ckpt = run_dir / "config.yaml", run_dir / "checkpoint.pt"
    for p in (cfg_path, ckpt):
        if not p.is_file():
            raise MedadError(f"{p}: not found; is {run_dir} a medad run folder?")
    try:
        cfg = yaml.safe_load(cfg_path.read_text())
        cls = method_class(cfg["method"])
        config = build_config(cls, cfg["config"])
        channels = int(cfg.get("channels", 1))
    except (yaml.YAMLError, KeyError, TypeError) as exc:
        raise MedadError(f"{cfg_path}: not a medad run configuration ({exc})") from None
    dev = engine.resolve_device(device)
    method = cls(config, channels)
    try:
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
        method.load_state_dict(state)
    except Exception as exc:  # noqa: BLE001 - any unreadable checkpoint is the same user error
        raise MedadError(f"{ckpt}: cannot load the checkpoint ({exc})") from None
    options = engine.TrainOptions(**(cfg.get("training") or {}))  # scored as it was trained
    engine.place(method, dev, options).eval()
    pred = ref = None
    if (run_dir / "predictions.npz").is_file():
        pred = Predictions.load(run_dir / "predictions.npz")
        ref = np.sort(pred.image_scores[pred.labels == 0])
    return LoadedRun(
        method,
        cls.preprocess(config, channels),
        ref,
        pred,
        InputProfile.load(run_dir),
        *_stored_thresholds(run_dir),
    )


def _stored_thresholds(run_dir: Path) -> tuple[dict[str, float], str | None]:
    """``image`` and ``pixel`` thresholds of the run's ``thresholds.json`` (written at training,
    fixed on normal images without test labels: `medad.evaluation.Thresholds`), when it has one."""
    from medad.evaluation import Thresholds

    stored = Thresholds.load(run_dir)
    if stored is None:
        return {}, None
    out = {"image": stored.image_threshold}
    if stored.pixel_threshold is not None:
        out["pixel"] = stored.pixel_threshold
    return out, stored.source


@dataclass
class InputFile:
    """One input file and its records: one for a 2-D image, one per axial slice for a volume."""

    rel: str
    path: Path
    kind: Literal["image", "dicom", "volume"]
    first: int
    count: int


def input_records(folder: Path) -> tuple[list[InputFile], list[Record]]:
    """Every image in `folder` (sorted, recursive); NIfTI volumes become one record per slice."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MedadError(f"{folder}: input folder not found")
    files: list[InputFile] = []
    records: list[Record] = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and is_image_file(p)):
        rel = path.relative_to(folder).as_posix()
        fmt = file_format(path)
        depth = nifti_depth(path) if fmt == "nifti" else 0
        if depth:
            files.append(InputFile(rel, path, "volume", len(records), depth))
            records += [Record(f"{rel}#{k}", 0, path, slice=k) for k in range(depth)]
        else:
            files.append(
                InputFile(rel, path, "dicom" if fmt == "dicom" else "image", len(records), 1)
            )
            records.append(Record(rel, 0, path))
    if not records:
        raise MedadError(f"{folder}: no image files (PNG, JPEG, TIFF, DICOM, NIfTI) found")
    return files, records


@dataclass(frozen=True)
class ColourScale:
    """Map values shown from `low` (transparent) to `high` (full heat colour), fixed per run."""

    low: float
    high: float
    source: str

    def unit(self, amap: np.ndarray) -> np.ndarray:
        return np.clip((amap - self.low) / max(self.high - self.low, 1e-12), 0.0, 1.0)


def colour_scale(reference: Predictions | None, batch_maps: np.ndarray) -> ColourScale:
    """The run's scale (its normal test images' maps), else this batch's (with a warning)."""
    values, source = None, ""
    if reference is not None and reference.maps is not None and (reference.labels == 0).any():
        values = reference.maps[reference.labels == 0]
        source = "run: normal test maps"
    else:
        values = batch_maps
        source = "this batch (the run has no normal test maps): not comparable across batches"
    flat = np.ravel(values)
    flat = flat[:: max(1, flat.size // SCALE_MAX_VALUES)]  # a fixed, regular subsample
    low, high = np.percentile(flat, [SCALE_LOW_PERCENTILE, SCALE_HIGH_PERCENTILE])
    return ColourScale(float(low), float(max(high, low)), source)


def _threshold(
    given: float | None,
    stored: float | None,
    fallback: float | None,
    fallback_rule: str,
    origin: str = "",
) -> tuple[float | None, str]:
    """(threshold, where it came from): given, else stored with the run, else the fallback."""
    if given is not None:
        return float(given), "given on the command line"
    if stored is not None:
        return stored, f"run: thresholds.json{origin}"
    if fallback is not None:
        return fallback, f"fallback: {fallback_rule}"
    return None, "none"


def overlay(image: np.ndarray, amap: np.ndarray, scale: ColourScale) -> np.ndarray:
    """RGB uint8 [H, W, 3]: the image (gray or colour, [0, 1]) under the map's heat colours, whose
    opacity grows with the map value, so that values at the scale's bottom leave the image as is."""
    import matplotlib

    rgb = image[..., None].repeat(3, axis=-1) if image.ndim == 2 else image[..., :3]
    unit = scale.unit(amap)[..., None]
    heat = matplotlib.colormaps[OVERLAY_COLORMAP](unit[..., 0])[..., :3]
    alpha = OVERLAY_ALPHA * unit
    return np.uint8(np.rint(255 * ((1 - alpha) * rgb + alpha * heat)))


def _output_names(files: list[InputFile]) -> list[str]:
    """Output name of each input: its relative path without extension; inputs sharing one (a.png
    and a.dcm) keep their extension in it (a_png, a_dcm)."""
    stems = [str(Path(f.rel).parent / _stem(Path(f.rel))) for f in files]
    taken = Counter(stems)
    out = []
    for f, stem in zip(files, stems, strict=True):
        if taken[stem] > 1:
            ext = f.rel[len(stem) :].lstrip(".").replace(".", "_")
            stem = f"{stem}_{ext}"
        out.append(stem.removeprefix("./"))
    return out


@dataclass
class PredictResult:
    scores_csv: Path
    #: one line per input unlike the training data, or per note on how results were made
    warnings: list[str]


def predict_folder(
    run_dir: Path,
    input_dir: Path,
    out: Path,
    device: str | None = None,
    *,
    overwrite: bool = False,
    threshold: float | None = None,
    pixel_threshold: float | None = None,
    batch_size: int | None = None,
) -> PredictResult:
    """Score the images of `input_dir` with the run in `run_dir`; write results into `out`.

    `out` follows `medad.outputs`: a new or empty folder, or (with `overwrite`) an earlier
    ``medad predict`` output; never the run folder, the input folder, or a folder around them.
    `threshold` (image scores) and `pixel_threshold` (map values) replace the run's (module docs).
    """
    inputs = {"RUN_DIR": Path(run_dir), "--input": Path(input_dir)}
    loaded = load_run(run_dir, device)
    check_output_dir(out, "predict", overwrite=overwrite, inputs=inputs)  # before the slow part
    files, records = input_records(input_dir)
    pre = loaded.pre
    split = decode_records(records, pre, with_masks=False)  # type: ignore[arg-type]
    pred = engine.predict(loaded.method, split, pre, device=device, batch_size=batch_size)  # type: ignore[arg-type]
    ref = loaded.reference
    notes: list[str] = []
    if ref is None:
        notes.append(
            f"{run_dir}: no predictions.npz; colour scale from this batch, no percentiles and "
            "no label unless --threshold is given"
        )
    normal_scores = loaded.reference_normal_scores
    normal_volumes: np.ndarray | None = None
    if ref is not None:
        _, vol_labels, vol_scores = volume_scores(ref.ids, ref.labels, ref.image_scores)
        if (vol_labels == 0).any():
            normal_volumes = np.sort(vol_scores[vol_labels == 0])
    image_fallback = (
        float(np.percentile(normal_scores, IMAGE_THRESHOLD_PERCENTILE))
        if normal_scores is not None and len(normal_scores)
        else None
    )
    origin = f" ({loaded.thresholds_source} images)" if loaded.thresholds_source else ""
    image_thr, image_src = _threshold(
        threshold,
        loaded.stored_thresholds.get("image"),
        image_fallback,
        f"{IMAGE_THRESHOLD_PERCENTILE:g}th percentile of the run's normal test image scores",
        origin,
    )
    scale = colour_scale(ref, pred.maps) if pred.maps is not None else None
    pixel_thr, pixel_src = _threshold(
        pixel_threshold,
        loaded.stored_thresholds.get("pixel"),
        scale.high if scale is not None else None,
        "top of the colour scale",
        origin,
    )
    names = _output_names(files)
    volumes = VolumeSlices()
    with output_dir(out, "predict", overwrite=overwrite, inputs=inputs) as stage:
        rows, slice_rows = [], []
        for f, name in zip(files, names, strict=True):
            idx = list(range(f.first, f.first + f.count))
            if f.kind == "volume":
                score = volume_score(pred.image_scores[idx])
                slice_rows += [[f.rel, k, f"{pred.image_scores[i]:.6g}"] for k, i in enumerate(idx)]
                # among normal test volumes when the run has them, else among normal images
                ranks_against = normal_volumes if normal_volumes is not None else normal_scores
                probe = idx[len(idx) // 2]  # the middle slice stands for the volume's intensity
            else:
                score = float(pred.image_scores[idx[0]])
                ranks_against, probe = normal_scores, idx[0]
            pct = ""
            if ranks_against is not None and len(ranks_against):
                rank = np.searchsorted(ranks_against, score, side="right")
                pct = f"{100.0 * rank / len(ranks_against):.1f}"
            label = "" if image_thr is None else ("anomalous" if score >= image_thr else "normal")
            differs = (
                loaded.profile.differences(tuple(split.source_shapes[probe]), split.images[probe])
                if loaded.profile is not None and split.source_shapes is not None
                else []
            )
            warning = "; ".join(differs)
            if warning:
                notes.append(f"{f.rel}: unlike the training images: {warning}")
            written = {"map": "", "mask": "", "overlay": ""}
            if pred.maps is not None and scale is not None:
                written = _write_maps(
                    stage,
                    f,
                    name,
                    pred.maps[idx],
                    pre,
                    scale,
                    pixel_thr,
                    volumes,
                    (int(split.source_shapes[idx[0]][0]), int(split.source_shapes[idx[0]][1])),  # type: ignore[index]
                )
            rows.append([f.rel, f"{score:.6g}", pct, label, *written.values(), warning])
        with open(stage / "scores.csv", "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(
                ["file", "score", "normal_percentile", "label", "map", "mask", "overlay", "warning"]
            )
            writer.writerows(rows)
        if slice_rows:
            with open(stage / "slices.csv", "w", newline="") as fh:
                writer = csv.writer(fh)
                writer.writerow(["file", "slice", "score"])
                writer.writerows(slice_rows)
        summary = {
            "run": str(Path(run_dir).resolve()),
            "image_threshold": image_thr,
            "image_threshold_source": image_src,
            "pixel_threshold": pixel_thr,
            "pixel_threshold_source": pixel_src,
            "colour_scale": None if scale is None else [scale.low, scale.high],
            "colour_scale_source": None if scale is None else scale.source,
            "volume_score": "mean of the top 10 % of slice scores (at least one slice)",
            "notes": notes,
        }
        (stage / "predict.json").write_text(json.dumps(summary, indent=1))
    return PredictResult(Path(out) / "scores.csv", notes)


def _write_maps(
    stage: Path,
    f: InputFile,
    name: str,
    maps: np.ndarray,
    pre: object,
    scale: ColourScale,
    pixel_thr: float | None,
    volumes: VolumeSlices,
    size_hw: tuple[int, int],
) -> dict[str, str]:
    """Write one input's map, mask and overlay at its own size; their paths relative to `stage`."""
    full = np.stack([map_to_source(m, size_hw, pre) for m in maps])  # type: ignore[arg-type]
    mask = full >= pixel_thr if pixel_thr is not None else None
    paths = {"map": "", "mask": "", "overlay": ""}
    if f.kind == "volume":
        from medad.data.readers import nifti_volume_from_axial

        paths["map"] = _save_nifti(
            nifti_volume_from_axial(full, f.path), f.path, stage, f"maps/{name}.nii.gz", scale
        )
        if mask is not None:
            vol = nifti_volume_from_axial(mask.astype(np.uint8), f.path)
            paths["mask"] = _save_nifti(vol, f.path, stage, f"masks/{name}.nii.gz", None)
        return paths
    paths["map"] = f"maps/{name}.tif"
    _target(stage, paths["map"])
    Image.fromarray(full[0], mode="F").save(stage / paths["map"])
    if mask is not None:
        paths["mask"] = f"masks/{name}.png"
        Image.fromarray(np.uint8(mask[0]) * 255).save(_target(stage, paths["mask"]))
    rgb = overlay(read_image(f.path), full[0], scale)
    paths["overlay"] = f"overlays/{name}.png"
    Image.fromarray(rgb).save(_target(stage, paths["overlay"]))
    if f.kind == "dicom":
        from medad.data.secondary_capture import write_secondary_capture

        write_secondary_capture(f.path, rgb, _target(stage, f"overlays/{name}.dcm"))
    return paths


def _target(stage: Path, rel: str) -> Path:
    path = stage / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _save_nifti(
    values: np.ndarray, like: Path, stage: Path, rel: str, scale: ColourScale | None
) -> str:
    """Save `values` with the affine and header of `like` (data type, scaling and display range
    set for the new values); returns `rel`."""
    import nibabel as nib

    src = nib.load(like)
    header = src.header.copy()
    dtype = np.float32 if scale is not None else np.uint8
    header.set_data_dtype(dtype)
    img = type(src)(values.astype(dtype), src.affine, header=header)
    img.header.set_slope_inter(1.0, 0.0)
    low, high = (scale.low, scale.high) if scale is not None else (0.0, 1.0)
    img.header["cal_min"], img.header["cal_max"] = low, high
    img.header["descrip"] = b"medad anomaly map" if scale is not None else b"medad anomaly mask"
    nib.save(img, _target(stage, rel))
    return rel
