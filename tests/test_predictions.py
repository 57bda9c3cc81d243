"""A damaged predictions file is one clear error naming it, not a zipfile traceback."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from medad.cli import app
from medad.errors import MedadError
from medad.predictions import Predictions


def _saved(folder) -> Predictions:
    rng = np.random.default_rng(0)
    pred = Predictions(
        ids=[f"x{i}" for i in range(8)],
        labels=np.array([0, 1] * 4),
        image_scores=rng.random(8),
        maps=rng.random((8, 16, 16)).astype(np.float32),
        masks=rng.random((8, 16, 16)) > 0.8,
    )
    pred.save(folder / "predictions.npz")
    return pred


@pytest.mark.parametrize("keep", [0.5, 0.95, 10])
def test_a_truncated_predictions_file_is_named(tmp_path, keep):
    _saved(tmp_path)
    path = tmp_path / "predictions.npz"
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)] if keep < 1 else data[:keep])
    with pytest.raises(MedadError, match=r"predictions\.npz: damaged predictions file"):
        Predictions.load(path)
    res = CliRunner().invoke(app, ["evaluate", str(tmp_path)])
    assert res.exit_code == 2 and "damaged predictions file" in res.output
    assert "Traceback" not in res.output


def test_an_intact_predictions_file_round_trips(tmp_path):
    pred = _saved(tmp_path)
    back = Predictions.load(tmp_path / "predictions.npz")
    assert back.ids == pred.ids and np.array_equal(back.masks, pred.masks)
