"""medad: train, evaluate and compare anomaly-detection methods on medical images.

The Python API (`medad.api`): ``medad.Detector`` (scikit-learn-like, over NumPy arrays),
``medad.fit`` (a recorded run, as ``medad run``) and ``medad.load_run``. They are imported on
first use, so ``import medad`` (and the ``medad`` command's start-up) does not load torch.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["Detector", "Run", "fit", "load_run", "__version__"]


def __getattr__(name: str) -> Any:
    if name in ("Detector", "Run", "fit", "load_run"):
        from medad import api

        return getattr(api, name)
    raise AttributeError(f"module 'medad' has no attribute {name!r}")
