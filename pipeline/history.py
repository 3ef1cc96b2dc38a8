"""History: the runs, one file's versions, a folder's changes, as text lines."""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

from .catalog import Catalog, Row
from .paths import Target
from .show import human_size, plural


def format_runs(records: list[dict[str, Any]]) -> list[str]:
    """One line per run and mode (``all`` gives one per mode), sizes as people read
    them; prunes (by hand or ``retention.auto``) say what they dropped."""
    if not records:
        return ["no runs yet: doit snapshot or doit versioned makes the first"]
    lines = [f"{'run id':<21} {'time':<19} {'mode':<13} {'new':>6} {'updated':>7} "
             f"{'deleted':>7} {'failed':>6} {'written':>9} {'secs':>7}  note"]
    for rec in records:
        when = str(rec.get("started", ""))[:19].replace("T", " ")
        mode = str(rec.get("mode", "?"))
        run_id = str(rec.get("run_id", "?"))
        if mode == "prune":
            run_id = "prune-" + when.replace("-", "").replace(":", "").replace(" ", "-")
            c = rec.get("counts", {})
            what = (f"{plural(c.get('pruned', 0), 'version')} of "
                    f"{plural(c.get('files', 0), 'file')} dropped, "
                    f"{human_size(rec.get('bytes', 0))} freed")
            auto = " (retention.auto)" if rec.get("auto") else ""
            lines.append(f"{run_id:<21} {when:<19} {'prune':<13} {what}{auto}")
            continue
        per_mode = rec.get("modes") or {mode: {**rec.get("counts", {}),
                                               "bytes": rec.get("bytes", 0)}}
        for index, (name, c) in enumerate(per_mode.items()):
            label = f"{mode}/{name}" if mode == "all" else mode
            first = index == 0
            secs = f"{rec.get('seconds', 0):.2f}" if first else ""
            lines.append(
                f"{run_id if first else '':<21} {when if first else '':<19} {label:<13} "
                f"{c.get('new', 0):>6,} {c.get('updated', 0):>7,} {c.get('deleted', 0):>7,} "
                f"{c.get('failed', 0):>6,} {human_size(c.get('bytes', 0)):>9} "
                f"{secs:>7}  "
                f"{rec.get('note', '') if first else ''}".rstrip())
    return lines


def _when(row: Row) -> str:
    return datetime.fromtimestamp(row.recorded).strftime("%Y-%m-%d %H:%M:%S")


def format_versions(history: list[Row]) -> list[str]:
    lines = [f"{'time':<19} {'version':<22} {'run id':<20} {'kind':<8} {'size':>10}  note"]
    for row in history:
        if row.entry == "dir" and row.kind != "deleted":
            continue
        kind = row.kind if row.entry != "link" or row.kind == "deleted" else "link"
        size = "" if row.size is None or row.entry != "file" else human_size(row.size)
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
