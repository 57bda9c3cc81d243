"""Train a method briefly on the embedded data and evaluate it (shared by the method tests)."""

from __future__ import annotations

from typing import Any

from medad import engine
from medad.data.base import get_dataset
from medad.data.loading import load_split
from medad.evaluation import evaluate
from medad.methods.base import Method, build_config, method_class
from medad.predictions import Predictions

#: a small synth-brain: 96 train, 32 + 32 test images at 64 px
SMALL_BRAIN = {"n_train": 96, "n_test_normal": 32, "n_test_abnormal": 32, "size": 64}


def train_and_predict(
    name: str,
    overrides: dict[str, Any] | None = None,
    *,
    dataset: str = "synth-brain",
    data_options: dict[str, Any] | None = None,
    seed: int = 0,
) -> tuple[Method, Predictions]:
    cls = method_class(name)
    ds = get_dataset(dataset, **(data_options or SMALL_BRAIN))
    config = build_config(cls, dict(overrides or {}))
    pre = cls.preprocess(config, ds.channels)
    train, test = load_split(ds, "train", pre), load_split(ds, "test", pre)
    method = engine.create_method(cls, config, ds.channels, seed)
    engine.train(method, train, pre, seed=seed, device="cpu", progress=False)
    return method, engine.predict(method, test, pre, device="cpu")


def method_metrics(
    name: str, overrides: dict[str, Any] | None = None, **kw: Any
) -> dict[str, float]:
    """Metrics of `name` trained with `overrides` on a small synth-brain (see SMALL_BRAIN)."""
    _, pred = train_and_predict(name, overrides, **kw)
    return evaluate(pred)
