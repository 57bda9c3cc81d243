"""Every pooled pixel metric from one sort per class: what `medad.evaluation` computes per run.

`pixel_auroc`, `pixel_ap`, `best_dice` (both methods) and `aupro` each check their input and sort
the pixel scores of each class on their own; on a BraTS-sized test set (2,776 maps of 256²,
182 M pixels) those sorts are most of the evaluation time. `pixel_metrics` checks the input
once, sorts each class once (`split_sorted`) and derives all five values from the same sorted
arrays, with the very same formulas as the single-metric functions, so the values are identical.
"""

from __future__ import annotations

import numpy as np

from medad.metrics._sorted_classes import positive_levels, split_sorted
from medad.metrics._validate import pixel_inputs, require_both_classes
from medad.metrics.pro import aupro_of_checked
from medad.metrics.ranking import auroc_of_sorted, average_precision_of_levels
from medad.metrics.segmentation import best_dice_of_levels, best_dice_paper_of_sorted


def pixel_metrics(
    maps: np.ndarray, masks: np.ndarray, *, aupro_fpr_limit: float = 0.3
) -> dict[str, float]:
    """pixel_auroc, pixel_ap, best_dice (exact), best_dice_paper and aupro of `maps` vs `masks`.

    Same values as `pixel_auroc`, `pixel_ap`, `best_dice(method="exact")`,
    `best_dice(method="paper")` and `aupro(fpr_limit=aupro_fpr_limit)` called one by one.

    Raises:
        MedadError: on invalid inputs or masks holding a single class.
    """
    map_array, mask_array = pixel_inputs(maps, masks, "pixel metrics")
    n_pos, _ = require_both_classes(mask_array.reshape(-1), "pixel metrics", "mask pixels")
    positives, negatives = split_sorted(map_array.reshape(-1), mask_array.reshape(-1))
    levels = positive_levels(positives, negatives)
    return {
        "pixel_auroc": float(auroc_of_sorted(positives, negatives)),
        "pixel_ap": average_precision_of_levels(levels, n_pos),
        "best_dice": best_dice_of_levels(levels, n_pos)[0],
        "best_dice_paper": best_dice_paper_of_sorted(positives, negatives)[0],
        "aupro": aupro_of_checked(map_array, mask_array, aupro_fpr_limit, negatives),
    }
