"""`medad export`: a run's scoring as TorchScript (ONNX when installed), scores equal to eager."""

from __future__ import annotations

import importlib.util
import json
import re

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from medad import engine
from medad.cli import app, parse_assignments
from medad.data.base import get_dataset
from medad.data.loading import load_split
from medad.errors import MedadError
from medad.export import EXPORTABLE, ScoringModel, example_input, export_run, to_torchscript
from medad.inference import load_run
from medad.methods.base import build_config, method_class, method_infos
from medad.runs import RunSpec, execute
from tests.conftest import SMALL
from tests.methods.test_every_method import SETTINGS

#: bigger networks whose eager-vs-traced check takes 15 s or more on two shared cores; the
#: default run keeps one of each family (the small AEs, RD, FPI, GANomaly, f-AnoGAN)
SLOW = {
    "draem",
    "dae",
    "ae-pl",
    "cutpaste-1stage",
    "pii",
    "nsa",
    "cutpaste-2stage",
    "anatpaste",
    "resnet18-imagenet",
    "recontrast",
}


def _fitted(name: str):
    """A method of `name` at the test suite's small settings, with its data-derived state
    (`prepare`, `fit`) estimated on a random batch: export needs no training, only fixed weights."""
    cls = method_class(name)
    config = build_config(cls, parse_assignments(SETTINGS.get(name, []), "--set"))
    torch.manual_seed(0)
    method = cls(config, 1).eval()
    pre = cls.preprocess(config, 1)
    lo, hi = pre.value_range
    batch = example_input(pre, 8) * (hi - lo) + lo
    with torch.no_grad():
        method.prepare(lambda: iter([batch]))
        method.fit(lambda: iter([batch]))
    return method, pre


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in EXPORTABLE]
)
def test_traced_scores_equal_eager_scores(name):
    method, pre = _fitted(name)
    model = ScoringModel(method, pre.value_range).eval()
    traced = to_torchscript(model, pre)
    x = torch.rand(5, 1, pre.size, pre.size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        eager, exported = model(x), traced(x)
    assert len(eager) == len(exported)
    for a, b in zip(eager, exported, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)


def test_help_lists_exactly_the_exportable_methods():
    text = CliRunner().invoke(app, ["export", "--help"]).output
    flat = " ".join(text.split())
    listed = re.search(r"forward pass: (.*?) \(not", flat)
    assert listed is not None, flat
    assert [n.strip() for n in listed.group(1).replace(" ", "").split(",")] == list(EXPORTABLE)
    registered = {i.name for i in method_infos()}
    assert set(EXPORTABLE) <= registered
    gradient_scored = {"ae-grad", "vae-grad-rec", "vae-grad-kl", "vae-grad-elbo", "vae-grad-combi"}
    assert not (gradient_scored | {"fae"}) & set(EXPORTABLE)


@pytest.fixture(scope="module")
def ae_run(tmp_path_factory):
    spec = RunSpec(
        "ae", "synth-brain", overrides={"epochs": 1, "batch_size": 32}, dataset_options=SMALL
    )
    return execute(spec, tmp_path_factory.mktemp("runs"), device="cpu", progress=False).run_dir


def test_export_cli_torchscript_scores_like_the_run(ae_run, tmp_path):
    res = CliRunner().invoke(app, ["export", str(ae_run), "--out", str(tmp_path / "x")])
    assert res.exit_code == 0, res.output
    model = torch.jit.load(str(tmp_path / "x" / "model.pt"))
    info = json.loads((tmp_path / "x" / "export.json").read_text())
    assert info["method"] == "ae" and info["outputs"] == ["image_scores", "maps"]
    # the engine's scores of test images, and the exported model's on the same uint8 arrays / 255
    loaded = load_run(ae_run, "cpu")
    test = load_split(get_dataset("synth-brain", **SMALL), "test", loaded.pre)
    pred = engine.predict(loaded.method, test, loaded.pre, device="cpu")
    with torch.no_grad():
        scores, maps = model(torch.from_numpy(test.images).float() / 255.0)
    np.testing.assert_allclose(scores.numpy(), pred.image_scores, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(maps.numpy(), pred.maps, rtol=1e-4, atol=1e-5)


def test_export_refuses_methods_that_are_not_a_forward_pass(tmp_path):
    spec = RunSpec(
        "ae-grad",
        "synth-brain",
        overrides={"epochs": 1, "batch_size": 16},
        dataset_options={**SMALL, "n_train": 16, "n_test_normal": 4, "n_test_abnormal": 4},
    )
    run = execute(spec, tmp_path / "runs", device="cpu", progress=False).run_dir
    with pytest.raises(MedadError, match="'ae-grad' cannot be exported.*exportable: ae,"):
        export_run(run, tmp_path / "x")
    res = CliRunner().invoke(app, ["export", str(run), "--out", str(tmp_path / "y")])
    assert res.exit_code != 0 and "cannot be exported" in res.output
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_export_onnx(ae_run, tmp_path):
    if importlib.util.find_spec("onnx") is None:
        with pytest.raises(MedadError, match="pip install onnx"):
            export_run(ae_run, tmp_path / "x", "onnx")
        pytest.skip("onnx is not installed: ONNX export checked only for its clear error")
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is needed to run the ONNX model")
    path = export_run(ae_run, tmp_path / "x", "onnx")
    loaded = load_run(ae_run, "cpu")
    x = example_input(loaded.pre, 4)
    with torch.no_grad():
        eager = ScoringModel(loaded.method, loaded.pre.value_range).eval()(x)
    got = ort.InferenceSession(str(path)).run(None, {"images": x.numpy()})
    for a, b in zip(eager, got, strict=True):
        np.testing.assert_allclose(b, a.numpy(), rtol=1e-4, atol=1e-5)
