"""doit restore PATH [--at TIME] [--to DIR] [--from snapshot|versioned] [--force]."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

from doit.exceptions import TaskFailed

from .. import layout, restore
from ..catalog import Catalog
from ..errors import Failed, UsageError
from ..paths import locate, user_cwd
from ..plan import Plan
from ..protect import is_protected
from ..show import display, plural
from .base import Context, known, one_path, untraced_prune, when_at, with_retired


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
    included: int | None = None             # how many runs the state as of --at holds
    lost: list[bytes] = []
    with ctx.reading() as catalog:
        view = with_retired(plan, catalog)
        target = locate(view, path, known(catalog, view))
        mirror = layout.mirror_root(plan.destination, target.source.name)
        protected = is_protected(plan.meta_dir, plan.protect)
        if origin == "snapshot":
            if at:
                raise UsageError("the snapshot mirror holds only the latest state: "
                                 "use --from versioned with --at")
            items = restore.snapshot_items(mirror, target, catalog, protected)
        else:
            upto = restore.exact_version(catalog, target, at)
            if upto is None:
                upto, included = when_at(catalog, at)
            elif at:                        # a version's stamp: the runs up to its own
                included = sum(1 for _r, _s, last in catalog.run_order() if last < upto) + 1
            items, lost = restore.versioned_items(catalog, target, upto)
            if not items and not lost and not at:
                gone = restore.deleted_at(catalog, target)
                if gone is not None:          # deleted: its last version, and when it went
                    items, lost = restore.versioned_items(catalog, target, gone[0])
                    note = f" (deleted {gone[1]}; this is its last version)"
            if not at and not origin and not note:
                # the latest state: what the history leaves out (its own ignores, .git/ by
                # default; everything, when only the snapshot mode runs) comes from the mirror
                extra = restore.mirror_only(catalog, target, items, mirror, protected)
                if extra:
                    items += extra
                    files = sum(1 for i in extra if i.kind == "file")
                    note = (f" ({plural(files, 'file')} from the mirror, which the history "
                            "leaves out: " + ", ".join(restore.tops(extra)) + ")")
            elif at and not origin:
                # as of a time, the history alone: say what it leaves out that the mirror
                # holds now (.git/ by default), and how to get that
                left = restore.mirror_only(catalog, target, items, mirror, protected)
                if left:
                    note = (" (the history leaves out " + ", ".join(restore.tops(left)) +
                            f"; their latest state: snapback restore {path} "
                            "--from snapshot)")
                    if not items:
                        raise UsageError(f"{target.label} is left out of the history "
                                         f"(versioned.ignore); the mirror holds its latest "
                                         f"state: snapback restore {path} --from snapshot")
        if lost and all(item.kind == "dir" for item in items):
            # nothing but folders left of it then: refused, not restored as empty folders
            kept = [r.time for r in catalog.rows_under(target.source.name,
                                                       os.fsencode(target.rel))
                    if r.live and r.entry != "dir"]
            what = (f"{target.label}" if lost == [os.fsencode(target.rel)] else
                    f"what {target.label} held ({plural(len(lost), 'path')})")
            oldest = f"the oldest kept is from {kept[0]}; " if kept else ""
            raise UsageError(f"the versioned backup no longer keeps {what} as of {at}: prune "
                             f"dropped the versions from then ({oldest}doit history {path} "
                             "lists the versions kept)")
        untraced = untraced_prune(catalog, included) if origin != "snapshot" else None
        if not items and not target.rel and (upto is None or upto >= 0):
            mode = _empty_source(catalog, target.source.name, mirror, origin, at)
            if mode is not None:          # a source that was empty then: an empty folder
                if not os.path.isdir(into):    # (a folder of the user's keeps its own mode)
                    os.makedirs(into, mode=0o700)
                    os.chmod(into, stat.S_IMODE(mode) or 0o700)   # its mode, as recorded
                ctx.say(f"restored {target.label}{' as of ' + at if at else ''}: it was "
                        f"empty then; 0 files into {into}")
                _say_untraced(untraced, at)
                return None
        if not items:
            later = catalog.rows_under(target.source.name, os.fsencode(target.rel)) \
                if at and origin != "snapshot" else []
            if later:       # (the catalog keeps no trace of what prune dropped)
                raise UsageError(f"the versioned backup keeps no version of {target.label} "
                                 f"from {at} or before: it did not exist then, or prune "
                                 f"dropped its versions from then (the oldest kept is from "
                                 f"{later[0].time})")
            moment_text = f" at {at}" if at else ""
            if not at and origin != "snapshot" and catalog.pruned_under(
                    target.source.name, os.fsencode(target.rel)):
                raise UsageError(f"the versioned backup no longer keeps {target.label}: it "
                                 "was deleted, and prune dropped its history (keep_deleted)")
            raise UsageError(f"{target.label} did not exist{moment_text} in the "
                             f"{origin or 'versioned'} backup")
        done = restore.restore(items, into,
                               layout.history_root(plan.destination, target.source.name), force)
    for rel, why in done.failed:
        print(f"FAILED   {rel}: {why}", file=sys.stderr)
    shown = [display(f"{target.source.name}/{os.fsdecode(p)}") for p in lost]
    for name in shown:             # (their versions as of then are no longer kept)
        print(f"PRUNED   {name}: its version as of {at} is no longer "
              "kept", file=sys.stderr)
    ctx.say(f"restored {target.label}{' as of ' + at if at else ''}{note}: "
            f"{plural(done.written, 'file')} into {into}")
    _say_untraced(untraced, at)
    if done.failed:
        return Failed(f"{len(done.failed)} path(s) of {target.label} could not be restored "
                      f"(first: {done.failed[0][0]}); everything else was")
    if lost:
        return Failed(f"{len(lost)} path(s) of {target.label} were left out: prune dropped "
                      f"their versions as of {at} (first: {shown[0]}); "
                      "everything else was restored")
    return None


def _say_untraced(prune: str | None, at: str) -> None:
    if prune is not None:
        print(f"note: prune {prune}, made by an older snapback, kept no trace of the "
              f"versions it dropped: a file whose version as of {at} it dropped is "
              "missing here, or at an older version, and is not named", file=sys.stderr)


def _empty_source(catalog: Catalog, source: str, mirror: Path, origin: str,
                  at: str) -> int | None:
    """The recorded mode of a source that is in the backup with nothing in it (the
    history saw it empty; or, for the latest state, its mirror folder is there and
    empty), None when it is not in the backup."""
    if origin != "snapshot":
        seen = catalog.folders_seen("versioned", source).get(b"")
        if seen is not None:
            return seen.st_mode
    if origin == "versioned" or at or not layout.real_dir(os.fsencode(mirror)):
        return None
    seen = catalog.folders_seen("snapshot", source).get(b"")
    return seen.st_mode if seen is not None else 0o700


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
    if probe != into and not os.path.isdir(probe):
        # (a folder that became a file since: restoring that folder itself, with
        # --force, puts it back)
        raise UsageError(f"--to {to}: {probe} is not a folder; restore "
                         f"{probe.name} itself (--force replaces it) to put the folder back")
    if plan.destination.exists() and probe.exists():
        dest = os.stat(plan.destination)
        here = Path(os.path.realpath(probe))
        for folder in (here, *here.parents):
            st = os.stat(folder)
            if (st.st_dev, st.st_ino) == (dest.st_dev, dest.st_ino):
                raise UsageError(f"--to {to}: is inside the backup {plan.destination}; "
                                 "restore somewhere else")
    return into
