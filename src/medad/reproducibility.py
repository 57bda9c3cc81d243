"""What besides the configuration and the seed decides a run's exact numbers, and the switch that
makes CUDA runs repeatable.

Recorded per run (``config.yaml`` → ``environment:`` and the store row), never hashed into the run
id: the same configuration on another machine is the same experiment, but bit-identical numbers
need the same library versions, device type and, on the CPU, the same torch thread count (the
order of floating-point sums in parallel kernels depends on it).

``--deterministic`` on CUDA follows PyTorch's reproducibility notes
(https://pytorch.org/docs/stable/notes/randomness.html): deterministic algorithms (an error for an
operation that has none) and cuBLAS's fixed workspace ``CUBLAS_WORKSPACE_CONFIG=:4096:8``. CPU
kernels are deterministic at a fixed thread count, so on the CPU the flag is only recorded.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from typing import Any

import numpy as np
import torch

import medad

#: cuBLAS workspace setting that makes its results repeatable (CUDA docs, "Results reproducibility")
CUBLAS_WORKSPACE = ":4096:8"


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def environment(device: torch.device, deterministic: bool) -> dict[str, Any]:
    """Library versions, device, torch thread count and determinism flags, as a run sees them."""
    return {
        "python": platform.python_version(),
        "medad": str(medad.__version__),
        "torch": str(torch.__version__),
        "torchvision": _version("torchvision"),
        "numpy": str(np.__version__),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "torch_threads": torch.get_num_threads(),
        "deterministic": deterministic,
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "cudnn_deterministic": torch.backends.cudnn.deterministic,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
    }


@contextmanager
def deterministic_mode(device: torch.device, on: bool) -> Iterator[None]:
    """Within the block, CUDA work is deterministic when `on` (see module docs); the previous
    settings come back afterwards. cuBLAS reads its variable when a process first uses it, so a
    process that already ran cuBLAS work keeps its earlier workspace."""
    if not on or device.type != "cuda":
        yield
        return
    before = (
        torch.are_deterministic_algorithms_enabled(),
        os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
    )
    os.environ["CUBLAS_WORKSPACE_CONFIG"] = CUBLAS_WORKSPACE
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0])
        if before[1] is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
        else:
            os.environ["CUBLAS_WORKSPACE_CONFIG"] = before[1]
