"""An experiment file that is not UTF-8 is one clear line naming it (issue 11, item 14)."""

from __future__ import annotations

import pytest

from medad.bench import load_experiment
from medad.errors import MedadError
from tests.test_cli import invoke


def test_a_latin1_experiment_file_is_named(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_bytes(
        "name: r\u00e9sultats\nmethods: [ae]\ndatasets: [synth-brain]\n".encode("latin-1")
    )
    with pytest.raises(MedadError, match=r"exp\.yaml: not UTF-8 text \(byte 0xe9 at offset 7\)"):
        load_experiment(path)
    res = invoke("bench", path, "--out", tmp_path / "o")
    assert res.exit_code == 2 and str(path) in res.output and "UTF-8" in res.output, res.output
    assert "Traceback" not in res.output and not (tmp_path / "o").exists()
    path.write_bytes("name: r\u00e9sultats\nmethods: [ae]\ndatasets: [synth-brain]\n".encode())
    assert load_experiment(path).name == "r\u00e9sultats"
