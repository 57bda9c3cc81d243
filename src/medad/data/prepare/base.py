"""`prepare`: build a benchmark's release layout from its official raw download.

One module per source registers a *builder* with `register_preparer`; `prepare` checks the
arguments, runs the builder inside `atomic_output_dir` and writes ``prepare.json`` (source, seed,
size, counts and the rule that chose the images) beside the data.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import medad
from medad.data.catalog import BENCHMARKS, MANIFEST_NAME, SplitCounts, benchmark
from medad.data.prepare.output import (
    atomic_output_dir,
    write_datajson_release,
    write_manifest,
)
from medad.data.prepare.splits import Candidate, split_candidates
from medad.errors import MedadError


def _quiet(message: str) -> None:
    pass


@dataclass(frozen=True)
class PrepareOptions:
    """What the user asked for, resolved: `size` None keeps the native size."""

    seed: int = 0
    size: int | None = None
    counts: SplitCounts | None = None
    log: Callable[[str], None] = field(default=_quiet, compare=False)


#: ``build(source, out, options) -> manifest fields``; writes into `out` (a fresh folder)
Builder = Callable[[Path, Path, PrepareOptions], dict[str, Any]]


@dataclass(frozen=True)
class Preparer:
    name: str
    #: what ``--source`` must hold, for help texts and errors
    source_layout: str
    #: the longer side of written images when --size is not given (None: native size)
    default_size: int | None
    #: whether ``--counts`` applies (not for ISIC 2018, whose split is the official one)
    takes_counts: bool
    build: Builder


PREPARERS: dict[str, Preparer] = {}


def register_preparer(
    name: str, *, source_layout: str, default_size: int | None = None, takes_counts: bool = True
) -> Callable[[Builder], Builder]:
    """Register the builder of benchmark `name` (a name of `medad.data.catalog`)."""
    benchmark(name)

    def deco(build: Builder) -> Builder:
        if name in PREPARERS:
            raise RuntimeError(f"preparer {name!r} registered twice")
        PREPARERS[name] = Preparer(name, source_layout, default_size, takes_counts, build)
        return build

    return deco


@dataclass
class PrepareResult:
    out: Path
    manifest: dict[str, Any]


def get_preparer(name: str) -> Preparer:
    if name not in PREPARERS:
        raise MedadError(f"no preparer for {name!r}; datasets: {', '.join(PREPARERS)}")
    return PREPARERS[name]


def _nested(a: Path, b: Path) -> bool:
    return a == b or a in b.parents or b in a.parents


def prepare(
    name: str,
    source: Path | str,
    out: Path | str,
    *,
    seed: int = 0,
    size: int | None = None,
    counts: SplitCounts | None = None,
    overwrite: bool = False,
    log: Callable[[str], None] | None = None,
) -> PrepareResult:
    """Build dataset `name`'s release layout in `out` from the raw download in `source`.

    Args:
        size: longer side of converted images in pixels; None takes the dataset's default
            (`Preparer.default_size`), 0 keeps the native size.
        counts: split sizes instead of the paper's (scaled) ones.
        overwrite: replace an earlier preparation in `out` (a folder holding prepare.json),
            only once the new dataset is complete.
    """
    preparer = get_preparer(name)
    source, out = Path(source).expanduser(), Path(out).expanduser()
    if not source.is_dir():
        raise MedadError(f"{source}: source folder not found (expected {preparer.source_layout})")
    if _nested(source.resolve(), out.resolve()):
        raise MedadError(f"{out}: --out must be outside --source ({source}) and not contain it")
    if size is not None and size < 0:
        raise MedadError(f"--size must be positive (or 0 for the native size), got {size}")
    if overwrite and out.is_dir() and any(out.iterdir()) and not (out / MANIFEST_NAME).is_file():
        raise MedadError(
            f"{out}: holds no {MANIFEST_NAME}, so it is not a dataset medad prepared; "
            "--overwrite only replaces those (give the dataset's own folder, e.g. DATA_ROOT/RSNA)"
        )
    resolved_size = preparer.default_size if size is None else (size or None)
    if counts is not None and not preparer.takes_counts:
        raise MedadError(f"{name} keeps the official split; --counts does not apply")
    options = PrepareOptions(seed, resolved_size, counts, log or _quiet)
    started = time.time()
    with atomic_output_dir(out, overwrite=overwrite) as tmp:
        fields = preparer.build(source, tmp, options)
        manifest = {
            "dataset": name,
            "title": BENCHMARKS[name].title,
            "source": str(source.resolve()),
            "seed": seed,
            "size": resolved_size,
            **fields,
            "medad_version": medad.__version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "seconds": round(time.time() - started, 1),
        }
        write_manifest(tmp, manifest)
    return PrepareResult(out, manifest)


def build_datajson_release(
    name: str,
    candidates: list[Candidate],
    out: Path,
    options: PrepareOptions,
    *,
    gray: bool,
    rule: str,
) -> dict[str, Any]:
    """Split `candidates` and write ``images/`` + ``data.json``; returns the manifest fields."""
    paper = benchmark(name).counts
    selection = split_candidates(candidates, paper, seed=options.seed, requested=options.counts)
    c = selection.counts()
    options.log(
        f"{name}: {selection.available['normal']} normal and {selection.available['abnormal']} "
        f"abnormal images; writing {c.train} train, {c.test_normal} + {c.test_abnormal} test"
    )
    write_datajson_release(out, selection, size=options.size, gray=gray)
    return {"rule": rule, **selection.manifest(paper)}
