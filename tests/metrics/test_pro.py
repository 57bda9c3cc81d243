"""AUPRO against a direct, threshold-by-threshold version of the MVTec AD algorithm."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from medad.metrics import aupro
from medad.metrics.pro import label_regions

TOLERANCE = 1e-9


def reference_aupro(maps: np.ndarray, masks: np.ndarray, fpr_limit: float) -> float:
    """MVTec AD's AUPRO written out plainly (Bergmann et al. 2021).

    Regions: 8-connected components of each mask, pooled. For every distinct threshold,
    descending, binarise (map >= t) and record FPR over all anomaly-free pixels and the mean
    per-region overlap; start at (0, 0); trapezoid up to the limit, interpolating linearly on
    the segment that crosses it; divide by the limit.
    """
    regions = []
    for image, mask in enumerate(masks):
        labelled, n_regions = ndimage.label(mask, structure=np.ones((3, 3)))
        regions += [(image, labelled == region) for region in range(1, n_regions + 1)]
    normal = ~masks
    fprs, pros = [0.0], [0.0]
    for threshold in np.unique(maps)[::-1]:
        predicted = maps >= threshold
        fprs.append(np.sum(predicted & normal) / np.sum(normal))
        overlaps = [np.sum(predicted[image] & region) / np.sum(region) for image, region in regions]
        pros.append(np.mean(overlaps))
    area = 0.0
    for x0, x1, y0, y1 in zip(fprs[:-1], fprs[1:], pros[:-1], pros[1:], strict=True):
        if x1 <= fpr_limit:
            area += 0.5 * (y0 + y1) * (x1 - x0)
            continue
        if x0 < fpr_limit:
            y_cut = y0 + (y1 - y0) * (fpr_limit - x0) / (x1 - x0)
            area += 0.5 * (y0 + y_cut) * (fpr_limit - x0)
        break
    return area / fpr_limit


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("fpr_limit", [0.01, 0.05, 0.3, 0.77, 1.0])
def test_aupro_equals_direct_algorithm(make_maps, seed: int, fpr_limit: float) -> None:
    decimals = [1, 2, None][seed % 3]
    maps, masks = make_maps(seed, n_images=5, size=12, decimals=decimals)
    assert aupro(maps, masks, fpr_limit=fpr_limit) == pytest.approx(
        reference_aupro(maps, masks, fpr_limit), abs=TOLERANCE
    )


@pytest.mark.parametrize("fpr_limit", [0.1, 0.3, 1.0])
def test_aupro_single_image_single_region(fpr_limit: float) -> None:
    rng = np.random.default_rng(0)
    masks = np.zeros((16, 16), dtype=bool)
    masks[4:9, 5:11] = True
    maps = (rng.random((16, 16)) + 0.6 * masks).round(1)
    expected = reference_aupro(maps[np.newaxis], masks[np.newaxis], fpr_limit)
    assert aupro(maps, masks, fpr_limit=fpr_limit) == pytest.approx(expected, abs=TOLERANCE)


def test_aupro_all_equal_scores() -> None:
    masks = np.zeros((2, 6, 6), dtype=bool)
    masks[0, 1:3, 1:3] = True
    maps = np.full(masks.shape, 0.25)
    # one threshold: a straight segment from (0, 0) to (1, 1)
    assert aupro(maps, masks, fpr_limit=0.3) == pytest.approx(0.15, abs=TOLERANCE)
    assert aupro(maps, masks, fpr_limit=1.0) == pytest.approx(0.5, abs=TOLERANCE)


def test_aupro_by_hand() -> None:
    masks = np.array([[1, 0, 0, 0]])
    # threshold 0.8: (FPR 1/3, PRO 0); 0.5: (1/3, 1); then PRO stays 1
    maps = np.array([[0.5, 0.1, 0.8, 0.2]])
    assert aupro(maps, masks, fpr_limit=0.5) == pytest.approx((0.5 - 1 / 3) / 0.5)
    assert aupro(maps, masks, fpr_limit=0.3) == 0.0
    # a tie moves FPR and PRO at once: a diagonal to (1/3, 1), cut at 0.3 where PRO = 0.9
    tied = np.array([[0.5, 0.5, 0.1, 0.1]])
    assert aupro(tied, masks, fpr_limit=0.3) == pytest.approx(0.5 * 0.9 * 0.3 / 0.3)


def test_perfect_map_scores_one(make_maps) -> None:
    _, masks = make_maps(5, n_images=4, size=12)
    assert aupro(masks.astype(float), masks) == pytest.approx(1.0, abs=TOLERANCE)


def test_regions_are_eight_connected_within_each_image_only() -> None:
    masks = np.zeros((2, 5, 5), dtype=bool)
    masks[0, 0, 0] = masks[0, 1, 1] = True  # diagonal neighbours: one region
    masks[0, 3, 3] = True  # separate region
    masks[1, 1, 1] = True  # same place in the next image: its own region
    labelled, n_regions = label_regions(masks)
    assert n_regions == 3
    assert labelled[0, 0, 0] == labelled[0, 1, 1]
    assert len({labelled[0, 1, 1], labelled[0, 3, 3], labelled[1, 1, 1]}) == 3


@pytest.mark.parametrize("fpr_limit", [0.05, 0.3])
def test_regions_scored_below_every_normal_pixel(fpr_limit: float) -> None:
    # All region pixels fall below the FPR cut: the curve stays at PRO 0 up to the limit.
    rng = np.random.default_rng(1)
    masks = np.zeros((3, 10, 10), dtype=bool)
    masks[1, 2:5, 2:5] = True
    maps = np.where(masks, -1.0, rng.random(masks.shape))
    assert aupro(maps, masks, fpr_limit=fpr_limit) == 0.0
    assert reference_aupro(maps, masks, fpr_limit) == 0.0


def test_region_size_weighting() -> None:
    # A big region fully found and a small one missed: PRO 1/2 at FPR 0, although 16 of 17
    # abnormal pixels are found; then one straight segment to (1, 1), at 0.3 PRO = 0.65.
    masks = np.zeros((1, 10, 10), dtype=bool)
    masks[0, :4, :4] = True
    masks[0, 8, 8] = True
    maps = np.zeros((1, 10, 10))
    maps[0, :4, :4] = 1.0
    assert aupro(maps, masks, fpr_limit=0.3) == pytest.approx((0.5 + 0.65) / 2, abs=TOLERANCE)
