"""Fuzzing the experiment loader: any YAML gives an Experiment or a MedadError, nothing else."""

from __future__ import annotations

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medad.bench.config import Experiment, parse_experiment
from medad.errors import MedadError

KEYS = [
    "name", "description", "methods", "datasets", "seeds", "out", "data_root", "device", "set",
    "study", "quick", "label", "options", "epochs", "dataset_options", "resources",
    "latent_size", "epocs", "anomaly_params.blend", "ae", "synth-brain",
]  # fmt: skip
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-5, 300)
    | st.floats(allow_nan=True)
    | st.sampled_from(["ae", "vae", "nope", "synth-brain", "", "x" * 3])
    | st.text(max_size=8)
)
documents = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=5), inner, max_size=5)
    ),
    max_leaves=20,
)
GOOD = {"name": "t", "methods": ["ae"], "datasets": ["synth-brain"]}


def _parse(text: str) -> None:
    try:
        assert isinstance(parse_experiment(text, "fuzz.yaml"), Experiment)
    except MedadError as exc:
        assert str(exc)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_random_documents(doc):
    _parse(yaml.safe_dump(doc))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(KEYS), documents, max_size=4))
def test_valid_experiments_with_random_extra_fields(extra):
    _parse(yaml.safe_dump({**GOOD, **extra}))


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=60))
def test_random_text(text):
    _parse(text)
