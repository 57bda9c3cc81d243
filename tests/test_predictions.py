"""A damaged predictions file is one clear error naming it, not a zipfile traceback."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
from typer.testing import CliRunner

from medad.cli import app
from medad.errors import MedadError
from medad.predictions import Predictions


def _saved(folder, compress: bool = False) -> Predictions:
    rng = np.random.default_rng(0)
    pred = Predictions(
        ids=[f"x{i}" for i in range(8)],
        labels=np.array([0, 1] * 4),
        image_scores=rng.random(8),
        maps=rng.random((8, 16, 16)).astype(np.float32),
        masks=rng.random((8, 16, 16)) > 0.8,
    )
    pred.save(folder / "predictions.npz", compress=compress)
    return pred


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("keep", [0.5, 0.95, 10])
def test_a_truncated_predictions_file_is_named(tmp_path, keep, compress):
    _saved(tmp_path, compress)
    path = tmp_path / "predictions.npz"
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)] if keep < 1 else data[:keep])
    with pytest.raises(MedadError, match=r"predictions\.npz: damaged predictions file"):
        Predictions.load(path)
    res = CliRunner().invoke(app, ["evaluate", str(tmp_path)])
    assert res.exit_code == 2 and "damaged predictions file" in res.output
    assert "Traceback" not in res.output


@pytest.mark.parametrize("compress", [False, True])
def test_an_intact_predictions_file_round_trips(tmp_path, compress):
    pred = _saved(tmp_path, compress)
    back = Predictions.load(tmp_path / "predictions.npz")
    assert back.ids == pred.ids and np.array_equal(back.masks, pred.masks)
    np.testing.assert_array_equal(back.maps, pred.maps)
    np.testing.assert_array_equal(back.image_scores, pred.image_scores)
    np.testing.assert_array_equal(back.labels, pred.labels)


def test_predictions_are_stored_uncompressed_unless_asked(tmp_path):
    """Uncompressed by default (fast to write); compressed files (older runs) still load."""
    _saved(tmp_path)
    with zipfile.ZipFile(tmp_path / "predictions.npz") as z:
        assert {i.compress_type for i in z.infolist()} == {zipfile.ZIP_STORED}
    _saved(tmp_path, compress=True)
    with zipfile.ZipFile(tmp_path / "predictions.npz") as z:
        assert {i.compress_type for i in z.infolist()} == {zipfile.ZIP_DEFLATED}
