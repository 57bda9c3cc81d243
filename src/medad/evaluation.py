"""Predictions → metrics: the single evaluator every method shares (PAPER.md, "Metrics").

Image metrics always; pixel metrics when the method produced maps and the test split has masks.
Best Dice is reported twice: exact over all thresholds (``best_dice``) and the paper's
201-order-statistic variant (``best_dice_paper``); both choose the threshold on the test masks,
so they are oracle upper bounds, not deployable operating points.
"""

from __future__ import annotations

from medad import metrics
from medad.predictions import Predictions

IMAGE_METRICS = ("image_auroc", "image_ap")
PIXEL_METRICS = ("pixel_auroc", "pixel_ap", "best_dice", "best_dice_paper", "aupro")
#: metrics shown by default in tables, in the paper's order
HEADLINE_METRICS = ("image_auroc", "image_ap", "pixel_auroc", "pixel_ap", "best_dice", "aupro")


def evaluate(pred: Predictions, *, aupro_fpr_limit: float = 0.3) -> dict[str, float]:
    """All metrics that `pred` supports, as plain floats keyed by metric name."""
    out: dict[str, float] = {
        "image_auroc": metrics.image_auroc(pred.image_scores, pred.labels),
        "image_ap": metrics.image_ap(pred.image_scores, pred.labels),
    }
    if pred.maps is not None and pred.masks is not None and pred.masks.any():
        # one sort per class for all five (the pixel sorts are most of the evaluation time)
        out |= metrics.pixel_metrics(pred.maps, pred.masks, aupro_fpr_limit=aupro_fpr_limit)
    return {k: float(v) for k, v in out.items()}
