"""What ``medad bench`` shows while a grid runs: where it is, how it goes, when it will end.

In a terminal, one bar for the whole grid (cells done / total, the current cell with its epoch
and loss, elapsed time and an estimate of the time left) with a line above it per finished cell.
Elsewhere (a log file, CI, a pipe), one plain line per event, so a log says the same without
control characters.

The estimate counts only cells trained in this process (cells skipped as already done cost no
time) and the fraction of the current cell's training steps, so it is meaningful from the first
epoch on.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import IO, Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn


def clock(seconds: float) -> str:
    """``m:ss`` or ``h:mm:ss``."""
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class GridProgress:
    """Receives `run_grid`'s events (`event`, `epoch`) and shows them; use as a context manager.

    `total` is the number of cells in the grid; `stream` the text stream written to when not a
    terminal (`terminal` None: decided by ``stream.isatty()``)."""

    def __init__(
        self,
        total: int,
        console: Console,
        *,
        terminal: bool | None = None,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = total
        self.console = console
        self.terminal = console.is_terminal if terminal is None else terminal
        self.now = now
        self.start = now()
        self.finished = 0  # done, failed or skipped
        self.trained = 0  # done or failed in this process: the cells the estimate learns from
        self.current: str = ""
        self.fraction = 0.0  # of the current cell's training steps
        self.status = ""
        self._bar: Progress | None = None
        self._task: Any = None

    # -- context --------------------------------------------------------------------------------

    def __enter__(self) -> GridProgress:
        if self.terminal:
            self._bar = Progress(
                TextColumn("[bold]cells"),
                MofNCompleteColumn(),
                BarColumn(),
                TextColumn("{task.description}"),
                console=self.console,
                transient=True,
            )
            self._bar.__enter__()
            self._task = self._bar.add_task("", total=self.total)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None

    # -- estimates ------------------------------------------------------------------------------

    def elapsed(self) -> float:
        return self.now() - self.start

    def remaining(self) -> float | None:
        """Seconds left: time per trained cell × cells left; None before any training."""
        units = self.trained + self.fraction
        if units <= 0:
            return None
        left = self.total - self.finished - self.fraction
        return self.elapsed() / units * max(left, 0.0)

    def _times(self) -> str:
        eta = self.remaining()
        return f"{clock(self.elapsed())} elapsed, " + (
            f"{clock(eta)} left" if eta is not None else "time left unknown yet"
        )

    # -- events ---------------------------------------------------------------------------------

    def event(self, kind: str, cell: Any, detail: str) -> None:
        """start / done / failed / skip of a cell (`run_grid`'s ``on_event``)."""
        name = f"{cell.run_id} ({cell.label})" if cell.label else str(cell.run_id)
        if kind == "start":
            self.current, self.fraction, self.status = name, 0.0, "starting"
        else:
            self.finished += 1
            if kind in ("done", "failed"):
                self.trained += 1
            self.fraction = 0.0
            if self.current == name:
                self.current = ""
        first = detail.splitlines()[0] if detail else ""
        text = {
            "start": "start",
            "done": "done",
            "failed": f"failed: {first}",
            "skip": "skip (failed before)" if detail == "failed" else f"skip ({detail})",
        }[kind]
        self._show(name, text, kind)

    def epoch(self, cell: Any, record: dict[str, Any]) -> None:
        """One training epoch of the current cell (`run_grid`'s ``on_epoch``)."""
        steps = record.get("steps") or 0
        self.fraction = min(record.get("step", 0) / steps, 1.0) if steps else 0.0
        loss = record.get("loss")
        if loss is None:  # a multi-phase stage: its first phase's loss
            loss = next((v for k, v in record.items() if k.endswith("/loss")), None)
        self.status = f"epoch {record['epoch']}/{record['epochs']}" + (
            f" loss {loss:.4g}" if isinstance(loss, int | float) else ""
        )
        if record.get("stage") not in (None, "train"):
            self.status = f"{record['stage']} {self.status}"
        name = f"{cell.run_id} ({cell.label})" if cell.label else str(cell.run_id)
        self._show(name, self.status, "epoch")

    def _show(self, name: str, text: str, kind: str) -> None:
        counter = f"[{self.finished}/{self.total}]"
        if self._bar is None:  # not a terminal: one plain line per event
            self.console.print(
                f"{counter} {name} {text} ({self._times()})",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )
            return
        if kind in ("done", "failed", "skip"):
            colour = {"done": "green", "failed": "red", "skip": "dim"}[kind]
            self.console.print(f"  {escape(name)} [{colour}]{escape(text)}[/]", highlight=False)
        now = f"{escape(self.current)} {escape(self.status)}" if self.current else ""
        self._bar.update(
            self._task,
            completed=self.finished + self.fraction,
            description=f"{now}  [dim]{self._times()}[/]",
        )


def plain_console(stream: IO[str]) -> Console:
    """A console that writes plain lines to `stream` (for logs and tests)."""
    return Console(file=stream, force_terminal=False, width=200, color_system=None)
