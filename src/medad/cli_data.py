"""CLI commands beside the data layer: ``medad prepare`` and ``medad check-data``.

`medad.cli` calls `register` when this module is importable. Heavy imports (DICOM, NIfTI) happen
inside the commands, so ``medad --help`` stays fast.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from medad.data.catalog import BENCHMARKS
from medad.errors import MedadError

_NAMES = ", ".join(BENCHMARKS)


def register(
    app: typer.Typer,
    *,
    console: Console,
    err_console: Console,
    fail: Callable[[str], typer.Exit],
) -> None:
    """Add ``prepare`` and ``check-data`` to `app`."""

    @app.command("prepare")
    def prepare_command(
        name: Annotated[str, typer.Argument(help=f"Dataset to build: {_NAMES}.")],
        source: Annotated[
            Path,
            typer.Option(
                "--source", help="Folder holding the official raw download (see docs/datasets.md)."
            ),
        ],
        out: Annotated[
            Path,
            typer.Option(
                "--out",
                "-o",
                help="Dataset folder to create, e.g. DATA_ROOT/RSNA (must not exist).",
            ),
        ],
        seed: Annotated[int, typer.Option(help="Seed of the train/test split.")] = 0,
        size: Annotated[
            int | None,
            typer.Option(
                help="Longer side of written images in pixels; 0 keeps the native size "
                "(default: 512 for RSNA and VinDr-CXR DICOMs, native for the others)."
            ),
        ] = None,
        counts: Annotated[
            str | None,
            typer.Option(
                help="Split sizes TRAIN,TEST_NORMAL,TEST_ABNORMAL instead of the paper's "
                "(scaled down when the source is smaller)."
            ),
        ] = None,
        overwrite: Annotated[
            bool,
            typer.Option("--overwrite", help="Replace an earlier preparation in --out, once done."),
        ] = False,
        json_: Annotated[
            bool, typer.Option("--json", help="Print prepare.json instead of a summary.")
        ] = False,
    ) -> None:
        """Build a benchmark's release layout from its official download (writes prepare.json)."""
        from medad.data.prepare import parse_counts, prepare

        def log(message: str) -> None:
            if not json_:
                err_console.print(f"[dim]{escape(message)}[/]", highlight=False)

        try:
            result = prepare(
                name,
                source,
                out,
                seed=seed,
                size=size,
                counts=parse_counts(counts) if counts is not None else None,
                overwrite=overwrite,
                log=log,
            )
        except MedadError as exc:
            raise fail(str(exc)) from None
        if json_:
            print(json.dumps(result.manifest))
            return
        c = result.manifest["counts"]
        console.print(
            f"{name}: {c['train']} train, {c['test_normal']} normal + {c['test_abnormal']} "
            f"abnormal test images → {result.out}",
            markup=False,
            highlight=False,
        )

    @app.command("check-data")
    def check_data_command(
        directory: Annotated[Path, typer.Argument(help="A dataset folder, e.g. DATA_ROOT/RSNA.")],
        json_: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
        mask_threshold: Annotated[
            float | None,
            typer.Option(help="Accept masks that are not two-valued, binarised at > this value."),
        ] = None,
    ) -> None:
        """Validate a dataset folder; list its problems (exit 1) or print "ok".

        Checks missing or unreadable files, masks whose size differs from their image, empty
        classes and files found in both train and test.
        """
        from medad.data.check import inspect_data

        try:
            report = inspect_data(directory, mask_threshold=mask_threshold)
        except MedadError as exc:
            raise fail(str(exc)) from None
        if json_:
            print(
                json.dumps(
                    {
                        "ok": report.ok,
                        "layout": report.layout,
                        "counts": report.counts,
                        "problems": [str(p) for p in report.problems],
                    }
                )
            )
        elif report.ok:
            counts = ", ".join(f"{k} {v}" for k, v in report.counts.items())
            console.print(
                f"ok: {directory} ({report.layout} layout; {counts})", markup=False, highlight=False
            )
        else:
            for problem in report.problems:
                console.print(str(problem), markup=False, highlight=False, soft_wrap=True)
            n = len(report.problems)
            err_console.print(
                f"[bold red]{n} problem{'s' if n > 1 else ''}[/] in {escape(str(directory))}"
            )
        if not report.ok:
            raise typer.Exit(1)
