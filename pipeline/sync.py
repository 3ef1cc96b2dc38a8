"""Sync: the backup sent to the plan's remote through rclone.

The order keeps the remote whole at every instant, whatever cuts a sync short
(a network, a quota, a killed rclone): (1) the history's new objects (copied:
stored objects are immutable, so nothing the remote's catalog names is touched),
(2) the mirror's new and changed files (copied; a path whose kind changed is
removed from the remote first), (3) the catalog and the run log, (4) only then
what the new catalog no longer names leaves the remote: the mirror's deletions,
and the history's pruned versions and superseded whole copies.  Cut before (3),
the remote restores as of its old catalog; after, as of the new one.  After a cut
around (3) the remote's mirror differs from its catalog: ``doit fetch`` takes the
mirror as found and says so (the mirror is the latest state; the history is the
record, checked strictly).
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
import stat
from dataclasses import dataclass, field
from pathlib import Path

from . import faults, layout
from .errors import SnapbackError, UsageError
from .plan import Plan
from .rclone import (
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


def steps(plan: Plan) -> list[Step]:
    target = remote_root(plan)
    excludes = [arg for pattern in NEVER_SENT for arg in ("--exclude", pattern)]
    history = (layout.history_root(plan.destination), remote_path(target, layout.HISTORY))
    mirror = (layout.mirror_root(plan.destination), remote_path(target, layout.MIRROR))
    out = [Step("history", "copy", *history),
           Step("mirror", "copy", *mirror),
           # --ignore-times: the catalog keeps its size from run to run, and a remote
           # without modification times or hashes (WebDAV) would keep an old one
           Step("metadata", "copy", plan.meta_dir, remote_path(target, layout.META),
                [*excludes, "--ignore-times"]),
           Step("mirror deletions", "sync", *mirror),
           Step("pruned history", "sync", *history)]
    return [s for s in out if s.local.is_dir()]


def run_step(binary: str, step: Step, dry_run: bool) -> None:
    args = [step.verb, str(step.local), step.remote, "-v", "--exclude", ".~snapback-*.tmp",
            *CARRY, *step.extra]
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


def sync(plan: Plan, dry_run: bool) -> list[Step]:
    """Send the backup; return what each step sent and deleted."""
    binary = rclone()
    todo = steps(plan)
    if not todo:
        raise UsageError(f"nothing to send: no backup at {plan.destination} yet")
    for step in todo:
        faults.point("sync")                     # (a test kills the sync between steps)
        if step.name == "mirror" and not dry_run:
            try:
                run_step(binary, step, dry_run)
            except SnapbackError:
                # a path that changed kind (a file where the remote has a folder, or
                # back): rclone cannot replace one by the other; remove those, again
                step.sent.clear()
                step.deleted.extend(clear_kind_changes(binary, step))
                run_step(binary, step, dry_run)
        else:
            run_step(binary, step, dry_run)      # (a failed step stops the sync: the
    return todo                                  # catalog never goes before its objects)


def clear_kind_changes(binary: str, step: Step) -> list[str]:
    """Remove from the remote each path whose kind differs from the local one (a
    folder where the mirror now has a file or a link, a file where it has a folder)."""
    code, out, listing = run_rclone(binary, ["lsjson", "-R", "--no-mimetype", "--no-modtime",
                                             step.remote], False)
    if code != 0:
        raise SnapbackError(f"cannot list {step.remote}: {error_line(out)}")
    import json
    gone: list[str] = []
    for entry in sorted(json.loads(listing or "[]"), key=lambda e: e["Path"]):
        rel = entry["Path"]
        if any(rel.startswith(g + "/") for g in gone):
            continue
        local = step.local / rel
        try:
            st = os.lstat(local)
        except (FileNotFoundError, NotADirectoryError):
            continue                           # gone here: the sync deletes it
        here_dir = stat.S_ISDIR(st.st_mode)
        if entry["IsDir"] != here_dir:
            verb = "purge" if entry["IsDir"] else "deletefile"
            code, out, _ = run_rclone(binary, [verb, remote_path(step.remote, rel)], False)
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
    return (f"note: {remote_root(plan)} does not keep {', '.join(lacks)}: doit fetch puts "
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
            part = f"{name} {len(sent[name].sent)} sent"
            if name == "mirror" and "mirror deletions" in sent:
                part += f", {len(sent['mirror deletions'].deleted)} deleted"
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
