"""Prune: drop the versions retention does not keep, without ever losing a kept one.

Per file: every version is rebuilt and checked first; the oldest kept version
becomes the baseline and each kept version whose predecessor goes gets a new
diff (or full copy) from the kept version before it.  Stored objects are
immutable, so crash safety comes from the order:

1. each new object is written under a name its history folder never had (the
   standard name with ``-p<N>``, N this prune's run number, unique for ever) and
   checked (each diff applied must give the recorded sha256); a rebased version
   kept whole already (the newest one's copy) gets a hard link, not a copy;
2. once they are on stable storage, one catalog transaction points the kept rows
   at them and deletes the rows of the versions that go: the commit point;
3. what no row names any more is removed (and version folders left empty).

Killed anywhere, the catalog names only files that exist and were never
changed, so every kept version still rebuilds, from this destination or from an
off-site copy that got any prefix of the changes; the next prune (or the next
backup of that file) removes what step 3 did not.  ``freed`` is what leaves the
disk: the blocks of files whose every name goes, less what the rewrite wrote.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from . import bindelta, layout, store, textdiff
from .catalog import CHANGE_KINDS, CONTENT_KINDS, Catalog, Row
from .layout import baseline_name, delta_name, version_names
from .rebuild import versions
from .retention import Policy
from .show import display, human_size, plural


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


def rebased_name(row: Row, kind: str, seq: int) -> bytes:
    """A new object's name: the standard one (SPEC layout), marked with the prune."""
    if kind == "baseline":
        return baseline_name(row.name, f"{row.time[:10]}-p{seq}")
    if kind == "delta":
        return delta_name(row.name, f"{row.time}-p{seq}")
    diff, full = version_names(row.name, f"{row.time}-p{seq}")
    return diff if kind == "diff" else full


def prune_history(catalog: Catalog, root: Path, source: str, history: list[Row],
                  policy: Policy, now: float, max_diff: int, dry_run: bool,
                  seq: int = 0) -> Outcome:
    label = display(f"{source}/{os.fsdecode(history[-1].path)}")
    kept, dropped, expires = plan_history(history, policy, now)
    out = Outcome(label, dropped=len(dropped), kept=len(kept), gone=expires)
    root_b = os.fsencode(root)
    if not dropped and not expires:
        if not dry_run:
            # what a prune killed after its commit left: objects no row names, empty
            # version folders
            for where in {r.store for r in history if r.store}:
                finish(catalog, root_b, source, history[-1].name, os.path.join(root_b, where))
        return out
    if expires:
        out.freed = _released(root_b, history, [])
        if not dry_run:
            _expire(catalog, root_b, history)
        return out
    try:
        content = {row.id: (data, error) for row, data, error in versions(root, history)}
    except MemoryError:
        out.problem = ("too large to rebuild in memory here; nothing of this file was "
                       "pruned")
        out.dropped = 0
        return out
    broken = [r for r in kept if content[r.id][0] is None]
    if broken:
        out.problem = f"version {broken[0].time} cannot be rebuilt ({content[broken[0].id][1]}); " \
                      "nothing of this file was pruned"
        out.dropped = 0
        return out
    chain = [r for r in history if r.kind in CONTENT_KINDS]
    before = {b.id: a.id for a, b in itertools.pairwise(chain)}
    plans: list[tuple[Row, str, bytes]] = []           # (row, new kind, its bytes)
    for index, row in enumerate(kept):
        data = content[row.id][0]
        assert data is not None
        if index == 0:
            if row.kind == "baseline":
                continue
            plans.append((row, "baseline", data))
            continue
        if before.get(row.id) == kept[index - 1].id:
            continue                                     # its object still applies
        previous = content[kept[index - 1].id][0]
        assert previous is not None
        payload = None
        if (textdiff.is_text(previous) and textdiff.is_text(data) and previous != data
                and max(len(previous), len(data)) <= max_diff):
            payload = textdiff.make_diff(previous, data, row.name, row.name)
            if payload is not None and textdiff.apply(previous, payload) != data:
                payload = None
        if payload is not None:
            plans.append((row, "diff", payload))
            continue
        delta = bindelta.make_bytes(previous, data, len(data) // 2) \
            if len(data) >= bindelta.MIN_SIZE else None
        if delta is not None and bindelta.apply(previous, delta) == data:
            plans.append((row, "delta", delta))
        else:
            plans.append((row, "full", data))
    rewritten = {row.id for row, _k, _p in plans}
    out.freed = _released(root_b, dropped, [r for r in history if r.id in rewritten])
    writes = sum(_blocks(p, sparse=_k not in CHANGE_KINDS) for r, _k, p in plans
                 if not (_k not in CHANGE_KINDS and r.copy is not None))
    if writes > out.freed:
        # the objects that go are still held elsewhere (a moved or copied file's shared
        # bytes): pruning would take more room than it frees, so this file is kept
        out.dropped, out.kept, out.freed = 0, len(kept) + len(dropped), 0
        return out
    if dry_run:
        out.freed -= writes
        return out
    store_rel = kept[-1].store
    assert store_rel is not None                       # content rows have a store
    hist = os.path.join(root_b, store_rel)
    staging = os.path.join(os.path.dirname(os.path.dirname(root_b)),
                           os.fsencode(layout.META), os.fsencode(layout.STAGING))
    if not layout.real_dir(staging):
        staging = os.path.dirname(os.path.join(hist, b"x"))
    updates: list[tuple[Row, str, bytes, str]] = []     # (row, kind, object, sha)
    for row, kind, payload in plans:
        obj = rebased_name(row, kind, seq)
        path = os.path.join(hist, obj)
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        if kind not in CHANGE_KINDS and row.copy is not None:
            os.link(os.path.join(hist, row.copy), path)  # the same immutable bytes
        else:
            store.write_new(path, payload, staging, mode=stat_mode(row)
                            if kind not in CHANGE_KINDS else 0o600,
                            sparse=kind not in CHANGE_KINDS)
            out.freed -= os.lstat(path).st_blocks * 512       # blocks, as _released counts
        updates.append((row, kind, obj, hashlib.sha256(payload).hexdigest()))
    # step 2: the commit point (the new objects are settled first: Catalog.commit)
    catalog.begin()
    for row, kind, obj, sha in updates:
        catalog.set_object(row.id, obj, kind, sha)
        if kind not in CHANGE_KINDS and row.copy is not None:
            catalog.set_copy(row.source, row.dir, row.name, row.id, None)
    catalog.drop_versions([r.id for r in dropped])
    catalog.commit()
    finish(catalog, root_b, source, history[-1].name, hist)
    return out


def _blocks(data: bytes, sparse: bool) -> int:
    """What writing ``data`` takes on disk, in 4 KiB blocks (a whole version is
    written sparse: its all-zero blocks are holes)."""
    if not sparse:
        return -(-len(data) // 4096) * 4096
    zero = bytes(4096)
    return sum(4096 for i in range(0, len(data), 4096) if data[i:i + 4096] != zero[:len(
        data[i:i + 4096])])


def _released(root_b: bytes, going: list[Row], rewritten: list[Row]) -> int:
    """The bytes on disk that go when the rows ``going`` go and the rows ``rewritten``
    get new objects: each file no row will name, counted once per inode, and only
    when every one of its names goes (a hard link elsewhere keeps it)."""
    inodes: dict[tuple[int, int], list[int]] = {}      # inode -> [names going, nlink, bytes]
    seen: set[bytes] = set()
    rewritten_ids = {r.id for r in rewritten}
    for row in [*going, *rewritten]:
        if row.store is None:
            continue
        for rel in (row.object, row.copy):
            if rel is None or (row.id in rewritten_ids and rel == row.copy):
                continue                        # a rebased version's whole copy stays
            path = os.path.join(root_b, row.store, rel)
            if path in seen:
                continue
            seen.add(path)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                entry = inodes.setdefault((st.st_dev, st.st_ino),
                                          [0, st.st_nlink, st.st_blocks * 512])
                entry[0] += 1
    return sum(size for going_names, nlink, size in inodes.values() if going_names >= nlink)


def stat_mode(row: Row) -> int:
    return (row.mode & 0o777) if row.mode else 0o600


def finish(catalog: Catalog, root_b: bytes, source: str, name: bytes, hist: bytes) -> None:
    """Step 3 for one history folder (also what a rerun after a crash does)."""
    store_rel = os.path.relpath(hist, root_b)
    layout.sweep(hist, name, catalog.referenced(source, store_rel), keep_current=False)
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
    seq = 0 if dry_run else catalog.run_seq(f"prune-{int(now)}", now)
    for (source, _path), history in histories.items():
        root = layout.history_root(destination, source)
        outcome = prune_history(catalog, root, source, history, policy, now, max_diff, dry_run,
                                seq)
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
