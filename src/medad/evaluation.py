"""Predictions → metrics: the single evaluator every method shares (PAPER.md, "Metrics").

Image metrics always; pixel metrics when the method produced maps and the test split has masks.
Best Dice is reported twice: exact over all thresholds (``best_dice``) and the paper's
201-order-statistic variant (``best_dice_paper``); both choose the threshold on the test masks,
so they are oracle upper bounds, not deployable operating points.

The honest counterpart (not in the study; `Protocol`): thresholds fixed before testing, at a target
false-positive rate on *normal* images and pixels, from a validation split of the normal training
images held out before training (``validation_fraction``) or, by default (the study trains on all
of them), from the training images' own scores, which are in-sample and labelled ``train``. Dice,
sensitivity and specificity at these thresholds (`THRESHOLD_METRICS`) are saved with the run's
``thresholds.json`` (`Thresholds`), which ``medad predict`` can apply to new images.

Volumes: when the test split holds slices of NIfTI volumes (ids ``<file>.nii[.gz]#<slice>``), the
volumes are also scored and evaluated as wholes (``volume_auroc``, ``volume_ap``), the way
BraTS-style data is read clinically: a patient is abnormal or not (`medad.metrics.volume`).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from medad import metrics
from medad.errors import MedadError
from medad.metrics.operating_point import (
    dataset_dice,
    sensitivity_at_specificity,
    sensitivity_specificity,
    threshold_at_fpr,
)
from medad.metrics.volume import volume_scores
from medad.predictions import Predictions

IMAGE_METRICS = ("image_auroc", "image_ap")
VOLUME_METRICS = ("volume_auroc", "volume_ap")
PIXEL_METRICS = ("pixel_auroc", "pixel_ap", "best_dice", "best_dice_paper", "aupro")
#: metrics shown by default in tables, in the paper's order
HEADLINE_METRICS = ("image_auroc", "image_ap", "pixel_auroc", "pixel_ap", "best_dice", "aupro")
#: at the thresholds of `Thresholds` (fixed without test labels)
THRESHOLD_METRICS = (
    "image_sensitivity_thr",
    "image_specificity_thr",
    "dice_thr",
    "pixel_sensitivity_thr",
    "pixel_specificity_thr",
)
#: file in the run folder holding the thresholds (`Thresholds.as_dict`)
THRESHOLDS_FILE = "thresholds.json"
#: most training images scored for in-sample thresholds by default (bounds the extra scoring
#: time; `Protocol.threshold_images` changes it)
MAX_TRAIN_IMAGES_SCORED = 256


class Protocol(BaseModel):
    """How a run sets thresholds without test labels. Set like config fields (``--set``, a bench
    entry's ``set:``) but not part of the method; the defaults keep the study's protocol (and the
    run ids: only values that differ from them enter the resolved configuration)."""

    model_config = ConfigDict(extra="forbid")

    validation_fraction: float = Field(0.0, ge=0, lt=1)
    """Share of normal training images held out before training to set thresholds on (0: train on
    all, as the study; thresholds then come from the training images' in-sample scores)."""
    threshold_fpr: float = Field(0.05, gt=0, lt=1)
    """Target false-positive rate on normal images and on normal pixels (Neyman-Pearson style)."""
    threshold_images: int = Field(MAX_TRAIN_IMAGES_SCORED, ge=1)
    """Most training images scored in-sample for the thresholds when none are held out (a subset
    drawn with the run's seed); lower it for methods that score slowly, such as the diffusion
    methods on a CPU (tens of seconds per image): fewer images, coarser thresholds."""


def split_protocol(values: dict[str, Any]) -> tuple[Protocol, dict[str, Any]]:
    """(the protocol, the remaining method-config values) from one ``--set`` mapping."""
    mine = {k: values[k] for k in Protocol.model_fields if k in values}
    rest = {k: v for k, v in values.items() if k not in Protocol.model_fields}
    try:
        return Protocol(**mine), rest
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise MedadError(f"bad evaluation protocol: {problems}") from None


def validation_indices(n_train: int, fraction: float, seed: int) -> np.ndarray:
    """Indices of the training images held out for thresholds (seeded by the run's seed), sorted;
    at least one image and at least one left for training."""
    if fraction <= 0:
        return np.zeros(0, dtype=np.int64)
    n_val = min(max(1, round(fraction * n_train)), n_train - 1)
    if n_val < 1:
        raise MedadError(f"validation_fraction {fraction}: too few training images ({n_train})")
    rng = np.random.default_rng([seed, 7919])  # its own stream: not the training order's
    return np.sort(rng.choice(n_train, size=n_val, replace=False))


@dataclass(frozen=True)
class Thresholds:
    """Decision thresholds fixed from normal images only: abnormal when score >= threshold."""

    source: Literal["validation", "train"]  #: held-out normal images, or in-sample training ones
    target_fpr: float
    n_images: int  #: normal images the thresholds were read from
    image_threshold: float
    pixel_threshold: float | None  #: None for methods without anomaly maps

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rule": "abnormal when score >= threshold"}

    def save(self, folder: Path) -> None:
        (folder / THRESHOLDS_FILE).write_text(json.dumps(self.as_dict(), indent=2))

    @classmethod
    def load(cls, folder: Path) -> Thresholds | None:
        """The thresholds saved in a run folder, None for a run made before they existed."""
        path = Path(folder) / THRESHOLDS_FILE
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
            return cls(**{k: data[k] for k in cls.__dataclass_fields__})
        except (ValueError, KeyError, TypeError) as exc:
            raise MedadError(f"{path}: unreadable thresholds ({exc})") from exc


def fit_thresholds(
    normal: Predictions, target_fpr: float, source: Literal["validation", "train"]
) -> Thresholds:
    """Thresholds at `target_fpr` on the image scores and the pooled pixels of normal images."""
    pixel = threshold_at_fpr(normal.maps, target_fpr) if normal.maps is not None else None
    image = threshold_at_fpr(normal.image_scores, target_fpr)
    return Thresholds(source, target_fpr, len(normal.ids), image, pixel)


def evaluate(
    pred: Predictions, *, aupro_fpr_limit: float = 0.3, thresholds: Thresholds | None = None
) -> dict[str, float]:
    """All metrics that `pred` supports, as plain floats keyed by metric name; with `thresholds`
    also those at the thresholds fixed without test labels (`THRESHOLD_METRICS`)."""
    out: dict[str, float] = {
        "image_auroc": metrics.image_auroc(pred.image_scores, pred.labels),
        "image_ap": metrics.image_ap(pred.image_scores, pred.labels),
        "sens_at_95spec": sensitivity_at_specificity(pred.image_scores, pred.labels, 0.95),
    }
    if thresholds is not None:
        sens, spec = sensitivity_specificity(
            pred.image_scores, pred.labels, thresholds.image_threshold
        )
        out["image_sensitivity_thr"], out["image_specificity_thr"] = sens, spec
    has_pixels = pred.maps is not None and pred.masks is not None and pred.masks.any()
    if has_pixels and thresholds is not None and thresholds.pixel_threshold is not None:
        out["dice_thr"] = dataset_dice(pred.maps, pred.masks, thresholds.pixel_threshold)
        sens, spec = sensitivity_specificity(pred.maps, pred.masks, thresholds.pixel_threshold)
        out["pixel_sensitivity_thr"], out["pixel_specificity_thr"] = sens, spec
    _, vol_labels, vol_scores = volume_scores(pred.ids, pred.labels, pred.image_scores)
    if len(np.unique(vol_labels)) == 2:  # both normal and abnormal volumes
        out["volume_auroc"] = metrics.image_auroc(vol_scores, vol_labels)
        out["volume_ap"] = metrics.image_ap(vol_scores, vol_labels)
    if pred.maps is not None and pred.masks is not None and pred.masks.any():
        # one sort per class for all five (the pixel sorts are most of the evaluation time)
        out |= metrics.pixel_metrics(pred.maps, pred.masks, aupro_fpr_limit=aupro_fpr_limit)
    return {k: float(v) for k, v in out.items() if not math.isnan(v)}
