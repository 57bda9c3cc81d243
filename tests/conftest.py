"""Shared fixtures: small embedded datasets and a tiny training budget, so tests stay fast."""

from __future__ import annotations

import pytest
import torch

torch.set_num_threads(min(2, torch.get_num_threads()))

#: dataset options for a small synthetic dataset (train 96, test 32 + 32 at 64 px)
SMALL = {"n_train": 96, "n_test_normal": 32, "n_test_abnormal": 32, "size": 64}


@pytest.fixture
def small_data() -> dict[str, int]:
    return dict(SMALL)
