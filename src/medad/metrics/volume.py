"""From slice scores to volume scores: a patient-level reading of slice-wise detectors.

A test set of NIfTI volumes is scored slice by slice (ids ``<file>.nii[.gz]#<slice>``,
`medad.data.base.Record.slice`); BraTS-style data is read clinically per patient, so volumes are
also scored as wholes. A volume's score is `volume_score` of its slice scores, its label the
largest of its slices' labels (abnormal when any slice is).
"""

from __future__ import annotations

import math
import re

import numpy as np

#: a slice of a NIfTI volume: ``<volume file>#<axial index>``
VOLUME_SLICE_ID = re.compile(r"^(?P<volume>.+\.nii(?:\.gz)?)#(?P<slice>\d+)$", re.IGNORECASE)
#: a volume's score is the mean of its top this fraction of slice scores (at least one slice):
#: the max, as for a single image, when a volume has up to 10 slices; less at the mercy of one
#: noisy slice than the max when it has many (a lesion spans several axial slices)
VOLUME_TOP_FRACTION = 0.1


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


def volume_scores(
    ids: list[str], labels: np.ndarray, scores: np.ndarray
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(volume ids, labels, scores) of the volumes whose slices `ids` name; other ids are left
    out (2-D images belong to no volume)."""
    groups = volume_groups(ids)
    vol_labels = np.array([int(np.max(labels[g])) for g in groups.values()], dtype=np.int64)
    vol_scores = np.array([volume_score(scores[g]) for g in groups.values()], dtype=np.float64)
    return list(groups), vol_labels, vol_scores
