"""Writing results so that a crash or a kill never leaves a half-written file or folder."""

from __future__ import annotations

import glob
import os
import shutil
import tempfile
import uuid
from pathlib import Path


def replace_dir(src: Path, dst: Path) -> None:
    """Move the finished folder `src` to `dst`; an earlier `dst` is replaced only once `src` is
    complete (two renames on one file system), so readers see the old or the new, never half.

    Only what `src` brings is replaced: any other file of the earlier `dst` (one a user added to a
    run folder, say) is moved into the new folder, so this never deletes a file medad did not
    write.
    """
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        old = dst.with_name(f".{dst.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(dst, old)
        os.replace(src, dst)
        carry_over(old, dst)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(src, dst)


def carry_over(old: Path, new: Path) -> None:
    """Move every entry of `old` that `new` lacks into `new` (recursing into shared folders)."""
    for entry in old.iterdir():
        target = new / entry.name
        if not target.exists() and not target.is_symlink():
            os.replace(entry, target)
        elif entry.is_dir() and not entry.is_symlink() and target.is_dir():
            carry_over(entry, target)


def remove_staging(folder: Path, root: Path) -> None:
    """Remove the staging folder `folder` (medad's own), then its parents below `root` that are
    left empty (``OUT/runs/.tmp``, and ``OUT/runs`` after a first run failed)."""
    shutil.rmtree(folder, ignore_errors=True)
    prune_empty_parents(folder.parent, root)


def prune_empty_parents(folder: Path, root: Path) -> None:
    """Remove `folder` and its parents up to (not including) `root` while they are empty."""
    folder, root = Path(folder), Path(root)
    while root in folder.parents:
        try:
            folder.rmdir()  # fails, and stops, on a folder that is not empty
        except OSError:
            return
        folder = folder.parent


def write_text(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file in the same folder, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def pid_alive(pid: int) -> bool:
    """Whether process `pid` of this host exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_dead_staging(parent: Path, prefix: str) -> int:
    """Remove the staging folders ``<parent>/<prefix><pid>-…`` whose process (of this host) no
    longer runs: what a killed run, report or predict left behind. Returns how many."""
    removed = 0
    for folder in parent.glob(f"{glob.escape(prefix)}*") if parent.is_dir() else []:
        pid = folder.name[len(prefix) :].split("-", 1)[0]
        if pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    return removed
