"""The one exception type medad raises for problems a user can act on."""

from __future__ import annotations

import errno
import shutil
import sqlite3
from pathlib import Path


class MedadError(Exception):
    """A user-facing error: the message names the file or field and what to do about it."""


#: below this many free bytes, an SQLite "disk I/O error" is taken to be a full disk: SQLite
#: reports a failed write of its journal that way and hides the operating system's ENOSPC
_NEARLY_FULL = 1 << 20


def no_space_error(exc: BaseException, path: Path | str) -> MedadError | None:
    """``no space left on device: <path>`` when `exc` comes from a full disk, else None.

    `path` is where medad was writing; an `OSError` names its own file when it has one."""
    full = isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)
    if isinstance(exc, sqlite3.OperationalError):
        text = str(exc).lower()
        full = "database or disk is full" in text or (
            "disk i/o error" in text and _free_bytes(Path(path)) < _NEARLY_FULL
        )
    if not full:
        return None
    where = getattr(exc, "filename", None) or path
    return MedadError(f"no space left on device: {where}")


def _free_bytes(path: Path) -> int:
    for folder in (path, *path.parents):
        try:
            return shutil.disk_usage(folder).free
        except OSError:
            continue
    return _NEARLY_FULL
