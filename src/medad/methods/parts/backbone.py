"""Features of named layers of a torchvision classification model, trainable or frozen.

One part for every method that reads ImageNet-style features: AE-PL's VGG19 relu4_2
(`medad.methods.parts.perceptual`), the ResNet18 embeddings of the two-stage SSL methods and of
the ResNet18-ImageNet reference (`medad.methods.parts.embedding_density`), and the teachers and
encoders of the feature-reconstruction methods (RD, FAE, ...).

`BackboneFeatures` truncates a torchvision model (``resnet18``, ``wide_resnet50_2``, ``vgg19``,
any name `torchvision.models.get_model` knows) to the graph nodes that produce the named layers
(torchvision's `create_feature_extractor`, so nothing after the last asked-for layer runs) and
returns their outputs. Node names are torchvision's module paths: ``layer1``..``layer4``,
``flatten`` (the pooled embedding) for a ResNet, ``features.22`` for VGG19's relu4_2.

`FrozenBackbone` is the same network as pretrained data rather than model state: no parameter
requires a gradient, it is kept out of ``parameters()`` and ``state_dict()`` (a checkpoint is
rebuilt from the same `weights`, not stored; loading one works because the keys are simply
absent), it stays in eval mode whatever ``train()`` is called on its owner (BatchNorm keeps the
pretrained statistics), and it follows its owner across devices and dtypes. ``weights="random"``
is one fixed random network (drawn from seed `RANDOM_WEIGHTS_SEED`, the global random state left
untouched), so a checkpoint reloads against the very features it was trained on. Grayscale input is
replicated to 3 channels and ImageNet-normalised at its door only (`ImageNetInput`, STYLE.md).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from medad.errors import MedadError
from medad.methods.parts.pretrained import ImageNetInput, layer_node, load_backbone

Layers = str | Sequence[str]

#: seed of the frozen network ``weights="random"`` stands for
RANDOM_WEIGHTS_SEED = 0


class BackboneFeatures(nn.Module):
    """`door`, then torchvision model `arch` up to `layers`: [B, C, H, W] → features.

    A single layer name gives one tensor, a list of names a list of tensors in that order.
    `channels` holds their channel counts (an int for a single name). Trainable as any module.
    """

    def __init__(
        self, arch: str, layers: Layers, weights: str = "random", door: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.single = isinstance(layers, str)
        self.layers: list[str] = [layers] if isinstance(layers, str) else list(layers)
        if not self.layers:
            raise MedadError(f"{arch}: name at least one layer to take features from")
        from torchvision.models.feature_extraction import (  # lazy: start-up time
            create_feature_extractor,
            get_graph_node_names,
        )

        model = load_backbone(arch, weights)
        self.nodes = [layer_node(arch, n) for n in self.layers]
        with warnings.catch_warnings():  # "eval-mode nodes are a subsequence of train-mode ones"
            warnings.simplefilter("ignore", UserWarning)
            nodes = get_graph_node_names(model)[1]
        # a module name stands for its last node (torchvision's rule: ``layer1``)
        unknown = [
            n
            for n, node in zip(self.layers, self.nodes, strict=True)
            if not any(m == node or m.startswith(node + ".") for m in nodes)
        ]
        if unknown:
            known = ", ".join(dict.fromkeys(m.split(".")[0] for m in nodes))
            raise MedadError(
                f"{arch}: no layer {', '.join(unknown)}; modules: {known} (or their sub-modules)"
            )
        self.door = door if door is not None else nn.Identity()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            self.backbone = create_feature_extractor(model, {n: n for n in self.nodes})
        was_training = model.training
        self.backbone.eval()
        with torch.no_grad():
            probe = self.backbone(torch.zeros(1, 3, 64, 64))
        self.backbone.train(was_training)
        widths = [int(probe[n].shape[1]) for n in self.nodes]
        #: channels of each returned feature (an int for a single layer name)
        self.channels: Any = widths[0] if self.single else widths

    def forward(self, x: torch.Tensor) -> Any:
        out = self.backbone(self.door(x))
        feats = [out[n] for n in self.nodes]
        return feats[0] if self.single else feats


class FrozenModule(nn.Module):
    """A network held as pretrained data rather than model state (see the module docstring).

    No parameter requires a gradient; the network is a plain attribute, so it is out of
    ``parameters()`` and ``state_dict()``; it stays in eval mode whatever ``train()`` is called on
    its owner; it follows its owner across devices and dtypes. `FrozenBackbone` is the torchvision
    case; EfficientAD's teacher and the ViTs of `medad.methods.parts.vit` wrap their own networks.
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        net.requires_grad_(False).eval()
        object.__setattr__(self, "frozen", net)  # a plain attribute: not a registered submodule

    frozen: nn.Module

    def _apply(self, fn, recurse=True):  # type: ignore[no-untyped-def]
        super()._apply(fn, recurse)
        self.frozen._apply(fn)
        return self

    def train(self, mode: bool = True) -> FrozenModule:
        """Stays in eval mode: frozen features include BatchNorm's pretrained statistics."""
        super().train(mode)
        self.frozen.eval()
        return self

    def forward(self, x: torch.Tensor) -> Any:
        return self.frozen(x)


class FrozenBackbone(FrozenModule):
    """Frozen pretrained features of `layers` of `arch`, for input in `value_range` (see module).

    ``FrozenBackbone("wide_resnet50_2", ["layer1", "layer2", "layer3"], "imagenet")`` is RD's
    teacher; ``FrozenBackbone("resnet18", "flatten")`` the ResNet18-ImageNet embedding.
    """

    def __init__(
        self,
        arch: str,
        layers: Layers,
        weights: str = "imagenet",
        value_range: tuple[float, float] = (-1.0, 1.0),
    ) -> None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_WEIGHTS_SEED)
            net = BackboneFeatures(arch, layers, weights, ImageNetInput(value_range))
        super().__init__(net)
        self.arch, self.weights = arch, weights
        self.channels = net.channels

    frozen: BackboneFeatures
