"""Selection: which paths of a source are backed up, and why the others are not.

One engine serves every mode (and later ``explain``): a ``Selector`` holds the
ignore patterns and the exceptions as one gitignore spec (exceptions become
``!`` patterns at the end, so they win), judged by pathspec on the path
relative to the source root, folders with a trailing ``/``.

pathspec judges each path alone; it does not know git's rule that nothing
below an excluded folder comes back.  The walk applies that rule itself: an
ignored folder is pruned (never entered), unless an exception matches the
folder itself or is *anchored* inside it (``build/keep/**`` enters ``build/``).
An unanchored exception (``**/templates/**``, ``*.keep``) re-includes what the
walk reaches, but is no reason to enter ``node_modules/``.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from functools import lru_cache

import pathspec
import pathspec.util

from .ignores import BUILTIN_EXCEPTIONS, BUILTIN_IGNORES, MARKER_FILES

# re2 gives the same answers as the pure-Python backend, 10-20x faster
# (measured: 1.1 us against 16 us per path with the built-in set).
BACKEND = "re2"


@dataclass(frozen=True)
class Rule:
    pattern: str
    origin: str          # "built-in", "ignore", "exceptions", "versioned.ignore", ...

    def describe(self) -> str:
        return f"{self.pattern!r} ({self.origin})"


def pattern_error(pattern: str) -> str | None:
    """Why pathspec cannot use this gitignore pattern, or None."""
    if not pattern.strip():
        return "empty pattern"
    try:
        pathspec.GitIgnoreSpec.from_lines([pattern], backend=BACKEND)
    except Exception as exc:  # pathspec raises several types; all mean "invalid"
        return str(exc) or type(exc).__name__
    return None


def _anchored_segments(pattern: str) -> tuple[str, ...] | None:
    """The segments of an exception anchored at the root, or None if unanchored."""
    body = pattern.rstrip("/")
    if body.startswith("**/") or body == "**":
        return None
    if "/" not in body:
        return None
    return tuple(body.lstrip("/").split("/"))


class Selector:
    """Decides, path by path, what a walk keeps; remembers the deciding rule."""

    def __init__(self, ignores: list[Rule], exceptions: list[Rule], markers: bool):
        self.rules = ignores + exceptions
        lines = [r.pattern for r in ignores] + ["!" + r.pattern for r in exceptions]
        self.spec = pathspec.GitIgnoreSpec.from_lines(lines, backend=BACKEND)
        self.first_exception = len(ignores)
        self.markers = MARKER_FILES if markers else ()
        self.anchored = [s for s in (_anchored_segments(r.pattern) for r in exceptions) if s]
        self.empty = not lines
        # Only folder patterns (".git/"): a file can match only below a matched
        # folder, which the walk prunes, so files need no check (see tasks.mode_view).
        self.folders_only = bool(ignores) and all(
            r.pattern.endswith("/") and not r.pattern.startswith("!") for r in ignores)

    def _check(self, rel: str, is_dir: bool) -> pathspec.util.CheckResult:
        path = rel + "/" if is_dir else rel
        try:
            return self.spec.check_file(path)
        except UnicodeEncodeError:
            # A name that is not UTF-8 (kept by Python as surrogates): the plan,
            # being UTF-8 YAML, cannot spell those bytes, so wildcards decide.
            clean = path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
            return self.spec.check_file(clean)

    def ignored_by(self, rel: str, is_dir: bool) -> Rule | None:
        """The rule that drops ``rel``, or None when it is kept."""
        if self.empty:
            return None
        result = self._check(rel, is_dir)
        if result.include and result.index is not None:
            return self.rules[result.index]
        return None

    def reincluded(self, rel: str, is_dir: bool) -> bool:
        """True when an exception is the last rule matching ``rel``."""
        if self.empty:
            return False
        result = self._check(rel, is_dir)
        return (not result.include and result.index is not None
                and result.index >= self.first_exception)

    def enters(self, rel_dir: str) -> bool:
        """May the walk go into this ignored folder? Only for an anchored exception."""
        parts = rel_dir.split("/")
        return any(_reaches_below(segments, tuple(parts)) for segments in self.anchored)


@lru_cache(maxsize=4096)
def _reaches_below(segments: tuple[str, ...], parts: tuple[str, ...]) -> bool:
    for index, part in enumerate(parts):
        if index >= len(segments):
            return True          # the exception matches an ancestor of this folder
        if segments[index] == "**":
            return True
        if not fnmatchcase(part, segments[index]):
            return False
    return True


def for_mode(plan_ignores: tuple[str, ...], plan_exceptions: tuple[str, ...],
             use_default: bool, extra: tuple[str, ...] = (), extra_origin: str = "") -> Selector:
    """The selector a walk uses: built-ins + plan + (per mode) extra ignores."""
    ignores = [Rule(p, "built-in") for p in BUILTIN_IGNORES] if use_default else []
    ignores += [Rule(p, "ignore") for p in plan_ignores]
    ignores += [Rule(p, extra_origin) for p in extra]
    exceptions = [Rule(p, "built-in exception") for p in BUILTIN_EXCEPTIONS] if use_default else []
    exceptions += [Rule(p, "exceptions") for p in plan_exceptions]
    return Selector(ignores, exceptions, markers=use_default)


def mode_filter(extra: tuple[str, ...], origin: str,
                plan_exceptions: tuple[str, ...], use_default: bool) -> Selector | None:
    """The extra per-mode selection applied on top of the shared walk, or None."""
    if not extra:
        return None
    exceptions = [Rule(p, "built-in exception") for p in BUILTIN_EXCEPTIONS] if use_default else []
    exceptions += [Rule(p, "exceptions") for p in plan_exceptions]
    return Selector([Rule(p, origin) for p in extra], exceptions, markers=False)
