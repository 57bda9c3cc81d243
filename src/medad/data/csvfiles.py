"""Read the label tables official datasets ship as CSV, and find the files they list.

Errors name the file, and the column or line concerned.
"""

from __future__ import annotations

import csv
from pathlib import Path

from medad.errors import MedadError


def read_csv_rows(path: Path, required: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    """The rows of a CSV file with a header, as ``(line number, {column: value})``.

    Values are stripped of surrounding spaces; a UTF-8 byte-order mark is ignored.

    Raises:
        MedadError: the file is missing or unreadable, has no header, or lacks a column of
            `required` (the message names the file, the missing columns and the ones found).
    """
    if not path.is_file():
        raise MedadError(f"{path}: CSV file not found")
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = [h.strip() for h in (reader.fieldnames or [])]
            if not header:
                raise MedadError(f"{path}: empty CSV file (no header line)")
            missing = [c for c in required if c not in header]
            if missing:
                raise MedadError(
                    f"{path}: missing column{'s' if len(missing) > 1 else ''} "
                    f"{', '.join(repr(c) for c in missing)}; the header has "
                    f"{', '.join(repr(c) for c in header)}"
                )
            rows = []
            for row in reader:
                clean = {
                    (k or "").strip(): (v or "").strip() if isinstance(v, str) else ""
                    for k, v in row.items()
                }
                rows.append((reader.line_num, clean))
            return rows
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise MedadError(f"{path}: cannot read this CSV file ({exc})") from exc


def files_listed(
    ids: list[str], folder: Path, suffixes: tuple[str, ...], listed_in: Path
) -> dict[str, Path]:
    """id → ``folder/<id><suffix>`` for the first suffix that exists; errors name a missing one."""
    if not folder.is_dir():
        raise MedadError(f"{folder}: image folder not found (the images listed in {listed_in})")
    found: dict[str, Path] = {}
    missing: list[Path] = []
    for i in ids:
        path = next((folder / f"{i}{s}" for s in suffixes if (folder / f"{i}{s}").is_file()), None)
        if path is None:
            missing.append(folder / f"{i}{suffixes[0]}")
        else:
            found[i] = path
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise MedadError(f"{missing[0]}: listed in {listed_in} but not found{more}")
    return found
