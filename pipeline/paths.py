"""PATH as users write it, mapped to (source, path below the source root).

Accepted: a path of a source file or folder (absolute, ``~``, or relative to
the folder the user ran doit from), a path inside the backup (the mirror, or a
history folder or any stored object of it in the versioned backup), or the
``<source name>/<path>`` form that backup runs print.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from . import layout
from .errors import UsageError
from .plan import Plan, Source
from .show import display


class Target(NamedTuple):
    source: Source
    rel: str                    # "" for the whole source

    @property
    def label(self) -> str:
        """The path as messages show it: escaped as ``ls -b`` does (a name that is not
        UTF-8 or holds a newline stays one printable line)."""
        return display(f"{self.source.name}/{self.rel}" if self.rel else self.source.name)


def user_cwd() -> Path:
    """The folder the user ran the command from: doit moves to dodo.py's folder before
    loading it and says where it started (``get_initial_workdir``); the ``snapback``
    command moves nowhere."""
    from doit import get_initial_workdir
    started = get_initial_workdir()
    if started:
        return Path(started)
    try:
        return Path.cwd()
    except OSError as exc:           # (removed under the shell that runs the command)
        from .errors import UsageError
        raise UsageError(f"cannot tell the current folder ({exc.strerror or exc}: removed?): "
                         "run snapback from a folder that exists") from None


def _absolute(text: str) -> Path:
    path = Path(os.path.expanduser(text))
    if not path.is_absolute():
        path = user_cwd() / path
    return Path(os.path.normpath(path))


def _below(path: Path, root: Path) -> str | None:
    if path == root:
        return ""
    if root in path.parents:
        return path.relative_to(root).as_posix()
    return None


def candidates(plan: Plan, text: str) -> list[Target]:
    """Every reading of ``text``, most likely first."""
    out: list[Target] = []
    path = _absolute(text)
    for source in sorted(plan.sources, key=lambda s: len(str(s.path)), reverse=True):
        rel = _below(path, source.path)
        if rel is not None:
            out.append(Target(source, rel))
            break
    by_name = {s.name: s for s in plan.sources}
    for area in (layout.HISTORY, layout.MIRROR):
        rel = _below(path, plan.destination / area)
        if rel:
            name, _, inner = rel.partition("/")
            if name in by_name:
                parts = inner.split("/") if inner else []
                if area == layout.HISTORY and len(parts) >= 3 and parts[-2] in (
                        parts[-3] + "_diffs", parts[-3] + "_versions"):
                    parts = parts[:-2]          # a diff or whole copy in its history folder
                elif area == layout.HISTORY and len(parts) >= 2 and (
                        parts[-1] == parts[-2] or "-baseline-" in parts[-1]):
                    parts = parts[:-1]          # a baseline (or a format-3 current copy)
                out.append(Target(by_name[name], "/".join(parts)))
    head, _, rest = text.strip("/").partition("/")
    if not os.path.isabs(text) and head in by_name:
        out.append(Target(by_name[head], rest))
    return out


def in_source(plan: Plan, text: str) -> Target:
    """``text`` as a path below a source root (explain works on the sources)."""
    path = _absolute(text)
    for source in sorted(plan.sources, key=lambda s: len(str(s.path)), reverse=True):
        rel = _below(path, source.path)
        if rel is not None:
            return Target(source, rel)
    raise UsageError(f"{display(text)}: not in any source of the plan")


def locate(plan: Plan, text: str, known: Callable[[Target], bool]) -> Target:
    """The first reading of ``text`` for which ``known(target)`` is true."""
    found = candidates(plan, text)
    for target in found:
        if known(target):
            return target
    if found:
        raise UsageError(f"{display(text)}: nothing of it is in the backup ({found[0].label})")
    raise UsageError(f"{display(text)}: not in any source of the plan, nor in the backup")
