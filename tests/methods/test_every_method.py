"""Every registered method runs end to end from the CLI (`medad run --method NAME --set ...`):
one epoch on a tiny synth-brain, a results JSON with the image metrics (and the pixel metrics for
methods with maps), the `--set` override written into the run's config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from medad.cli import app
from medad.errors import MedadError
from medad.methods.base import build_config, method_class, method_infos

TINY_DATA = ["n_train=16", "n_test_normal=6", "n_test_abnormal=6", "size=64"]
#: the paper's geometries scaled down to 64 px inputs (`--set` values, one method's worth each)
ONE_STAGE = ["image_size=64", "train_center_crop=58", "crop_size=56"]
TWO_STAGE = ["image_size=64", "freeze_epochs=0", "steps_per_epoch=2"]
#: a tiny U-Net at 32 px sampled in 2 DDIM steps (the diffusion methods)
DIFFUSION = [
    "image_size=32",
    "base_width=8",
    "channel_mults=[1,2]",
    "res_blocks=1",
    "sampler=ddim",
    "sample_steps=2",
]
SETTINGS: dict[str, list[str]] = {
    "ae-pl": ["weights=random"],
    "dae": ["image_size=64", "base_width=8"],
    "draem": ["image_size=64", "reconstructive_width=8", "discriminative_width=8",
              "smoothing_kernel=5"],
    "f-anogan": ["gan_epochs=1", "encoder_epochs=1"],
    "cutpaste-1stage": ONE_STAGE, "fpi": ONE_STAGE, "nsa": ONE_STAGE,
    "pii": [*ONE_STAGE, "anomaly_params.blend=interpolated"],
    "cutpaste-2stage": TWO_STAGE, "anatpaste": TWO_STAGE,
    "resnet18-imagenet": ["weights=random", "image_size=64"],
    "padim": ["weights=random", "image_size=64"],
    "patchcore": ["weights=random", "backbone=resnet18", "image_size=64", "embed_dimension=128"],
    "rd": ["weights=random", "backbone=resnet18", "image_size=64"],
    "rdpp": ["weights=random", "backbone=resnet18", "image_size=64", "ssot_grid=8",
             "sinkhorn_scaling=0.8"],
    "fae": ["weights=random", "image_size=64", "steps_per_epoch=2"],
    "recontrast": ["weights=random", "backbone=resnet18", "image_size=64", "steps_per_epoch=2"],
    "stfpm": ["weights=random", "image_size=64"],
    "efficientad": ["image_size=64", "steps_per_epoch=2"],
    "anomalydino": ["weights=random", "image_size=64", "backbone=dino_vits16"],
    "anoddpm-gaussian": DIFFUSION, "anoddpm-simplex": DIFFUSION, "pddpm": DIFFUSION,
    "autoddpm": [*DIFFUSION, "inpaint_steps=2", "resample_steps=1"],
}  # fmt: skip
#: methods without an anomaly map (image scores only)
NO_MAP = {"ganomaly", "cutpaste-2stage", "anatpaste", "resnet18-imagenet"}
NAMES = [info.name for info in method_infos()]


def test_the_registry_holds_the_papers_methods():
    # the study's 30 methods (33 names: VAE-Grad ×4 rules) + PaDiM, PatchCore, STFPM,
    # EfficientAD, AnomalyDINO and pDDPM beyond it
    assert len(NAMES) == len(set(NAMES)) == 39
    assert sum(info.cls.in_study for info in method_infos()) == 33
    families = {info.name: info.family for info in method_infos()}
    assert sum(f == "reconstruction" for f in families.values()) == 18  # VAE-Grad ×4 rules
    assert sum(f == "self-supervised" for f in families.values()) == 7
    assert sum(f == "feature-reconstruction" for f in families.values()) == 4
    assert sum(f == "feature-reference" for f in families.values()) == 6
    assert sum(f == "diffusion" for f in families.values()) == 4


@pytest.mark.parametrize("name", NAMES)
def test_runs_from_the_cli_with_set_overrides(name: str, tmp_path: Path) -> None:
    sets = [*SETTINGS.get(name, []), "batch_size=8"]
    args = ["run", "--method", name, "--dataset", "synth-brain", "--epochs", "1"]
    for item in sets:
        args += ["--set", item]
    for item in TINY_DATA:
        args += ["--data-option", item]
    args += ["--out", str(tmp_path), "--device", "cpu", "--json", "--seed", "0"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    result = json.loads(res.stdout.strip().splitlines()[-1])
    assert 0.0 <= result["image_auroc"] <= 1.0
    assert ("pixel_auroc" in result) == (name not in NO_MAP), result
    config = yaml.safe_load((Path(result["run_dir"]) / "config.yaml").read_text())
    flat = json.dumps(config)
    assert '"batch_size": 8' in flat, config
    for item in sets:
        key, value = item.split("=", 1)
        assert f'"{key.split(".")[-1]}": ' in flat, (key, config)
    if name == "pii":  # a dotted key changes one entry of the mapping and keeps the others
        params = config["config"]["anomaly_params"]
        assert params["blend"] == "interpolated" and params["max_patches"] == 3, params


def test_dotted_keys_set_one_entry_of_a_mapping() -> None:
    cls = method_class("pii")
    default = build_config(cls, {}).anomaly_params
    config = build_config(cls, {"anomaly_params.blend": "interpolated", "epochs": 3})
    assert config.anomaly_params == {**default, "blend": "interpolated"} and config.epochs == 3
    given = build_config(cls, {"anomaly_params": {"tol": 0.1}, "anomaly_params.max_patches": 2})
    assert given.anomaly_params == {"tol": 0.1, "max_patches": 2}
    with pytest.raises(MedadError, match="'epochs' is not a mapping"):
        build_config(cls, {"epochs.x": 1})
    with pytest.raises(MedadError, match="no field 'nope'"):
        build_config(cls, {"nope.x": 1})
