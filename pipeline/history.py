"""History: the runs, one file's versions, a folder's changes, as text lines."""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

from .catalog import Catalog, Row
from .paths import Target
from .show import display, human_size, plural


def _count(value: Any) -> int:
    """A count from a run record (a hand-edited record may hold anything)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str:
    return display(str(value)) if value is not None else ""


def format_runs(records: list[dict[str, Any]]) -> list[str]:
    """One line per run and mode (``all`` gives one per mode), sizes as people read
    them; prunes (by hand or ``retention.auto``) say what they dropped."""
    if not records:
        return ["no runs yet: snapback all (or doit all in the checkout) makes the first"]
    lines = [f"{'run id':<21} {'time':<19} {'mode':<13} {'new':>6} {'updated':>7} "
             f"{'deleted':>7} {'failed':>6} {'written':>9} {'secs':>7}  note"]
    for rec in records:
        when = _text(rec.get("started", ""))[:19].replace("T", " ")
        mode = _text(rec.get("mode", "?"))
        run_id = _text(rec.get("run_id", "?"))
        if mode == "damaged":
            lines.append(f"{'?':<21} {'':<19} {'damaged':<13} {_text(rec.get('note'))}")
            continue
        if mode == "prune":
            if "T" in run_id:     # written before prunes had the catalog's run id
                run_id = "prune-" + when.replace("-", "").replace(":", "").replace(" ", "-")
            c = _dict(rec.get("counts"))
            what = (f"{plural(_count(c.get('pruned')), 'version')} of "
                    f"{plural(_count(c.get('files')), 'file')} dropped, "
                    f"{human_size(_count(rec.get('bytes')))} freed")
            auto = " (retention.auto)" if rec.get("auto") is True else ""
            lines.append(f"{run_id:<21} {when:<19} {'prune':<13} {what}{auto}")
            continue
        counts = _dict(rec.get("counts"))
        per_mode = _dict(rec.get("modes")) or {mode: {**counts, "bytes": rec.get("bytes", 0)}}
        seconds = rec.get("seconds", 0)
        seconds = seconds if isinstance(seconds, (int, float)) else 0
        for index, (name, given) in enumerate(per_mode.items()):
            c = _dict(given)
            label = f"{mode}/{_text(name)}" if mode == "all" else mode
            first = index == 0
            secs = f"{seconds:.2f}" if first else ""
            lines.append(
                f"{run_id if first else '':<21} {when if first else '':<19} {label:<13} "
                f"{_count(c.get('new')):>6,} {_count(c.get('updated')):>7,} "
                f"{_count(c.get('deleted')):>7,} {_count(c.get('failed')):>6,} "
                f"{human_size(_count(c.get('bytes'))):>9} {secs:>7}  "
                f"{_text(rec.get('note', '')) if first else ''}".rstrip())
    return lines


def _when(row: Row) -> str:
    return datetime.fromtimestamp(row.recorded).strftime("%Y-%m-%d %H:%M:%S")


def format_versions(history: list[Row], origin: Row | None = None) -> list[str]:
    """A file's versions; ``origin``: the stored version of another path its first
    version has the bytes of (it was renamed, moved or copied from there)."""
    lines = [f"{'time':<19} {'version':<22} {'run id':<20} {'kind':<8} {'size':>10}  note"]
    if origin is not None:
        lines.insert(0, f"first stored with the bytes of {display(origin.source)}/"
                        f"{display(os.fsdecode(origin.path))} (version {origin.time}): "
                        "renamed, moved or copied from there; its history stays there")
    for row in history:
        if row.entry == "dir" and row.kind != "deleted":
            continue
        kind = row.kind if row.entry != "link" or row.kind == "deleted" else "link"
        size = "" if row.size is None or row.entry != "file" else human_size(row.size)
        extra = f" -> {display(os.fsdecode(row.target))}" if row.target else ""
        lines.append(f"{_when(row):<19} {row.time:<22} {row.run_id:<20} {kind:<8} {size:>10}  "
                     f"{display(row.note or '')}{extra}")
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
        lines.append(f"{_when(row):<19} {row.kind:<8} "
                     f"{display(target.source.name + '/' + os.fsdecode(path))}")
    return lines
