"""The anomaly gallery PNG: size, content rows, atomic write."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from medad.anomalies.gallery import GAP, write_gallery
from medad.errors import MedadError


def _images(n: int, channels: int, size: int = 32) -> np.ndarray:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    disc = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 2.5) ** 2).astype(float)
    imgs = disc[None, None] * rng.uniform(0.3, 0.9, (n, channels, size, size))
    return np.rint(imgs * 255).astype(np.uint8)


@pytest.mark.parametrize(("kind", "channels"), [("nsa", 1), ("fpi", 1), ("cutpaste", 3)])
def test_gallery_png(tmp_path, kind: str, channels: int) -> None:
    images = _images(10, channels)
    path = write_gallery(kind, images, tmp_path / "out", n=4, seed=1)
    assert path == tmp_path / "out" / f"{kind}.png"
    with Image.open(path) as im:
        assert im.size == (4 * 32 + 5 * GAP, 3 * 32 + 4 * GAP)
        grid = np.asarray(im.convert("RGB"))
    # no temp file left; the manifest lists the gallery as medad's own
    assert sorted(p.name for p in path.parent.iterdir()) == [".medad-output.json", f"{kind}.png"]
    # the first row holds originals: the first tile is one of the input images
    first = grid[GAP : GAP + 32, GAP : GAP + 32]
    originals = images.transpose(0, 2, 3, 1)
    if channels == 1:
        originals = np.repeat(originals, 3, axis=-1)
    assert any(np.array_equal(first, o) for o in originals)


def test_gallery_with_fewer_images_than_columns_and_floats(tmp_path) -> None:
    images = _images(3, 1).astype(np.float32) / 255
    path = write_gallery("pii", images, tmp_path, n=8)
    with Image.open(path) as im:
        assert im.size == (3 * 32 + 4 * GAP, 3 * 32 + 4 * GAP)
    with pytest.raises(MedadError, match="--overwrite"):
        write_gallery("pii", images, tmp_path, n=8)
    assert write_gallery("pii", images, tmp_path, n=8, overwrite=True).read_bytes() == (
        path.read_bytes()
    )


def test_gallery_errors(tmp_path) -> None:
    with pytest.raises(MedadError):
        write_gallery("no-such-kind", _images(2, 1), tmp_path)
    with pytest.raises(MedadError):
        write_gallery("nsa", np.zeros((2, 32, 32)), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_gallery_passes_generator_parameters(tmp_path) -> None:
    images = _images(6, 1)
    default = write_gallery("pii", images, tmp_path / "a", n=4).read_bytes()
    mixed = write_gallery("pii", images, tmp_path / "b", n=4, params={"blend": "mixed"})
    assert mixed.read_bytes() != default
    with pytest.raises(MedadError, match="nope"):
        write_gallery("pii", images, tmp_path / "c", params={"nope": 1})
    assert not (tmp_path / "c" / "pii.png").exists()


def test_cli_param_is_checked_before_anything_is_written(tmp_path) -> None:
    from typer.testing import CliRunner

    from medad.cli import app

    args = ["anomalies", "--kind", "pii", "--size", "32", "--n", "2", "--out", str(tmp_path / "g")]
    bad = CliRunner().invoke(app, [*args, "--param", "nope=1"])
    assert bad.exit_code == 2 and "nope" in bad.output and not (tmp_path / "g").exists()
    good = CliRunner().invoke(app, [*args, "--param", "blend=mixed", "--param", "max_patches=2"])
    assert good.exit_code == 0, good.output
    assert (tmp_path / "g" / "pii.png").exists()
