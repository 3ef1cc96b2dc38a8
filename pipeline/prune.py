"""Prune: drop the versions retention does not keep, without ever losing a kept one.

Per file: every version is rebuilt and checked first; the oldest kept version
becomes the baseline and each kept version whose predecessor goes gets a new
diff (or full copy) from the kept version before it.  Crash safety comes from
the order, each step atomic:

1. new objects are written under temporary names in the history folder and
   checked (each diff applied must give the recorded sha256);
2. one catalog transaction points the kept rows at them and deletes the rows
   of the versions that go: the commit point;
3. objects no row refers to are removed (and version folders left empty);
4. each new object gets its standard name: a hard link, the row updated, then
   the temporary name removed.

Killed anywhere, the catalog always points at files that exist, so every kept
version still rebuilds; a rerun (``finish``) completes step 3 and 4.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from . import layout, store, textdiff
from .catalog import CONTENT_KINDS, Catalog, Row
from .layout import baseline_name, version_names
from .rebuild import versions
from .retention import Policy
from .show import display, human_size, plural

TMP_MARK = b".~snapback-"


@dataclass
class Outcome:
    label: str
    dropped: int = 0
    kept: int = 0
    freed: int = 0                 # bytes on disk: objects removed minus objects rewritten
    gone: bool = False             # the whole history of a deleted file expired
    problem: str | None = None
    paths: list[bytes] = field(default_factory=list)


def plan_history(history: list[Row], policy: Policy, now: float
                 ) -> tuple[list[Row], list[Row], bool]:
    """(versions kept, versions dropped, whole history expires)."""
    content = [r for r in history if r.kind in CONTENT_KINDS]
    last = history[-1]
    if (policy.keep_deleted is not None and last.kind == "deleted"
            and last.recorded < now - policy.keep_deleted):
        return [], content, True
    kept = policy.keep(content, now)
    ids = {r.id for r in kept}
    dropped = [r for r in content if r.id not in ids]
    # A mode change ("meta") has the bytes of the content version before it: it goes
    # with that version.
    base: Row | None = None
    for row in history:
        if row.kind in CONTENT_KINDS:
            base = row
        elif row.kind == "meta" and (base is None or base.id not in ids):
            dropped.append(row)
    return kept, dropped, False


def canonical(row: Row) -> bytes:
    """The standard name of a row's object (layout of SPEC.md)."""
    if row.kind == "baseline":
        return baseline_name(row.name, row.time[:10])
    diff, full = version_names(row.name, row.time)
    return diff if row.kind == "diff" else full


def prune_history(catalog: Catalog, root: Path, source: str, history: list[Row],
                  policy: Policy, now: float, max_diff: int, dry_run: bool) -> Outcome:
    label = display(f"{source}/{os.fsdecode(history[-1].path)}")
    kept, dropped, expires = plan_history(history, policy, now)
    out = Outcome(label, dropped=len(dropped), kept=len(kept), gone=expires)
    root_b = os.fsencode(root)
    if not dropped and not expires:
        pending = [r for r in history if r.object is not None and TMP_MARK in r.object]
        if pending and not dry_run and pending[-1].store is not None:
            # an earlier prune was killed between its commit and its renames: finish it
            finish(catalog, root_b, source, history[-1].dir, history[-1].name,
                   os.path.join(root_b, pending[-1].store))
        elif not dry_run:
            # empty version folders an earlier prune (or one killed) left behind
            for where in {r.store for r in history if r.store}:
                drop_empty_folders(os.path.join(root_b, where), history[-1].name)
        return out
    for row in dropped:
        if row.object is None or row.store is None:
            continue
        try:
            st = os.lstat(os.path.join(root_b, row.store, row.object))
        except OSError:
            continue
        if st.st_nlink == 1:        # a baseline linked to the current copy frees nothing
            out.freed += min(st.st_size, st.st_blocks * 512)
    if dry_run:
        return out
    if expires:
        _expire(catalog, root_b, history)
        return out
    content = {row.id: (data, error) for row, data, error in versions(root, history)}
    broken = [r for r in kept if content[r.id][0] is None]
    if broken:
        out.problem = f"version {broken[0].time} cannot be rebuilt ({content[broken[0].id][1]}); " \
                      "nothing of this file was pruned"
        out.dropped = 0
        return out
    chain = [r for r in history if r.kind in CONTENT_KINDS]
    before = {b.id: a.id for a, b in itertools.pairwise(chain)}
    updates: list[tuple[Row, str, bytes, str]] = []     # (row, kind, tmp object, sha)
    store_rel = kept[-1].store
    assert store_rel is not None                       # content rows have a store
    hist = os.path.join(root_b, store_rel)
    for index, row in enumerate(kept):
        data = content[row.id][0]
        assert data is not None
        if index == 0:
            if row.kind == "baseline":
                continue
            kind, payload = "baseline", data
        else:
            if before.get(row.id) == kept[index - 1].id:
                continue                                 # its object still applies
            previous = content[kept[index - 1].id][0]
            assert previous is not None
            payload = None
            if (textdiff.is_text(previous) and textdiff.is_text(data) and previous != data
                    and max(len(previous), len(data)) <= max_diff):
                payload = textdiff.make_diff(previous, data, row.name, row.name)
                if payload is not None and textdiff.apply(previous, payload) != data:
                    payload = None
            kind, payload = ("diff", payload) if payload is not None else ("full", data)
        assert payload is not None
        sub = {"baseline": b"", "diff": layout.diffs_dir(row.name),
               "full": layout.versions_dir(row.name)}[kind]
        folder = os.path.join(hist, sub) if sub else hist
        os.makedirs(folder, mode=0o700, exist_ok=True)
        tmp = store.tmp_name(folder)
        store.write_bytes(tmp, payload, mode=stat_mode(row), sparse=kind != "diff")
        out.freed -= store.written_size(tmp, len(payload))     # what the rewrite took
        updates.append((row, kind, os.path.relpath(tmp, hist), hashlib.sha256(payload).hexdigest()))
    # step 2: the commit point
    catalog.begin()
    for row, kind, obj, sha in updates:
        catalog.set_object(row.id, obj, kind, sha)
    catalog.drop_versions([r.id for r in dropped])
    catalog.commit()
    finish(catalog, root_b, source, history[-1].dir, history[-1].name, hist)
    return out


def stat_mode(row: Row) -> int:
    return (row.mode & 0o777) if row.mode else 0o600


def finish(catalog: Catalog, root_b: bytes, source: str, folder: bytes, name: bytes,
           hist: bytes) -> None:
    """Steps 3 and 4 for one history (also what a rerun after a crash does)."""
    rows = catalog.history(source, folder, name)
    store_rel = os.path.relpath(hist, root_b)
    layout.sweep(hist, name, catalog.referenced(source, store_rel), keep_current=True)
    for row in rows:
        if row.object is None or TMP_MARK not in row.object:
            continue
        final = canonical(row)
        tmp_path, final_path = os.path.join(hist, row.object), os.path.join(hist, final)
        store.link_or_copy(tmp_path, final_path)
        catalog.begin()
        catalog.set_object(row.id, final)
        catalog.commit()
        os.unlink(tmp_path)
    drop_empty_folders(hist, name)


def drop_empty_folders(hist: bytes, name: bytes) -> None:
    """Remove ``<name>_diffs/`` and ``<name>_versions/`` from the history folder
    ``hist`` when they hold nothing any more (every diff of the file pruned).  A
    folder that holds anything stays (rmdir removes only an empty one); nothing is
    followed: ``hist`` is opened without following a link, and rmdir does not follow
    one where a folder was (it fails on it, and the link stays)."""
    try:
        fd = os.open(hist, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return                                   # gone, or a link: nothing of ours to tidy
    try:
        for sub in (layout.diffs_dir(name), layout.versions_dir(name)):
            try:
                if stat.S_ISDIR(os.lstat(sub, dir_fd=fd).st_mode):
                    os.rmdir(sub, dir_fd=fd)
            except OSError:
                pass                             # absent, not empty, or not a folder: kept
    finally:
        os.close(fd)


def _expire(catalog: Catalog, root_b: bytes, history: list[Row]) -> None:
    """A deleted file past keep_deleted: its rows, then its objects."""
    catalog.begin()
    catalog.drop_versions([r.id for r in history])
    catalog.commit()
    stores = {r.store for r in history if r.store}
    name = history[-1].name
    source = history[-1].source
    for store_rel in stores:
        hist = os.path.join(root_b, store_rel)
        layout.sweep(hist, name, catalog.referenced(source, store_rel), keep_current=False)
        for sub in (layout.diffs_dir(name), layout.versions_dir(name), b""):
            try:
                os.rmdir(os.path.join(hist, sub) if sub else hist)   # only when empty
            except OSError:
                pass


def run(catalog: Catalog, destination: Path, policy: Policy, now: float, max_diff: int,
        dry_run: bool) -> list[Outcome]:
    """Prune every history of the catalog; return what happened to each that changed."""
    histories: dict[tuple[str, bytes], list[Row]] = {}
    for row in catalog.all_rows():
        histories.setdefault((row.source, row.path), []).append(row)
    outcomes = []
    for (source, _path), history in histories.items():
        root = layout.history_root(destination, source)
        outcome = prune_history(catalog, root, source, history, policy, now, max_diff, dry_run)
        if outcome.dropped or outcome.gone or outcome.problem:
            outcomes.append(outcome)
    return outcomes


def describe(outcomes: list[Outcome], dry_run: bool) -> list[str]:
    lines = []
    verb = "would go" if dry_run else "pruned"
    for o in outcomes:
        if o.problem:
            lines.append(f"FAILED   {o.label}: {o.problem}")
        elif o.gone:
            lines.append(f"{'expired' if not dry_run else 'would expire':<8} {o.label}: deleted "
                         f"from the source long enough ago; its whole history ({o.dropped} "
                         f"versions, {human_size(max(o.freed, 0))})")
        else:
            lines.append(f"{'pruned' if not dry_run else 'prune':<8} {o.label}: {o.dropped} of "
                         f"{o.dropped + o.kept} versions {verb} ({human_size(max(o.freed, 0))})")
    total = max(sum(o.freed for o in outcomes if not o.problem), 0)
    done = [o for o in outcomes if not o.problem]
    failed = len(outcomes) - len(done)
    count = sum(o.dropped for o in outcomes if not o.problem)
    lines.append(f"prune{' (dry run)' if dry_run else ''}: {plural(count, 'version')} of "
                 f"{plural(len(done), 'file')} {verb}, {human_size(total)} freed"
                 + (f"; {plural(failed, 'file')} failed" if failed else ""))
    return lines
