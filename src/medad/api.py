"""The Python API: a scikit-learn-like `Detector` over NumPy arrays, and runs as objects.

`Detector(method, **config).fit(X)` trains any registered method on normal images held in memory
(or on a dataset's train split, by name) with the one engine (`medad.engine.train`), and
`score_samples` / `anomaly_maps` score new images with `medad.engine.predict`. Nothing is written
to disk unless you call `save`.

`fit(method, dataset, ...)` is the Python form of ``medad run``: it trains, scores the test split,
evaluates and records the run in a results store (`medad.runs.execute`), and returns a `Run`
whose `predictions`, `metrics` and `detector` are at hand; `load_run(path)` opens any run folder
the same way.

Scores follow medad's convention, **higher = more anomalous** (scikit-learn's outlier detectors'
`score_samples` use the opposite sign).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

import medad
from medad import engine
from medad.data.base import Record, get_dataset
from medad.data.loading import ArraySplit, Preprocess, decode_records, load_split
from medad.errors import MedadError
from medad.methods.base import Method, MethodConfig, build_config, method_class
from medad.predictions import Predictions

#: what `Detector.save` writes, so that `Detector.load` can tell its files from others
DETECTOR_FORMAT = "medad-detector"

ImageInput = np.ndarray | Sequence[np.ndarray]


def _as_records(X: ImageInput, what: str = "X") -> tuple[list[Record], int]:
    """Images [N, H, W] or [N, C, H, W] (channels first, C 1 or 3), or a sequence of [H, W] /
    [C, H, W] arrays of any sizes, uint8 or float in [0, 1] → records and their channel count."""
    if isinstance(X, str | Path):
        raise MedadError(f"{what}: expected images as NumPy arrays, got the path {str(X)!r}")
    items = list(X) if not isinstance(X, np.ndarray) else [X[i] for i in range(len(X))]
    if isinstance(X, np.ndarray) and X.ndim not in (3, 4):
        raise MedadError(
            f"{what}: expected images of shape [N, H, W] or [N, C, H, W], got {X.shape}"
        )
    if not items:
        raise MedadError(f"{what}: no images")
    records, channels = [], set()
    for i, raw in enumerate(items):
        img = np.asarray(raw)
        if img.ndim == 3 and img.shape[0] in (1, 3):
            img = img[0] if img.shape[0] == 1 else np.moveaxis(img, 0, -1)
        if img.ndim != 2 and not (img.ndim == 3 and img.shape[-1] == 3):
            raise MedadError(
                f"{what}[{i}]: expected an image [H, W] or [C, H, W] with C 1 or 3 (channels "
                f"first), got shape {np.asarray(raw).shape}"
            )
        if img.dtype != np.uint8:
            if not np.issubdtype(img.dtype, np.floating):
                raise MedadError(
                    f"{what}[{i}]: images must be uint8 or float in [0, 1], got {img.dtype}"
                )
            lo, hi = (float(img.min()), float(img.max())) if img.size else (0.0, 0.0)
            if not np.isfinite(img).all() or lo < 0.0 or hi > 1.0:
                raise MedadError(
                    f"{what}[{i}]: float images must lie in [0, 1], found [{lo:.4g}, {hi:.4g}]; "
                    "scale them first, e.g. (x - x.min()) / (x.max() - x.min())"
                )
            img = img.astype(np.float32)
        channels.add(1 if img.ndim == 2 else 3)
        records.append(Record(str(i), 0, img))
    return records, max(channels)


@dataclass
class _Fitted:
    """A trained method with the preprocessing its training data went through."""

    method: Method
    pre: Preprocess
    history: dict[str, Any] = field(default_factory=dict)


class Detector:
    """An anomaly detector: any registered method (``medad methods``), trained on normal images.

    ``Detector("ae", latent_size=32, epochs=50)``: keyword arguments are the method's config
    fields (``medad methods --details``). Without ``epochs``, a dataset name gets the study's
    budget on that dataset (`medad.methods.budgets`) and arrays the method's own default (the
    paper's 250 for the reconstruction family).
    """

    def __init__(
        self,
        method: str = "ae",
        *,
        seed: int = 0,
        device: str | None = None,
        progress: bool | None = None,
        **config: Any,
    ) -> None:
        self.method = method
        self.seed = seed
        self.device = device
        #: show a progress bar while training (default: when stderr is a terminal)
        self.progress = progress
        self.config = dict(config)
        build_config(method_class(method), self.config)  # a bad field fails here, not in fit
        self._fitted: _Fitted | None = None

    def __repr__(self) -> str:
        args = ", ".join([repr(self.method), *(f"{k}={v!r}" for k, v in self.config.items())])
        return f"Detector({args}{'' if self._fitted else ', not fitted'})"

    # -- training -------------------------------------------------------------------------------

    def fit(
        self, X: ImageInput | str, *, data_root: str | Path | None = None, **dataset_options: Any
    ) -> Detector:
        """Train on normal images: arrays (see `score_samples`) or the train split of a dataset
        named by `X` (``"synth-brain"``, ``"folder"`` with `data_root`, ...; `dataset_options`
        as ``--data-option``). Returns the detector itself."""
        from medad.runs import RunSpec, default_data_root, resolve_config

        cls = method_class(self.method)
        if isinstance(X, str):
            spec = RunSpec(self.method, X, self.seed, dict(self.config), dataset_options)
            config, _ = resolve_config(spec)
            root = Path(data_root) if data_root is not None else default_data_root()
            dataset = get_dataset(X, root, **dataset_options)
            channels = dataset.channels
            pre = cls.preprocess(config, channels)
            split = load_split(dataset, "train", pre)
        else:
            if dataset_options or data_root is not None:
                raise MedadError("data_root and dataset options go with a dataset name, not arrays")
            records, channels = _as_records(X)
            config = build_config(cls, self.config)
            pre = cls.preprocess(config, channels)
            split = decode_records(records, pre, with_masks=False)
        method = engine.create_method(cls, config, channels, self.seed)
        progress = sys.stderr.isatty() if self.progress is None else self.progress
        history = engine.train(
            method, split, pre, seed=self.seed, device=self.device, progress=progress
        )
        self._fitted = _Fitted(method, pre, history.__dict__)
        return self

    # -- scoring --------------------------------------------------------------------------------

    @property
    def fitted(self) -> bool:
        return self._fitted is not None

    def _check_fitted(self) -> _Fitted:
        if self._fitted is None:
            raise MedadError("this Detector is not fitted yet: call fit(X) or Detector.load(path)")
        return self._fitted

    def _predict(self, X: ImageInput) -> tuple[Predictions, ArraySplit]:
        fitted = self._check_fitted()
        records, _ = _as_records(X)
        split = decode_records(records, fitted.pre, with_masks=False)
        return engine.predict(fitted.method, split, fitted.pre, device=self.device), split

    def score_samples(self, X: ImageInput) -> np.ndarray:
        """Image anomaly scores [N], higher = more anomalous.

        `X`: images [N, H, W] or [N, C, H, W] (channels first, C 1 or 3), or a sequence of
        [H, W] / [C, H, W] arrays of different sizes; uint8, or float in [0, 1]. Each image is
        resized (and converted to the training data's channels) as the training images were."""
        return self._predict(X)[0].image_scores

    def anomaly_maps(self, X: ImageInput) -> np.ndarray:
        """Pixel anomaly maps [N, S, S] at the method's working size S (`image_size`), higher =
        more anomalous; methods that score whole images only (``ganomaly``,
        ``resnet18-imagenet``, two-stage SSL) raise a `MedadError`."""
        pred, _ = self._predict(X)
        if pred.maps is None:
            raise MedadError(f"method {self.method!r} gives image scores only, no anomaly maps")
        return pred.maps

    @property
    def image_size(self) -> int:
        """Side of the square images the method works on (and of its maps)."""
        return self._check_fitted().pre.size

    # -- persistence ----------------------------------------------------------------------------

    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write the fitted detector to one file (written whole, then renamed into place).

        An existing file is replaced only with `overwrite`, and only when it is a file `save`
        wrote. Frozen pretrained backbones are not stored: `load` rebuilds them from the same
        weights, as for run checkpoints."""
        fitted = self._check_fitted()
        path = Path(path)
        if path.exists():
            if path.is_dir():
                raise MedadError(f"{path}: is a folder; give a file name, e.g. {path}/detector.pt")
            if not overwrite:
                raise MedadError(f"{path}: already exists; save(..., overwrite=True) replaces it")
            _read_detector_file(path)  # refuses a file save did not write
        payload = {
            "format": DETECTOR_FORMAT,
            "medad": medad.__version__,
            "method": self.method,
            "seed": self.seed,
            # JSON keeps the payload to plain types that torch.load(weights_only=True) accepts
            "config": json.dumps(fitted.method.config.model_dump()),
            "channels": fitted.method.channels,
            "state_dict": fitted.method.state_dict(),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                torch.save(payload, fh)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def load(
        cls, path: str | Path, *, device: str | None = None, progress: bool | None = None
    ) -> Detector:
        """A detector from a file `save` wrote, or from a run folder (``medad run``'s
        ``config.yaml`` + ``checkpoint.pt``)."""
        path = Path(path)
        if path.is_dir():
            from medad.inference import load_run as load_run_folder

            loaded = load_run_folder(path, device)
            method, pre = loaded.method, loaded.pre
            seed = int((yaml.safe_load((path / "config.yaml").read_text()) or {}).get("seed", 0))
        else:
            payload = _read_detector_file(path)
            kind = method_class(payload["method"])
            config = build_config(kind, json.loads(payload["config"]))
            method = kind(config, int(payload["channels"]))
            try:
                method.load_state_dict(payload["state_dict"])
            except RuntimeError as exc:
                raise MedadError(f"{path}: the weights do not fit the method ({exc})") from None
            method.to(engine.resolve_device(device)).eval()
            pre, seed = kind.preprocess(config, method.channels), int(payload["seed"])
        det = cls.__new__(cls)
        det.method, det.seed, det.device, det.progress = method.name, seed, device, progress
        det.config = _changed_fields(method.config)
        det._fitted = _Fitted(method, pre)
        return det


def _changed_fields(config: MethodConfig) -> dict[str, Any]:
    """The config fields that differ from their defaults (what a user would have passed)."""
    defaults = type(config)().model_dump()
    return {k: v for k, v in config.model_dump().items() if defaults.get(k) != v}


def _read_detector_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise MedadError(f"{path}: not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error
        raise MedadError(f"{path}: not a medad detector file ({exc})") from None
    if not isinstance(payload, dict) or payload.get("format") != DETECTOR_FORMAT:
        raise MedadError(f"{path}: not a medad detector file (Detector.save writes them)")
    return payload


# -- runs ---------------------------------------------------------------------------------------


@dataclass
class Run:
    """A finished run folder: its metrics and configuration; its predictions and detector are
    read when first used."""

    run_dir: Path
    run_id: str
    metrics: dict[str, float]
    config: dict[str, Any]
    #: True when `fit` found the run already finished and did not train it again
    reused: bool = False

    @cached_property
    def predictions(self) -> Predictions:
        """Test-split ids, labels, image scores, maps and masks (``predictions.npz``)."""
        return Predictions.load(self.run_dir / "predictions.npz")

    @cached_property
    def detector(self) -> Detector:
        """The trained method, ready to score new images."""
        return Detector.load(self.run_dir)

    @cached_property
    def history(self) -> dict[str, Any]:
        """Loss per epoch, steps and seconds of training (``train.json``)."""
        path = self.run_dir / "train.json"
        return json.loads(path.read_text()) if path.is_file() else {}


def fit(
    method: str,
    dataset: str,
    *,
    seed: int = 0,
    out: str | Path = "medad-runs",
    data_root: str | Path | None = None,
    dataset_options: dict[str, Any] | None = None,
    device: str | None = None,
    force: bool = False,
    progress: bool | None = None,
    **config: Any,
) -> Run:
    """Train `method` on `dataset`, score its test split, evaluate, and record the run in the
    results store `out` (as ``medad run``); a run already finished there is reused unless
    `force`. Keyword arguments beyond these are the method's config fields."""
    from medad.outputs import check_output_root
    from medad.runs import RunSpec, execute

    if not isinstance(dataset, str):
        raise MedadError(
            "medad.fit trains and evaluates on a named dataset; for images in memory use "
            "medad.Detector(method).fit(X)"
        )
    spec = RunSpec(method, dataset, seed, dict(config), dict(dataset_options or {}))
    check_output_root(Path(out))
    result = execute(
        spec,
        Path(out),
        data_root=Path(data_root) if data_root is not None else None,
        device=device,
        progress=sys.stderr.isatty() if progress is None else progress,
        force=force,
    )
    return Run(result.run_dir, result.run_id, result.metrics, result.config, result.reused)


def load_run(path: str | Path) -> Run:
    """Open a run folder (``OUT/runs/<dataset>/<method>/<hash>-seed<k>``)."""
    path = Path(path)
    cfg_path, metrics_path = path / "config.yaml", path / "metrics.json"
    for p in (cfg_path, metrics_path):
        if not p.is_file():
            raise MedadError(f"{p}: not found; is {path} a medad run folder?")
    try:
        config = yaml.safe_load(cfg_path.read_text()) or {}
        metrics = json.loads(metrics_path.read_text())
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise MedadError(f"{path}: unreadable run files ({exc})") from None
    run_id = "/".join(path.resolve().parts[-3:])
    return Run(path, run_id, {k: float(v) for k, v in metrics.items()}, config)
