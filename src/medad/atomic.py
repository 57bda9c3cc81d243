"""Writing results so that a crash or a kill never leaves a half-written file or folder."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path


def replace_dir(src: Path, dst: Path) -> None:
    """Move the finished folder `src` to `dst`; an earlier `dst` is replaced only once `src` is
    complete (two renames on one file system), so readers see the old or the new, never half."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        old = dst.with_name(f".{dst.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(dst, old)
        os.replace(src, dst)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(src, dst)


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
