"""The walk: one pass over a source, one ``lstat`` per entry, pruned as it goes.

The result is a list of ``Folder`` records, parents before children, each with
its kept files, symlinks and subfolders, and what it left out and why.  Task
creation turns each folder into one doit subtask; nothing else walks a source.

A backup run also gives each folder a *signature*: a digest of its listing (every
entry's name and lstat: kind, mode, size, mtime, ctime, inode; a subfolder's
kind and inode), its own mode and mtime, and the per-folder ignore files in
force.  When every mode of the run brought the folder in line with exactly this
signature (``known``, from the catalog), nothing in it can have changed since:
the walk keeps no entry of it and judges none against the rules, it only enters
the subfolders it entered then.  Any change to the folder (a file edited,
chmodded, replaced, added, removed, a kind change, an ignore file edited) gives
another signature, and the folder is judged entry by entry as before.
"""

from __future__ import annotations

import hashlib
import marshal
import operator
import os
import pickle
import signal
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import child
from .lstat import Lstat
from .selection import Layer, Rule, Selector, read_layer


@dataclass
class Folder:
    rel: str                                   # "" for the source root, else "a/b"
    stat: os.stat_result | None
    files: dict[str, Lstat] = field(default_factory=dict)   # regular files
    links: dict[str, Lstat] = field(default_factory=dict)   # symlinks (lstat)
    subdirs: list[str] = field(default_factory=list)                 # kept subfolders
    skipped: list[tuple[str, str]] = field(default_factory=list)     # (name, why)
    specials: list[str] = field(default_factory=list)                # fifos, sockets, devices
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (name, why): FAILED
    error: str | None = None                   # the folder could not be listed
    sig: bytes | None = None                   # the walk's signature (backup runs only)
    entered: list[str] = field(default_factory=list)  # subfolders entered, less marked ones
    kept: dict[str, int] | None = None         # in line in every mode: files+links per mode,
                                               # and files/links/skipped left empty
    layers: bytes = b""                        # the ignore files in force (their digests)
    unjudged: bool = False                     # files and links not yet judged (``settle``)

    def label(self, source: str) -> str:
        """The folder as output lines show it: ``<source name>/<rel>``."""
        return f"{source}/{self.rel}" if self.rel else source

    def child(self, name: str) -> str:
        return f"{self.rel}/{name}" if self.rel else name

    def count(self, mode: str) -> int:
        """The files and links the folder keeps (in ``mode``, for a folder in line)."""
        if self.kept is not None:
            return self.kept.get(mode, 0)
        return len(self.files) + len(self.links)


# Given a folder's rel, signature and stat: the subfolders to enter and the files kept
# per mode when every mode of the run holds it in line with that signature, else None.
Known = Callable[[str, bytes, os.stat_result], "tuple[list[str], dict[str, int]] | None"]


@dataclass
class Scan:
    root: Path
    folders: list[Folder]


# Given the walk's stack of folders to enter (bottom: entered last), how many of its
# bottom entries a second process walks (``pipeline.backup._splitter``), or None.
Split = Callable[["list[Entry]"], "int | None"]
Entry = tuple[str, "os.stat_result | None", "tuple[Layer, ...]"]
SPLIT_TRIES = 64          # folders walked, at most, before the walk is split or not at all


def walk(root: Path, selector: Selector, exclude: tuple[Path, ...] = (),
         only: tuple[str, ...] | None = None, known: Known | None = None,
         split: Split | None = None, later: bool = False) -> Scan:
    """Walk ``root``: lstat every entry, never follow a symlink, prune ignored folders.

    ``exclude`` holds absolute folders that are never entered whatever the
    patterns say (the destination itself: no recursive backups).  ``only``
    (for ``explain``) restricts the descent to one chain of folder names, with
    every decision along it made exactly as a full walk makes it.  ``known``
    (backup runs) answers for folders in line with their signature.  ``split``
    (backup runs, two CPUs) hands the folders the walk would enter last to a
    second process (``_Half``); the result is the same list in the same order.
    ``later`` (backup runs): a changed folder's files and links, where no ignore file
    is in force, are judged after the walk, by ``settle`` (the catalog may say the
    rules kept every one of them before).

    Three layers, one function each: the ignore files in force (``_layers``), each
    entry's lstat and the folder's signature (``_listing``), the rules that keep or
    skip each entry (``_judge``).
    """
    scan = Scan(root=root, folders=[])
    try:
        root_stat = os.stat(root)         # the folder the plan names (through a link too)
    except OSError as exc:
        scan.folders.append(Folder("", None, error=_reason(exc)))
        return scan
    walker = _Walker(os.fsencode(root), selector, _identities(exclude), only, known, later)
    stack: list[Entry] = [("", root_stat, ())]
    half: _Half | None = None
    try:
        while stack:
            if split is not None and half is None and len(scan.folders) < SPLIT_TRIES:
                cut = split(stack)
                if cut:
                    try:
                        half = _Half(walker, stack[:cut])
                    except OSError:           # no process or pipe to be had: one walk
                        split = None
                    else:
                        del stack[:cut]
            walker.step(stack, scan)
        if half is not None:
            half.join(scan)
    finally:
        if half is not None:
            half.close()
    return scan


class _Walker:
    """The walk's rules and shortcuts; ``step`` walks the folder on top of the stack."""

    def __init__(self, root_b: bytes, selector: Selector, excluded: set[tuple[int, int]],
                 only: tuple[str, ...] | None, known: Known | None, later: bool = False):
        self.root_b, self.selector, self.excluded = root_b, selector, excluded
        self.only, self.known, self.later = only, known, later
        self.markers = [(name, os.fsencode(name)) for name in selector.markers]
        # folders with a marker file whose parent this walk has not (the other half's)
        self.unplaced: list[tuple[str, str, bool]] = []

    def step(self, stack: list[Entry], scan: Scan) -> None:
        rel, folder_st, layers = stack.pop()
        selector, markers, known = self.selector, self.markers, self.known
        folder = Folder(rel, folder_st)
        scan.folders.append(folder)
        folder_b = os.path.join(self.root_b, os.fsencode(rel)) if rel else self.root_b
        try:
            with os.scandir(folder_b) as it:
                entries = sorted(it, key=_NAME)
        except OSError as exc:
            folder.error = _reason(exc)
            return
        names = {e.name for e in entries}
        layers = _layers(selector, folder_b, rel, names, layers)
        if rel and markers:
            found = next(((m, m_b) for m, m_b in markers if m_b in names), None)
            if found and not selector.reincluded(rel, True, layers):
                # The folder was entered to look for the marker: forget it again.  Its
                # parent's signature says it holds one only when it sees the marker
                # through it (search permission): else it is entered again next run.
                scan.folders.pop()
                seen = os.access(os.path.join(folder_b, found[1]), os.F_OK,
                                 follow_symlinks=False)
                if not _drop_marked(scan, rel, found[0], forget=seen):
                    self.unplaced.append((rel, found[0], seen))
                return
        signing = known is not None and folder_st is not None
        listing, items, dirs = _listing(entries, folder_b, markers, signing)
        if known is not None and folder_st is not None:
            folder.layers = b"".join(layer.digest for layer in layers)
            folder.sig = signature(folder_st, items, layers)
            hit = known(rel, folder.sig, folder_st)
            if hit is not None and all(os.fsencode(n) in dirs for n in hit[0]):
                folder.kept = hit[1]
                folder.subdirs = list(hit[0])
                folder.entered = list(hit[0])
                for name in reversed(hit[0]):
                    stack.append((folder.child(name), dirs[os.fsencode(name)], layers))
                return
        folder.unjudged = self.later and signing and not layers
        children = _judge(folder, listing, selector, layers, self.excluded,
                          files=not folder.unjudged)
        folder.entered = list(folder.subdirs)
        if self.only is not None:
            only = self.only
            depth = len(rel.split("/")) if rel else 0
            children = [c for c in children if depth < len(only)
                        and c[0].rpartition("/")[2] == only[depth]]
        # children are pushed in reverse so that they are visited in name order
        for sub, est in reversed(children):
            stack.append((sub, est, layers))


class _Half:
    """The folders a walk enters last, walked by a second process (``pipeline.child``)
    while the walk goes through the rest: the stack's bottom entries, each a whole
    subtree, are exactly what the walk would do once the entries above them are done,
    so its folders follow the walk's own, in the order one process gives.  What it
    sends is checked; when it sends nothing usable (it failed, it was killed), the walk
    walks that part itself."""

    def __init__(self, walker: _Walker, entries: list[Entry]):
        self.walker, self.entries = walker, entries
        read, write = os.pipe()
        try:
            self.pid: int | None = child.fork(lambda: self._serve(write), keep=(write,))
        except OSError:
            os.close(read)
            raise
        finally:
            os.close(write)
        self.results = os.fdopen(read, "rb")

    def _serve(self, write: int) -> None:
        part = Scan(root=Path(), folders=[])
        stack = list(self.entries)
        while stack:
            self.walker.step(stack, part)
        data = pickle.dumps((len(self.entries), part.folders, self.walker.unplaced),
                            protocol=pickle.HIGHEST_PROTOCOL)
        with os.fdopen(write, "wb") as out:
            out.write(data)

    def join(self, scan: Scan) -> None:
        """The second process's folders after the walk's own (or the walk walks them)."""
        try:
            sent = pickle.load(self.results)
            count, folders, unplaced = sent
            if count != len(self.entries) or not all(isinstance(f, Folder) for f in folders):
                raise ValueError("not this walk's half")
        except Exception:             # anything it sent that is not its part: walk it here
            self.close()
            stack = list(self.entries)
            while stack:
                self.walker.step(stack, scan)
            return
        scan.folders.extend(folders)
        for rel, marker, seen in unplaced:
            _drop_marked(scan, rel, marker, forget=seen)

    def close(self) -> None:
        if self.pid is None:
            return
        pid, self.pid = self.pid, None
        self.results.close()
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(pid, 0)


def _identities(paths: tuple[Path, ...]) -> set[tuple[int, int]]:
    """The destination is recognised by identity, however paths name it (a source given
    through a symlink, a bind mount): never by comparing path strings."""
    out: set[tuple[int, int]] = set()
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            continue
        out.add((st.st_dev, st.st_ino))
    return out


def _layers(selector: Selector, folder_b: bytes, rel: str, names: set[bytes],
            layers: tuple[Layer, ...]) -> tuple[Layer, ...]:
    """The ignore files in force in a folder: its parent's, then its own."""
    for file_name in selector.ignore_files:
        if os.fsencode(file_name) in names:
            layer = _read_ignore_file(folder_b, rel, file_name)
            if layer is not None:
                layers = (*layers, layer)
    return layers


Listing = list[tuple["os.DirEntry[bytes]", "os.stat_result | OSError"]]


def _listing(entries: list[os.DirEntry[bytes]], folder_b: bytes,
             markers: list[tuple[str, bytes]], signing: bool
             ) -> tuple[Listing, list[tuple[bytes | int | bool, ...]], dict[bytes, os.stat_result]]:
    """Each entry's lstat (or why it has none); when ``signing``, the signature's entries
    (kind, mode, size, mtime, ctime, inode; a subfolder's inode and whether it holds a
    marker file) and the subfolders by name."""
    listing: Listing = []
    items: list[tuple[bytes | int | bool, ...]] = []
    dirs: dict[bytes, os.stat_result] = {}
    for entry in entries:
        try:
            lst = entry.stat(follow_symlinks=False)
        except OSError as exc:
            listing.append((entry, exc))
            items.append((entry.name, -1))
            continue
        listing.append((entry, lst))
        if not signing:
            continue
        if stat.S_ISDIR(lst.st_mode):
            dirs[entry.name] = lst
            # whether it holds a marker file (and is left out) is this folder's say
            below = folder_b + b"/" + entry.name + b"/"
            marked = any(os.access(below + m_b, os.F_OK, follow_symlinks=False)
                         for _m, m_b in markers)
            items.append((entry.name, stat.S_IFDIR, lst.st_ino, marked))
        else:
            items.append((entry.name, lst.st_mode, lst.st_size, lst.st_mtime_ns,
                          lst.st_ctime_ns, lst.st_ino))
    return listing, items, dirs


def _judge(folder: Folder, listing: Listing, selector: Selector, layers: tuple[Layer, ...],
           excluded: set[tuple[int, int]], files: bool = True
           ) -> list[tuple[str, os.stat_result]]:
    """Keep or skip each entry by the rules; returns the subfolders to enter.  Not
    ``files``: every file and link is kept for now, and judged by ``settle``."""
    children: list[tuple[str, os.stat_result]] = []
    for entry, est in listing:
        name = os.fsdecode(entry.name)
        if not isinstance(est, os.stat_result):   # never a silent skip: the run fails on it
            folder.unreadable.append((name, f"cannot stat: {_reason(est)}"))
            continue
        child = folder.child(name)
        mode = est.st_mode
        if stat.S_ISDIR(mode):
            if (est.st_dev, est.st_ino) in excluded:
                folder.skipped.append((name + "/", "the backup destination itself"))
                continue
            rule = selector.ignored_by(child, True, layers)
            if rule is not None and not selector.enters(child):
                folder.skipped.append((name + "/", f"ignored by {rule.describe()}"))
                continue
            folder.subdirs.append(name)
            children.append((child, est))
        elif stat.S_ISREG(mode) or stat.S_ISLNK(mode):
            rule = selector.ignored_by(child, False, layers) if files else None
            if rule is not None:
                folder.skipped.append((name, f"ignored by {rule.describe()}"))
                continue
            if stat.S_ISREG(mode):
                folder.files[name] = Lstat(est)
            else:
                folder.links[name] = Lstat(est)
        else:
            folder.specials.append(name)
            folder.skipped.append((name, f"special file ({_kind(mode)}): not backed up"))
    return children


def settle(scan: Scan, selector: Selector, kept_before: Callable[[Folder], bool]) -> None:
    """Judge the files and links the walk left to judge (``walk(later=True)``), of each
    folder but those ``kept_before`` answers for: the catalog says a mode kept exactly
    these files, links and subfolders under the same rules and no ignore file, so the
    rules keep each of them again (they judge a path by its name and kind alone)."""
    for folder in scan.folders:
        if not folder.unjudged:
            continue
        folder.unjudged = False
        if kept_before(folder):
            continue
        skipped = False
        for kept in (folder.files, folder.links):
            for name in list(kept):
                rule = selector.ignored_by(folder.child(name), False)
                if rule is not None:
                    del kept[name]
                    folder.skipped.append((name, f"ignored by {rule.describe()}"))
                    skipped = True
        if skipped:                       # in the walk's order (each entry's name's bytes)
            folder.skipped.sort(key=lambda item: os.fsencode(item[0].removesuffix("/")))


def signature(folder_st: os.stat_result, items: list[tuple[bytes | int | bool, ...]],
              layers: tuple[Layer, ...]) -> bytes:
    """The folder's signature: equal only when the folder, every entry's lstat, which
    subfolders hold a marker file and the ignore files in force are as they were (a
    subfolder's own content is its own).  ``items``: per entry, in name order, (name,
    mode, size, mtime_ns, ctime_ns, inode); (name, S_IFDIR, inode, holds a marker) for
    a subfolder; (name, -1) for one that cannot be examined."""
    data = (SIGNATURE_FORMAT, folder_st.st_mode, folder_st.st_mtime_ns,
            tuple(layer.digest for layer in layers), items)
    # marshal version 2: no back-references, so equal values always give equal bytes
    return hashlib.blake2b(marshal.dumps(data, 2), digest_size=16).digest()


# 2: a folder's row names the subfolders entered less those left out for a marker file
# (``_drop_marked``), and the rules reach below a folder named with a newline; the
# first run after an upgrade judges and signs every folder again, copying nothing (at
# 50,000 files, one run of 5 s instead of 0.7 s).
SIGNATURE_FORMAT = 2
_NAME = operator.attrgetter("name")


def _read_ignore_file(folder: bytes, rel: str, name: str) -> Layer | None:
    """A per-folder ignore file (.backupignore); unreadable means no rules."""
    path = os.path.join(folder, os.fsencode(name))
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None
            data = os.read(fd, 1 << 20)
        finally:
            os.close(fd)
    except OSError:
        return None
    return read_layer(rel, name, data.decode("utf-8", "surrogateescape"))


def _drop_marked(scan: Scan, rel: str, marker: str, forget: bool = True) -> bool:
    """Remove a folder recognised by its marker file from its parent's lists, the
    subfolders entered too: a later run that finds the parent in line with its
    signature (which says which subfolders hold a marker file) does not enter it to
    judge it again (and import pathspec for it); not when ``forget`` is False (the
    signature cannot see the marker: a folder that cannot be searched).  False when
    the parent is not in ``scan`` (the other half of a split walk has it)."""
    parent_rel, _, name = rel.rpartition("/")
    for folder in reversed(scan.folders):
        if folder.rel == parent_rel:
            folder.subdirs.remove(name)
            if forget and name in folder.entered:
                folder.entered.remove(name)
            what = "a Python virtual environment" if marker == "pyvenv.cfg" else "a cache"
            folder.skipped.append((name + "/", f"{what} (holds {marker})"))
            return True
    return False


def du(path: Path) -> tuple[int, int]:
    """The bytes and the number of the files below ``path`` (lstat: links not followed)."""
    size = count = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            try:
                size += os.lstat(os.path.join(dirpath, name)).st_size
                count += 1
            except OSError:
                pass
    return size, count


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "named pipe"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    return "unknown kind"


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


__all__ = ["Folder", "Rule", "Scan", "walk"]


def mode_view(scan: Scan, extra: Selector | None) -> list[Folder]:
    """The folders a mode keeps: the shared walk minus the mode's own ignores."""
    if extra is None:
        return scan.folders
    dropped: set[str] = set()
    out: list[Folder] = []
    for folder in scan.folders:
        parent = folder.rel.rpartition("/")[0]
        if folder.rel and (parent in dropped or folder.rel in dropped):
            dropped.add(folder.rel)
            continue
        view = Folder(folder.rel, folder.stat, error=folder.error,
                      skipped=list(folder.skipped), specials=folder.specials,
                      unreadable=folder.unreadable, sig=folder.sig, entered=folder.entered,
                      kept=folder.kept, layers=folder.layers)
        for name in folder.subdirs:
            rel = folder.child(name)
            rule = extra.ignored_by(rel, True)
            if rule is not None and not extra.enters(rel):
                dropped.add(rel)
                view.skipped.append((name + "/", f"ignored by {rule.describe()}"))
            else:
                view.subdirs.append(name)
        if extra.folders_only or folder.kept is not None:
            view.files, view.links = folder.files, folder.links
            out.append(view)
            continue
        for kind in ("files", "links"):
            for name, st in getattr(folder, kind).items():
                rule = extra.ignored_by(folder.child(name), False)
                if rule is None:
                    getattr(view, kind)[name] = st
                else:
                    view.skipped.append((name, f"ignored by {rule.describe()}"))
        out.append(view)
    return out
