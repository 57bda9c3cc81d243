"""Predictions → metrics: the single evaluator every method shares (PAPER.md, "Metrics").

Image metrics always; pixel metrics when the method produced maps and the test split has masks.
Best Dice is reported twice: exact over all thresholds (``best_dice``) and the paper's
201-order-statistic variant (``best_dice_paper``); both choose the threshold on the test masks,
so they are oracle upper bounds, not deployable operating points.

Volumes: when the test split holds slices of NIfTI volumes (ids ``<file>.nii[.gz]#<slice>``), the
volumes are also scored and evaluated as wholes (``volume_auroc``, ``volume_ap``), the way
BraTS-style data is read clinically: a patient is abnormal or not. A volume's score is
`volume_score` of its slice scores, its label the largest of its slices' labels.
"""

from __future__ import annotations

import math
import re

import numpy as np

from medad import metrics
from medad.predictions import Predictions

#: a slice of a NIfTI volume: ``<volume file>#<axial index>`` (`medad.data.base.Record.slice`)
VOLUME_SLICE_ID = re.compile(r"^(?P<volume>.+\.nii(?:\.gz)?)#(?P<slice>\d+)$", re.IGNORECASE)
#: a volume's score is the mean of its top this fraction of slice scores (at least one slice):
#: the max, as for a single image, when a volume has up to 10 slices; less at the mercy of one
#: noisy slice than the max when it has many (a lesion spans several axial slices)
VOLUME_TOP_FRACTION = 0.1

IMAGE_METRICS = ("image_auroc", "image_ap")
VOLUME_METRICS = ("volume_auroc", "volume_ap")
PIXEL_METRICS = ("pixel_auroc", "pixel_ap", "best_dice", "best_dice_paper", "aupro")
#: metrics shown by default in tables, in the paper's order
HEADLINE_METRICS = ("image_auroc", "image_ap", "pixel_auroc", "pixel_ap", "best_dice", "aupro")


def evaluate(pred: Predictions, *, aupro_fpr_limit: float = 0.3) -> dict[str, float]:
    """All metrics that `pred` supports, as plain floats keyed by metric name."""
    out: dict[str, float] = {
        "image_auroc": metrics.image_auroc(pred.image_scores, pred.labels),
        "image_ap": metrics.image_ap(pred.image_scores, pred.labels),
    }
    _, vol_labels, vol_scores = volume_predictions(pred)
    if len(np.unique(vol_labels)) == 2:  # both normal and abnormal volumes
        out["volume_auroc"] = metrics.image_auroc(vol_scores, vol_labels)
        out["volume_ap"] = metrics.image_ap(vol_scores, vol_labels)
    if pred.maps is not None and pred.masks is not None and pred.masks.any():
        out["pixel_auroc"] = metrics.pixel_auroc(pred.maps, pred.masks)
        out["pixel_ap"] = metrics.pixel_ap(pred.maps, pred.masks)
        out["best_dice"] = metrics.best_dice(pred.maps, pred.masks, method="exact")
        out["best_dice_paper"] = metrics.best_dice(pred.maps, pred.masks, method="paper")
        out["aupro"] = metrics.aupro(pred.maps, pred.masks, fpr_limit=aupro_fpr_limit)
    return {k: float(v) for k, v in out.items()}


def volume_score(slice_scores: np.ndarray) -> float:
    """The mean of the top `VOLUME_TOP_FRACTION` of a volume's slice scores (at least one)."""
    ordered = np.sort(np.asarray(slice_scores, dtype=np.float64))[::-1]
    k = max(1, math.ceil(VOLUME_TOP_FRACTION * len(ordered)))
    return float(ordered[:k].mean())


def volume_groups(ids: list[str]) -> dict[str, list[int]]:
    """Positions of the slices of each volume in `ids`, by volume (empty when none is a slice)."""
    groups: dict[str, list[int]] = {}
    for i, rid in enumerate(ids):
        if (m := VOLUME_SLICE_ID.match(rid)) is not None:
            groups.setdefault(m["volume"], []).append(i)
    return groups


def volume_predictions(pred: Predictions) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(volume ids, labels, scores) of the volumes whose slices `pred` holds."""
    groups = volume_groups(pred.ids)
    labels = np.array([int(pred.labels[g].max()) for g in groups.values()], dtype=np.int64)
    scores = np.array([volume_score(pred.image_scores[g]) for g in groups.values()])
    return list(groups), labels, scores
