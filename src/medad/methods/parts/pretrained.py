"""ImageNet backbones from torchvision, loaded without any download.

Weights come from (in order): an explicit file (``weights=/path/file.pth``), or, for
``weights="imagenet"``, torchvision's own file name in the torch hub cache
(``$TORCH_HOME/hub/checkpoints/``, see `torch.hub.get_dir`), which is where torchvision would have
put it after a download. ``weights="random"`` gives random initialisation (tests, ablations). When
the file is missing, a `MedadError` says which file to put where: medad never downloads at run time.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from torch import nn

from medad.errors import MedadError

#: ImageNet channel statistics torchvision's weights were trained with
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def weights_file_name(arch: str) -> tuple[str, str]:
    """(file name, download URL) of torchvision's default ImageNet weights for `arch`."""
    try:
        enum = torchvision.models.get_model_weights(arch)
    except (ValueError, KeyError) as exc:
        raise MedadError(f"unknown torchvision architecture {arch!r}") from exc
    url = enum.DEFAULT.url
    return url.rsplit("/", 1)[-1], url


def hub_checkpoint_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def resolve_weights(arch: str, weights: str) -> Path | None:
    """Where the weights for `arch` come from: a file, or None for random initialisation."""
    if weights == "random":
        return None
    if weights == "imagenet":
        name, url = weights_file_name(arch)
        path = hub_checkpoint_dir() / name
        if not path.is_file():
            raise MedadError(
                f"ImageNet weights for {arch} not found: put {name} into {hub_checkpoint_dir()} "
                f"(download it from {url} on a machine with internet), or pass "
                f"weights=/path/to/{name}, or weights=random for random initialisation"
            )
        return path
    path = Path(weights).expanduser()
    if not path.is_file():
        raise MedadError(
            f"{path}: weights file not found (weights= takes imagenet, random or a file)"
        )
    return path


def load_backbone(arch: str, weights: str = "imagenet") -> nn.Module:
    """A torchvision classification model `arch` with ImageNet (or random, or file) weights."""
    model = torchvision.models.get_model(arch, weights=None)
    path = resolve_weights(arch, weights)
    if path is not None:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error
            raise MedadError(f"{path}: cannot read weights ({exc})") from exc
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise MedadError(f"{path}: not {arch} weights ({str(exc)[:200]})") from exc
    return model


class ImageNetInput(nn.Module):
    """At an ImageNet backbone's door: [-1,1] or [0,1] input → 3 channels, ImageNet-normalised.

    Grayscale is replicated to 3 channels here and only here (STYLE.md).
    """

    def __init__(self, value_range: tuple[float, float] = (-1.0, 1.0)) -> None:
        super().__init__()
        self.lo, self.hi = value_range
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.lo) / (self.hi - self.lo)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return (x - self.mean) / self.std
