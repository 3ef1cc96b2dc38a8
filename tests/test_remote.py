"""doit sync against a real rclone WebDAV server on loopback."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import pytest
from support import Backup, make_tree, rclone_or_skip


@pytest.fixture
def server(tmp_path: Path):
    """`rclone serve webdav` over a folder, on a free loopback port."""
    binary = rclone_or_skip()
    served = tmp_path / "served"
    served.mkdir()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([binary, "serve", "webdav", str(served), "--addr", f"127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            assert time.time() < deadline and proc.poll() is None, "rclone serve did not start"
            time.sleep(0.05)
    env = {"RCLONE_CONFIG_SNAPTEST_TYPE": "webdav",
           "RCLONE_CONFIG_SNAPTEST_URL": f"http://127.0.0.1:{port}",
           "RCLONE_CONFIG_SNAPTEST_VENDOR": "other"}
    yield served, env, proc
    proc.kill()
    proc.wait()


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_sync_sends_mirror_history_and_catalog_never_the_lock(backup: Backup, server) -> None:
    served, env, _proc = server
    backup.write_plan(remote={"target": "snaptest:offsite"})
    make_tree(backup.src, {"a.txt": "a\n", "docs": {"b.md": "b\n", "old.txt": "old\n"}})
    backup.doit("all", check=True)
    result = backup.doit("sync", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "sync: mirror 3 sent, 0 deleted" in result.stdout
    remote = served / "offsite"
    assert files(remote / "system_snapshot") == files(backup.dest / "system_snapshot")
    assert files(remote / "versioned_backup") == files(backup.dest / "versioned_backup")
    meta = {p.name for p in (remote / ".snapback").iterdir()}
    assert {"runs.jsonl", "catalog.sqlite3"} <= meta
    assert not meta & {"lock", "tmp"}

    # the source changes: the remote mirror follows, the remote history is kept
    (backup.src / "docs" / "old.txt").unlink()
    (backup.src / "a.txt").write_text("a\nmore\n")
    backup.doit("all", check=True)
    again = backup.doit("sync", env=env)
    assert again.returncode == 0, again.stderr
    assert "0 deleted" not in again.stdout.split("history")[0]          # the mirror deleted one
    assert not (remote / "system_snapshot" / "src" / "docs" / "old.txt").exists()
    (kept,) = (remote / "versioned_backup" / "src" / "docs" / "old.txt").glob("old-baseline-*.txt")
    assert kept.read_text() == "old\n"
    assert len(list((remote / "versioned_backup" / "src" / "a.txt" / "a.txt_diffs").iterdir())) == 1
    assert files(remote / "system_snapshot") == files(backup.dest / "system_snapshot")


def test_sync_dry_run_sends_nothing(backup: Backup, server) -> None:
    served, env, _proc = server
    backup.write_plan(remote={"target": "snaptest:offsite"})
    make_tree(backup.src, {"a.txt": "a\n"})
    backup.doit("snapshot", check=True)
    result = backup.doit("sync", "--dry-run", "--verbose", env=env)
    assert result.returncode == 0, result.stderr
    assert "sync (dry run): mirror 1 sent" in result.stdout
    assert "sent     mirror: src/a.txt" in result.stdout
    assert not (served / "offsite").exists()


def test_a_server_that_is_down_fails_clearly_and_loses_nothing(backup: Backup, server) -> None:
    _served, env, proc = server
    backup.write_plan(remote={"target": "snaptest:offsite"})
    make_tree(backup.src, {"a.txt": "a\n"})
    backup.doit("all", check=True)
    proc.kill()
    proc.wait()
    result = backup.doit("sync", env={**env, "RCLONE_LOW_LEVEL_RETRIES": "1",
                                      "RCLONE_RETRIES": "1", "RCLONE_CONTIMEOUT": "2s"})
    assert result.returncode == 1
    assert "sync of the history to snaptest:offsite/versioned_backup failed" in result.stderr
    assert "Traceback" not in result.stderr
    assert backup.doit("verify").returncode == 0                       # nothing lost locally
    assert (backup.mirror / "a.txt").read_text() == "a\n"


def test_unknown_remote_and_missing_rclone_say_what_to_do(backup: Backup) -> None:
    rclone_or_skip()
    make_tree(backup.src, {"a.txt": "a\n"})
    backup.write_plan(remote={"target": "nosuchremote:x"})
    backup.doit("snapshot", check=True)
    result = backup.doit("sync", env={"RCLONE_CONFIG": str(backup.base / "empty.conf")})
    assert result.returncode == 1 and "rclone config" in result.stderr
    missing = backup.doit("sync", env={"SNAPBACK_RCLONE": "/nonexistent/rclone"})
    assert missing.returncode == 1 and "pip install -e '.[remote]'" in missing.stderr
    backup.write_plan()
    no_remote = backup.doit("sync")
    assert no_remote.returncode == 2 and "the plan has no remote" in no_remote.stderr
