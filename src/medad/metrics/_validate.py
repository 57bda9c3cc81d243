"""Input checks shared by every metric: one place that turns bad input into a `MedadError`.

Metrics receive scores (any real dtype) and labels (bool or 0/1 numbers). The checks here avoid
copies of large pixel arrays wherever they can: finiteness is checked through `min`/`max` (a NaN
anywhere makes them NaN), and float maps keep their dtype (float32 maps stay float32).
"""

from __future__ import annotations

import numpy as np

from medad.errors import MedadError


def _as_real(values: object, name: str, metric: str) -> np.ndarray:
    """`values` as a real array: integers and bools become float64, floats keep their dtype."""
    array = np.asarray(values)
    if array.dtype.kind == "f":
        return array
    if array.dtype.kind in "biu":
        return array.astype(np.float64)
    raise MedadError(
        f"{metric}: {name} must be real numbers, got an array of dtype {array.dtype}; "
        "convert it with numpy.asarray(..., dtype=float)."
    )


def _check_finite(array: np.ndarray, name: str, metric: str) -> None:
    # NaN propagates through min/max and +-inf shows up there, with no temporary array.
    if not (np.isfinite(array.min()) and np.isfinite(array.max())):
        raise MedadError(
            f"{metric}: {name} contain NaN or infinite values; "
            "fix the scoring step or replace them (e.g. numpy.nan_to_num) before evaluating."
        )


def _as_binary(values: object, name: str, metric: str) -> np.ndarray:
    """`values` as a bool array; accepts bool or numbers that are all 0 or 1."""
    array = np.asarray(values)
    if array.dtype == np.bool_:
        return array
    if array.dtype.kind in "iu":
        if array.size and (array.min() < 0 or array.max() > 1):
            raise MedadError(
                f"{metric}: {name} must be 0 (normal) or 1 (abnormal), "
                f"found values in [{array.min()}, {array.max()}]; binarise them first."
            )
        return array != 0
    if array.dtype.kind == "f":
        if not np.all((array == 0) | (array == 1)):
            raise MedadError(
                f"{metric}: {name} must be 0 (normal) or 1 (abnormal), found other values "
                "(e.g. soft or resized masks); binarise them first, e.g. mask > 0.5."
            )
        return array != 0
    raise MedadError(
        f"{metric}: {name} must be bool or 0/1 numbers, got an array of dtype {array.dtype}."
    )


def _check_not_empty(array: np.ndarray, name: str, metric: str) -> None:
    if array.size == 0:
        raise MedadError(f"{metric}: {name} are empty (shape {array.shape}); nothing to evaluate.")


def _check_same_shape(
    scores: np.ndarray, labels: np.ndarray, names: tuple[str, str], metric: str
) -> None:
    if scores.shape != labels.shape:
        raise MedadError(
            f"{metric}: {names[0]} have shape {scores.shape} but {names[1]} have shape "
            f"{labels.shape}; they must match element for element."
        )


def image_inputs(scores: object, labels: object, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Check image-level inputs: 1-D finite scores and 1-D 0/1 labels of the same length.

    Returns the scores (real dtype, not copied when already float) and the labels as bool.
    """
    score_array = _as_real(scores, "scores", metric)
    label_array = np.asarray(labels)
    for array, name in ((score_array, "scores"), (label_array, "labels")):
        if array.ndim != 1:
            raise MedadError(
                f"{metric}: {name} must be 1-D (one value per image), got shape {array.shape}; "
                "for pixel maps use the pixel_* metrics."
            )
    _check_same_shape(score_array, label_array, ("scores", "labels"), metric)
    _check_not_empty(score_array, "scores", metric)
    _check_finite(score_array, "scores", metric)
    return score_array, _as_binary(label_array, "labels", metric)


def pixel_inputs(maps: object, masks: object, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Check pixel-level inputs: finite maps [N, H, W] (or one [H, W] map) and 0/1 masks alike.

    Returns maps as [N, H, W] (real dtype, not copied when already float) and masks as bool
    [N, H, W].
    """
    map_array = _as_real(maps, "maps", metric)
    mask_array = np.asarray(masks)
    _check_same_shape(map_array, mask_array, ("maps", "masks"), metric)
    if map_array.ndim == 2:
        map_array = map_array[np.newaxis]
        mask_array = mask_array[np.newaxis]
    elif map_array.ndim != 3:
        raise MedadError(
            f"{metric}: maps must be [N, H, W] (or one [H, W] map), got shape {map_array.shape}; "
            "squeeze a channel axis of size 1 first (maps[:, 0])."
        )
    _check_not_empty(map_array, "maps", metric)
    _check_finite(map_array, "maps", metric)
    return map_array, _as_binary(mask_array, "masks", metric)


def any_inputs(scores: object, labels: object, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Image-level inputs when `scores` is 1-D, pixel-level inputs otherwise; returned flat."""
    if np.ndim(scores) == 1:
        score_array, label_array = image_inputs(scores, labels, metric)
    else:
        score_array, label_array = pixel_inputs(scores, labels, metric)
    return score_array.reshape(-1), label_array.reshape(-1)


def count_classes(labels: np.ndarray) -> tuple[int, int]:
    """(number of positives, number of negatives) in a bool array."""
    n_pos = int(np.count_nonzero(labels))
    return n_pos, labels.size - n_pos


def require_both_classes(labels: np.ndarray, metric: str, unit: str) -> tuple[int, int]:
    """Raise unless `labels` hold both classes; return (positives, negatives).

    `unit` names what is counted ("labels" for images, "mask pixels" for pixels).
    """
    n_pos, n_neg = count_classes(labels)
    if n_neg == 0:
        raise MedadError(
            f"{metric} undefined: all {unit} are 1 (abnormal); the test set needs both normal (0) "
            "and abnormal (1) samples."
        )
    if n_pos == 0:
        raise MedadError(
            f"{metric} undefined: all {unit} are 0 (normal); the test set needs both normal (0) "
            "and abnormal (1) samples."
        )
    return n_pos, n_neg


def require_positives(labels: np.ndarray, metric: str, unit: str) -> tuple[int, int]:
    """Raise unless `labels` hold at least one positive; return (positives, negatives)."""
    n_pos, n_neg = count_classes(labels)
    if n_pos == 0:
        raise MedadError(
            f"{metric} undefined: all {unit} are 0 (normal); it needs at least one abnormal (1) "
            "sample to compare against."
        )
    return n_pos, n_neg
