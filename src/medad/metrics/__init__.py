"""Evaluation metrics: pure NumPy/SciPy functions of saved scores, maps and ground truth.

Scores or maps come first, labels or masks second; label 1 (abnormal) is the positive class.
Image metrics take [N] scores; pixel metrics take [N, H, W] maps (or one [H, W] map) and pool
all pixels of all images, normal images included. Every function raises `MedadError` on input
it cannot evaluate.
"""

from medad.metrics.pooled import pixel_metrics
from medad.metrics.pro import aupro
from medad.metrics.ranking import image_ap, image_auroc, pixel_ap, pixel_auroc
from medad.metrics.segmentation import best_dice, best_dice_threshold, dice, f1_max

__all__ = [
    "aupro",
    "best_dice",
    "best_dice_threshold",
    "dice",
    "f1_max",
    "image_ap",
    "image_auroc",
    "pixel_ap",
    "pixel_auroc",
    "pixel_metrics",
]
