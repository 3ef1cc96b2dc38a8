"""The floors' walk (``floor_changed.py``'s plain floor, ``floor_contract.py``): one
``os.scandir`` and one lstat per entry, a signature of each folder's listing."""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator
from typing import Any

Folder = tuple[bytes, bytes, list[tuple[bytes, Any]], list[tuple[bytes, Any]], bytes]
# the folders snapback's default rules and rsync's --exclude in the benchmarks leave out
# (bench.NOISE): not walked, so that each floor copies the files the others copy
SKIPPED = {b"__pycache__", b"node_modules", b".venv"}


def folders(src: bytes) -> Iterator[Folder]:
    """(path relative to ``src``, path, entries, files, signature) of each folder: the
    entries (name, lstat) sorted, the regular files among them, and a digest of the
    names, kinds and lstats a run compares."""
    stack = [b""]
    while stack:
        rel = stack.pop()
        here = os.path.join(src, rel) if rel else src
        with os.scandir(here) as it:
            entries = sorted((e.name, e.stat(follow_symlinks=False)) for e in it
                             if e.name not in SKIPPED)
        files: list[tuple[bytes, Any]] = []
        items: list[tuple[Any, ...]] = []
        for name, st in entries:
            if stat.S_ISDIR(st.st_mode):
                stack.append(os.path.join(rel, name) if rel else name)
                items.append((name, st.st_ino))
            elif stat.S_ISREG(st.st_mode):
                files.append((name, st))
                items.append((name, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino))
        yield rel, here, entries, files, hashlib.blake2b(repr(items).encode(),
                                                         digest_size=16).digest()


def mirror_changes(db: Any, mirror: bytes, rel: bytes, files: list[tuple[bytes, Any]]
                   ) -> tuple[bytes, dict[bytes, Any], list[tuple[bytes, Any, tuple[int, ...]]]]:
    """A dirty folder's mirror folder (made if missing), its entries' lstats, and the
    files whose stat is not their row's or whose mirror copy is not as it was left:
    (name, lstat, the stat key to record).  The rows are the floors' ``files`` table."""
    rows = {r[0]: r[1:] for r in db.execute(
        "select name, size, mtime, ctime, ino from files where dir=?", (rel,))}
    there = os.path.join(mirror, rel)
    os.makedirs(there, exist_ok=True)
    with os.scandir(there) as it:
        existing: dict[bytes, Any] = {e.name: e.stat(follow_symlinks=False) for e in it}
    changed: list[tuple[bytes, Any, tuple[int, ...]]] = []
    for name, st in files:
        key = (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
        old = existing.get(name)
        if rows.get(name) != key or old is None or \
                (old.st_size, old.st_mtime_ns) != (st.st_size, st.st_mtime_ns):
            changed.append((name, st, key))
    return there, existing, changed
