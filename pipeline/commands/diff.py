"""doit diff PATH [--at TIME] [--against TIME] [--vscode]: two versions, as a unified diff."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from doit.exceptions import TaskFailed

from .. import layout, rebuild, textdiff
from ..catalog import CONTENT_KINDS, Catalog, Row, open_catalog
from ..errors import SnapbackError, UsageError
from ..paths import Target, locate
from ..show import plural
from .base import Context, known, one_path, split, untraced_prune, when, with_retired

# Versions up to this size are diffed here (in a few seconds at most: textdiff's
# work budget); larger ones, stored whole, are for --vscode.
SHOW_LIMIT = 64 << 20


def run(ctx: Context, paths: list[str], at: str = "", against: str = "",
        vscode: bool = False) -> TaskFailed | None:
    """The unified diff between two versions of a file (default: its last change)."""
    plan = ctx.plan
    path = one_path(paths, "diff")
    assert path is not None
    catalog = open_catalog(plan.meta_dir, writable=False)
    try:
        view = with_retired(plan, catalog)
        target = locate(view, path, known(catalog, view))
        rows = catalog.history(target.source.name, *split(target.rel))
        content = [r for r in rows if r.kind in CONTENT_KINDS]
        if not content:
            raise UsageError(f"{target.label} has no stored versions")
        exact = {r.time: r for r in content}
        if at.strip() in exact:                  # a stamp of doit history: that version
            new_candidates = [r for r in content if r.id <= exact[at.strip()].id]
        else:
            moment = when(catalog, at)
            new_candidates = [r for r in content if moment is None or r.id <= moment]
            _kept_then(catalog, target, new_candidates, moment, at)
        if not new_candidates:
            raise UsageError(f"{target.label} has no version at {at}")
        new = new_candidates[-1]
        if against and against.strip() in exact:
            older = [r for r in content if r.id <= exact[against.strip()].id]
        elif against:
            limit = when(catalog, against)
            older = [r for r in content if limit is not None and r.id <= limit]
            _kept_then(catalog, target, older, limit, against)
        else:
            older = [r for r in content if r.id < new.id]
        if not older:
            raise UsageError(f"{target.label}: no earlier version to compare with "
                             f"(first stored {content[0].time})")
        old = older[-1]
        between = _dropped_between(catalog, target, min(old.id, new.id), max(old.id, new.id))
        # (a prune after the run that wrote ``old`` may have dropped versions after it)
        older_prune = untraced_prune(catalog, sum(1 for _r, _s, last in catalog.run_order()
                                                  if last < min(old.id, new.id)) + 1)
        root = layout.history_root(plan.destination, target.source.name)
        try:
            before = rebuild.rebuild(root, rows, old)
            after = rebuild.rebuild(root, rows, new)
        except rebuild.RebuildError as exc:
            raise SnapbackError(f"{target.label}: {exc}") from None
    finally:
        catalog.close()
    if between:                    # (on stderr: the diff itself stays a patch)
        print(f"note: prune dropped {plural(between, 'version')} of {target.label} between "
              f"{old.time} and {new.time}: this diff spans them", file=sys.stderr)
    elif older_prune is not None:
        print(f"note: prune {older_prune}, made by an older snapback, kept no trace of the "
              f"versions it dropped: this diff may span some", file=sys.stderr)
    if vscode:
        return _vscode(target, old.time, before, new.time, after)
    if not (textdiff.is_text(before) and textdiff.is_text(after)):
        print(f"binary versions of {target.label} differ ({old.time}: {len(before)} bytes, "
              f"{new.time}: {len(after)} bytes)")
        return None
    if max(len(before), len(after)) > SHOW_LIMIT:
        print(f"{target.label}: the versions are too large to diff here "
              f"(over {SHOW_LIMIT >> 20} MiB); try --vscode")
        return None
    name = os.fsencode(f"{target.source.name}/{target.rel}")  # make_diff quotes it as GNU diff
    text = textdiff.make_diff(before, after, name + b"@" + old.time.encode(),
                              name + b"@" + new.time.encode(), coarse_ok=True)
    assert text is not None                      # coarse_ok: a diff, however costly
    _print_diff(text)
    return None


def _dropped_between(catalog: Catalog, target: Target, older: int, newer: int) -> int:
    """How many versions of the file prune dropped between two kept ones."""
    rel = os.fsencode(target.rel)
    return sum(1 for row_id, path, live, is_dir in catalog.pruned_under(target.source.name,
                                                                          rel)
               if path == rel and live and not is_dir and older < row_id < newer)


def _kept_then(catalog: Catalog, target: Target, candidates: list[Row], upto: int | None,
               text: str) -> None:
    """Refuse a time whose version prune dropped: the newest kept version before it is
    not the file as it was then."""
    if upto is None:
        return
    rel = os.fsencode(target.rel)
    newest = candidates[-1].id if candidates else -1
    for row_id, path, live, is_dir in catalog.pruned_under(target.source.name, rel):
        if path == rel and live and not is_dir and newest < row_id <= upto:
            raise UsageError(f"{target.label}: its version as of {text} is no longer kept "
                             f"(prune dropped it); doit history lists the versions kept")


def _print_diff(text: bytes) -> None:
    out = sys.stdout
    colour = out.isatty() and os.environ.get("NO_COLOR") is None
    for line in text.decode("utf-8", "replace").splitlines(keepends=True):
        if colour and line.startswith("+") and not line.startswith("+++"):
            line = f"\x1b[32m{line.rstrip(chr(10))}\x1b[0m\n"
        elif colour and line.startswith("-") and not line.startswith("---"):
            line = f"\x1b[31m{line.rstrip(chr(10))}\x1b[0m\n"
        elif colour and line.startswith("@@"):
            line = f"\x1b[36m{line.rstrip(chr(10))}\x1b[0m\n"
        out.write(line)
    out.flush()


def _vscode(target: Target, old_time: str, before: bytes, new_time: str,
            after: bytes) -> TaskFailed | None:
    code = shutil.which("code")
    if code is None:
        raise SnapbackError("--vscode needs VS Code's `code` command on the PATH "
                            "(VS Code: Shell Command: Install 'code' command in PATH)")
    folder = Path(tempfile.mkdtemp(prefix="snapback-diff-"))
    name = os.path.basename(target.rel) or target.source.name
    left, right = folder / f"{old_time}-{name}", folder / f"{new_time}-{name}"
    left.write_bytes(before)
    right.write_bytes(after)
    subprocess.run([code, "--diff", str(left), str(right)], check=False)
    print(f"opened VS Code on {left} and {right}")
    return None
