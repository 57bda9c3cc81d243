"""Output folders of medad's commands: written whole, and never at the cost of a user's file.

Every command that writes a folder (``report``, ``predict``, ``anomalies``, ``prepare``) writes it
through `output_dir` (or `output_file`, for a folder that collects one file per call):

- the folder gets a manifest, `MANIFEST_NAME`: the command, medad's version, the time, and every
  file written;
- a non-empty ``--out`` that is not an earlier output of the same command is refused;
- an ``--out`` that is or contains a results store (``results.sqlite``) or a run folder
  (``config.yaml`` with ``checkpoint.pt`` or ``predictions.npz``), lies inside a run folder or the
  store's ``runs/`` or ``.cache/``, is or is around one of the command's inputs, or holds the
  current folder, is refused (a new folder beside a store, such as ``OUT/report``, is fine);
- ``--overwrite`` replaces an earlier output of the same command, and only when every file in it is
  listed in its manifest; an unknown file is named and nothing is touched;
- the new output is built in a staging folder beside ``--out`` and renamed into place; on any error
  the staging folder is removed and the previous output stays as it was.

Errors from the file system (a read-only folder, a full disk) become one `MedadError` line,
"cannot write to FOLDER: permission denied".
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import medad
from medad.atomic import carry_over, remove_dead_staging
from medad.errors import MedadError

#: the manifest every output folder gets
MANIFEST_NAME = ".medad-output.json"
#: the file of a results store (`medad.results.store.STORE_NAME`; named here so that the data layer
#: can use this module without importing the results layer)
RESULTS_STORE_FILE = "results.sqlite"
#: what a results store's folder holds besides other outputs (the store, run folders, the cache)
STORE_PARTS = frozenset({RESULTS_STORE_FILE, "runs", ".cache"})
#: how many entries of a folder are searched for a results store or run folder inside it
_SEARCH_LIMIT = 10_000
#: part of the name of a staging folder or file (hidden, beside or inside the output)
_STAGING = ".medad-staging-"


def is_run_folder(folder: Path) -> bool:
    """A folder that `medad run` wrote: its configuration next to a checkpoint or predictions."""
    return (folder / "config.yaml").is_file() and (
        (folder / "checkpoint.pt").is_file() or (folder / "predictions.npz").is_file()
    )


def _protected_kind(folder: Path) -> str | None:
    if (folder / RESULTS_STORE_FILE).is_file():
        return "a results store"
    if is_run_folder(folder):
        return "a run folder"
    return None


def _protected_below(folder: Path) -> tuple[str, Path] | None:
    """A results store or run folder inside `folder` (searched up to `_SEARCH_LIMIT` entries)."""
    seen = 0
    for current, dirs, files in os.walk(folder):
        here = Path(current)
        kind = _protected_kind(here)
        if kind is not None:
            return kind, here
        seen += len(dirs) + len(files)
        if seen > _SEARCH_LIMIT:
            return None
    return None


def _within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _describe(path: Path, resolved: Path) -> str:
    """`path` as given, with the folder it names when that is not plain (``.``, ``x/..``, links)."""
    plain = path.parts and ".." not in path.parts and Path(os.path.abspath(path)) == resolved
    return str(path) if plain else f"{path} (= {resolved})"


@dataclass(frozen=True)
class _Previous:
    """An earlier output of a command, read from its manifest."""

    command: str
    created: str
    files: frozenset[str]


def _read_manifest(folder: Path) -> _Previous | None:
    try:
        data = json.loads((folder / MANIFEST_NAME).read_text(encoding="utf-8"))
        files = frozenset(str(f) for f in data["files"])
        return _Previous(str(data["command"]), str(data.get("created", "?")), files)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _entries(folder: Path) -> Iterator[str]:
    """Every file, link and empty folder under `folder`, as a relative POSIX path (not following
    links)."""
    for current, dirs, files in os.walk(folder):
        here = Path(current)
        for name in list(dirs):
            if (here / name).is_symlink():
                dirs.remove(name)
                files.append(name)
        for name in files:
            yield (here / name).relative_to(folder).as_posix()
        if not dirs and not files and here != folder:
            yield here.relative_to(folder).as_posix() + "/"


def _cannot_write(target: Path, exc: OSError) -> MedadError:
    """One line for a file-system error while writing `target`: the folder that refused (for a
    folder that could not be created, its parent) and the reason ("permission denied")."""
    reason = (exc.strerror or str(exc)).lower()
    where = target
    if exc.filename is not None and exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        where = Path(os.path.abspath(exc.filename)).parent
        if _STAGING in where.name:  # a file in the staging folder: name the output itself
            where = target
    return MedadError(f"cannot write to {where}: {reason}")


def check_output_dir(
    out: Path,
    command: str,
    *,
    overwrite: bool = False,
    inputs: Mapping[str, Path | None] | None = None,
    adding: str | None = None,
) -> Path:
    """Check that `command` may write `out` (see the module's rules); returns `out` resolved.

    `inputs` maps an option name (e.g. ``--input``) to a folder the command reads. `adding` names
    the one file a call adds to the folder (`output_file`): then other files of an earlier output
    of the same command stay, and only that file needs ``--overwrite``.
    """
    given = Path(out).expanduser()
    target = given.resolve()
    where = _describe(given, target)
    cwd = Path.cwd().resolve()
    if _within(cwd, target):
        raise MedadError(
            f"--out {where} is the current folder or a folder above it; medad writes an output "
            f"folder whole, so give a new folder, e.g. --out medad-{command}"
        )
    for folder in [target, *target.parents]:
        kind = _protected_kind(folder) if folder.is_dir() else None
        if kind is None:
            continue
        if folder == target:
            inside = "is"
        elif kind == "a run folder":
            inside = f"lies inside {folder}, which is"
        else:  # a new folder beside the store's own parts (e.g. OUT/report) is fine
            part = folder / target.relative_to(folder).parts[0]
            if part.name not in STORE_PARTS:
                continue
            inside, kind = f"lies inside {part}, which belongs to", f"the results store {folder}"
        raise MedadError(
            f"--out {where} {inside} {kind}; medad never writes a command's output there, "
            "choose another --out"
        )
    for option, value in (inputs or {}).items():
        if value is None:
            continue
        source = Path(value).expanduser().resolve()
        if _within(target, source) or _within(source, target):
            raise MedadError(
                f"--out {where} must be outside {option} ({value}) and not contain it; "
                "choose another --out"
            )
    if not target.exists():
        return target
    if not target.is_dir():
        raise MedadError(f"--out {where} exists and is not a folder; choose another --out")
    try:
        names = sorted(os.listdir(target))
    except OSError as exc:
        raise _cannot_write(target, exc) from None
    if not names:
        return target
    found = _protected_below(target)
    if found is not None:
        raise MedadError(
            f"--out {where} holds {found[0]} ({found[1]}); medad never writes a command's "
            "output over it, choose another --out"
        )
    previous = _read_manifest(target)
    if previous is None:
        shown = ", ".join(names[:3]) + (f", … ({len(names)} entries)" if len(names) > 3 else "")
        raise MedadError(
            f"--out {where} is not empty ({shown}) and is not an earlier output of "
            f"`medad {command}`; medad does not write over files it did not write, "
            "choose another --out (a new or empty folder)"
        )
    if previous.command != command:
        raise MedadError(
            f"--out {where} holds the output of `medad {previous.command}`, not of "
            f"`medad {command}`; choose another --out"
        )
    unknown = sorted(e for e in _entries(target) if e != MANIFEST_NAME and e not in previous.files)
    if adding is not None:
        if adding in unknown:
            raise MedadError(
                f"--out {where} holds {adding}, which medad did not write; move it away or "
                "choose another --out"
            )
        if adding not in previous.files or overwrite:
            return target
        raise MedadError(
            f"--out {where} already holds {adding} from `medad {command}` ({previous.created}); "
            "pass --overwrite to replace it, or choose another --out"
        )
    if not overwrite:
        raise MedadError(
            f"--out {where} holds an earlier output of `medad {command}` ({previous.created}); "
            "pass --overwrite to replace it, or choose another --out"
        )
    if unknown:
        raise MedadError(
            f"--out {where} holds {unknown[0]}, which medad did not write, so --overwrite will "
            "not replace the folder; move it away or choose another --out"
        )
    return target


def check_output_root(out: Path) -> Path:
    """Say clearly when the output root of ``medad run`` / ``bench`` (``results.sqlite``,
    ``runs/``, ``.cache/``) cannot be written, before anything runs; creates nothing."""
    root = Path(out).expanduser()
    existing = root
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise MedadError(f"--out {root}: {existing} exists and is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        reason = "read-only file system" if _read_only_mount(existing) else "permission denied"
        raise MedadError(f"cannot write to {existing}: {reason}")
    return root


def _read_only_mount(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _manifest(command: str, files: list[str]) -> str:
    data = {
        "command": command,
        "medad_version": medad.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "files": sorted(files),
    }
    return json.dumps(data, indent=1) + "\n"


def _remove_listed(folder: Path, files: frozenset[str]) -> None:
    """Remove the files of `folder` its manifest lists (never a path outside it), then the
    folders left empty."""
    for entry in list(_entries(folder)):
        if entry in files or entry == MANIFEST_NAME:
            path = folder / entry.rstrip("/")
            if path.is_dir() and not path.is_symlink():
                path.rmdir()
            else:
                path.unlink()
    _remove_empty_folders(folder)


def _remove_empty_folders(folder: Path) -> None:
    """Remove `folder` and the folders below it that are empty, deepest first."""
    for current, _, _ in sorted(os.walk(folder), key=lambda t: -len(t[0])):
        try:
            os.rmdir(current)
        except OSError:
            pass  # not empty: a file that appeared since the check


@contextmanager
def output_dir(
    out: Path,
    command: str,
    *,
    overwrite: bool = False,
    inputs: Mapping[str, Path | None] | None = None,
) -> Iterator[Path]:
    """Yield a staging folder beside `out`; when the block succeeds, write the manifest and rename
    the folder to `out` (replacing `command`'s earlier output when `overwrite`).

    Checks `out` first (`check_output_dir`). On any error the staging folder is removed and `out`
    stays as it was.
    """
    target = check_output_dir(out, command, overwrite=overwrite, inputs=inputs)
    previous = _read_manifest(target) if target.is_dir() else None
    prefix = f".{target.name}{_STAGING}{socket.gethostname()}-"
    remove_dead_staging(target.parent, prefix)
    staging = target.parent / f"{prefix}{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging.mkdir()  # unlike mkdtemp, keeps the user's umask: the output stays readable
    except OSError as exc:
        raise _cannot_write(target, exc) from None
    try:
        yield staging
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if exc.filename is not None and _within(Path(os.path.abspath(exc.filename)), staging):
            raise _cannot_write(target, exc) from None  # e.g. the disk is full
        raise
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    try:
        files = list(_entries(staging))
        (staging / MANIFEST_NAME).write_text(_manifest(command, files), encoding="utf-8")
        _swap_in(staging, target, previous)
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(exc, OSError):
            raise _cannot_write(target, exc) from None
        raise


def _swap_in(staging: Path, target: Path, previous: _Previous | None) -> None:
    """Rename `staging` to `target`. An earlier output is moved aside first, then only its listed
    files are removed; anything that appeared since the check is moved into the new output."""
    if previous is None or not target.exists():
        os.replace(staging, target)  # onto a missing or empty folder: one rename
        return
    aside = target.parent / f".{target.name}.medad-old-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    os.replace(target, aside)
    try:
        os.replace(staging, target)
    except OSError:
        os.replace(aside, target)
        raise
    _remove_listed(aside, previous.files)
    if aside.exists():  # a file appeared after the check: it goes into the new output
        carry_over(aside, target)
        _remove_empty_folders(aside)


@contextmanager
def output_file(
    out: Path,
    name: str,
    command: str,
    *,
    overwrite: bool = False,
    inputs: Mapping[str, Path | None] | None = None,
) -> Iterator[Path]:
    """Yield a temporary path beside ``out / name``; when the block has written it, list `name` in
    the folder's manifest and rename the file into place.

    For commands whose folder collects one file per call (``medad anomalies``): other files of
    the same command's earlier calls stay; `name` itself is replaced only with `overwrite`.
    """
    target = check_output_dir(out, command, overwrite=overwrite, inputs=inputs, adding=name)
    previous = _read_manifest(target) if target.is_dir() else None
    created = not target.exists()
    tmp = target / f".{name}{_STAGING}{os.getpid()}-{uuid.uuid4().hex[:8]}"
    staged_manifest = tmp.with_name(tmp.name + ".json")
    try:
        target.mkdir(parents=True, exist_ok=True)
        yield tmp
        files = sorted((previous.files if previous else frozenset()) | {name})
        staged_manifest.write_text(_manifest(command, files), encoding="utf-8")
        os.replace(staged_manifest, target / MANIFEST_NAME)  # listed before it appears
        os.replace(tmp, target / name)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        staged_manifest.unlink(missing_ok=True)
        if created and target.is_dir() and not any(target.iterdir()):
            target.rmdir()
        if isinstance(exc, OSError):
            raise _cannot_write(target, exc) from None
        raise
