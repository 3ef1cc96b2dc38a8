"""Off-site copies you can come back from (issue 15), against real rclone processes:
a local remote, `rclone serve webdav` on loopback, and a `crypt` remote over a local
one.  The machine is lost (the destination and the sources are deleted); the backup
comes back with `doit fetch`, `doit verify --deep` is clean, every run restores
exactly as from the original, and `doit check` finds a byte flipped on the remote."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import stat
import subprocess
import time
from pathlib import Path

import pytest
from support import Backup, Link, make_tree, rclone_or_skip, tree

from pipeline import errors
from pipeline.rclone import rclone

# Before issue 14's exit statuses are merged, a refused command exits 1 on this branch.
INVALID = errors.INVALID
LOCKED = errors.LOCKED


def _webdav(binary: str, served: Path) -> tuple[subprocess.Popen, int]:
    """`rclone serve webdav` over a folder, on a free loopback port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([binary, "serve", "webdav", str(served), "--addr",
                             f"127.0.0.1:{port}"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            assert time.time() < deadline and proc.poll() is None, "rclone serve did not start"
            time.sleep(0.05)


@pytest.fixture(params=["local", "webdav", "crypt"])
def remote(request, tmp_path: Path):
    """(rclone target, environment that configures it, the folder that holds its files):
    remotes configured the way the README says, with RCLONE_CONFIG_* variables."""
    binary = rclone_or_skip()
    env = {"RCLONE_CONFIG": str(tmp_path / "no-rclone.conf")}   # nothing of the user's
    store = tmp_path / "remote-files"
    store.mkdir()
    proc = None
    if request.param == "local":
        env["RCLONE_CONFIG_SNAPLOCAL_TYPE"] = "local"
        target = f"snaplocal:{store}/backups"
    elif request.param == "webdav":
        proc, port = _webdav(binary, store)
        env.update({"RCLONE_CONFIG_SNAPDAV_TYPE": "webdav",
                    "RCLONE_CONFIG_SNAPDAV_URL": f"http://127.0.0.1:{port}",
                    "RCLONE_CONFIG_SNAPDAV_VENDOR": "other"})
        target = "snapdav:backups"
    else:
        password = subprocess.run([binary, "obscure", "correct horse battery staple"],
                                  capture_output=True, text=True, check=True).stdout.strip()
        env.update({"RCLONE_CONFIG_SNAPSAFE_TYPE": "crypt",
                    "RCLONE_CONFIG_SNAPSAFE_REMOTE": str(store / "encrypted"),
                    "RCLONE_CONFIG_SNAPSAFE_PASSWORD": password})
        target = "snapsafe:backups"
    yield request.param, target, env, store
    if proc is not None:
        proc.kill()
        proc.wait()


def _run_ids(b: Backup) -> list[str]:
    return [json.loads(line)["run_id"] for line in b.runs()]


def _restore_each_run(b: Backup, run_ids: list[str], into: Path, env: dict) -> dict:
    out = {}
    for run_id in run_ids:
        folder = into / run_id
        result = b.doit("restore", "src", "--at", run_id, "--to", str(folder), env=env)
        assert result.returncode == 0, result.stdout + result.stderr
        out[run_id] = tree(folder, with_mtime=True)
    return out


def _stored_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def test_the_machine_is_lost_and_everything_comes_back(backup: Backup, remote) -> None:
    kind, target, env, store = remote
    b = backup
    b.write_plan(remote={"target": target})
    # three backups, with edits, deletions, symlinks, empty folders and a 0600 secret
    make_tree(b.src, {"notes.md": "one\ntwo\n", "secret.txt": "pin 1234\n",
                      "docs": {"a.txt": "a\n", "old.txt": "old\n", "empty": {}},
                      "bin.dat": bytes(range(256)), "link": Link("notes.md"),
                      "dangling": Link("../nowhere"), "templates": {}})
    os.chmod(b.src / "secret.txt", 0o600)
    os.chmod(b.src / "docs" / "empty", 0o750)
    b.doit("all", "--note", "first", check=True)
    (b.src / "notes.md").write_text("one\ntwo\nthree\n")
    (b.src / "docs" / "old.txt").unlink()
    (b.src / "secret.txt").write_text("pin 5678\n")
    os.symlink("docs/a.txt", b.src / "to-a")
    (b.src / "newdir" / "deeper").mkdir(parents=True)
    b.doit("all", check=True)
    shutil.rmtree(b.src / "docs")
    (b.src / "link").unlink()
    os.symlink("secret.txt", b.src / "link")
    (b.src / "bin.dat").write_bytes(bytes(range(255, -1, -1)))
    os.chmod(b.src / "notes.md", 0o640)
    b.doit("all", check=True)
    runs = _run_ids(b)
    assert len(runs) == 3
    expected = _restore_each_run(b, runs, b.base / "before", env)
    mirror = tree(b.mirror, with_mtime=True)
    history = tree(b.versions)
    assert expected[runs[0]]["docs/empty"][0] == "dir"          # the story has what it claims
    assert expected[runs[2]]["link"] == ("link", "secret.txt", *expected[runs[2]]["link"][2:])

    sent = b.doit("sync", env=env)
    assert sent.returncode == 0, sent.stdout + sent.stderr
    notes = [line for line in sent.stdout.splitlines() if line.startswith("note:")]
    if kind == "local":
        assert notes == []                                     # it keeps modes and symlinks
        on_remote = store / "backups"
        assert (on_remote / ".snapback" / "catalog.sqlite3").stat().st_mode & 0o777 == 0o600
        assert (on_remote / "system_snapshot" / "src" / "secret.txt").stat().st_mode & 0o777 \
            == 0o600
        assert os.readlink(on_remote / "system_snapshot" / "src" / "link") == "secret.txt"
    else:
        assert len(notes) == 1 and "file modes" in notes[0] and "symlinks" in notes[0], sent.stdout
    clean = b.doit("check", env=env)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "0 problems" in clean.stdout

    # the machine is lost: the backup and the sources are gone.  README, "Getting
    # everything back after losing the machine", step by step: (1) snapback and rclone
    # are installed (this venv); (2) the remote is configured (``env``); (3) the plan is
    # back, pointing at a new destination, its sources gone;
    shutil.rmtree(b.dest)
    shutil.rmtree(b.src)
    b.dest = b.base / "new-laptop" / "backups"
    b.write_plan(remote={"target": target})
    # (4) doit fetch
    fetched = b.doit("fetch", env=env)
    assert fetched.returncode == 0, fetched.stdout + fetched.stderr
    assert "snapback verify --deep" in fetched.stdout
    assert os.stat(b.dest).st_mode & 0o777 == 0o700
    assert os.stat(b.meta / "catalog.sqlite3").st_mode & 0o777 == 0o600
    # (5) doit verify --deep
    deep = b.doit("verify", "--deep", env=env)
    assert deep.returncode == 0, deep.stdout + deep.stderr
    assert "0 problems" in deep.stdout
    assert tree(b.mirror, with_mtime=True) == mirror          # bytes, modes, mtimes, links
    assert {k: v[:2] for k, v in tree(b.versions).items()} == \
        {k: v[:2] for k, v in history.items()}                 # every stored object and link
    # (6) doit restore, at every run
    assert _restore_each_run(b, runs, b.base / "after", env) == expected
    latest = b.doit("restore", "src", "--from", "snapshot", "--to", str(b.base / "snap"), env=env)
    assert latest.returncode == 0, latest.stderr
    assert tree(b.base / "snap") == {k: v[:3] if v[0] != "link" else v[:2]
                                    for k, v in expected[runs[2]].items()}
    # (7) doit check
    assert b.doit("check", env=env).returncode == 0

    # a byte flipped on the remote is found, and named
    if kind == "crypt":                    # its name on the remote is encrypted
        name = subprocess.run([rclone(), "cryptdecode", "--reverse", "snapsafe:",
                               "backups/system_snapshot/src/bin.dat"], capture_output=True,
                              text=True, env={**os.environ, **env}, check=True).stdout
        victim = store / "encrypted" / name.split()[-1]
    else:
        victim = next(p for p in _stored_files(store)
                      if p.name == "bin.dat" and "system_snapshot" in str(p))
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))
    damaged = b.doit("check", env=env)
    assert damaged.returncode == 1, damaged.stdout + damaged.stderr
    problems = [line for line in damaged.stdout.splitlines() if line.startswith("damaged")]
    assert len(problems) == 1, damaged.stdout
    assert "system_snapshot/src/bin.dat" in problems[0]
    assert "Traceback" not in damaged.stderr


@pytest.fixture
def local_remote(backup: Backup, tmp_path: Path):
    rclone_or_skip()
    env = {"RCLONE_CONFIG": str(tmp_path / "no-rclone.conf"),
           "RCLONE_CONFIG_SNAPLOCAL_TYPE": "local"}
    root = tmp_path / "remote"
    backup.write_plan(remote={"target": f"snaplocal:{root}"})
    make_tree(backup.src, {"a.txt": "a\n", "sub": {"b.txt": "b\n"}, "l": Link("a.txt")})
    backup.doit("all", check=True)
    assert backup.doit("sync", env=env).returncode == 0
    return env, root


def test_check_names_missing_and_extra_files(backup: Backup, local_remote) -> None:
    env, root = local_remote
    (root / "system_snapshot" / "src" / "sub" / "b.txt").unlink()
    (root / "versioned_backup" / "src" / "stray.bin").write_bytes(b"x")
    result = backup.doit("check", env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "missing  system_snapshot/src/sub/b.txt" in result.stdout
    assert "extra    versioned_backup/src/stray.bin" in result.stdout
    assert "2 problems" in result.stdout
    assert result.stderr.strip().splitlines()[-1].startswith("snapback: the remote")


def test_check_sees_a_backup_run_since_the_last_sync(backup: Backup, local_remote) -> None:
    env, _root = local_remote
    (backup.src / "a.txt").write_text("a\nb\n")
    backup.doit("all", check=True)
    result = backup.doit("check", env=env)
    assert result.returncode == 1
    assert "damaged  .snapback/catalog.sqlite3 (differs: a run since the last doit sync" \
        in result.stdout
    assert backup.doit("sync", env=env).returncode == 0
    assert backup.doit("check", env=env).returncode == 0


def test_fetch_refuses_a_destination_that_holds_a_backup_unless_forced(
        backup: Backup, local_remote) -> None:
    env, _root = local_remote
    (backup.mirror / "a.txt").write_text("changed here\n")
    before = tree(backup.dest)
    refused = backup.doit("fetch", env=env)
    assert refused.returncode == INVALID
    assert "already holds a backup" in refused.stderr and "--force" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert tree(backup.dest) == before
    forced = backup.doit("fetch", "--force", env=env)
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert (backup.mirror / "a.txt").read_text() == "a\n"
    assert backup.doit("verify", "--deep").returncode == 0


@pytest.mark.parametrize("tamper", [
    "insert into mirror (source, dir, name, kind, mode, mtime_ns) values "
    "('src', cast('../../../outside' as blob), cast('madedir' as blob), 'dir', 511, 1)",
    "insert into mirror (source, dir, name, kind, mode, mtime_ns) values "
    "('../../outside', cast('' as blob), cast('victim' as blob), 'dir', 511, 1)",
    "update versions set source='../../outside', store=cast('victim' as blob), "
    "object=cast('v.txt' as blob), mode=33279 where name=cast('a.txt' as blob)",
])
def test_a_hostile_remote_catalog_changes_nothing_outside(backup: Backup, local_remote,
                                                            tamper: str) -> None:
    """helper-66: a remote's catalog whose rows climbed out of the backup made fetch
    create a 0777 folder, and chmod a folder and a file, outside the destination."""
    env, root = local_remote
    outside = backup.base / "outside"
    (outside / "victim").mkdir(parents=True)
    (outside / "victim" / "v.txt").write_text("mine\n")
    os.chmod(outside / "victim" / "v.txt", 0o600)
    os.chmod(outside / "victim", 0o700)
    with sqlite3.connect(root / ".snapback" / "catalog.sqlite3") as db:
        db.execute(tamper)
    shutil.rmtree(backup.dest)
    result = backup.doit("fetch", env=env)
    said = result.stdout + result.stderr
    assert result.returncode == 1, said
    assert "refusing a path the catalog names outside the backup" in said
    assert "Traceback" not in said
    assert sorted(p.name for p in outside.iterdir()) == ["victim"]
    assert stat.S_IMODE((outside / "victim").stat().st_mode) == 0o700
    assert stat.S_IMODE((outside / "victim" / "v.txt").stat().st_mode) == 0o600


def test_fetch_and_check_say_what_is_wrong_in_one_line(backup: Backup, tmp_path: Path) -> None:
    rclone_or_skip()
    env = {"RCLONE_CONFIG": str(tmp_path / "no-rclone.conf"),
           "RCLONE_CONFIG_SNAPLOCAL_TYPE": "local"}
    no_remote = backup.doit("fetch", env=env)
    assert no_remote.returncode == INVALID and "the plan has no remote" in no_remote.stderr
    assert backup.doit("check", env=env).returncode == INVALID
    backup.write_plan(remote={"target": f"snaplocal:{tmp_path / 'empty'}"})
    nothing = backup.doit("fetch", env=env)
    assert nothing.returncode == 1 and "no backup at snaplocal:" in nothing.stderr
    assert not backup.dest.exists()                      # nothing written
    extra = backup.doit("fetch", "some/path", env=env)
    assert extra.returncode == INVALID and "takes no PATH" in extra.stderr
    for result in (no_remote, nothing, extra):
        assert "Traceback" not in result.stderr


def test_fetch_and_check_wait_for_the_lock(backup: Backup, local_remote) -> None:
    env, _root = local_remote
    import fcntl  # another run holds the lock (as a run takes it: flock)
    fd = os.open(backup.meta / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(fd, b"pid 1, started 2026-11-25 10:00:00, doit verify\n")
        for args in (("check",), ("fetch", "--force")):
            result = backup.doit(*args, env=env)
            assert result.returncode == LOCKED, result.stderr
            assert "another snapback run holds" in result.stderr
            assert "doit verify" in result.stderr
    finally:
        os.close(fd)


def test_fetch_and_check_are_listed_and_described(backup: Backup) -> None:
    listing = backup.doit("list")
    assert listing.returncode == 0
    assert "fetch" in listing.stdout and "bring the backup back" in listing.stdout
    assert "check" in listing.stdout and "compare the remote with the catalog" in listing.stdout
    helped = backup.doit("help", "fetch")
    assert helped.returncode == 0, helped.stderr
    assert "--force" in helped.stdout and "bring the backup back" in helped.stdout


def test_what_the_remote_lost_the_catalog_puts_back(backup: Backup, tmp_path: Path) -> None:
    """A remote without empty folders (S3, B2) or symlinks: fetch makes them from the
    catalog, with their modes."""
    rclone_or_skip()
    env = {"RCLONE_CONFIG": str(tmp_path / "no-rclone.conf"),
           "RCLONE_CONFIG_SNAPLOCAL_TYPE": "local"}
    root = tmp_path / "remote"
    backup.write_plan(remote={"target": f"snaplocal:{root}"})
    make_tree(backup.src, {"a.txt": "a\n", "empty": {}, "l": Link("a.txt")})
    os.chmod(backup.src / "empty", 0o705)
    backup.doit("all", check=True)
    assert backup.doit("sync", env=env).returncode == 0
    mirror, history = tree(backup.mirror), tree(backup.versions)
    (root / "system_snapshot" / "src" / "empty").rmdir()
    shutil.rmtree(backup.dest)
    fetched = backup.doit("fetch", env=env)
    assert fetched.returncode == 0, fetched.stdout + fetched.stderr
    assert "0 symlink(s), 1 empty folder(s) put back" in fetched.stdout   # (the history's
    # symlinks are rows of the catalog, with their targets: no file on any remote)
    assert tree(backup.mirror) == mirror and tree(backup.versions) == history
    assert backup.doit("verify", "--deep").returncode == 0
    carry_on = backup.doit("all")                          # README checklist, step 7
    assert carry_on.returncode == 0, carry_on.stdout + carry_on.stderr
    assert " 0 new, 0 updated, 0 deleted, 0 failed" in carry_on.stdout, carry_on.stdout
    assert tree(backup.mirror) == mirror
    assert backup.doit("sync", env=env).returncode == 0
    assert backup.doit("check", env=env).returncode == 0


def test_a_name_rclone_cannot_keep_is_said_never_silent(backup: Backup, tmp_path: Path) -> None:
    rclone_or_skip()
    env = {"RCLONE_CONFIG": str(tmp_path / "no-rclone.conf"),
           "RCLONE_CONFIG_SNAPLOCAL_TYPE": "local"}
    backup.write_plan(remote={"target": f"snaplocal:{tmp_path / 'remote'}"})
    make_tree(backup.src, {"ok.txt": "a\n"})
    (backup.src / os.fsdecode(b"latin1-\xe9\xff.txt")).write_bytes(b"x")
    backup.doit("snapshot", check=True)
    sent = backup.doit("sync", env=env)
    assert sent.returncode == 0, sent.stderr
    notes = [line for line in sent.stdout.splitlines() if "not UTF-8" in line]
    assert len(notes) == 1 and "latin1-" in notes[0], sent.stdout


def test_fetch_never_follows_a_link_planted_on_the_remote(backup: Backup, local_remote,
                                                          tmp_path: Path) -> None:
    """A remote copy of the mirror whose file and folder were replaced by links to
    places outside: fetch names them and changes nothing there."""
    env, root = local_remote
    victim = tmp_path / "victim.txt"
    victim.write_text("victim\n")
    os.chmod(victim, 0o666)
    os.utime(victim, (978307200, 978307200))
    outside = tmp_path / "outside"
    outside.mkdir()
    os.chmod(outside, 0o777)
    mirror = root / "system_snapshot" / "src"
    planted = next(p for p in sorted(mirror.iterdir()) if p.is_file() and not p.is_symlink())
    planted.unlink()
    os.symlink(victim, planted)
    shutil.rmtree(mirror / "sub")
    os.symlink(outside, mirror / "sub")
    shutil.rmtree(backup.dest)
    result = backup.doit("fetch", env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "not followed" in result.stdout
    assert stat.S_IMODE(victim.stat().st_mode) == 0o666
    assert victim.stat().st_mtime == 978307200
    assert stat.S_IMODE(outside.stat().st_mode) == 0o777 and list(outside.iterdir()) == []
