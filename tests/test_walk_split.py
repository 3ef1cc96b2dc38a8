"""A walk split between two processes gives exactly the walk of one.

``scan.walk`` hands the bottom of its stack (the subtrees it would enter last) to a
second process when ``split`` says so (backup runs: ``backup._splitter``, from the
catalog's folder rows).  Here the same real tree is walked once by one process and
then split at every place the stack allows, at the first folder and later ones; each
result must be the one-process result, folder by folder, field by field: files and
their lstat, links, specials, what was skipped and why (ignore files, marker files at
the top of the second process's part), signatures, the shortcut of ``known``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from pipeline import child, scan
from pipeline.backup import _splitter as splitter
from pipeline.scan import walk
from pipeline.selection import for_mode


def _tree(root: Path) -> None:
    for top in ("alpha", "beta", "cache", "delta", "env", "gamma"):
        for sub in ("one", "two", "three"):
            folder = root / top / sub
            folder.mkdir(parents=True)
            for i in range(3):
                (folder / f"f{i}.txt").write_text(f"{top}/{sub}/{i}\n")
        (root / top / "top.md").write_text(top)
    (root / "cache" / "CACHEDIR.TAG").write_text("Signature: 8a477f597d28d172789f06886806bc55")
    (root / "beta" / "two" / "CACHEDIR.TAG").write_text(
        "Signature: 8a477f597d28d172789f06886806bc55")
    (root / "env" / "pyvenv.cfg").write_text("home = /usr/bin\n")
    (root / "gamma" / ".backupignore").write_text("*.txt\n!f1.txt\n")
    (root / "delta" / "node_modules" / "x").mkdir(parents=True)
    (root / "delta" / "link").symlink_to("one/f0.txt")
    os.mkfifo(root / "alpha" / "pipe")
    (root / "top.txt").write_text("top")


def _known(rel: str, sig: bytes, st: os.stat_result):
    """Every third folder (by a digest of its path and signature) in line: its
    subfolders as they are, no files kept."""
    if hashlib.sha256(rel.encode() + sig).digest()[0] % 3:
        return None
    subs = sorted(e.name for e in os.scandir(os.path.join(ROOT[0], rel))
                  if e.is_dir(follow_symlinks=False))
    return subs, {"snapshot": 1}


ROOT: list[str] = []


def _view(result: scan.Scan) -> list[tuple]:
    out = []
    for f in result.folders:
        out.append((f.rel, f.stat.st_ino if f.stat else None,
                    sorted((n, s.st_mode, s.st_size, s.st_mtime_ns, s.st_ino)
                           for n, s in f.files.items()),
                    sorted(f.links), f.subdirs, sorted(f.skipped), f.specials, f.unreadable,
                    f.error, f.sig, f.entered, f.kept))
    return out


@pytest.mark.parametrize("with_known", [False, True])
def test_a_split_walk_is_the_walk_of_one_process(tmp_path, with_known):
    root = tmp_path / "src"
    _tree(root)
    ROOT[:] = [str(root)]
    selector = for_mode((), (), True, ignore_files=(".backupignore",))
    known = _known if with_known else None
    one = _view(walk(root, selector, known=known))
    assert any(f[0] == "delta" for f in one) and not any(f[0] == "cache" for f in one)
    assert any("CACHEDIR.TAG" in why for f in one for _n, why in f[5])
    splits = 0
    for after in range(4):                   # split at the first folder, or a later one
        for cut in range(1, 8):
            seen = []

            def split(stack, after=after, cut=cut, seen=seen):
                seen.append(len(stack))
                if len(seen) > after and len(stack) > cut:
                    return cut
                return None
            two = _view(walk(root, selector, known=known, split=split))
            assert two == one, (after, cut)
            splits += any(n > cut for n in seen[after:])
    assert splits > 10                          # (the walks were split)


def test_a_second_process_that_fails_leaves_its_part_to_the_walk(tmp_path):
    root = tmp_path / "src"
    _tree(root)
    ROOT[:] = [str(root)]
    selector = for_mode((), (), True, ignore_files=(".backupignore",))
    parent = os.getpid()

    def known(rel, sig, st):
        if os.getpid() != parent:
            raise RuntimeError("the second process fails")
        return None
    one = _view(walk(root, selector, known=known))
    two = _view(walk(root, selector, known=known,
                     split=lambda stack: 3 if len(stack) > 3 else None))
    assert two == one


def test_a_backup_run_splits_its_walk_and_sees_what_one_process_sees(backup, monkeypatch):
    """Real runs: the catalog's folder rows weigh the stack; the split run's mirror
    and history are the source's, and a change below the second process's part is
    recorded."""
    b = backup
    for top in range(8):
        for sub in range(4):
            folder = b.src / f"t{top}" / f"s{sub}"
            folder.mkdir(parents=True)
            for i in range(5):
                (folder / f"f{i}.txt").write_text(f"{top} {sub} {i}\n")
    (b.src / "t7" / "s3" / "CACHEDIR.TAG").write_text(
        "Signature: 8a477f597d28d172789f06886806bc55")
    forks = []
    real_fork = child.fork

    def counted(work, keep):
        forks.append(keep)
        return real_fork(work, keep)
    monkeypatch.setattr(child, "fork", counted)
    monkeypatch.setenv("SNAPBACK_WALK_SPLIT", "1")
    monkeypatch.setenv("SNAPBACK_READ_AHEAD", "0")
    if child.cores() < 2:
        pytest.skip("one CPU: the walk is never split")
    code, out = b.run("all")
    assert code == 0, out
    assert forks == []                          # a first backup: no folder rows to weigh
    (b.src / "t6" / "s2" / "f3.txt").write_text("changed\n")
    (b.src / "t7" / "s1" / "new.txt").write_text("new\n")
    (b.src / "t0" / "s0" / "f0.txt").unlink()
    code, out = b.run("all")
    assert code == 0, out
    assert len(forks) == 1, forks
    said = {tuple(line.split()) for line in out.splitlines()}
    assert {("updated", "[mirror+history]", "src/t6/s2/f3.txt"),
            ("new", "[mirror+history]", "src/t7/s1/new.txt"),
            ("deleted", "[mirror+history]", "src/t0/s0/f0.txt")} <= said, out
    assert "3 files" not in out and "1 new, 1 updated, 1 deleted" in out, out
    assert not (b.mirror / "t7" / "s3").exists()
    code, out = b.run("all")
    assert code == 0 and out.count("0 new, 0 updated, 0 deleted, 0 failed") == 2, out
    monkeypatch.setenv("SNAPBACK_WALK_SPLIT", "0")
    forks.clear()
    code, out = b.run("all")
    assert code == 0 and forks == [], out


def test_the_stack_is_cut_where_half_of_the_last_run_s_entries_lie(backup, monkeypatch):
    from pipeline.plan import load
    from pipeline.session import Session
    b = backup
    sizes = {"a": 40, "b": 5, "c": 5, "d": 30, "e": 20}
    for top, count in sizes.items():
        (b.src / top).mkdir(parents=True)
        for i in range(count):
            (b.src / top / f"f{i}").write_text(str(i))
    code, out = b.run("all")
    assert code == 0, out
    monkeypatch.setenv("SNAPBACK_WALK_SPLIT", "50")
    if child.cores() < 2:
        pytest.skip("one CPU: the walk is never split")
    session = Session(load(b.plan))
    try:
        catalog = session.open_catalog()
        for mode in ("snapshot", "versioned"):
            session.folder_rows[(mode, "src")] = catalog.folders_seen(mode, "src")
    finally:
        session.release()
    split = splitter(session, session.plan.sources[0])
    assert split is not None
    # the stack as the walk holds it after the root: its subfolders, a at the top
    stack = [(name, None, ()) for name in reversed(sizes)]
    cut = split(stack)
    # bottom first: e (21), d (31) | c, b, a (6, 6, 41): 52 against 53 entries
    assert cut == 2
    monkeypatch.setenv("SNAPBACK_WALK_SPLIT", "1000")
    assert splitter(session, session.plan.sources[0]) is None
    for odd in ("²", "-1", " 50", "x"):      # (helper-32: "²" was a traceback) the default
        monkeypatch.setenv("SNAPBACK_WALK_SPLIT", odd)
        assert splitter(session, session.plan.sources[0]) is None


def test_a_run_that_cannot_start_a_process_is_the_run_of_one(nobody_backup, monkeypatch):
    """helper-32: a run at its process limit (systemd's TasksMax, ``ulimit -u``) forks
    neither the walk's second process nor the reader: it walks and reads in one, and
    says nothing about it."""
    import subprocess

    from support import NOBODY, as_nobody, tree
    b, python = nobody_backup
    for top in range(6):
        (b.src / f"t{top}").mkdir()
        for i in range(20):
            (b.src / f"t{top}" / f"f{i}.txt").write_text(f"{top} {i}\n")
    monkeypatch.setenv("SNAPBACK_WALK_SPLIT", "1")
    first = as_nobody(b, python, "all")
    assert first.returncode == 0, first.stdout + first.stderr
    for top in range(6):
        (b.src / f"t{top}" / "f3.txt").write_text("changed\n")
    (b.src / "t5" / "new.txt").write_text("new\n")
    limited = subprocess.run([*NOBODY, "prlimit", "--nproc=1", python, "-m", "pipeline",
                              "all", f"config={b.plan}"], capture_output=True, text=True,
                             timeout=120, env={**os.environ, "PWD": str(b.base)})
    assert limited.returncode == 0, limited.stdout + limited.stderr
    assert limited.stderr == "", limited.stderr
    assert "1 new, 6 updated, 0 deleted, 0 failed" in limited.stdout, limited.stdout
    assert tree(b.mirror) == tree(b.src)
