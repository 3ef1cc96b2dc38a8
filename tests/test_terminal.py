"""A terminal session as a person sees it (issue 16), run in a real pseudo-terminal
(`script`, with a size set: a pty of 0 columns draws no bar): the progress display
(bytes and files of the total, rate, ETA, the folder at work), colours, and the
same run off a terminal: plain lines only."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess

import pytest
from support import SNAPBACK, Backup, make_tree

pytestmark = pytest.mark.skipif(shutil.which("script") is None, reason="needs script(1)")


def in_a_terminal(backup: Backup, *args: str, env: dict[str, str] | None = None) -> str:
    command = " ".join(shlex.quote(a) for a in [*SNAPBACK, *args,
                                                f"config={backup.plan}"])
    result = subprocess.run(["script", "-qec", f"stty cols 120 rows 40; {command}", "/dev/null"],
                            capture_output=True, timeout=300, cwd=backup.base,
                            env={**os.environ, "SNAPBACK_PROGRESS_AFTER": "0", **(env or {})})
    assert result.returncode == 0, result.stdout.decode(errors="replace")
    return result.stdout.decode("utf-8", "replace")


def tree(backup: Backup) -> None:
    make_tree(backup.src, {f"d{d}": {f"f{f}.bin": "x" * 5000 for f in range(20)}
                           for d in range(10)})


def test_a_terminal_gets_a_progress_display_and_colours(backup: Backup) -> None:
    tree(backup)
    # Each folder committed on its own: its lines are printed at its commit, and each
    # redraws the bar while the work goes on.  (With a commit a second this run of a
    # tenth of a second is one commit at its end, and tqdm redraws at most every 0.1 s:
    # a frame of the work is then a matter of timing, CI at 91665c8.)
    out = in_a_terminal(backup, "all", env={"SNAPBACK_COMMIT_EVERY": "0"})
    frames = [part for part in out.split("\r") if "%|" in part]
    assert frames, out[:500]
    # (frames after the work are many, so a frame of the work is looked for)
    working = [f for f in frames if "src/d" in f]              # the folder at work
    assert working, out[:500]
    # both modes' work: 200 files and 1 MB of source, handled once by each mode
    assert any("/400 files" in f and "B/s" in f and "<" in f   # rate, ETA
               and "/2.00MB" in f for f in working), working   # bytes of the total
    assert "\x1b[32mnew     \x1b[0m [mirror+history]" in out  # coloured kind


def test_no_color_is_respected(backup: Backup) -> None:
    tree(backup)
    out = in_a_terminal(backup, "snapshot", env={"NO_COLOR": "1"})
    assert "\x1b[32m" not in out and "\x1b[36m" not in out
    assert any(line.startswith("new      ") and "src/d0/f0.bin" in line
               for line in out.splitlines())


def test_off_a_terminal_only_plain_lines(backup: Backup) -> None:
    tree(backup)
    result = backup.doit("all", check=True, env={"SNAPBACK_PROGRESS_AFTER": "0"})
    assert "\r" not in result.stdout and "\x1b" not in result.stdout
    assert "new      [mirror+history] src/d0/f0.bin" in result.stdout.splitlines()


def test_a_big_file_moves_the_display_while_it_is_copied(backup: Backup) -> None:
    """Issue 25: the display moves by bytes within a big file, not only per file; the
    file's own tick then adds only what its copy did not show, so each byte counts once."""
    from pipeline import store
    from pipeline.plan import load
    from pipeline.session import MOVE_ABOVE, Session
    size = MOVE_ABOVE + 3 * store.CHUNK + 5
    big = backup.src / "big.bin"
    big.write_bytes(os.urandom(1024) * (size // 1024) + b"x" * (size % 1024))
    session = Session(load(backup.plan))
    shown: list[tuple[int, int]] = []
    session.progress = lambda nbytes, files: shown.append((nbytes, files))
    assert session.mover(MOVE_ABOVE - 1) is None           # small files: one tick each
    tmp, copied, _sha = store.copy_to_tmp(bytes(big), bytes(backup.base), hashed=True,
                                          progress=session.mover(size))
    os.unlink(tmp)
    assert copied.st_size == size
    within = [n for n, files in shown if files == 0]
    assert len(within) == size // store.CHUNK + 1 and sum(within) == size
    session.tick(size)
    assert shown[-1] == (0, 1)                  # the file counts; its bytes were shown
    session.tick(10)
    assert shown[-1] == (10, 1)                 # the next file starts from nothing
    shown.clear()
    for _attempt in range(2):                   # a copy tried again (the file changed)
        tmp, _copied, _sha = store.copy_to_tmp(bytes(big), bytes(backup.base),
                                               progress=session.mover(size))
        os.unlink(tmp)
    session.tick(size)
    assert sum(n for n, _files in shown) == size, shown    # never past the file's size
