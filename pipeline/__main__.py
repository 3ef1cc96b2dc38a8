"""The ``snapback`` console script (``python -m pipeline`` is the same).

The application is ``pipeline.app``; here is only what a command line program
owes its caller: a reader piped into ``head`` ends quietly, status 0.
"""

from __future__ import annotations

import os
import sys
from typing import Any, TextIO


class QuietPipe:
    """stdout, ending quietly when its reader goes away (``snapback history | head``):
    what is left to write goes to /dev/null, and nobody sees "Broken pipe".  Put in
    place before doit is imported (doit keeps the stdout it finds then)."""

    def __init__(self, out: TextIO):
        self._out = out

    def write(self, text: str) -> int:
        try:
            return self._out.write(text)
        except BrokenPipeError:
            self._gone()
            return len(text)

    def flush(self) -> None:
        try:
            self._out.flush()
        except BrokenPipeError:
            self._gone()

    def _gone(self) -> None:
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, self._out.fileno())
        finally:
            os.close(devnull)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._out, name)


def main(argv: list[str] | None = None) -> int:
    """``snapback [--config PLAN] [COMMAND] [OPTIONS]``; no COMMAND runs ``all``."""
    if not isinstance(sys.stdout, QuietPipe):
        sys.stdout = QuietPipe(sys.stdout)
    from .app import Snapback
    words = sys.argv[1:] if argv is None else argv
    try:
        return Snapback().run(words)
    finally:
        sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
