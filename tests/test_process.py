"""medad.process: the allocator and garbage-collector settings of the ``medad`` command."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import medad.process
from medad.cli import app
from medad.process import loading_modules


def _python(code: str) -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    return done.stdout.strip()


def test_loading_modules_pauses_the_collector_and_freezes_what_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "heavy_module_for_test.py").write_text("objects = [[] for _ in range(1000)]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert gc.isenabled()
    before = gc.get_freeze_count()
    try:
        with loading_modules():
            assert not gc.isenabled()
            import heavy_module_for_test  # noqa: F401
        assert gc.isenabled()
        assert gc.get_freeze_count() >= before + 1000
    finally:
        gc.unfreeze()
        sys.modules.pop("heavy_module_for_test", None)


def test_loading_modules_freezes_nothing_when_nothing_loads() -> None:
    before = gc.get_freeze_count()
    with loading_modules():
        garbage = [[] for _ in range(1000)]
    assert gc.get_freeze_count() == before
    del garbage


def test_loading_modules_leaves_a_disabled_collector_disabled() -> None:
    gc.disable()
    try:
        with loading_modules():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
        gc.unfreeze()


def test_freeze_at_exit_freezes_before_the_last_collection_once() -> None:
    code = (
        "import atexit, gc\n"
        # registered first, so it runs after the freeze (atexit runs last-in, first-out)
        "atexit.register(lambda: print(gc.get_freeze_count() > 0, atexit._ncallbacks()))\n"
        "from medad.process import freeze_at_exit\n"
        "freeze_at_exit()\n"
        "freeze_at_exit()\n"
    )
    assert _python(code) == "True 2"  # the probe and one freeze


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_kept_memory_spares_the_page_faults_of_every_training_step() -> None:
    # the paper's AE at 64², batch 64: each step frees and allocates ~25 MB (~6,000 pages);
    # kept in the process, a step takes (almost) no fresh page from the kernel
    code = (
        "import resource, torch\n"
        "from medad.process import keep_freed_memory\n"
        "assert keep_freed_memory()\n"
        "from medad.methods.parts.autoencoder import AutoEncoder\n"
        "torch.manual_seed(0)\n"
        "net = AutoEncoder(1, 64)\n"
        "opt = torch.optim.Adam(net.parameters(), 1e-3)\n"
        "x = torch.rand(64, 1, 64, 64)\n"
        "def step():\n"
        "    opt.zero_grad(set_to_none=True)\n"
        "    ((net(x) - x) ** 2).mean().backward()\n"
        "    opt.step()\n"
        "for _ in range(3):\n"
        "    step()\n"
        "faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
        "for _ in range(5):\n"
        "    step()\n"
        "print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) // 5)\n"
    )
    assert int(_python(code)) < 1000


def test_the_command_applies_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(medad.process, "keep_freed_memory", lambda: calls.append("memory"))
    monkeypatch.setattr(medad.process, "freeze_at_exit", lambda: calls.append("exit"))
    result = CliRunner().invoke(app, ["run", "-m", "ae", "-d", "synth-brain", "--plan"])
    assert result.exit_code == 0, result.output
    assert sorted(calls) == ["exit", "memory"]
