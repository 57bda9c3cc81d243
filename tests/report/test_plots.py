"""Report figures: axes that start where a reader expects, and the critical-difference diagram."""

from __future__ import annotations

import io

import matplotlib.pyplot as plt
from PIL import Image

from medad.report import plots


def test_auroc_axes_start_at_chance_unless_a_value_lies_below():
    fig, ax = plt.subplots()
    label = plots._percent_axis(ax, "Image AUROC", lowest=71.3)
    assert ax.get_ylim() == (50.0, 100.0) and "axis from 50" in label
    plots._percent_axis(ax, "Image AUROC", lowest=43.0)
    assert ax.get_ylim() == (40.0, 100.0)
    plots._percent_axis(ax, "Image AP", lowest=80.0)
    assert ax.get_ylim() == (0.0, 100.0)
    plt.close(fig)


def test_cd_diagram_draws_every_method():
    ranks = {"ae": 2.5, "ae-z4": 1.0, "vae": 4.5, "ae-l1": 3.0, "ae-ssim": 4.0}
    png = plots.cd_diagram("demo", ranks, 2.73, [("ae-z4", "ae", "ae-l1"), ("ae", "ae-l1", "vae")])
    image = Image.open(io.BytesIO(png))
    assert image.width > 500 and image.height > 150
