"""Runs in the order they ran, whatever the clock says (a wrong RTC, a VM restored,
faketime): ``--at RUN-ID`` is that run's state exactly; ``--at TIME`` never holds
what a run recorded under a later time; a run whose clock is behind says so."""

from __future__ import annotations

import json
import os

from support import Backup, make_tree


def _run(b: Backup, when: str, *args: str) -> tuple[int, str]:
    os.environ["SNAPBACK_NOW"] = when
    try:
        return b.run(*args)
    finally:
        del os.environ["SNAPBACK_NOW"]


def _restore(b: Backup, at: str) -> tuple[int, str, str | None]:
    into = b.base / f"r-{at}".replace(":", "")
    code, out = b.run("restore", str(b.src / "notes.txt"), "--at", at, "--to", str(into))
    path = into / "notes.txt"
    return code, out, path.read_text() if path.exists() else None


def test_a_clock_set_back_keeps_runs_in_order(backup: Backup) -> None:
    make_tree(backup.src, {"notes.txt": "one\n"})
    code, out = _run(backup, "2030-01-01T12:00:00", "versioned")
    assert code == 0, out
    first = json.loads(backup.runs()[-1])["run_id"]
    (backup.src / "notes.txt").write_text("two\n")
    code, out = _run(backup, "2030-01-01T11:00:00", "versioned")    # the clock went back
    assert code == 0, out
    assert [line for line in out.splitlines() if "clock" in line] == [
        "snapback: this machine's clock (2030-01-01 11:00:00) is behind the last run's "
        f"(2030-01-01 12:00:00, run {first}): this run still comes after it (runs are kept "
        "in the order they ran); check the clock"]
    second = json.loads(backup.runs()[-1])["run_id"]
    assert second != first
    assert _restore(backup, first)[2] == "one\n"          # each run id: that run's state
    assert _restore(backup, second)[2] == "two\n"
    assert _restore(backup, "2030-01-01T12:30")[2] == "two\n"      # after both clocks
    code, out, got = _restore(backup, "2030-01-01T11:30")  # before the first run's clock:
    assert (code, got) == (2, None), out                    # nothing, never run 2's "two"
    code, out = backup.run("verify", "--deep")
    assert code == 0, out


def test_two_runs_under_one_stuck_clock_get_their_own_ids(backup: Backup) -> None:
    """The same second and the same process id (runs in one process): the run id is
    made unique, and each run restores as it left the history."""
    make_tree(backup.src, {"notes.txt": "one\n"})
    assert _run(backup, "2030-01-01T12:00:00", "versioned")[0] == 0
    (backup.src / "notes.txt").write_text("two\n")
    assert _run(backup, "2030-01-01T12:00:00", "versioned")[0] == 0
    first, second = (json.loads(line)["run_id"] for line in backup.runs()[-2:])
    assert first != second
    assert _restore(backup, first)[2] == "one\n"
    assert _restore(backup, second)[2] == "two\n"
