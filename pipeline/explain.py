"""Explain: is a path backed up, by which mode, and why (or why not).

The answer is what the walk decides: the same ``scan.walk`` and the same
per-mode view as a backup run, restricted to the chain of folders down to the
path (``walk(only=...)``), so explain cannot disagree with a backup.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from . import layout
from .errors import UsageError
from .paths import Target
from .plan import Plan
from .scan import Folder, _read_ignore_file, du, mode_view, walk
from .selection import Layer, Matcher, Rule, Selector, for_mode, mode_filter
from .show import display

MODES = layout.MODES


@dataclass(frozen=True)
class Verdict:
    mode: str
    kept: bool
    why: str
    rule: str = ""       # kept only because a rule re-included it: which, over what

    @property
    def text(self) -> str:
        """The verdict as ``doit explain`` prints it after the mode's name:
        ``backed up``, ``selected: not stored yet: ...``, ``left out: ignored by ...``,
        ``backed up: re-included by exceptions: '**/templates/**' (backup.yaml) over
        '*.pyc' (ignore)``."""
        if not self.kept:
            return f"left out: {self.why}"
        stored = self.why in ("backed up", "the source folder itself")
        details = [d for d in (self.rule, self.why if self.why != "backed up" else "") if d]
        return ("backed up" if stored else "selected") + \
            (": " + "; ".join(details) if details else "")


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
        rule = ""
        if kept and parts:
            rule = _reincluded_by(plan, target, mode, path)
            if why == "backed up":
                why = _stored(plan, target, mode, path)
        verdicts.append(Verdict(mode, kept, why, rule))
    return verdicts


def _reincluded_by(plan: Plan, target: Target, mode: str, path: Path) -> str:
    """For a kept path: the rule that re-included it and the ignore it overrode
    (``re-included by exceptions: '**/templates/**' (backup.yaml) over '*.pyc'
    (ignore)``), or "" when no ignore matched it at all."""
    try:
        is_dir = stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return ""
    rel = target.rel
    layers = _layers(plan, target)
    found = []
    selector = _selector(plan)
    kept, rule = selector.decide(rel, is_dir, layers)
    if kept and rule is not None:
        dropper = _ignore_only(selector, layers, rel, is_dir)
        if dropper is not None:
            found.append((rule, dropper))
    opts = plan.mode(mode)
    extra = mode_filter(opts.ignore, f"{mode}.ignore", plan.exceptions, plan.use_default_ignores)
    if extra is not None:
        kept, rule = extra.decide(rel, is_dir)
        if kept and rule is not None:
            dropper = _ignore_only(extra, (), rel, is_dir)
            if dropper is not None:
                found.append((rule, dropper))
    return "; ".join(f"re-included by {_name(plan, rule)} over {dropper.describe()}"
                     for rule, dropper in found)


def _name(plan: Plan, rule: Rule) -> str:
    if rule.origin == "exceptions":
        return f"exceptions: {rule.pattern!r} ({plan.file.name})"
    if rule.origin == "built-in exception":
        return f"the built-in exception {rule.pattern!r}"
    return rule.describe()                     # a '!' line of an ignore file, with its line


def _ignore_only(selector: Selector, layers: tuple[Layer, ...], rel: str,
                 is_dir: bool) -> Rule | None:
    """The ignore rule that would leave ``rel`` out if no rule re-included anything:
    the deepest ignore file with a matching (non-``!``) pattern, else the plan's
    ignores; None when none matches (the rule that matched re-included nothing)."""
    for layer in reversed(layers):
        plain = [r for r in layer.rules if not r.pattern.startswith("!")]
        if not plain:
            continue
        sub = rel[len(layer.folder) + 1:] if layer.folder else rel
        include, index = Matcher([r.pattern for r in plain]).check(
            sub + "/" if is_dir else sub)
        if index is not None and include:
            return plain[index]
    ignores = selector.rules[:selector.first_exception]
    if not ignores:
        return None
    include, index = Matcher([r.pattern for r in ignores]).check(rel + "/" if is_dir else rel)
    if index is not None and include:
        return ignores[index]
    return None


def _layers(plan: Plan, target: Target) -> tuple[Layer, ...]:
    """The per-folder ignore files that apply to ``target`` (those of the folders
    above it, read as the walk reads them)."""
    layers: list[Layer] = []
    parts = target.rel.split("/")[:-1] if target.rel else []
    root = os.fsencode(target.source.path)
    for depth in range(len(parts) + 1):
        rel = "/".join(parts[:depth])
        folder = os.path.join(root, os.fsencode(rel)) if rel else root
        for name in plan.ignore_files:
            layer = _read_ignore_file(folder, rel, name)
            if layer is not None:
                layers.append(layer)
    return tuple(layers)


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
            inside = display("/".join(parts[:depth + 1]))
            return False, f"inside {inside}/, which is not entered: {reason}"
        if folder.error is not None:
            return False, f"{parent or 'the source'} cannot be listed: {folder.error}"
        if last:
            if name in folder.files or name in folder.links or name in folder.subdirs:
                return True, "backed up"
            return False, "not found by the walk"
    return False, "not found by the walk"


def left_out_tree(plan: Plan, target: Target) -> list[tuple[int, int, str, str]]:
    """Folders left out below ``target``: (bytes, files, path, why), largest first.
    Raises ``UsageError`` (status 2) when ``target`` is not a folder."""
    tree_folder(plan, target)
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
                size, count = du(target.source.path / rel)
                label = display(f"{target.source.name}/{rel}/")
                if mode == "versioned" and "versioned.ignore" in why:
                    why = f"versioned only: {why}"
                seen[rel] = (size, count, label, why)
    return sorted(seen.values(), key=lambda row: (-row[0], row[2]))


def tree_folder(plan: Plan, target: Target) -> Path:
    """The folder ``explain --tree`` looks below, or ``UsageError`` saying in one line
    why there is none (it does not exist, it is a file or a link, it is the backup)."""
    path = target.source.path / target.rel if target.rel else target.source.path
    try:
        st = os.lstat(path) if target.rel else os.stat(path)
    except FileNotFoundError:
        raise UsageError(f"explain --tree: {target.label}/: no such folder") from None
    except OSError as exc:
        raise UsageError(f"explain --tree: {target.label}/: {exc.strerror or exc}") from None
    if stat.S_ISLNK(st.st_mode):
        raise UsageError(f"explain --tree: {target.label} is a symlink (backed up as a link, "
                         "never entered)")
    if not stat.S_ISDIR(st.st_mode):
        raise UsageError(f"explain --tree: {target.label} is not a folder (ask without "
                         "--tree: doit explain PATH)")
    inside = Path(os.path.abspath(path))
    if inside == plan.destination or plan.destination in inside.parents:
        raise UsageError(f"explain --tree: {target.label}/ is inside the backup destination "
                         "(never backed up)")
    return path

