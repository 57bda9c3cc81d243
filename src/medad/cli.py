"""The ``medad`` command: a thin shell over the Python API (`medad.runs`, registries, store)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
import yaml
from rich.console import Console
from rich.table import Table

from medad.cli_data import register as register_data_commands
from medad.cli_weights import register as register_weights_commands
from medad.errors import MedadError
from medad.outputs import check_output_root
from medad.results.store import LEASE_TIMEOUT
from medad.results.tables import METRIC_NAMES, RUN_COLUMNS

app = typer.Typer(
    help="Train, evaluate and compare anomaly-detection methods on medical images.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion for bash, zsh, fish
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
# piped output (files, scripts) gets wide tables rather than Rich's 80-column default
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True)


OVERWRITE_HELP = "Replace an earlier output of this command in --out (only files it wrote)."
#: one name for the results store in every command (run, bench, results, table, report)
RESULTS_HELP = "Results store: the folder holding results.sqlite and the run folders."
DEFAULT_RESULTS = Path("medad-runs")


def _version(value: bool) -> None:
    if value:
        from medad import __version__

        print(f"medad {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", "-V", callback=_version, is_eager=True, help="Print medad's version."
        ),
    ] = False,
) -> None:
    """Train, evaluate and compare anomaly-detection methods on medical images."""
    from medad.process import freeze_at_exit, keep_freed_memory

    keep_freed_memory()  # the process's settings: speed only, never results (medad.process)
    freeze_at_exit()


def _results_root(new: Path | None, old: Path | None, old_name: str = "--out") -> Path:
    """The results store from ``--results``, or from its old spelling (a deprecation warning;
    the old spelling goes after one release)."""
    if old is not None:
        err_console.print(
            f"[yellow]warning:[/] {old_name} for the results store is deprecated and will be "
            "removed in the next release; use --results (-r)",
            highlight=False,
        )
        if new is not None and new != old:
            raise _fail(f"{old_name} and --results name different stores; give --results only")
        return old
    return new if new is not None else DEFAULT_RESULTS


def _fail(msg: str) -> typer.Exit:
    err_console.print("[bold red]error:[/] ", end="")
    err_console.print(msg, markup=False, highlight=False, soft_wrap=True)
    return typer.Exit(2)


def parse_assignments(items: list[str], what: str) -> dict[str, Any]:
    """``key=value`` strings → dict; values parse as YAML scalars (numbers, booleans, lists)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise MedadError(f"{what} {item!r}: expected key=value")
        try:
            out[key.strip()] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as exc:
            raise MedadError(f"{what} {item!r}: cannot parse the value ({exc})") from None
    return out


def metrics_table(
    title: str, rows: list[tuple[str, dict[str, float]]], status: list[str] | None = None
) -> Table:
    """A Rich table of metrics in percent, one row per run (missing metrics shown as –)."""
    present = [m for m in RUN_COLUMNS if any(m in r for _, r in rows)]
    oracle = any("best_dice" in r for _, r in rows)
    table = Table(
        title=title, caption="* threshold chosen on the test masks (oracle)" if oracle else None
    )
    table.add_column("run")
    for m in present:
        table.add_column(METRIC_NAMES[m], justify="right")
    if status is not None:
        table.add_column("status")
    for i, (name, r) in enumerate(rows):
        cells = [f"{100 * r[m]:.1f}" if m in r else "–" for m in present]
        table.add_row(name, *cells, *([status[i]] if status is not None else []))
    return table


@app.command()
def run(
    method: Annotated[
        str | None, typer.Option("--method", "-m", help="Method name (see `medad methods`).")
    ] = None,
    dataset: Annotated[
        str | None, typer.Option("--dataset", "-d", help="Dataset name (see `medad datasets`).")
    ] = None,
    config_file: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="YAML of one run: method, dataset, seed, epochs, set, data_options (or a run "
            "folder's config.yaml, to run it again); options on the command line win.",
        ),
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(help="Random seed of training (weights, batches, augmentations); default 0."),
    ] = None,
    epochs: Annotated[
        int | None, typer.Option(help="Training epochs (default: the dataset's or the paper's).")
    ] = None,
    set_: Annotated[
        list[str],
        typer.Option(
            "--set", help="Override a method config field, e.g. --set latent_size=32 (repeatable)."
        ),
    ] = [],  # noqa: B006
    data_option: Annotated[
        list[str],
        typer.Option(
            "--data-option", help="Dataset option, e.g. --data-option n_train=200 (repeatable)."
        ),
    ] = [],  # noqa: B006
    data_root: Annotated[
        Path | None, typer.Option(help="Folder where datasets on disk live (default: $MEDAD_DATA).")
    ] = None,
    results_: Annotated[
        Path | None, typer.Option("--results", "-r", help=f"{RESULTS_HELP} [default: medad-runs]")
    ] = None,
    out_old: Annotated[Path | None, typer.Option("--out", hidden=True)] = None,
    device: Annotated[
        str, typer.Option(help="cpu, cuda, cuda:N, mps or auto (GPU when available).")
    ] = "auto",
    json_: Annotated[
        bool, typer.Option("--json", help="Print one JSON object instead of a table.")
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            "--plan",
            help="Print the resolved configuration and run id; train nothing, write nothing.",
        ),
    ] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Train again even if this run is finished (replaced once complete)."
        ),
    ] = False,
    deterministic: Annotated[
        bool,
        typer.Option(
            "--deterministic", help="CUDA: deterministic kernels, for bit-identical reruns."
        ),
    ] = False,
    precision: Annotated[
        str,
        typer.Option(
            help="Training arithmetic: fp32, or autocast to bf16/fp16 (faster on GPUs; part of "
            "the run id)."
        ),
    ] = "fp32",
    compile_: Annotated[
        bool,
        typer.Option(
            "--compile", help="torch.compile the training step (CUDA graphs on CUDA; run id)."
        ),
    ] = False,
    channels_last: Annotated[
        bool,
        typer.Option(
            "--channels-last",
            help="Channels-last (NHWC) weights and activations: faster convolutions, last "
            "digits change (run id).",
        ),
    ] = False,
    compress_predictions: Annotated[
        bool,
        typer.Option(
            "--compress-predictions", help="Write predictions.npz compressed (smaller, slower)."
        ),
    ] = False,
) -> None:
    """Train METHOD on DATASET, score its test split, evaluate and record the run.

    A finished run with the same method, dataset, configuration and seed is reused (--force
    trains it again)."""
    from medad.process import loading_modules

    with loading_modules():
        from medad.engine import TrainOptions
        from medad.runs import execute, plan

    if precision not in ("fp32", "bf16", "fp16"):
        raise _fail(f"--precision must be fp32, bf16 or fp16, got {precision!r}")
    try:
        out = _results_root(results_, out_old)
        spec = _run_spec(
            config_file,
            method,
            dataset,
            seed,
            parse_assignments(set_, "--set"),
            parse_assignments(data_option, "--data-option"),
            epochs,
            TrainOptions(  # type: ignore[arg-type]
                precision=precision, compile=compile_, channels_last=channels_last
            ),
        )
        if dry_run:
            planned = plan(spec, data_root, open_data=False)
            resolved = {
                "run_id": planned.run_id,
                **planned.resolved,
                "seed": spec.seed,
                "run_dir": str(out / planned.rel_dir) if planned.run_id else None,
            }
            print(json.dumps(resolved) if json_ else yaml.safe_dump(resolved, sort_keys=False))
            return
        check_output_root(out)
        result = execute(
            spec,
            out,
            data_root=data_root,
            device=device,
            progress=not json_ and sys.stderr.isatty(),
            echo=None if json_ else (lambda m: err_console.print(f"[dim]{m}[/]", highlight=False)),
            force=force,
            deterministic=deterministic,
            compress_predictions=compress_predictions,
        )
    except MedadError as exc:
        raise _fail(str(exc)) from None
    if result.reused:
        err_console.print(f"already done: {result.run_dir}; --force to retrain", highlight=False)
    if json_:
        print(
            json.dumps(
                {
                    "run_id": result.run_id,
                    **result.metrics,
                    "run_dir": str(result.run_dir),
                    "seconds": round(result.seconds, 3),
                    "reused": result.reused,
                }
            )
        )
    else:
        title = f"{spec.method} on {spec.dataset} (seed {spec.seed})"
        console.print(metrics_table(title, [(spec.method, result.metrics)]))
        console.print(f"run folder: {result.run_dir}", highlight=False)


#: keys of a ``medad run --config`` file; a run folder's config.yaml also holds the record-only
#: keys, which describe how it ran and are not inputs
_RUN_FILE_KEYS = {"method", "dataset", "seed", "epochs", "set", "config", "data_options"}
_RUN_RECORD_KEYS = {"dataset_options", "channels", "device", "environment", "data"}


def _run_spec(
    config_file: Path | None,
    method: str | None,
    dataset: str | None,
    seed: int | None,
    overrides: dict[str, Any],
    data_options: dict[str, Any],
    epochs: int | None,
    train_options: Any = None,
) -> Any:
    """The RunSpec of `medad run`: the --config file's values, then the command line's."""
    from medad.engine import TrainOptions
    from medad.runs import RunSpec

    values: dict[str, Any] = {}
    if config_file is not None:
        try:
            values = yaml.safe_load(config_file.read_text(encoding="utf-8")) or {}
        except OSError as exc:
            raise MedadError(f"{config_file}: cannot read ({exc.strerror})") from None
        except yaml.YAMLError as exc:
            raise MedadError(f"{config_file}: not valid YAML ({exc})") from None
        if not isinstance(values, dict):
            raise MedadError(f"{config_file}: expected a mapping of run settings")
        unknown = sorted(set(values) - _RUN_FILE_KEYS - _RUN_RECORD_KEYS)
        if unknown:
            raise MedadError(
                f"{config_file}: unknown key(s) {', '.join(unknown)}; "
                f"allowed: {', '.join(sorted(_RUN_FILE_KEYS))}"
            )
        for key in ("set", "config", "data_options", "dataset_options"):
            if not isinstance(values.get(key) or {}, dict):
                raise MedadError(f"{config_file}: {key} must be a mapping of key: value")
    file_overrides = {**(values.get("config") or {}), **(values.get("set") or {})}
    if values.get("epochs") is not None:
        file_overrides["epochs"] = values["epochs"]
    file_data = {**(values.get("dataset_options") or {}), **(values.get("data_options") or {})}
    method = method or values.get("method")
    dataset = dataset or values.get("dataset")
    if not method or not dataset:
        missing = " and ".join(
            n for n, v in (("--method/-m", method), ("--dataset/-d", dataset)) if not v
        )
        raise MedadError(f"missing {missing} (on the command line or in a --config file)")
    overrides = {**file_overrides, **overrides}
    if epochs is not None:
        overrides["epochs"] = epochs
    seed = seed if seed is not None else int(values.get("seed", 0))
    data = {**file_data, **data_options}
    options = train_options or TrainOptions()
    return RunSpec(str(method), str(dataset), seed, overrides, data, options)


@app.command()
def methods(
    family: Annotated[
        str | None, typer.Option(help="Only this family, e.g. reconstruction.")
    ] = None,
    details: Annotated[
        bool, typer.Option("--details", help="Also show parameter counts and config defaults.")
    ] = False,
) -> None:
    """List the registered methods: name, family, one-line description."""
    from medad.methods.base import MethodConfig, method_infos
    from medad.methods.budgets import describe_budget
    from medad.methods.optimisation import optimisation_summary
    from medad.methods.parts.scoring import MapScoreConfig

    infos = method_infos(family)
    if not infos:
        raise _fail(f"no methods in family {family!r}")
    table = Table(title="medad methods")
    table.add_column("name", style="bold")
    table.add_column("family")
    table.add_column("description")
    if details:
        table.add_column("parameters (1 channel, default size)", justify="right")
        table.add_column("epochs (per dataset)")
        table.add_column("optimiser; schedule")
        table.add_column("config defaults")
    for info in infos:
        cells = [info.name, info.family, info.description]
        if details:
            config = info.cls.Config()
            try:
                n = sum(p.numel() for p in info.cls(config, 1).parameters())
                cells.append(f"{n:,}")
            except MedadError as exc:  # e.g. pretrained weights not available
                cells.append(f"n/a ({exc})")
            cells += [describe_budget(info.cls), "; ".join(optimisation_summary(config))]
            values = config.model_dump()
            common = set(MethodConfig.model_fields) | set(MapScoreConfig.model_fields)
            order = [k for k in values if k not in common] + [k for k in values if k in common]
            cells.append(", ".join(f"{k}={values[k]}" for k in order))
        table.add_row(*cells)
    console.print(table)


@app.command()
def datasets() -> None:
    """List the registered datasets."""
    from medad.data.base import dataset_infos

    table = Table(title="medad datasets")
    table.add_column("name", style="bold")
    table.add_column("modality")
    table.add_column("needs --data-root")
    table.add_column("description")
    for info in dataset_infos():
        table.add_row(
            info.name, info.modality, "yes" if info.needs_root else "no", info.description
        )
    console.print(table)


@app.command()
def evaluate(
    run_dir: Annotated[Path, typer.Argument(help="A run folder (holds predictions.npz).")],
    json_: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Recompute a run's metrics from its saved predictions (no retraining)."""
    from medad.runs import evaluate_run

    try:
        metrics = evaluate_run(run_dir)
    except MedadError as exc:
        raise _fail(str(exc)) from None
    if json_:
        print(json.dumps({**metrics, "run_dir": str(run_dir)}))
    else:
        console.print(metrics_table(str(run_dir), [(run_dir.name, metrics)]))


@app.command()
def results(
    results_: Annotated[Path, typer.Option("--results", "-r", help=RESULTS_HELP)] = DEFAULT_RESULTS,
    method: Annotated[str | None, typer.Option("--method", "-m", help="Only this method.")] = None,
    dataset: Annotated[
        str | None, typer.Option("--dataset", "-d", help="Only this dataset.")
    ] = None,
    json_: Annotated[bool, typer.Option("--json", help="Print JSON lines.")] = False,
) -> None:
    """Show the runs recorded in the results store."""
    from medad.results.store import STORE_NAME, ReadOnlyStore

    if not (results_ / STORE_NAME).is_file():
        raise _fail(f"{results_ / STORE_NAME}: no results store here (run `medad run` first)")
    try:
        where = {k: v for k, v in {"method": method, "dataset": dataset}.items() if v}
        rows = ReadOnlyStore(results_).rows(**where)
    except MedadError as exc:
        raise _fail(str(exc)) from None
    if json_:
        for r in rows:
            print(
                json.dumps(
                    {"run_id": r.run_id, "status": r.status, **r.metrics, "seconds": r.seconds}
                )
            )
        return
    status = [r.status if r.status != "failed" else f"failed: {r.error}" for r in rows]
    console.print(
        metrics_table(f"runs in {results_}", [(r.run_id, r.metrics) for r in rows], status)
    )


@app.command()
def bench(
    config: Annotated[Path, typer.Argument(help="Experiment YAML (see configs/).")],
    quick: Annotated[
        bool, typer.Option("--quick", help="Shrink budgets (epochs, data) for a smoke run.")
    ] = False,
    results_: Annotated[
        Path | None,
        typer.Option(
            "--results", "-r", help=f"{RESULTS_HELP} [default: the file's `out`, or medad-runs]"
        ),
    ] = None,
    out_old: Annotated[Path | None, typer.Option("--out", hidden=True)] = None,
    workers: Annotated[
        str,
        typer.Option(
            help="Parallel cells for --executor process: a number, or auto (one per CPU core; on "
            "CUDA as many as fit in GPU memory). On CUDA they share the GPUs, fewer when the "
            "memory a cell needs (measured first) says they do not fit."
        ),
    ] = "1",
    gpus_per_cell: Annotated[
        float | None,
        typer.Option(
            help="--executor ray: GPU share of a cell whose method entry names none (0.25: four "
            "cells per GPU; 1, 2: whole GPUs)."
        ),
    ] = None,
    executor: Annotated[
        str, typer.Option(help="local (in this process), process (a local pool) or ray.")
    ] = "local",
    address: Annotated[
        str | None, typer.Option(help="Ray cluster address (default: start a local Ray).")
    ] = None,
    retry_failed: Annotated[
        bool, typer.Option("--retry-failed", help="Run cells that failed before again.")
    ] = False,
    force: Annotated[
        bool,
        typer.Option("--force", help="Run finished cells again (replaced once complete)."),
    ] = False,
    lease_timeout: Annotated[
        float,
        typer.Option(
            help="Seconds after which a cell claimed by another host that stopped renewing its "
            "claim is taken over (same host: as soon as its process is gone)."
        ),
    ] = LEASE_TIMEOUT,
    deterministic: Annotated[
        bool,
        typer.Option(
            "--deterministic", help="CUDA: deterministic kernels, for bit-identical reruns."
        ),
    ] = False,
    data_root: Annotated[
        Path | None, typer.Option(help="Folder where datasets on disk live (default: $MEDAD_DATA).")
    ] = None,
    device: Annotated[
        str | None, typer.Option(help="Device of every cell (default: the file's).")
    ] = None,
    plan: Annotated[
        bool,
        typer.Option(
            "--plan",
            "--dry-run",
            help="Only list the cells it would run, with their resolved configuration (no data, "
            "nothing written).",
        ),
    ] = False,
    json_: Annotated[
        bool, typer.Option("--json", help="With --plan: one JSON list; else the table as JSON.")
    ] = False,
) -> None:
    """Run every (method, dataset, seed) cell of an experiment; re-running resumes."""
    from medad.bench import load_experiment, plan_cells, run_grid
    from medad.bench.config import check_gpu_share
    from medad.bench.progress import GridProgress

    if plan:
        return _print_plan(config, quick, data_root, json_)
    from medad.results.store import ResultsStore
    from medad.results.tables import records, summarize, to_rich

    parallel = _workers(workers)
    if gpus_per_cell is not None and executor != "ray":
        raise _fail("--gpus-per-cell is for --executor ray; with --executor process use --workers")
    if gpus_per_cell is not None and (why := check_gpu_share(gpus_per_cell)):
        raise _fail(f"--gpus-per-cell {why}")
    try:
        exp = load_experiment(config)
        named = results_ is not None or out_old is not None
        root = _results_root(results_, out_old) if named else Path(exp.out or "medad-runs")
        cells = plan_cells(exp, quick=quick, data_root=data_root)
        err_console.print(
            f"[bold]{exp.name}[/]: {len(cells)} cells ({len(exp.methods)} methods × "
            f"{len(exp.datasets)} datasets × {len(exp.seeds)} seeds) → {root}",
            highlight=False,
        )

        check_output_root(root)
        with GridProgress(len(cells), err_console) as shown:
            summary = run_grid(
                cells,
                root,
                executor=executor,  # type: ignore[arg-type]
                workers=parallel,
                gpus_per_cell=gpus_per_cell,
                address=address,
                retry_failed=retry_failed,
                force=force,
                device=device or exp.device,
                lease_timeout=lease_timeout,
                deterministic=deterministic,
                on_event=shown.event,
                on_epoch=shown.epoch,
                log=lambda note: err_console.print(note, highlight=False),
            )
    except MedadError as exc:
        raise _fail(str(exc)) from None
    err_console.print(
        f"{len(summary.done)} run, {len(summary.skipped)} skipped, {len(summary.failed)} failed",
        highlight=False,
    )
    if summary.elsewhere:
        err_console.print(
            f"{len(summary.elsewhere)} cell(s) running elsewhere (another process on this output); "
            "run again once it finishes",
            highlight=False,
        )
    ids = {c.run_id for c in cells}
    rows = [r for r in ResultsStore(root).rows() if r.run_id in ids]
    if any(r.status == "done" for r in rows):
        metrics = ["image_auroc", "image_ap"]
        table = summarize(rows, metrics)
        if json_:
            print(json.dumps(records(table)))
        elif len(table.datasets) == 1:
            console.print(to_rich(table, title=exp.name))
        else:  # one table per dataset: each fits a terminal, however many datasets
            for dataset in table.datasets:
                part = summarize([r for r in rows if r.dataset == dataset], metrics)
                console.print(to_rich(part, title=f"{exp.name}: {dataset}"))
    if summary.any_failed:
        n = len(summary.failed) + len(summary.failed_before)
        err_console.print(
            f"[red]{n} cell(s) of the grid failed[/] ({len(summary.failed_before)} of them in an "
            "earlier run); the errors are in `medad results`; --retry-failed runs them again",
            highlight=False,
        )
        raise typer.Exit(1)


def _workers(value: str) -> int | Literal["auto"]:
    """`--workers`: a whole number of at least 1, or ``auto``."""
    if value.strip().lower() == "auto":
        return "auto"
    try:
        n = int(value)
    except ValueError:
        raise _fail(f"--workers must be a whole number or auto, got {value!r}") from None
    if n < 1:
        raise _fail("--workers must be at least 1")
    return n


def _print_plan(config: Path, quick: bool, data_root: Path | None, as_json: bool) -> None:
    """`bench --plan`: every cell with its budget and optimisation, without opening any data."""
    from medad.bench import load_experiment, plan_cells, plan_rows

    try:
        exp = load_experiment(config)
        rows = plan_rows(plan_cells(exp, quick=quick, data_root=data_root, open_data=False))
    except MedadError as exc:
        raise _fail(str(exc)) from None
    if as_json:
        print(json.dumps(rows))
        return
    columns = ["label", "dataset", "seed", "epochs", "image_size", "batch_size", "optimiser"]
    out = Table(title=f"{exp.name}: {len(rows)} cells (plan)")
    for col in [*columns, "schedule", "run_id"]:
        out.add_column(col.replace("_", " "))
    for row in rows:
        run_id = row["run_id"] or "(known once the data is on disk)"
        out.add_row(*(str(row[c]) for c in [*columns, "schedule"]), run_id)
    console.print(out)


@app.command()
def table(
    results_: Annotated[Path, typer.Option("--results", "-r", help=RESULTS_HELP)] = DEFAULT_RESULTS,
    metric: Annotated[
        list[str], typer.Option(help="Metric(s) to show (repeatable); default image AUROC and AP.")
    ] = [],  # noqa: B006
    fmt: Annotated[str, typer.Option("--format", help="rich, md, csv, latex or json.")] = "rich",
    dataset: Annotated[
        list[str], typer.Option("--dataset", "-d", help="Only these datasets (repeatable).")
    ] = [],  # noqa: B006
    ci: Annotated[
        bool,
        typer.Option("--ci", help="Single runs: a 95 % bootstrap interval from their predictions."),
    ] = False,
    n_boot: Annotated[int, typer.Option(help="Bootstrap resamples for --ci.")] = 2000,
    json_: Annotated[
        bool, typer.Option("--json", help="Print JSON (the same as --format json).")
    ] = False,
) -> None:
    """Mean ± std over seeds (with their count) and test-set sizes n, methods × datasets."""
    from medad.results.comparison import annotate_summary
    from medad.results.store import STORE_NAME, ReadOnlyStore
    from medad.results.tables import FORMATS, render_text, summarize, to_rich

    if fmt not in FORMATS:
        raise _fail(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    if not (results_ / STORE_NAME).is_file():
        raise _fail(f"{results_ / STORE_NAME}: no results store here (run `medad bench` first)")
    try:
        store = ReadOnlyStore(results_)
        rows = [r for r in store.rows() if not dataset or r.dataset in dataset]
        summary = summarize(rows, metric or ["image_auroc", "image_ap"])
        annotate_summary(summary, store, intervals=ci, n_boot=n_boot)
    except MedadError as exc:
        raise _fail(str(exc)) from None
    if json_ or fmt == "json":
        sys.stdout.write(render_text(summary, "json"))
    elif fmt == "rich":
        console.print(to_rich(summary))
    else:
        sys.stdout.write(render_text(summary, fmt))


@app.command()
def compare(
    a: Annotated[str, typer.Argument(help="A run id, table row label or method name.")],
    b: Annotated[str, typer.Argument(help="The run(s) to compare against, named likewise.")],
    results_: Annotated[Path, typer.Option("--results", "-r", help=RESULTS_HELP)] = DEFAULT_RESULTS,
    dataset: Annotated[
        str | None, typer.Option("--dataset", "-d", help="Only this dataset.")
    ] = None,
    n_boot: Annotated[int, typer.Option(help="Bootstrap resamples (image metrics).")] = 2000,
    pixel_n_boot: Annotated[
        int, typer.Option(help="Resamples for pixel metrics (each re-sorts all pixels; 0: skip).")
    ] = 200,
    json_: Annotated[bool, typer.Option("--json", help="Print one JSON list.")] = False,
) -> None:
    """Is A better than B? Paired on the same test images, per dataset and seed: DeLong's test
    for image AUROC, paired-bootstrap 95 % intervals of the differences A − B for the rest."""
    from medad.results.comparison import compare as compare_runs

    try:
        found = compare_runs(
            results_, a, b, dataset=dataset, n_boot=n_boot, pixel_n_boot=pixel_n_boot
        )
    except MedadError as exc:
        raise _fail(str(exc)) from None
    if json_:
        print(json.dumps([c.as_dict() for c in found]))
        return
    for c in found:
        out = Table(
            title=f"{c.dataset}: {c.run_a} − {c.run_b} (n={c.n_normal}+{c.n_abnormal})",
            caption="%, difference A − B with its 95 % interval; p two-sided",
        )
        for col in ("metric", "A", "B", "A − B", "95 % interval", "p", "test"):
            out.add_column(col, justify="left" if col in ("metric", "test") else "right")
        for m in c.metrics:
            d = m.difference
            out.add_row(
                METRIC_NAMES.get(m.metric, m.metric),
                f"{100 * m.a:.1f}",
                f"{100 * m.b:.1f}",
                f"{100 * d.estimate:+.1f}",
                f"[{100 * d.low:+.1f}, {100 * d.high:+.1f}]",
                f"≤ {m.p_value:.2g}"  # no resample on the other side: p below 1 / resamples
                if m.difference.n_boot and m.p_value <= 1 / m.difference.n_boot
                else f"{m.p_value:.3g}",
                m.test,
            )
        console.print(out)


@app.command()
def report(
    results_: Annotated[Path, typer.Option("--results", "-r", help=RESULTS_HELP)] = DEFAULT_RESULTS,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder to write index.html into.")
    ] = Path("medad-report"),
    data_root: Annotated[
        Path | None, typer.Option(help="Where datasets on disk live, for the image gallery.")
    ] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help=OVERWRITE_HELP)] = False,
) -> None:
    """Write a static HTML report: tables, ROC/PR curves, histograms, gallery, study plots."""
    from medad.report import build_report

    try:
        page = build_report(results_, out, data_root=data_root, overwrite=overwrite)
    except MedadError as exc:
        raise _fail(str(exc)) from None
    console.print(f"report: {page}", highlight=False)


@app.command()
def predict(
    run_dir: Annotated[Path, typer.Argument(help="A run folder (config.yaml + checkpoint.pt).")],
    input_: Annotated[
        Path, typer.Option("--input", help="Folder of images (PNG, JPEG, TIFF, DICOM, NIfTI).")
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for scores.csv, maps, masks and overlays.")
    ],
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:N, mps or auto.")] = "auto",
    threshold: Annotated[
        float | None,
        typer.Option(
            help="Image-score threshold for the label (default: the run's, else the 95th "
            "percentile of its normal test scores)."
        ),
    ] = None,
    pixel_threshold: Annotated[
        float | None,
        typer.Option(
            help="Map-value threshold for the masks (default: the run's, else the top of the "
            "colour scale)."
        ),
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option(min=1, help="Images per batch (default: the method's).")
    ] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help=OVERWRITE_HELP)] = False,
) -> None:
    """Score new images with a trained run: scores, labels, and maps, masks and overlays at each
    input's own size (NIfTI in, NIfTI out; DICOM also as a Secondary Capture)."""
    from medad.inference import predict_folder

    try:
        result = predict_folder(
            run_dir,
            input_,
            out,
            device,
            overwrite=overwrite,
            threshold=threshold,
            pixel_threshold=pixel_threshold,
            batch_size=batch_size,
        )
    except MedadError as exc:
        raise _fail(str(exc)) from None
    for line in result.warnings:
        err_console.print("[yellow]warning:[/] ", end="")
        err_console.print(line, markup=False, highlight=False, soft_wrap=True)
    console.print(f"scores: {result.scores_csv}", highlight=False)


@app.command()
def export(
    run_dir: Annotated[Path, typer.Argument(help="A run folder (config.yaml + checkpoint.pt).")],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for the model file and export.json.")
    ],
    format_: Annotated[
        str, typer.Option("--format", help="torchscript, or onnx (needs the onnx package).")
    ] = "torchscript",
    overwrite: Annotated[bool, typer.Option("--overwrite", help=OVERWRITE_HELP)] = False,
) -> None:
    """Export a run's scoring as a standalone model: [0, 1] images at the run's size in, image
    scores (and maps) out. Only methods that score with a plain forward pass: ae, ae-l1,
    ae-ssim, ae-spatial, ae-u, ae-pl, ceae, constrae, dae, draem, f-anogan, ganomaly, memae, rd,
    recontrast, vae, cutpaste-1stage, fpi, pii, nsa, cutpaste-2stage, anatpaste,
    resnet18-imagenet (not the gradient-scored ae-grad and vae-grad-*, nor fae)."""
    from medad.export import export_run

    try:
        path = export_run(run_dir, out, format_, overwrite=overwrite)  # type: ignore[arg-type]
    except MedadError as exc:
        raise _fail(str(exc)) from None
    console.print(f"model: {path}", highlight=False)


@app.command()
def anomalies(
    kind: Annotated[
        str,
        typer.Option(
            help="Generator: cutpaste, cutpaste-scar, cutpaste-shift, fpi, pii, nsa, draem, "
            "anatpaste."
        ),
    ],
    dataset: Annotated[
        str, typer.Option("--dataset", "-d", help="Dataset whose training images are used.")
    ] = "synth-brain",
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder to write <kind>.png into.")
    ] = Path("medad-anomalies"),
    n: Annotated[int, typer.Option(help="Number of examples.")] = 8,
    size: Annotated[int, typer.Option(help="Side of the images, in pixels.")] = 128,
    seed: Annotated[int, typer.Option(help="Seed of the generator.")] = 0,
    data_root: Annotated[Path | None, typer.Option(help="Where datasets on disk live.")] = None,
    data_option: Annotated[
        list[str], typer.Option("--data-option", help="Dataset option key=value.")
    ] = [],  # noqa: B006
    param: Annotated[
        list[str],
        typer.Option(
            "--param",
            help="Generator parameter key=value, e.g. max_patches=3 (a method's own values: "
            "anomaly_params in `medad methods --details`).",
        ),
    ] = [],  # noqa: B006
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an earlier gallery of this --kind.")
    ] = False,
) -> None:
    """Show what a synthetic-anomaly generator does: a grid of originals, anomalies and labels."""
    from medad.anomalies import GENERATORS
    from medad.anomalies.gallery import write_gallery
    from medad.data.base import get_dataset
    from medad.data.loading import Preprocess, load_split
    from medad.methods.parts.synthetic_batch import check_generator_params
    from medad.outputs import check_output_dir
    from medad.runs import default_data_root

    try:
        if kind not in GENERATORS:
            raise MedadError(f"unknown generator {kind!r}; known: {', '.join(GENERATORS)}")
        if n < 1:
            raise MedadError("--n must be at least 1")
        check_output_dir(out, "anomalies", overwrite=overwrite, adding=f"{kind}.png")
        ds = get_dataset(
            dataset,
            data_root or default_data_root(),
            **parse_assignments(data_option, "--data-option"),
        )
        train = load_split(ds, "train", Preprocess(size=size, channels=ds.channels))
        params = parse_assignments(param, "--param")
        check_generator_params(kind, params, "--param")
        path = write_gallery(
            kind, train.images[: 4 * n], out, n=n, seed=seed, params=params, overwrite=overwrite
        )
    except MedadError as exc:
        raise _fail(str(exc)) from None
    console.print(f"gallery: {path}", highlight=False)


# ``prepare`` and ``check-data`` are defined beside the data layer
register_data_commands(app, console=console, err_console=err_console, fail=_fail)
register_weights_commands(app, console=console, err_console=err_console, fail=_fail)


def main() -> None:  # pragma: no cover
    app()
