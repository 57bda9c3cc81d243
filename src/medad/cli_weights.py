"""``medad weights``: which pretrained files the methods need, where medad looks, and a fetch.

`medad.cli` calls `register`. Nothing here downloads unless the user runs ``medad weights fetch``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from medad.errors import MedadError


def register(
    app: typer.Typer,
    *,
    console: Console,
    err_console: Console,
    fail: Callable[[str], typer.Exit],
) -> None:
    """Add the ``weights`` command group to `app`."""
    group = typer.Typer(
        help="Pretrained backbones: list what the methods need and whether it is here; fetch it.",
        no_args_is_help=False,
        invoke_without_command=True,
    )

    @group.callback()
    def weights_list(
        ctx: typer.Context,
        json_: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    ) -> None:
        """List the backbones the methods use, the file medad reads, and whether it is there."""
        if ctx.invoked_subcommand is not None:
            return
        from medad.methods.weights import inventory

        rows = inventory()
        if json_:
            print(json.dumps({"backbones": [r.as_dict() for r in rows]}, indent=2))
            return
        table = Table(title="pretrained backbones (weights=imagenet)")
        for col in ("backbone", "here", "file medad reads", "used by", "source"):
            table.add_column(col, overflow="fold")
        for r in rows:
            table.add_row(
                escape(r.backbone),
                "[green]yes[/]" if r.present else "[red]no[/]",
                escape(r.path),
                escape(", ".join(r.methods)),
                escape(r.source),
            )
        console.print(table)
        missing = [r.backbone for r in rows if not r.present]
        if missing:
            err_console.print(
                "missing files: `medad weights fetch NAME` on a machine with internet, or copy the "
                "file to the path shown (`--file` does that with a check); `--set weights=random` "
                "runs without them"
            )

    @group.command("fetch")
    def weights_fetch(
        name: Annotated[str, typer.Argument(help="Backbone, e.g. resnet18 (see `medad weights`).")],
        url: Annotated[
            str | None, typer.Option("--url", help="Download from this mirror instead.")
        ] = None,
        file: Annotated[
            Path | None,
            typer.Option("--file", help="Copy this already downloaded file instead (checked)."),
        ] = None,
    ) -> None:
        """Download a backbone's official ImageNet file into the torch hub cache (needs internet).

        The file's SHA-256 is checked against the prefix in torchvision's file name before it is
        put in place; an existing file is never replaced.
        """
        from medad.methods.weights import copy_into_cache, fetch

        if url and file:
            raise fail("give --url or --file, not both")
        try:
            if file is not None:
                if not file.is_file():
                    raise MedadError(f"{file}: no such file")
                dest = copy_into_cache(name, file)
            else:
                dest = fetch(name, url)
        except MedadError as exc:
            raise fail(str(exc)) from None
        console.print(f"{name}: {dest}")

    app.add_typer(group, name="weights")
