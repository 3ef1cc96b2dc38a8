"""History: the runs, one file's versions, a folder's changes, as text lines."""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

from .catalog import Catalog, Row
from .paths import Target


def format_runs(records: list[dict[str, Any]]) -> list[str]:
    if not records:
        return ["no runs yet: doit snapshot or doit versioned makes the first"]
    lines = [f"{'run id':<20} {'time':<19} {'mode':<9} {'new':>5} {'upd':>5} {'del':>5} "
             f"{'fail':>4} {'bytes':>10} {'secs':>6}  note"]
    for rec in records:
        c = rec.get("counts", {})
        when = rec.get("started", "")[:19].replace("T", " ")
        lines.append(f"{rec.get('run_id', '?'):<20} {when:<19} {rec.get('mode', '?'):<9} "
                     f"{c.get('new', 0):>5} {c.get('updated', 0):>5} {c.get('deleted', 0):>5} "
                     f"{c.get('failed', 0):>4} {rec.get('bytes', 0):>10} "
                     f"{rec.get('seconds', 0):>6.2f}  {rec.get('note', '')}")
    return lines


def _when(row: Row) -> str:
    return datetime.fromtimestamp(row.recorded).strftime("%Y-%m-%d %H:%M:%S")


def format_versions(history: list[Row]) -> list[str]:
    lines = [f"{'time':<19} {'version':<22} {'run id':<20} {'kind':<8} {'size':>10}  note"]
    for row in history:
        if row.entry == "dir" and row.kind != "deleted":
            continue
        kind = row.kind if row.entry != "link" or row.kind == "deleted" else "link"
        size = "" if row.size is None or row.entry != "file" else str(row.size)
        extra = f" -> {os.fsdecode(row.target)}" if row.target else ""
        lines.append(f"{_when(row):<19} {row.time:<22} {row.run_id:<20} {kind:<8} {size:>10}  "
                     f"{row.note}{extra}")
    return lines


def folder_changes(catalog: Catalog, target: Target) -> list[str]:
    """For a folder: each path below it that has a history, with its last change."""
    rel = os.fsencode(target.rel)
    last: dict[bytes, Row] = {}
    for row in catalog.rows_under(target.source.name, rel):
        if row.entry != "dir":
            last[row.path] = row
    lines = [f"{'last change':<19} {'kind':<8} path"]
    for path, row in sorted(last.items()):
        lines.append(f"{_when(row):<19} {row.kind:<8} {target.source.name}/{os.fsdecode(path)}")
    return lines
