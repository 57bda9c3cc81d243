"""Synthetic anomaly generators for the self-supervised methods.

Every generator is a pure function ``generator(image, rng, *, source=None, **params) ->
(anomalous, label)``:

* ``image``: float NumPy image in [0, 1], (H, W) or (H, W, C); never modified;
* ``rng``: a ``numpy.random.Generator``, the only source of randomness (same seed, same result);
* ``source``: another normal image of the same shape, for the generators that blend in a foreign
  patch (required by ``fpi`` and ``pii``, optional for ``nsa``, ignored by the others);
* returns the anomalous image (float32, same shape, in [0, 1]) and the pixel label (float32,
  (H, W), in [0, 1]). The label is exactly 0 wherever the output equals the input (to `tol`), and
  the output equals the input wherever the label is 0.

Names in `GENERATORS`: ``cutpaste``, ``cutpaste-scar`` (Li et al. 2021), ``cutpaste-shift``
(MedIAnomaly's one-stage CutPaste, NSA's shifted patches without blending), ``fpi`` (Tan et al.
2020), ``pii`` (Tan et al. 2021), ``nsa`` (Schlüter et al. 2022), ``draem`` (Zavrtanik et al.
2021), ``anatpaste`` (Sato et al. 2023).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medad.anomalies._imageops import Box
from medad.anomalies.anatpaste import anatpaste, foreground_mask, otsu_threshold
from medad.anomalies.cutpaste import cutpaste, cutpaste_scar, cutpaste_shift
from medad.anomalies.draem import augment_texture, draem, perlin_mask
from medad.anomalies.fpi import (
    fpi,
    interpolate_patch,
    sample_interpolation_box,
    sample_interpolation_boxes,
)
from medad.anomalies.perlin import fractal_noise, perlin_noise
from medad.anomalies.poisson import (
    NSAPatch,
    guidance_divergence,
    logistic_label,
    nsa,
    pii,
    poisson_blend,
    poisson_interpolate_patch,
    sample_nsa_patches,
)
from medad.anomalies.textures import load_texture_folder, procedural_texture
from medad.errors import MedadError

AnomalyGenerator = Callable[..., tuple[NDArray[np.float32], NDArray[np.float32]]]

#: Generators by name.
GENERATORS: dict[str, AnomalyGenerator] = {
    "cutpaste": cutpaste,
    "cutpaste-scar": cutpaste_scar,
    "cutpaste-shift": cutpaste_shift,
    "fpi": fpi,
    "pii": pii,
    "nsa": nsa,
    "draem": draem,
    "anatpaste": anatpaste,
}

#: Generators that cannot work without a `source` image.
NEEDS_SOURCE: frozenset[str] = frozenset({"fpi", "pii"})


def make_anomaly(
    kind: str,
    image: np.ndarray,
    rng: np.random.Generator,
    source: np.ndarray | None = None,
    **params: Any,
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Run the generator `kind` on `image`, checking the name and the parameter names first.

    Example: ``make_anomaly("nsa", image, np.random.default_rng(0), source=other, max_patches=2)``.
    """
    try:
        generator = GENERATORS[kind]
    except KeyError:
        raise MedadError(
            f"Unknown anomaly generator {kind!r}; choose one of {', '.join(GENERATORS)}."
        ) from None
    allowed = [
        name
        for name, p in inspect.signature(generator).parameters.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY and name != "source"
    ]
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise MedadError(
            f"Unknown parameter(s) {', '.join(unknown)} for anomaly generator {kind!r}; "
            f"it accepts {', '.join(allowed)}."
        )
    return generator(image, rng, source=source, **params)


__all__ = [
    "GENERATORS",
    "NEEDS_SOURCE",
    "AnomalyGenerator",
    "Box",
    "NSAPatch",
    "anatpaste",
    "augment_texture",
    "cutpaste",
    "cutpaste_scar",
    "cutpaste_shift",
    "draem",
    "foreground_mask",
    "fpi",
    "fractal_noise",
    "guidance_divergence",
    "interpolate_patch",
    "load_texture_folder",
    "logistic_label",
    "make_anomaly",
    "nsa",
    "otsu_threshold",
    "perlin_mask",
    "perlin_noise",
    "pii",
    "poisson_blend",
    "poisson_interpolate_patch",
    "procedural_texture",
    "sample_interpolation_box",
    "sample_interpolation_boxes",
    "sample_nsa_patches",
]
