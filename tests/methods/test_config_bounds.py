"""Degenerate sizes are refused when the config is built, naming the field (not at train time)."""

from __future__ import annotations

import pytest

from medad.errors import MedadError
from medad.methods.base import build_config, method_class

BAD = [
    ("ae", "latent_size", 0),
    ("ae", "base_width", 0),
    ("ae", "mid_size", -1),
    ("ae", "image_size", 0),
    ("ae", "batch_size", 0),
    ("ae", "epochs", -1),
    ("ae", "topk_fraction", 0),
    ("ae", "topk_fraction", 1.5),
    ("vae", "latent_size", 0),
    ("constrae", "latent_size", 0),
    ("f-anogan", "latent_size", 0),
    ("f-anogan", "base_width", 0),
    ("ganomaly", "latent_size", 0),
    ("ganomaly", "mid_size", 0),
    ("memae", "memory_slots", 0),
    ("memae", "shrink_threshold", 1),
    ("ceae", "erase_fraction", 0),
    ("ae-spatial", "latent_channels", 0),
    ("ae-ssim", "window_size", 1),
    ("ae-ssim", "window_size", 65),
    ("dae", "depth", 0),
    ("dae", "noise_res", 1),
    ("draem", "smoothing_kernel", 0),
    ("fpi", "crop_size", 300),
    ("cutpaste-2stage", "head_layers", -1),
    ("cutpaste-2stage", "batch_size", 1),
]


@pytest.mark.parametrize(("method", "field", "value"), BAD)
def test_degenerate_values_are_refused_naming_the_field(method, field, value):
    with pytest.raises(MedadError, match=f"bad config for method '{method}': .*{field}"):
        build_config(method_class(method), {field: value})
