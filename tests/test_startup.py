"""`medad --help` and `medad methods` do not import the heavy libraries only some methods use.

torchvision, scikit-learn and SciPy's sparse solvers cost seconds to import; the modules that need
them import them inside the functions that use them. A method module that imports one of them at
top level makes every `medad` command slower, and this test names it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

HEAVY = ("torchvision", "sklearn", "scipy.sparse", "timm", "matplotlib")


def _imported_after(steps: list[str]) -> list[list[str]]:
    """The heavy modules loaded after each step of `steps`, run in order in one fresh Python."""
    check = f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    probe = "\n".join(["import json, sys", *(f"{step}\n{check}" for step in steps)])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True
    )
    return [json.loads(line) for line in done.stdout.strip().splitlines()[-len(steps) :]]


def test_help_and_method_list_import_no_heavy_library() -> None:
    steps = [
        "import medad.cli",
        "from medad.cli import app\n"
        "from typer.testing import CliRunner\n"
        "assert CliRunner().invoke(app, ['--help']).exit_code == 0",
        "from medad.methods.base import method_infos; method_infos()",
        "assert CliRunner().invoke(app, ['methods']).exit_code == 0",
    ]
    assert _imported_after(steps) == [[]] * len(steps)


def test_the_probe_sees_a_heavy_import() -> None:
    assert _imported_after(["import scipy.sparse"]) == [["scipy.sparse"]]
