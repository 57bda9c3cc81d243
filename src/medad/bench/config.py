"""The experiment file of ``medad bench``: typed, validated, with errors that give the line.

Example::

    name: demo
    seeds: [0, 1]
    methods:
      - ae                                  # a method by name, paper defaults
      - {name: ae, label: ae-z4, set: {latent_size: 4}}
    datasets:
      - synth-brain
      - {name: synth-chest, options: {n_train: 200}}
    quick:                                  # what --quick changes (these are the defaults)
      epochs: 2
      dataset_options: {n_train: 64, n_test_normal: 16, n_test_abnormal: 16}

``label`` names a method entry in tables (default: the method name, or name plus its overrides).
``study`` (optional) names the config field a component study varies, for the report's plots.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from medad.errors import MedadError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def check_gpu_share(value: float) -> str | None:
    """Why `value` is not a GPU share Ray accepts (None when it is): a fraction in (0, 1] lets
    cells share one GPU (0.25: four at once), a whole number gives a cell that many GPUs; 0 is
    none. Ray refuses anything else (1.5) only when the task is submitted, after hours of grid."""
    if not math.isfinite(value) or value < 0:
        return f"must be 0 or more, got {value}"
    if value > 1 and not float(value).is_integer():
        return f"must be a fraction in (0, 1] (cells share a GPU) or a whole number, got {value}"
    return None


class Resources(_Strict):
    """What one cell of the ``ray`` executor reserves on the cluster."""

    num_cpus: float | None = Field(None, ge=0, allow_inf_nan=False)
    """CPUs of the cell (default 1); its torch threads."""
    num_gpus: float | None = None
    """GPUs of the cell: a share in (0, 1] (0.25: four cells on one GPU) or a whole number
    (default: ``--gpus-per-cell``, else 1 with ``--device cuda``, else 0)."""

    @field_validator("num_gpus")
    @classmethod
    def _gpu_share(cls, value: float | None) -> float | None:
        if value is not None and (why := check_gpu_share(value)):
            raise ValueError(why)
        return value


class MethodEntry(_Strict):
    name: str
    """Registered method name (``medad methods``)."""
    label: str | None = None
    """Name of this entry in tables; default: the method name plus its overrides."""
    set: dict[str, Any] = Field(default_factory=dict)
    """Method config overrides, as ``--set`` on the command line."""
    resources: Resources = Field(default_factory=Resources)
    """What one cell needs on a Ray cluster, e.g. ``{num_cpus: 4, num_gpus: 0.25}``."""

    @property
    def display(self) -> str:
        if self.label:
            return self.label
        if not self.set:
            return self.name
        return self.name + "[" + ",".join(f"{k}={v}" for k, v in sorted(self.set.items())) + "]"


class DatasetEntry(_Strict):
    name: str
    """Registered dataset name (``medad datasets``)."""
    options: dict[str, Any] = Field(default_factory=dict)
    """Dataset options, as ``--data-option`` on the command line."""
    data_root: str | None = None
    """Folder of this dataset's data (default: the experiment's or $MEDAD_DATA)."""


class QuickSettings(_Strict):
    epochs: int = Field(2, ge=0)
    """Epochs of every cell in ``--quick`` mode."""
    dataset_options: dict[str, Any] = Field(
        default_factory=lambda: {"n_train": 64, "n_test_normal": 16, "n_test_abnormal": 16}
    )
    """Options given to datasets that accept them (the embedded ones) in ``--quick`` mode."""
    set: dict[str, Any] = Field(default_factory=dict)
    """Method config overrides applied to every cell in ``--quick`` mode."""


class Experiment(_Strict):
    name: str
    """Name of the experiment (shown in tables and the report)."""
    description: str = ""
    methods: list[MethodEntry]
    datasets: list[DatasetEntry]
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2])
    """Seeds of every (method, dataset) cell; PAPER.md reports mean ± std over 3."""
    out: str | None = None
    """Output root (default: ``--out`` or ./medad-runs)."""
    data_root: str | None = None
    """Folder where datasets on disk live (default: ``--data-root`` or $MEDAD_DATA)."""
    device: str = "auto"
    set: dict[str, Any] = Field(default_factory=dict)
    """Config overrides for every method that has the field (a method's own ``set`` wins); each
    key must be a field of at least one method of the file."""
    study: str | None = None
    """The method config field this experiment varies (component studies), for plots."""
    quick: QuickSettings = Field(default_factory=QuickSettings)

    @field_validator("methods", "datasets", mode="before")
    @classmethod
    def _names_to_entries(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"name": v} if isinstance(v, str) else v for v in value]
        return value

    @field_validator("seeds")
    @classmethod
    def _seeds_unique(cls, value: list[int]) -> list[int]:
        if len(set(value)) != len(value) or not value:
            raise ValueError("seeds must be a non-empty list of distinct integers")
        return value


def _line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """The 1-based line of the YAML node at pydantic location `loc` (as deep as it exists)."""
    line = node.start_mark.line + 1 if node is not None else None
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            nxt = next((v for k, v in node.value if k.value == str(key)), None)
            if nxt is None:
                key_node = next((k for k, _ in node.value if k.value == str(key)), None)
                return key_node.start_mark.line + 1 if key_node is not None else line
            node = nxt
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
        else:
            break
        line = node.start_mark.line + 1
    return line


def parse_experiment(text: str, source: str = "<experiment>") -> Experiment:
    """Parse and validate an experiment; errors name `source`, the line and the field."""
    try:
        data = yaml.safe_load(text)
        tree = yaml.compose(text)
    except yaml.YAMLError as exc:
        raise MedadError(f"{source}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise MedadError(f"{source}: an experiment must be a mapping with methods and datasets")
    try:
        exp = Experiment.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(
                p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function"))
            )
            line = _line_of(tree, loc)
            where = ".".join(str(p) for p in loc) or "experiment"
            msg = err["msg"].replace("Extra inputs are not permitted", "unknown key")
            problems.append(f"{source}:{line}: {where}: {msg}")
        raise MedadError("invalid experiment\n" + "\n".join(problems)) from None
    _check_shared_keys(exp, tree, source)
    return exp


def _check_shared_keys(exp: Experiment, tree: yaml.Node | None, source: str) -> None:
    """Every key of the top-level ``set:`` and ``quick.set:`` (dotted keys: their first part) must
    be a config field of at least one method of the file: a typo (``epocs``) would otherwise be
    skipped for every method and the full budget would run without a word."""
    from medad.evaluation import Protocol  # noqa: PLC0415
    from medad.methods.base import method_class  # noqa: PLC0415 (methods load torch)

    fields: set[str] = set(Protocol.model_fields)  # validation_fraction, threshold_fpr
    for m in exp.methods:
        try:
            fields |= set(method_class(m.name).Config.model_fields)
        except MedadError:
            return  # an unknown method is reported, with its name, when the cells are planned
    problems = [
        f"{source}:{_line_of(tree, (*where, key))}: {'.'.join(where)}.{key}: no method of this "
        f"experiment has a config field {key.split('.')[0]!r}"
        for where, shared in ((("set",), exp.set), (("quick", "set"), exp.quick.set))
        for key in shared
        if key.split(".")[0] not in fields
    ]
    if problems:
        raise MedadError("invalid experiment\n" + "\n".join(problems))


def load_experiment(path: Path | str) -> Experiment:
    path = Path(path)
    if not path.is_file():
        raise MedadError(f"{path}: experiment file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise MedadError(
            f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
            "save the experiment file as UTF-8"
        ) from None
    except OSError as exc:
        raise MedadError(f"cannot read {path}: {(exc.strerror or str(exc)).lower()}") from None
    return parse_experiment(text, str(path))
