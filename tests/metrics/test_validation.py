"""Every metric refuses input it cannot evaluate with a `MedadError` that says why."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from medad.errors import MedadError
from medad.metrics import (
    aupro,
    best_dice,
    best_dice_threshold,
    dice,
    f1_max,
    image_ap,
    image_auroc,
    pixel_ap,
    pixel_auroc,
)

IMAGE_METRICS = [image_auroc, image_ap, f1_max]
PIXEL_METRICS = [pixel_auroc, pixel_ap, best_dice, aupro, f1_max]

MAPS = np.linspace(0.0, 1.0, 2 * 4 * 4).reshape(2, 4, 4)
MASKS = MAPS > 0.8


@pytest.mark.parametrize("metric", IMAGE_METRICS)
def test_image_shape_mismatch_names_both_shapes(metric: Callable) -> None:
    with pytest.raises(MedadError, match=r"\(3,\).*\(4,\)"):
        metric(np.zeros(3), np.array([0, 1, 0, 1]))


@pytest.mark.parametrize("metric", PIXEL_METRICS + [dice])
def test_pixel_shape_mismatch_names_both_shapes(metric: Callable) -> None:
    with pytest.raises(MedadError, match=r"\(2, 4, 4\).*\(2, 1, 4, 4\)"):
        metric(MAPS, MASKS[:, np.newaxis])


@pytest.mark.parametrize("metric", [image_auroc, image_ap])
def test_image_scores_must_be_one_dimensional(metric: Callable) -> None:
    with pytest.raises(MedadError, match="1-D"):
        metric(np.zeros((2, 2)), np.array([[0, 1], [1, 0]]))


@pytest.mark.parametrize("metric", PIXEL_METRICS + [dice])
def test_maps_must_be_two_or_three_dimensional(metric: Callable) -> None:
    with pytest.raises(MedadError, match=r"\[N, H, W\]"):
        metric(MAPS[:, np.newaxis], MASKS[:, np.newaxis])


@pytest.mark.parametrize("metric", IMAGE_METRICS)
@pytest.mark.parametrize("labels", [[0, 2, 1], [0.0, 0.5, 1.0], [-1, 0, 1]])
def test_labels_must_be_zero_or_one(metric: Callable, labels: list) -> None:
    with pytest.raises(MedadError, match="0 .*or 1"):
        metric(np.array([0.1, 0.2, 0.3]), np.array(labels))


@pytest.mark.parametrize("metric", PIXEL_METRICS + [dice])
def test_masks_must_be_binary(metric: Callable) -> None:
    with pytest.raises(MedadError, match="binarise"):
        metric(MAPS, MASKS * 0.5)


@pytest.mark.parametrize("metric", [image_auroc, image_ap])
def test_auroc_and_ap_need_both_classes(metric: Callable) -> None:
    with pytest.raises(MedadError, match="undefined: all labels are 1"):
        metric(np.array([0.1, 0.2]), np.array([1, 1]))
    with pytest.raises(MedadError, match="undefined: all labels are 0"):
        metric(np.array([0.1, 0.2]), np.array([0, 0]))


@pytest.mark.parametrize("metric", [pixel_auroc, pixel_ap])
def test_pixel_auroc_and_ap_need_both_classes(metric: Callable) -> None:
    with pytest.raises(MedadError, match="undefined: all mask pixels are 1"):
        metric(MAPS, np.ones_like(MASKS))
    with pytest.raises(MedadError, match="undefined: all mask pixels are 0"):
        metric(MAPS, np.zeros_like(MASKS))


@pytest.mark.parametrize("metric", [best_dice, f1_max])
def test_dice_and_f1_need_an_abnormal_pixel(metric: Callable) -> None:
    with pytest.raises(MedadError, match="undefined: all .* are 0"):
        metric(MAPS, np.zeros_like(MASKS))
    assert metric(MAPS, np.ones_like(MASKS)) == 1.0


def test_aupro_needs_regions_and_normal_pixels() -> None:
    with pytest.raises(MedadError, match="no abnormal region"):
        aupro(MAPS, np.zeros_like(MASKS))
    with pytest.raises(MedadError, match="no anomaly-free pixel"):
        aupro(MAPS, np.ones_like(MASKS))


@pytest.mark.parametrize("fpr_limit", [0.0, -0.1, 1.5, float("nan")])
def test_aupro_fpr_limit_range(fpr_limit: float) -> None:
    with pytest.raises(MedadError, match="fpr_limit"):
        aupro(MAPS, MASKS, fpr_limit=fpr_limit)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("metric", PIXEL_METRICS + [dice])
def test_non_finite_maps(metric: Callable, bad: float) -> None:
    maps = MAPS.copy()
    maps[1, 2, 3] = bad
    with pytest.raises(MedadError, match="NaN or infinite"):
        metric(maps, MASKS)


@pytest.mark.parametrize("metric", IMAGE_METRICS)
def test_non_finite_scores(metric: Callable) -> None:
    with pytest.raises(MedadError, match="NaN or infinite"):
        metric(np.array([0.1, np.nan, 0.3]), np.array([0, 1, 1]))


@pytest.mark.parametrize("metric", IMAGE_METRICS)
def test_empty_scores(metric: Callable) -> None:
    with pytest.raises(MedadError, match="empty"):
        metric(np.zeros(0), np.zeros(0, dtype=bool))


@pytest.mark.parametrize("metric", PIXEL_METRICS + [dice])
def test_empty_maps(metric: Callable) -> None:
    with pytest.raises(MedadError, match="empty"):
        metric(np.zeros((0, 4, 4)), np.zeros((0, 4, 4), dtype=bool))


def test_non_numeric_scores() -> None:
    with pytest.raises(MedadError, match="real numbers"):
        image_auroc(np.array(["a", "b"]), np.array([0, 1]))


def test_best_dice_unknown_method() -> None:
    with pytest.raises(MedadError, match="'exact' or 'paper'"):
        best_dice_threshold(MAPS, MASKS, method="linspace")  # type: ignore[arg-type]


def test_dice_needs_binary_input_or_a_threshold() -> None:
    with pytest.raises(MedadError, match="threshold="):
        dice(MAPS, MASKS)
    with pytest.raises(MedadError, match="finite"):
        dice(MAPS, MASKS, threshold=float("nan"))
