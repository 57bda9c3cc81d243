"""Predictions → metrics: the single evaluator every method shares (PAPER.md, "Metrics").

Image metrics always; pixel metrics when the method produced maps and the test split has masks.
Best Dice is reported twice: exact over all thresholds (``best_dice``) and the paper's
201-order-statistic variant (``best_dice_paper``); both choose the threshold on the test masks,
so they are oracle upper bounds, not deployable operating points.

Volumes: when the test split holds slices of NIfTI volumes (ids ``<file>.nii[.gz]#<slice>``), the
volumes are also scored and evaluated as wholes (``volume_auroc``, ``volume_ap``), the way
BraTS-style data is read clinically: a patient is abnormal or not (`medad.metrics.volume`).
"""

from __future__ import annotations

import numpy as np

from medad import metrics
from medad.metrics.volume import volume_scores
from medad.predictions import Predictions

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
    _, vol_labels, vol_scores = volume_scores(pred.ids, pred.labels, pred.image_scores)
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
