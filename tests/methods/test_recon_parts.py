"""Shared parts of the reconstruction family: one construction of the paper's AE from a config,
one map → score helper, and DRAEM's named score rules."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from medad.methods.base import MethodConfig, build_config, method_class
from medad.methods.parts.autoencoder import AutoEncoder
from medad.methods.parts.recon import AEConfig, ReconstructionConfig
from medad.methods.parts.scoring import map_scores

#: parameters at 64 px grayscale, as before the AE construction was shared (PAPER.md: AE 2.35 M)
PARAMETERS = {
    "ae": 2_351_184, "ae-l1": 2_351_184, "ae-ssim": 2_351_184, "ae-grad": 2_351_184,
    "constrae": 2_351_184, "ceae": 2_351_184, "ae-u": 2_351_440, "memae": 2_351_584,
    "vae": 2_367_584, "vae-grad-combi": 2_367_584, "ae-spatial": 382_016, "f-anogan": 2_688_801,
}  # fmt: skip


def _build(name: str, **values):
    cls = method_class(name)
    return cls(build_config(cls, values), 1)


@pytest.mark.parametrize("name", sorted(PARAMETERS))
def test_parameter_counts_of_the_ae_family(name: str) -> None:
    assert sum(p.numel() for p in _build(name).parameters()) == PARAMETERS[name]


def test_ae_pl_trains_the_papers_ae() -> None:
    net = _build("ae-pl", weights="random").net
    assert isinstance(net, AutoEncoder) and sum(p.numel() for p in net.parameters()) == 2_351_184


def test_reconstruction_configs_are_typed() -> None:
    assert issubclass(method_class("ae").Config, AEConfig)
    assert issubclass(method_class("ae-spatial").Config, ReconstructionConfig)
    assert not issubclass(method_class("ae-spatial").Config, AEConfig)
    with pytest.raises(TypeError, match="BackboneConfig"):
        AutoEncoder.from_config(MethodConfig(), 1)
    config = build_config(method_class("ae"), {"latent_size": 4, "base_width": 8})
    ae = AutoEncoder.from_config(config, 3, out_channels=6)
    assert ae.encode(torch.zeros(2, 3, 64, 64)).shape == (2, 4)
    assert ae(torch.zeros(2, 3, 64, 64)).shape == (2, 6, 64, 64)


def test_map_scores_applies_the_configured_rule() -> None:
    maps = torch.rand(3, 8, 8)
    config = build_config(method_class("ae"), {"image_score": "topk", "topk_fraction": 0.25})
    out = map_scores(maps, config)
    assert out.maps is maps
    expected = maps.flatten(1).sort(1, descending=True).values[:, :16].mean(1)
    torch.testing.assert_close(out.image_scores, expected)


def test_draem_smoothed_max_has_its_own_name_and_max_is_the_plain_max() -> None:
    small = {"image_size": 64, "reconstructive_width": 4, "discriminative_width": 4}
    assert build_config(method_class("draem"), {}).image_score == "smoothed_max"
    x = torch.rand(2, 1, 64, 64)
    scores = {}
    for rule in ("smoothed_max", "max", "mean"):
        torch.manual_seed(0)
        method = _build("draem", smoothing_kernel=5, image_score=rule, **small).eval()
        with torch.no_grad():
            out = method.score(x)
        scores[rule], maps = out.image_scores, out.maps
    assert maps is not None
    smooth = F.avg_pool2d(maps[:, None], 5, stride=1, padding=2)
    torch.testing.assert_close(scores["smoothed_max"], smooth.flatten(1).amax(1))
    torch.testing.assert_close(scores["max"], maps.flatten(1).amax(1))
    torch.testing.assert_close(scores["mean"], maps.flatten(1).mean(1))
