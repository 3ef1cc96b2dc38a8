"""Sync: the backup sent to the plan's remote through rclone.

The order keeps the remote whole at every instant, whatever cuts a sync short
(a network, a quota, a killed rclone): (1) the history's new objects, copied (the
objects the catalog names, by its list: stored objects are immutable, so nothing
the remote's catalog names is touched, and what a killed run left, which no row
names, never goes); (2) the run log, then the catalog (so every run a remote
catalog names has its record in the remote's log); (3) the mirror, made the
same as here (its new and changed files, then its deletions; a path whose kind
changed is removed from the remote first); (4) what the new catalog no longer
names leaves the history: pruned versions, superseded whole copies.  Cut before
(2), the remote is its old catalog, its history (with objects no row names yet)
and its old mirror, exactly.  Cut after (2), the remote is its new catalog and
its history, and a mirror that may be older than the catalog (the mirror is
changed in place: no order makes it change at once): ``doit fetch`` takes the
mirror as found and says so; the history, the record of every version, is
checked strictly and restores every run.  A run killed before a sync leaves its
last commits in the catalog's journal: they are folded into the catalog first.
The lock, doit's state and the staging folder are never sent.  rclone does all the
talking to Google Drive, S3, SFTP, WebDAV...: nothing here speaks a protocol.

Everything a restore needs is sent: symlinks as rclone does it (``--links``: a
``<name>.rclonelink`` file holding the target, on any remote), empty folders
(``--create-empty-src-dirs``) and, where the remote keeps them, modes
(``--metadata``: a 0600 secret stays 0600 on a local or SFTP remote).  What the
remote cannot hold is said in one line; ``doit fetch`` (``offsite.py``) puts it
back from the catalog.
"""

from __future__ import annotations

import os
import re
import sqlite3
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from . import faults, layout
from .errors import SnapbackError, UsageError
from .plan import Plan
from .rclone import (
    LINK_SUFFIX,
    NEVER_SENT,
    error_line,
    features,
    rclone,
    remote_path,
    remote_root,
    run_rclone,
)

_LINE = re.compile(r"(?:INFO|NOTICE)\s*:\s*(?P<path>.+?): (?P<what>Copied \(new\)|"
                   r"Copied \(replaced existing\)|"
                   r"Copied \(server-side copy\)|Updated modification time|Deleted|"
                   r"Skipped (?P<skipped>copy|delete|update modification time) "
                   r"as --dry-run is set.*)$")


_NOT_UTF8 = re.compile(r'Replacing invalid UTF-8 characters in "(.*)"$')


@dataclass
class Step:
    name: str
    verb: str                     # rclone sync (a mirror) or copy (never deletes)
    local: Path
    remote: str
    extra: list[str] = field(default_factory=list)
    sent: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    altered: set[str] = field(default_factory=set)      # names rclone could not keep


# Sent with every transfer: symlinks as .rclonelink files, empty folders, and the
# modes and times where the remote keeps metadata.
CARRY = ["--links", "--create-empty-src-dirs", "--metadata"]


def steps(plan: Plan, named: Path | None = None) -> list[Step]:
    """The steps in their order.  ``named``: a file listing the history's objects the
    catalog names: the history steps send those and remove from the remote all else
    (objects a killed run left, which no row names, never go)."""
    target = remote_root(plan)
    excludes = [arg for pattern in NEVER_SENT for arg in ("--exclude", pattern)]
    history = (layout.history_root(plan.destination), remote_path(target, layout.HISTORY))
    mirror = (layout.mirror_root(plan.destination), remote_path(target, layout.MIRROR))
    only = [] if named is None else ["--files-from0", str(named)]
    out = [Step("history", "copy", *history, only),
           # --ignore-times: the catalog keeps its size from run to run, and a remote
           # without modification times or hashes (WebDAV) would keep an old one
           # the run log before the catalog: every run a remote catalog names has its
           # record in the remote's log, whatever cut the sync short
           Step("metadata", "copy", plan.meta_dir, remote_path(target, layout.META),
                [*excludes, "--exclude", f"/{layout.CATALOG}", "--ignore-times"]),
           Step("catalog metadata", "copy", plan.meta_dir, remote_path(target, layout.META),
                ["--filter", f"+ /{layout.CATALOG}", "--filter", "- *", "--ignore-times"]),
           Step("mirror", "sync", *mirror),
           Step("pruned history", "sync", *history,
                [*only, "--delete-excluded"] if only else [])]
    return [s for s in out if s.local.is_dir()]


def named_objects(plan: Plan) -> list[bytes] | None:
    """Every object and whole copy of the history the catalog names, below the history
    (``<source>/<store>/<object>``); None when a name is not UTF-8 (rclone could not
    be told it exactly): the whole history folder is sent then."""
    from .catalog import CONTENT_KINDS, open_catalog
    catalog = open_catalog(plan.meta_dir, writable=False)
    try:
        rows = catalog.all_rows()
    finally:
        catalog.close()
    out: set[bytes] = set()
    for row in rows:
        if row.kind not in CONTENT_KINDS or row.store is None or row.object is None:
            continue
        base = os.path.join(os.fsencode(row.source), row.store)
        for name in (row.object, row.copy):
            if name is not None:
                out.add(os.path.join(base, name))
    for name in out:
        try:
            name.decode("utf-8")
        except UnicodeDecodeError:
            return None
    return sorted(out)


def run_step(binary: str, step: Step, dry_run: bool) -> None:
    listed = "--files-from0" in step.extra          # (a list is the only filter then)
    args = [step.verb, str(step.local), step.remote, "-v",
            *([] if listed else ["--exclude", ".~snapback-*.tmp"]), *CARRY, *step.extra]
    if dry_run:
        args.append("--dry-run")
    progress = os.isatty(1) and not dry_run      # rclone's own display, never in cron
    code, log, _out = run_rclone(binary, args, progress)
    for line in log.splitlines():
        bad = _NOT_UTF8.search(line)
        if bad:
            step.altered.add(bad.group(1))
        match = _LINE.search(line)
        if not match:
            continue
        deleted = match.group("what") == "Deleted" or match.group("skipped") == "delete"
        (step.deleted if deleted else step.sent).append(match.group("path"))
    if code != 0:
        raise SnapbackError(f"sync of the {step.name} to {step.remote} failed: "
                            f"{error_line(log)}")


# A sync cut short inside a step (a test's fault point, ``faults.reached``): rclone
# sends one file, or makes one deletion, and stops; one at a time, in its order.
CUT_SHORT = ["--max-transfer", "1B", "--cutoff-mode", "soft", "--max-delete", "1",
             "--retries", "1", "--transfers", "1", "--checkers", "1"]


def sync(plan: Plan, dry_run: bool) -> list[Step]:
    """Send the backup; return what each step sent and deleted.  The caller holds the
    destination's lock: nothing changes the backup meanwhile."""
    binary = rclone()
    if not steps(plan):
        raise UsageError(f"nothing to send: no backup at {plan.destination} yet")
    if not dry_run:
        fold_journal(plan)
    names = named_objects(plan)
    with tempfile.NamedTemporaryFile(prefix="snapback-objects-", suffix=".txt") as listing:
        listing.write(b"".join(name + b"\0" for name in names or []))
        listing.flush()
        todo = steps(plan, None if names is None else Path(listing.name))
        for step in todo:      # (a failed step stops the sync: the catalog never goes
            faults.point("sync")   # before its objects; a test kills it between steps...)
            if faults.reached("sync"):           # (...or one file into a step)
                step.extra = [*step.extra, *CUT_SHORT]
                try:
                    run_step(binary, step, dry_run)
                finally:
                    faults.die()
            send(binary, step, dry_run)
    return todo


def fold_journal(plan: Plan) -> None:
    """A run killed after some of its commits leaves them in the catalog's journal
    (``catalog.sqlite3-wal``, never sent: it only means something beside its own
    catalog): fold it into the catalog first, else the remote would get a catalog
    older than the history sent with it, naming whole copies the deletions remove."""
    wal = plan.meta_dir / f"{layout.CATALOG}-wal"
    try:
        if os.lstat(wal).st_size == 0:
            return
    except FileNotFoundError:
        return
    from .catalog import open_catalog
    try:
        open_catalog(plan.meta_dir, writable=True).close()    # (closing folds it in)
    except (OSError, sqlite3.Error) as exc:
        raise SnapbackError(f"the catalog's journal {wal} (left by a run that was killed) "
                            f"cannot be folded into the catalog, so it is not sent: {exc}; "
                            "run any backup first") from None
    if os.path.lexists(wal) and os.lstat(wal).st_size > 0:
        raise SnapbackError(f"the catalog's journal {wal} is still there after folding it "
                            "in (is another program using the catalog?): nothing was sent")


def send(binary: str, step: Step, dry_run: bool) -> None:
    """One step; a path whose kind changed (a file where the remote has a folder, or
    back) fails it: those are removed from the remote, and the step runs again.  A
    symlink and a file trade places without a failure (rclone keeps a link as
    ``<name>.rclonelink``, a name of its own), so the mirror's changes are preceded by
    one listing of the remote's mirror that removes such paths first."""
    if step.name == "mirror" and not dry_run:
        step.deleted.extend(clear_kind_changes(binary, step))
    try:
        run_step(binary, step, dry_run)
    except SnapbackError:
        if dry_run:
            raise
        gone = clear_kind_changes(binary, step)
        if not gone:
            raise
        step.sent.clear()
        step.deleted.extend(gone)
        run_step(binary, step, dry_run)


def clear_kind_changes(binary: str, step: Step) -> list[str]:
    """Remove from the remote each path whose kind differs from the local one (a
    folder where the mirror now has a file or a link, a file where it has a folder);
    returns them (none when the remote cannot even be listed)."""
    # --links: a symlink on the remote is listed as <name>.rclonelink (without it, a
    # local remote's symlinks are not listed at all, and a link that became a folder
    # failed every sync: adversary of issue 22)
    code, out, listing = run_rclone(binary, ["lsjson", "-R", "--links", "--no-mimetype",
                                             "--no-modtime", step.remote], False)
    if code != 0:
        return []                              # (the step's own failure is said)
    import json
    gone: list[str] = []
    for entry in sorted(json.loads(listing or "[]"), key=lambda e: e["Path"]):
        rel = entry["Path"]
        if any(rel.startswith(g + "/") for g in gone):
            continue
        there = "dir" if entry["IsDir"] else "file"
        name = rel
        if there == "file" and rel.endswith(LINK_SUFFIX):
            there, name = "link", rel[: -len(LINK_SUFFIX)]
        try:
            st = os.lstat(step.local / name)
        except (FileNotFoundError, NotADirectoryError):
            continue                           # gone here: the sync deletes it
        here = "dir" if stat.S_ISDIR(st.st_mode) else "link" if stat.S_ISLNK(st.st_mode) \
            else "file"
        if there != here:
            verb = "purge" if there == "dir" else "deletefile"
            code, out, _ = run_rclone(binary, [verb, "--links", remote_path(step.remote, rel)],
                                      False)
            if code != 0:
                raise SnapbackError(f"cannot remove {rel} (its kind changed) from "
                                    f"{step.remote}: {error_line(out)}")
            gone.append(rel)
    return gone


def cannot_hold(plan: Plan) -> str | None:
    """One line saying what the remote cannot hold (and where it comes back from), or
    None when it holds everything: asked of rclone (``rclone backend features``)."""
    found = features(remote_root(plan))
    if not found:
        return None
    lacks = []
    system = (found.get("MetadataInfo") or {}).get("System") or {}
    if "mode" not in system:
        lacks.append("file modes")
    if found.get("Name") != "local" and found.get("Features", {}).get("IsLocal") is not True:
        lacks.append("symlinks (sent as .rclonelink files)")
    if not (found.get("Features") or {}).get("CanHaveEmptyDirectories", True):
        lacks.append("empty folders")
    if not lacks:
        return None
    return (f"note: {remote_root(plan)} does not keep {', '.join(lacks)}: snapback fetch puts "
            "them back (modes and empty folders from the catalog)")


def describe(done: list[Step], dry_run: bool, verbose: bool) -> list[str]:
    lines = []
    for step in done:
        if verbose:
            area = step.name.split()[-1]
            lines += [f"sent     {area}: {p}" for p in step.sent]
            lines += [f"deleted  {area}: {p}" for p in step.deleted]
    sent = {s.name: s for s in done}
    parts = []
    for name in ("mirror", "history", "metadata"):
        if name in sent:
            count = sum(len(s.sent) for s in done if s.name in (name, f"catalog {name}"))
            part = f"{name} {count} sent"
            if name == "mirror":
                part += f", {len(sent[name].deleted)} deleted"
            if name == "history" and "pruned history" in sent:
                part += f", {len(sent['pruned history'].deleted)} pruned"
            parts.append(part)
    summary = ", ".join(parts)
    lines.append(f"sync{' (dry run)' if dry_run else ''}: {summary}")
    altered = sorted({name for s in done for name in s.altered})
    if altered:
        lines.append(f"note: {len(altered)} name(s) are not UTF-8 (first: {altered[0]}): rclone "
                     "stores them with U+FFFD for the bad bytes (a local disk excepted), so "
                     "they may not come back under their own name; doit check lists them")
    return lines
