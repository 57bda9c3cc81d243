"""Score new images with a trained run (``medad predict``).

Reads every image in a folder (PNG, JPEG, TIFF, DICOM; NIfTI volumes give one image per axial
slice), preprocesses it exactly as the run's training data, and writes ``scores.csv`` (file, score,
and the score's percentile among the run's *normal* test scores, a calibration-free way to read it)
plus, for methods with maps, an overlay PNG per image. Output is assembled in a staging folder
and renamed into place when complete (`medad.outputs`: never over files medad did not write).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml
from PIL import Image

from medad import engine
from medad.data.base import Record
from medad.data.layouts import _stem
from medad.data.loading import decode_records
from medad.data.readers import is_image_file, nifti_axial_slices
from medad.errors import MedadError
from medad.methods.base import Method, build_config, method_class
from medad.outputs import check_output_dir, output_dir
from medad.predictions import Predictions


@dataclass
class LoadedRun:
    method: Method
    pre: object
    reference_normal_scores: np.ndarray | None


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
    method.to(dev).eval()
    ref = None
    if (run_dir / "predictions.npz").is_file():
        pred = Predictions.load(run_dir / "predictions.npz")
        ref = np.sort(pred.image_scores[pred.labels == 0])
    return LoadedRun(method, cls.preprocess(config, channels), ref)


def input_records(folder: Path) -> list[Record]:
    """Every image in `folder` (sorted, recursive); NIfTI volumes become one record per slice."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MedadError(f"{folder}: input folder not found")
    records: list[Record] = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and is_image_file(p)):
        rel = path.relative_to(folder).as_posix()
        if path.name.lower().endswith((".nii", ".nii.gz")):
            slices = nifti_axial_slices(path)
            if slices.shape[0] > 1:
                records += [Record(f"{rel}#{k}", 0, s) for k, s in enumerate(slices)]
                continue
        records.append(Record(rel, 0, path))
    if not records:
        raise MedadError(f"{folder}: no image files (PNG, JPEG, TIFF, DICOM, NIfTI) found")
    return records


def _overlay(image: np.ndarray, amap: np.ndarray, vmax: float) -> Image.Image:
    import matplotlib

    gray = image[0] if image.shape[0] == 1 else image.mean(axis=0)
    rgb = np.repeat(gray[..., None].astype(np.float32) / 255.0, 3, axis=-1)
    heat = matplotlib.colormaps["inferno"](np.clip(amap / max(vmax, 1e-12), 0, 1))[..., :3]
    alpha = 0.45
    return Image.fromarray(np.uint8(255 * ((1 - alpha) * rgb + alpha * heat)))


def predict_folder(
    run_dir: Path,
    input_dir: Path,
    out: Path,
    device: str | None = None,
    *,
    overwrite: bool = False,
) -> Path:
    """Score the images of `input_dir` with the run in `run_dir`; write results into `out`.

    `out` follows `medad.outputs`: a new or empty folder, or (with `overwrite`) an earlier
    ``medad predict`` output; never the run folder, the input folder, or a folder around them.
    """
    inputs = {"RUN_DIR": Path(run_dir), "--input": Path(input_dir)}
    loaded = load_run(run_dir, device)
    check_output_dir(out, "predict", overwrite=overwrite, inputs=inputs)  # before the slow part
    records = input_records(input_dir)
    split = decode_records(records, loaded.pre, with_masks=False)  # type: ignore[arg-type]
    pred = engine.predict(loaded.method, split, loaded.pre, device=device)  # type: ignore[arg-type]
    with output_dir(out, "predict", overwrite=overwrite, inputs=inputs) as stage:
        ref = loaded.reference_normal_scores
        with open(stage / "scores.csv", "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["file", "score", "normal_percentile", "map"])
            vmax = float(np.percentile(pred.maps, 99.5)) if pred.maps is not None else 0.0
            for i, rid in enumerate(pred.ids):
                pct = ""
                if ref is not None and len(ref):
                    rank = np.searchsorted(ref, pred.image_scores[i], side="right")
                    pct = f"{100.0 * rank / len(ref):.1f}"
                map_name = ""
                if pred.maps is not None:
                    map_name = f"maps/{_stem(Path(rid.replace('#', '_slice')))}_{i:05d}.png"
                    (stage / "maps").mkdir(exist_ok=True)
                    _overlay(split.images[i], pred.maps[i], vmax).save(stage / map_name)
                writer.writerow([rid, f"{pred.image_scores[i]:.6g}", pct, map_name])
    return Path(out) / "scores.csv"
