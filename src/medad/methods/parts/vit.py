"""Patch features of a vision transformer (timm), frozen, with self-supervised weights.

The backbones of methods on ViT features (AnomalyDINO), by name:

* ``dino_vits16``: DINO ViT-S/16 (Caron et al., "Emerging Properties in Self-Supervised Vision
  Transformers", ICCV 2021), timm ``vit_small_patch16_224.dino``;
* ``dinov2_vits14``: DINOv2 ViT-S/14 (Oquab et al., "DINOv2: Learning Robust Visual Features
  without Supervision", TMLR 2024), timm ``vit_small_patch14_dinov2.lvd142m``;
* ``mae_vitb16``: MAE ViT-B/16 (He et al., "Masked Autoencoders Are Scalable Vision Learners",
  CVPR 2022), timm ``vit_base_patch16_224.mae``;

and any other timm ViT name as it is (``vit_tiny_patch16_224``: small random networks in tests).

Weights never download. ``weights="pretrained"`` reads the model's file from the Hugging Face hub
cache (``$HF_HOME/hub``, where timm would have put it: ``model.safetensors`` of the hub repository
``timm/<name>``); ``weights=FILE`` reads a state dict from a file (timm's or the authors' original
checkpoint: timm's ViT key conversion applies, and the position embedding is resampled to the
input size); ``weights="random"`` is one fixed random network (`RANDOM_WEIGHTS_SEED`). A missing
file stops with a `MedadError` naming the file and where to put it.

Grayscale input is replicated to 3 channels and ImageNet-normalised (what all three were trained
with) at the door only (`ImageNetInput`). The output is the last block's normalised patch tokens as
a map [B, D, H/p, W/p] (DINOv2's ``get_intermediate_layers`` with its defaults; the class and
register tokens dropped). The network is frozen and kept out of checkpoints (`FrozenModule`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medad.errors import MedadError
from medad.methods.parts.backbone import RANDOM_WEIGHTS_SEED, FrozenModule
from medad.methods.parts.pretrained import ImageNetInput


@dataclass(frozen=True)
class ViTBackbone:
    """A named ViT: its timm model name, its paper and the original checkpoint's URL."""

    timm_name: str
    source: str
    original_url: str = ""


VIT_BACKBONES: dict[str, ViTBackbone] = {
    "dino_vits16": ViTBackbone(
        "vit_small_patch16_224.dino",
        "DINO ViT-S/16 (Caron et al. 2021)",
        "https://dl.fbaipublicfiles.com/dino/dino_deitsmall16_pretrain/dino_deitsmall16_pretrain.pth",
    ),
    "dinov2_vits14": ViTBackbone(
        "vit_small_patch14_dinov2.lvd142m",
        "DINOv2 ViT-S/14 (Oquab et al. 2024)",
        "https://dl.fbaipublicfiles.com/dinov2/dinov2_vits14/dinov2_vits14_pretrain.pth",
    ),
    "mae_vitb16": ViTBackbone(
        "vit_base_patch16_224.mae",
        "MAE ViT-B/16 (He et al. 2022)",
        "https://dl.fbaipublicfiles.com/mae/pretrain/mae_pretrain_vit_base.pth",
    ),
}

#: files of a timm model in its hub repository, in the order timm tries them
HUB_FILES = ("model.safetensors", "pytorch_model.bin")


def _offline() -> None:
    """Before timm or huggingface_hub is imported: never reach the network (HF_HUB_OFFLINE)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


def timm_name(name: str) -> str:
    """The timm model name of a named backbone (other names are timm's own)."""
    return VIT_BACKBONES[name].timm_name if name in VIT_BACKBONES else name


def hub_repo(name: str) -> str:
    """The Hugging Face hub repository timm keeps `name`'s weights in (``timm/<model>``)."""
    _offline()
    import timm

    try:
        cfg = timm.models.get_pretrained_cfg(timm_name(name))
    except Exception:  # noqa: BLE001 - an unknown tag is the same user error
        cfg = None
    hub = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    return hub or f"timm/{timm_name(name)}"


def hub_cache_dir() -> Path:
    _offline()
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def cached_weights(name: str) -> Path | None:
    """The cached hub file of `name`, or None (looks only in the cache: never downloads)."""
    _offline()
    from huggingface_hub import try_to_load_from_cache

    for filename in HUB_FILES:
        found = try_to_load_from_cache(hub_repo(name), filename, cache_dir=hub_cache_dir())
        if isinstance(found, str):
            return Path(found)
    return None


def resolve_vit_weights(name: str, weights: str) -> Path | None:
    """The file `weights` stands for (None: random initialisation), or a MedadError saying
    which file to put where."""
    if weights == "random":
        return None
    if weights == "pretrained":
        path = cached_weights(name)
        if path is None:
            repo = hub_repo(name)
            url = VIT_BACKBONES[name].original_url if name in VIT_BACKBONES else ""
            raise MedadError(
                f"{name} weights not found: put {HUB_FILES[0]} of the Hugging Face repository "
                f"{repo} into the hub cache {hub_cache_dir()} (huggingface-cli download {repo} on "
                "a machine with internet, then copy the cache), or pass weights=/path/file"
                + (f" (e.g. the original {url.rsplit('/', 1)[-1]} from {url})" if url else "")
                + ", or weights=random for random initialisation"
            )
        return path
    path = Path(weights).expanduser()
    if not path.is_file():
        raise MedadError(
            f"{path}: weights file not found (weights= takes pretrained, random or a file)"
        )
    return path


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state: Any = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error
        raise MedadError(f"{path}: cannot read weights ({str(exc)[:200]})") from exc
    for key in ("model", "state_dict", "teacher"):  # MAE's, generic, DINO's full checkpoints
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise MedadError(f"{path}: not a state dict")
    return {k.removeprefix("module.").removeprefix("backbone."): v for k, v in state.items()}


def build_vit(name: str, weights: str, image_size: int) -> nn.Module:
    """The timm ViT `name` without its head, for `image_size` inputs, with `weights`."""
    _offline()
    import timm
    from timm.models.vision_transformer import checkpoint_filter_fn

    path = resolve_vit_weights(name, weights)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_WEIGHTS_SEED)
            model = timm.create_model(
                timm_name(name), pretrained=False, num_classes=0, img_size=image_size,
                dynamic_img_size=True,
            )  # fmt: skip
    except RuntimeError as exc:  # timm: "Unknown model (...)"
        known = ", ".join(VIT_BACKBONES)
        raise MedadError(f"unknown ViT backbone {name!r} ({exc}); named ones: {known}") from exc
    if path is not None:
        state = checkpoint_filter_fn(_read_state(path), model)
        state = {k: v for k, v in state.items() if not k.startswith("head.")}
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise MedadError(f"{path}: not {name} weights ({str(exc)[:200]})") from exc
    return model


class ViTPatchFeatures(nn.Module):
    """ImageNet door, then a ViT's last-block normalised patch tokens as a map [B, D, h, w]."""

    def __init__(
        self, name: str, weights: str, image_size: int, value_range: tuple[float, float]
    ) -> None:
        super().__init__()
        self.door = ImageNetInput(value_range)
        self.vit = build_vit(name, weights, image_size)
        patch = self.vit.patch_embed.patch_size
        self.patch_size = int(patch[0] if isinstance(patch, tuple | list) else patch)
        self.channels = int(self.vit.num_features)
        if image_size % self.patch_size:
            raise MedadError(
                f"{name}: image_size {image_size} is not a multiple of its patch size "
                f"{self.patch_size}"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.vit.forward_features(self.door(x))[:, self.vit.num_prefix_tokens :]
        h, w = x.shape[-2] // self.patch_size, x.shape[-1] // self.patch_size
        return tokens.transpose(1, 2).reshape(x.shape[0], -1, h, w)


class FrozenViT(FrozenModule):
    """`ViTPatchFeatures` as frozen pretrained data (see `FrozenModule`)."""

    def __init__(
        self,
        name: str,
        weights: str = "pretrained",
        image_size: int = 224,
        value_range: tuple[float, float] = (0.0, 1.0),
    ) -> None:
        net = ViTPatchFeatures(name, weights, image_size, value_range)
        super().__init__(net)
        self.name, self.weights = name, weights
        self.channels, self.patch_size = net.channels, net.patch_size

    frozen: ViTPatchFeatures
