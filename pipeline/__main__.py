"""The ``snapback`` console script (``python -m pipeline`` is the same).

The application is ``pipeline.app``; here is only what a command line program
owes its caller: a reader piped into ``head`` ends quietly, status 0.
"""

from __future__ import annotations

import gc
import os
import sys
from typing import Any, NoReturn, TextIO


class QuietPipe:
    """stdout, ending quietly when its reader goes away (``snapback history | head``):
    what is left to write goes to /dev/null, and nobody sees "Broken pipe".  A
    stdout that cannot be written at all (a full disk, /dev/full) is said once on
    stderr and dropped the same way: the output is lost, never the backup or its
    run record.  Put in place before doit is imported (doit keeps the stdout it
    finds then).  stderr is wrapped the same way, with nowhere to say it
    (``what=None``): a message that cannot be written is dropped, and the run's
    status is still its own (a usage error is 2 with stderr a closed pipe)."""

    def __init__(self, out: TextIO, what: str | None = "standard output"):
        self._out = out
        self._what = what

    def write(self, text: str) -> int:
        try:
            return self._out.write(text)
        except OSError as exc:
            self._gone(exc)
            return len(text)

    def flush(self) -> None:
        try:
            self._out.flush()
        except OSError as exc:
            self._gone(exc)

    def _gone(self, exc: OSError) -> None:
        if not isinstance(exc, BrokenPipeError) and self._what is not None:
            try:
                print(f"snapback: {self._what} cannot be written ({exc.strerror or exc});"
                      " the rest of it is dropped, the run goes on", file=sys.stderr)
            except OSError:
                pass
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, self._out.fileno())
        finally:
            os.close(devnull)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._out, name)


def quiet(stream: TextIO, what: str | None = "standard output") -> TextIO:
    """``stream`` as a ``QuietPipe`` (itself if it is one already)."""
    return stream if isinstance(stream, QuietPipe) else QuietPipe(stream, what)  # type: ignore[return-value]


def quiet_streams() -> None:
    """This process's stdout and stderr end quietly when they cannot be written."""
    sys.stdout = quiet(sys.stdout)
    sys.stderr = quiet(sys.stderr, what=None)


INTERRUPTED = 130        # 128 + SIGINT, as a shell reports it


def main(argv: list[str] | None = None) -> int:
    """``snapback [--config PLAN] [COMMAND] [OPTIONS]``; no COMMAND runs ``all``."""
    if sys.stdout is None:                   # started with stdout closed (>&-)
        sys.stdout = open(os.devnull, "w")   # noqa: SIM115  (for the whole process)
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w")   # noqa: SIM115
    quiet_streams()
    words = sys.argv[1:] if argv is None else argv
    try:
        # (inside: importing doit is a tenth of a second, long enough for a Ctrl-C)
        from .app import Snapback
        return Snapback().run(words)
    except KeyboardInterrupt:                # Ctrl-C: not a bug, no traceback
        print("snapback: interrupted; what was committed is kept, and the next run goes "
              "on from there", file=sys.stderr)
        return INTERRUPTED
    finally:
        sys.stdout.flush()


def command() -> NoReturn:
    """``main`` as a process of its own (the console script, ``python -m pipeline``),
    without two costs no run needs:

    - Python's cyclic garbage collector, which goes through every object a run keeps
      (the walk's folders and entries, the catalog's records) again and again to find
      cycles it does not make: 7% of a first backup of 50,000 files, 30 ms of a run
      with no change; the run's peak memory is the same without it (bench/RESULTS.md).
    - The interpreter's teardown, which frees those objects one by one (30 ms at
      5,815 files, more with more).  When ``main`` has returned, what the run writes
      is written, synced and closed (the catalog, the run record, the lock; a run
      killed at any point loses nothing, README "What you can rely on"): the process
      ends once its output is flushed.
    """
    gc.disable()
    try:
        status: int | str | None = main()
    except SystemExit as exc:               # the reporter's status (pipeline/reporter.py)
        status = exc.code
    if status is not None and not isinstance(status, int):
        sys.exit(status)                    # a message: Python prints it (status 1)
    end(status or 0)


def end(status: int) -> NoReturn:
    """End the process with ``status`` once its output is flushed, without the
    interpreter's teardown (``command``; and doit's own process, ``python -m doit`` with
    dodo.py, when its run is done: ``pipeline.reporter``)."""
    if status:
        # A run that did not end cleanly (a failure, Ctrl-C) raised on its way, and a
        # traceback's frames hold what they named in a cycle (a catalog whose opening
        # failed on a full disk kept its -wal and -shm until closed: Catalog closes
        # it itself now, tests/test_exit_teardown.py).  One collection closes what
        # else such a cycle holds, as the teardown did; a clean run keeps none.
        gc.collect()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(status)


if __name__ == "__main__":
    command()
