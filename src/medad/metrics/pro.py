"""AUPRO: area under the per-region-overlap curve up to a false-positive-rate limit.

Definition (MVTec AD, Bergmann et al., IJCV 2021, Sec. 5.2 and their evaluation code): the
ground-truth masks are split into connected components with 8-connectivity, each image on its
own, and the regions of all images are pooled. For a threshold t (pixel abnormal when
map >= t):

* PRO(t) = mean over regions of |prediction ∩ region| / |region|;
* FPR(t) = false-positive pixels / all anomaly-free pixels of the test set.

The curve (FPR(t), PRO(t)) over all distinct thresholds, starting at (0, 0), is integrated with
the trapezoid rule from FPR 0 to `fpr_limit`, linearly interpolated at exactly `fpr_limit`, and
divided by `fpr_limit` (so a perfect map scores 1).

The computation is exact over all distinct thresholds with no loop over thresholds or regions.
Only thresholds down to the one where the FPR passes the limit matter, so an O(N)
`numpy.partition` of the anomaly-free scores finds that cut and only pixels scoring at or above
it are sorted. Along the curve, each distinct score carried by a region pixel moves the PRO by
the summed weights 1 / (region size · number of regions) of its pixels (cumulative sums) and
the FPR by its tied anomaly-free pixels, all at once; runs of anomaly-free scores in between
are horizontal and need only their end points.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from medad.errors import MedadError
from medad.metrics._sorted_classes import SortedRuns
from medad.metrics._validate import pixel_inputs

#: 8-connectivity inside each image, no connection across images of the stack.
_EIGHT_CONNECTED_PER_IMAGE = np.zeros((3, 3, 3), dtype=bool)
_EIGHT_CONNECTED_PER_IMAGE[1] = True


def label_regions(masks: np.ndarray) -> tuple[np.ndarray, int]:
    """Connected components of each [H, W] mask with 8-connectivity, numbered across the stack.

    Returns an int32 [N, H, W] array (0 = anomaly-free, 1..R = region id) and R.
    """
    labelled, n_regions = ndimage.label(masks, structure=_EIGHT_CONNECTED_PER_IMAGE)
    return labelled, int(n_regions)


def _area_up_to(x: np.ndarray, y: np.ndarray, x_max: float) -> float:
    """Trapezoid area under the polyline (x, y) (x non-decreasing) from x[0] to `x_max`.

    The curve is cut at `x_max` by linear interpolation inside the segment that crosses it.
    """
    inside = int(np.searchsorted(x, x_max, side="right"))  # points with x <= x_max
    xs, ys = x[:inside], y[:inside]
    area = float(np.sum(0.5 * (ys[1:] + ys[:-1]) * np.diff(xs)))
    last = inside - 1
    if inside < x.size and x[last] < x_max:
        fraction = (x_max - x[last]) / (x[inside] - x[last])
        y_cut = y[last] + (y[inside] - y[last]) * fraction
        area += 0.5 * (y_cut + y[last]) * (x_max - x[last])
    return area


def _pro_curve(
    positives: np.ndarray,
    weights: np.ndarray,
    negatives: SortedRuns,
    n_negatives: int,
    n_negatives_at_cut: int,
    n_regions: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Vertices of the (FP count, PRO) polyline for thresholds down to the cut.

    `positives` are the region-pixel scores at or above the cut and `weights` their
    1 / region size (PRO = cumulative weight / number of regions). `negatives` are the sorted
    anomaly-free scores at or above the cut, so counts of anomaly-free pixels at or above any
    threshold >= cut are exact; `n_negatives_at_cut` is their number, the FP count at the cut,
    already past the FPR limit. For each distinct region score v,
    descending, the curve runs horizontally to (#negatives > v, PRO before v), then to
    (#negatives >= v, PRO after v): a threshold step moves all tied pixels at once.
    """
    order = np.argsort(positives)[::-1]
    values = positives[order]
    cumulative_pro = np.cumsum(weights[order]) / n_regions
    if values.size:
        ends = np.append(np.flatnonzero(values[1:] != values[:-1]), values.size - 1)
    else:
        ends = np.zeros(0, dtype=np.intp)
    levels = values[ends]
    pro_after = cumulative_pro[ends]
    pro_before = np.concatenate(([0.0], pro_after))[:-1]
    fp_before = negatives.size - negatives.count_below(levels, side="right")
    fp_after = negatives.size - negatives.count_below(levels, side="left")
    final_pro = pro_after[-1:] if pro_after.size else np.zeros(1)
    fp = np.concatenate(([0], np.column_stack((fp_before, fp_after)).ravel(), [n_negatives_at_cut]))
    pro = np.concatenate(([0.0], np.column_stack((pro_before, pro_after)).ravel(), final_pro))
    # Rounding in the cumulative sums may overshoot 1 by a few ulps; PRO is at most 1.
    return fp / n_negatives, np.minimum(pro, 1.0)


def aupro(maps: np.ndarray, masks: np.ndarray, *, fpr_limit: float = 0.3) -> float:
    """Normalised area under the PRO curve up to `fpr_limit` (MVTec AD, Bergmann et al. 2021).

    Connected components of each mask (8-connectivity, `scipy.ndimage.label` with a 3×3 ones
    structure) are the regions, pooled over the test set. PRO(t) = mean over regions of the
    fraction of the region predicted (map >= t); FPR(t) = false positives / all anomaly-free
    pixels of all images. The curve over all distinct thresholds is integrated from FPR 0 to
    `fpr_limit` with the trapezoid rule, linearly interpolated at `fpr_limit`, and divided by
    `fpr_limit`. The default 0.3 is the MVTec AD choice.

    Args:
        maps: [N, H, W] (or [H, W]) anomaly maps, higher = more abnormal.
        masks: same shape, bool or 0/1 ground truth.
        fpr_limit: upper FPR bound of the integral, in (0, 1].

    Raises:
        MedadError: on invalid inputs, `fpr_limit` outside (0, 1], masks without any abnormal
            region, or masks without any anomaly-free pixel.
    """
    map_array, mask_array = pixel_inputs(maps, masks, "AUPRO")
    return aupro_of_checked(map_array, mask_array, fpr_limit)


def aupro_of_checked(
    map_array: np.ndarray,
    mask_array: np.ndarray,
    fpr_limit: float,
    sorted_negatives: SortedRuns | None = None,
) -> float:
    """`aupro` of inputs that passed `pixel_inputs` ([N, H, W] maps, bool masks).

    `sorted_negatives`, the anomaly-free scores already sorted (as `split_sorted` gives them),
    replaces the partition of those scores; the value is the same.
    """
    if not 0.0 < fpr_limit <= 1.0:
        raise MedadError(f"AUPRO: fpr_limit must be in (0, 1], got {fpr_limit!r}.")
    # only images with a lesion are labelled: the others hold no region pixel (and, on a
    # test set, are many), so the region ids of the mask pixels come out the same
    with_lesion = mask_array.any(axis=(1, 2))
    lesion_masks = mask_array[with_lesion]
    regions, n_regions = label_regions(lesion_masks)
    if n_regions == 0:
        raise MedadError(
            "AUPRO undefined: the masks hold no abnormal region; it needs at least one "
            "abnormal pixel in the test set."
        )
    if sorted_negatives is None:
        unsorted = map_array[~mask_array]
        n_negatives = unsorted.size
    else:
        n_negatives = sorted_negatives.size
    if n_negatives == 0:
        raise MedadError(
            "AUPRO undefined: the masks hold no anomaly-free pixel, so the false-positive rate "
            "is undefined; include normal pixels or images."
        )
    region_ids = regions[lesion_masks]
    positives = map_array[mask_array]  # same pixels, same order as region_ids
    del regions, lesion_masks
    region_sizes = np.bincount(region_ids, minlength=n_regions + 1)

    # Thresholds whose FP count stays <= floor(limit · n_negatives) lie above the (k+1)-th
    # largest anomaly-free score with k that floor; one more (the +1) keeps the last vertex
    # safely past the limit whatever the rounding of limit · n_negatives.
    keep = math.floor(fpr_limit * n_negatives) + 2
    cut_index = n_negatives - keep if keep < n_negatives else None
    if sorted_negatives is None:
        if cut_index is not None:
            unsorted.partition(cut_index)
            cut = unsorted[cut_index]
            unsorted = unsorted[unsorted >= cut]
        unsorted.sort()
        negatives = SortedRuns.of(unsorted)
    else:
        negatives = sorted_negatives
        if cut_index is not None:
            cut = negatives.order_statistics(np.array([cut_index]))[0]
            negatives = negatives.at_least(cut)
    if cut_index is not None:
        above = positives >= cut
        positives, region_ids = positives[above], region_ids[above]
    weights = 1.0 / region_sizes[region_ids]
    fpr, pro = _pro_curve(positives, weights, negatives, n_negatives, negatives.size, n_regions)
    return _area_up_to(fpr, pro, fpr_limit) / fpr_limit
