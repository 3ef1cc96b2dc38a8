"""Explain: is a path backed up, by which mode, and why (or why not).

The answer is what the walk decides: the same ``scan.walk`` and the same
per-mode view as a backup run, restricted to the chain of folders down to the
path (``walk(only=...)``), so explain cannot disagree with a backup.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from . import layout
from .paths import Target
from .plan import Plan
from .scan import Folder, mode_view, walk
from .selection import Selector, for_mode, mode_filter

MODES = ("snapshot", "versioned")


@dataclass(frozen=True)
class Verdict:
    mode: str
    kept: bool
    why: str


def _selector(plan: Plan) -> Selector:
    return for_mode(plan.ignore, plan.exceptions, plan.use_default_ignores,
                    ignore_files=plan.ignore_files)


def _views(plan: Plan, target: Target, only: tuple[str, ...] | None) -> dict[str, list[Folder]]:
    scan = walk(target.source.path, _selector(plan), exclude=(plan.destination,), only=only)
    out = {}
    for mode in MODES:
        opts = plan.mode(mode)
        extra = mode_filter(opts.ignore, f"{mode}.ignore", plan.exceptions,
                            plan.use_default_ignores)
        out[mode] = mode_view(scan, extra)
    return out


def explain(plan: Plan, target: Target) -> list[Verdict]:
    """One verdict per mode for a path below a source root."""
    path = target.source.path / target.rel if target.rel else target.source.path
    inside = Path(os.path.abspath(path))
    if inside == plan.destination or plan.destination in inside.parents:
        return [Verdict(m, False, "inside the backup destination (never backed up)")
                for m in MODES]
    if not os.path.lexists(path):
        return [Verdict(m, False, "does not exist") for m in MODES]
    parts = tuple(target.rel.split("/")) if target.rel else ()
    views = _views(plan, target, parts)     # entering the path itself finds marker files
    verdicts = []
    for mode in MODES:
        kept, why = _judge(views[mode], parts)
        if kept and parts and why == "backed up":
            why = _stored(plan, target, mode, path)
        verdicts.append(Verdict(mode, kept, why))
    return verdicts


def _stored(plan: Plan, target: Target, mode: str, path: Path) -> str:
    """Selected by the rules; is it also stored as it is now?  The catalog says."""
    from . import change
    from .catalog import open_catalog
    folder, _, name = os.fsencode(target.rel).rpartition(b"/")
    catalog = open_catalog(plan.meta_dir, writable=False)
    try:
        record = catalog.records_in(mode, target.source.name, folder).get(name)
    finally:
        catalog.close()
    if record is None:
        return "not stored yet: the next run stores it"
    st = os.lstat(path)
    if mode == "snapshot" and not os.path.lexists(
            layout.mirror_root(plan.destination, target.source.name) / target.rel):
        return "missing from the mirror: the next run copies it again"
    if record.kind == "dir" or change.unchanged(record, st, plan.checker):
        return "backed up"
    return "changed since it was stored: the next run stores it"


def _judge(folders: list[Folder], parts: tuple[str, ...]) -> tuple[bool, str]:
    if not parts:
        return True, "the source folder itself"
    by_rel = {f.rel: f for f in folders}
    for depth in range(len(parts)):
        parent = "/".join(parts[:depth])
        name = parts[depth]
        folder = by_rel.get(parent)
        if folder is None:
            return False, "inside a folder that is left out"
        last = depth == len(parts) - 1
        skipped = dict(folder.skipped)
        reason = skipped.get(name) or skipped.get(name + "/")
        if reason is not None:
            if last:
                return False, reason
            return False, f"inside {'/'.join(parts[:depth + 1])}/, which is not entered: {reason}"
        if folder.error is not None:
            return False, f"{parent or 'the source'} cannot be listed: {folder.error}"
        if last:
            if name in folder.files or name in folder.links or name in folder.subdirs:
                return True, "backed up"
            return False, "not found by the walk"
    return False, "not found by the walk"


def left_out_tree(plan: Plan, target: Target) -> list[tuple[int, int, str, str]]:
    """Folders left out below ``target``: (bytes, files, path, why), largest first."""
    views = _views(plan, target, None)
    prefix = target.rel + "/" if target.rel else ""
    seen: dict[str, tuple[int, int, str, str]] = {}
    for mode in MODES:
        for folder in views[mode]:
            for name, why in folder.skipped:
                if not name.endswith("/"):
                    continue
                rel = folder.child(name.rstrip("/"))
                if not (rel + "/").startswith(prefix) or rel in seen:
                    continue
                size, count = _du(target.source.path / rel)
                label = f"{target.source.name}/{rel}/"
                if mode == "versioned" and "versioned.ignore" in why:
                    why = f"versioned only: {why}"
                seen[rel] = (size, count, label, why)
    return sorted(seen.values(), key=lambda row: (-row[0], row[2]))


def _du(path: Path) -> tuple[int, int]:
    size = count = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            try:
                size += os.lstat(os.path.join(dirpath, name)).st_size
                count += 1
            except OSError:
                pass
    return size, count
