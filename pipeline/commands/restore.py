"""doit restore PATH [--at TIME] [--to DIR] [--from snapshot|versioned] [--force]."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

from doit.exceptions import TaskFailed

from .. import layout, restore
from ..errors import Failed, UsageError
from ..paths import locate, user_cwd
from ..plan import Plan
from ..protect import is_protected
from ..show import plural
from .base import Context, known, one_path, when, with_retired


def run(ctx: Context, paths: list[str], at: str = "", to: str | None = None,
        origin: str = "", force: bool = False) -> TaskFailed | None:
    """Rebuild a file or folder as it was at a time, into DIR (never over a file
    without --force)."""
    plan = ctx.plan
    path = one_path(paths, "restore")
    assert path is not None
    if origin not in ("", "versioned", "snapshot"):
        raise UsageError(f"--from takes versioned or snapshot, got {origin!r}")
    into = restore_folder(plan, to)
    note = ""
    upto: int | None = None
    with ctx.reading() as catalog:
        view = with_retired(plan, catalog)
        target = locate(view, path, known(catalog, view))
        if origin == "snapshot":
            if at:
                raise UsageError("the snapshot mirror holds only the latest state: "
                                 "use --from versioned with --at")
            items = restore.snapshot_items(
                layout.mirror_root(plan.destination, target.source.name), target, catalog,
                is_protected(plan.meta_dir, plan.protect))
        else:
            upto = restore.exact_version(catalog, target, at)
            if upto is None:
                upto = when(catalog, at)
            items = restore.versioned_items(catalog, target, upto)
            if not items and not at:
                gone = restore.deleted_at(catalog, target)
                if gone is not None:          # deleted: its last version, and when it went
                    items = restore.versioned_items(catalog, target, gone[0])
                    note = f" (deleted {gone[1]}; this is its last version)"
            elif not at and not origin:
                # the latest state: what the history leaves out (its own ignores, .git/ by
                # default) comes from the mirror
                extra = restore.mirror_only(
                    catalog, target, items, layout.mirror_root(plan.destination,
                                                               target.source.name),
                    is_protected(plan.meta_dir, plan.protect))
                if extra:
                    items += extra
                    files = sum(1 for i in extra if i.kind == "file")
                    note = (f" ({plural(files, 'file')} from the mirror, which the history "
                            "leaves out: " + ", ".join(restore.tops(extra)) + ")")
        if not items and not target.rel and origin != "snapshot" and (upto is None or upto >= 0) \
                and b"" in catalog.folders_seen("versioned", target.source.name):
            # a source that was empty then: it restores as an empty folder
            if not os.path.isdir(into):    # (a folder of the user's keeps its own mode)
                os.makedirs(into, mode=0o700)
                seen = catalog.folders_seen("versioned", target.source.name)[b""]
                os.chmod(into, stat.S_IMODE(seen.st_mode) or 0o700)   # its mode, as recorded
            ctx.say(f"restored {target.label}{' as of ' + at if at else ''}: it was empty "
                    f"then; 0 files into {into}")
            return None
        if not items:
            moment_text = f" at {at}" if at else ""
            raise UsageError(f"{target.label} did not exist{moment_text} in the "
                             f"{origin or 'versioned'} backup")
        done = restore.restore(items, into,
                               layout.history_root(plan.destination, target.source.name), force)
    for rel, why in done.failed:
        print(f"FAILED   {rel}: {why}", file=sys.stderr)
    ctx.say(f"restored {target.label}{' as of ' + at if at else ''}{note}: "
            f"{plural(done.written, 'file')} into {into}")
    if done.failed:
        return Failed(f"{len(done.failed)} path(s) of {target.label} could not be restored "
                      f"(first: {done.failed[0][0]}); everything else was")
    return None


def restore_folder(plan: Plan, to: str | None) -> Path:
    """--to DIR as a folder to restore into: never a file, never inside the backup."""
    if to is not None and not to.strip():
        raise UsageError("--to needs a folder (default: ./restored/)")
    into = Path(os.path.expanduser(to)) if to else user_cwd() / "restored"
    if not into.is_absolute():
        into = user_cwd() / into
    if os.path.lexists(into) and not os.path.isdir(into):
        raise UsageError(f"--to {to}: exists and is not a folder")
    probe = into
    while not os.path.lexists(probe) and probe.parent != probe:
        probe = probe.parent                      # the nearest part that exists
    if plan.destination.exists() and probe.exists():
        dest = os.stat(plan.destination)
        here = Path(os.path.realpath(probe))
        for folder in (here, *here.parents):
            st = os.stat(folder)
            if (st.st_dev, st.st_ino) == (dest.st_dev, dest.st_ino):
                raise UsageError(f"--to {to}: is inside the backup {plan.destination}; "
                                 "restore somewhere else")
    return into
