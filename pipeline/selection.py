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

import hashlib
import re
import warnings
from dataclasses import dataclass
from fnmatch import fnmatchcase
from functools import cached_property, lru_cache
from typing import TYPE_CHECKING, NamedTuple

from .ignores import BUILTIN_EXCEPTIONS, BUILTIN_IGNORES, MARKER_FILES

if TYPE_CHECKING:
    import pathspec
    import pathspec.util

# re2 gives the same answers as the pure-Python backend, 10-20x faster
# (measured: 1.1 us against 16 us per path with the built-in set).
BACKEND = "re2"


def compile_spec(lines: list[str]) -> pathspec.GitIgnoreSpec:
    """The gitignore spec of ``lines``.  pathspec (30 ms to import, with the asyncio
    it pulls in, and 5 ms to compile the built-in rules) is imported here, when a
    path is first judged: a run whose folders are all in line with their signature
    judges none (README, "How it works")."""
    import pathspec
    with warnings.catch_warnings():
        # Python's re warns of a "possible nested set" for a pattern holding "[[" (to
        # stderr, every run): pathspec's answer stands, the warning is not the user's
        warnings.simplefilter("ignore", FutureWarning)
        return pathspec.GitIgnoreSpec.from_lines(lines, backend=BACKEND)


# re2 compiles a set of patterns within a memory budget: a set of dozens of long
# patterns, or of a few thousand short lines (a large generated .gitignore), each valid,
# can exceed it (the smallest failing sets found: 7,771 characters of "?", the most
# costly; none at 4,096 or under).  A longer list is compiled in parts of at most this
# many characters (or one line, checked alone by ``pattern_error``).
PART_CHARS = 4096


class Matcher:
    """pathspec's answer for a list of gitignore lines, compiled when first asked.  A
    list over ``PART_CHARS`` is compiled in parts, and the last part with a matching
    line decides, by its own answer: the last matching line of the list, as one set
    answers, except that one set ranks a line matching the path itself above a later
    one matching only a folder above it, and parts do so only within a part (README,
    Selection).  Each part is an re2 set like the whole: matching stays linear in the
    path's length, whatever the patterns (Python's re, with no budget, is not)."""

    def __init__(self, lines: list[str], part_chars: int = PART_CHARS):
        self.lines, self.part_chars = lines, part_chars

    @cached_property
    def parts(self) -> list[tuple[int, pathspec.GitIgnoreSpec]]:
        """(index of the part's first line, its spec), in the list's order."""
        starts, size = [0], 0
        for index, line in enumerate(self.lines):
            if size and size + len(line) > self.part_chars:
                starts.append(index)
                size = 0
            size += len(line)
        ends = [*starts[1:], len(self.lines)]
        return [(start, compile_spec(self.lines[start:end]))
                for start, end in zip(starts, ends, strict=True) if end > start]

    def check(self, path: str) -> tuple[bool | None, int | None]:
        """(whether the deciding line ignores ``path``, its index), or (None, None)."""
        for start, spec in reversed(self.parts):
            result = _check(spec, path)
            if result.index is not None:
                return result.include, start + result.index
        return None, None


# The shape of the versioned mode's rules by default: folders left out by name at any
# depth (``.git/``), and folders whose content is kept by name at any depth (the
# built-in exception ``**/templates/**``), no wildcard, class or escape in a name.
# Such a line matches a path exactly when one of the path's folders has its name.
# A selector made only of these, each name once, judges without pathspec, as
# pathspec does (tests/test_selection_fast.py holds the two against each other).
_NAME = r"([^*?\[\]\\!#/\s]|[^*?\[\]\\!#/\s][^*?\[\]\\/]*[^*?\[\]\\/\s])"
_IGNORED_FOLDER = re.compile(_NAME + "/")
_KEPT_FOLDER = re.compile(r"\*\*/" + _NAME + r"/\*\*")


def _folder_names(ignores: list[Rule], exceptions: list[Rule]) -> list[str] | None:
    """Each rule's folder name when the rules have that shape, else None."""
    names = []
    for rules, shape in ((ignores, _IGNORED_FOLDER), (exceptions, _KEPT_FOLDER)):
        for rule in rules:
            match = shape.fullmatch(rule.pattern)
            if match is None or match.group(1) in (".", ".."):
                return None
            names.append(match.group(1))
    return names if len(set(names)) == len(names) else None


class Rule(NamedTuple):
    pattern: str
    origin: str          # "built-in", "ignore", "exceptions", "docs/.backupignore:3", ...

    def describe(self) -> str:
        return f"{self.pattern!r} ({self.origin})"


@dataclass(frozen=True)
class Layer:
    """The patterns of one per-folder ignore file: they apply to that folder and
    below, relative to it, and override the layers above them, as git's nested
    .gitignore files do."""

    folder: str          # "" for the source root
    rules: tuple[Rule, ...]
    digest: bytes = b""  # of the file's place and text: part of a folder's signature

    @cached_property
    def spec(self) -> Matcher:
        """Compiled when a path below the file's folder is first judged."""
        return Matcher([r.pattern for r in self.rules])

    def check(self, rel: str, is_dir: bool) -> tuple[bool, Rule] | None:
        sub = rel[len(self.folder) + 1:] if self.folder else rel
        include, index = self.spec.check(sub + "/" if is_dir else sub)
        if index is None:
            return None
        return bool(include), self.rules[index]


def read_layer(folder: str, file_name: str, text: str) -> Layer | None:
    """An ignore file's patterns (comments, blanks and invalid lines are skipped), its
    lines as git reads them: ended by a newline alone (a carriage return before it is
    dropped, one elsewhere is part of the line), a byte-order mark before the first
    skipped.  A line with bytes that are not UTF-8 (kept as surrogates by the caller)
    is invalid: no pattern can spell them."""
    rules, lines = [], []
    where = f"{folder}/{file_name}" if folder else file_name
    for number, line in enumerate(text.removeprefix("\ufeff").split("\n"), 1):
        pattern = line[:-1] if line.endswith("\r") else line
        if not pattern.strip() or pattern.startswith("#") or pattern_error(pattern):
            continue
        lines.append(pattern)
        rules.append(Rule(pattern, f"{where}:{number}"))
    if not lines:
        return None
    digest = hashlib.blake2b(f"{where}\0{text}".encode("utf-8", "surrogateescape"),
                             digest_size=16).digest()
    return Layer(folder, tuple(rules), digest)


def _check(spec: pathspec.GitIgnoreSpec, path: str) -> pathspec.util.CheckResult[str]:
    if "\n" in path:
        # pathspec's expressions (``(?:.+/)?name/.*``) end a "." at a newline, so no
        # rule would reach below a folder so named: wildcards decide for it, as below.
        path = path.replace("\n", "\ufffd")
    try:
        return spec.check_file(path)
    except UnicodeEncodeError:
        # A name that is not UTF-8 (kept by Python as surrogates): the patterns,
        # being UTF-8 text, cannot spell those bytes, so wildcards decide.
        clean = path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        return spec.check_file(clean)


# A pattern made of these characters alone is one pathspec accepts (the patterns it
# rejects involve "!" or "\\"; tests/test_selection_fast.py holds this against it),
# up to a length: re2 cannot compile a longer one within its memory budget (the
# shortest found: 8,188 "?"), and that is pathspec's to say.
_PLAIN = re.compile(r"[\w .*?/~+@,=%-]+")
_PLAIN_MAX = 1024


def pattern_error(pattern: str) -> str | None:
    """Why pathspec cannot use this gitignore pattern, or None (a plain pattern, such
    as the versioned mode's default ``.git/``, is checked without importing it)."""
    if not pattern.strip():
        return "empty pattern"
    if "\n" in pattern.rstrip("\n"):      # (a YAML block's last newline is dropped)
        return "a pattern is one line (a newline in a name is matched by ? or *)"
    body = pattern[1:] if pattern.startswith("!") else pattern    # (a re-including line)
    if len(pattern) <= _PLAIN_MAX and body.strip() and _PLAIN.fullmatch(body):
        return None
    try:
        compile_spec([pattern])
    except Exception as exc:  # pathspec raises several types; all mean "invalid"
        text = str(exc) or type(exc).__name__
        if text.startswith("failed to"):          # re2's words, with its expression
            return "too long or complex to match (over the matcher's memory budget)"
        return text
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

    def __init__(self, ignores: list[Rule], exceptions: list[Rule], markers: bool,
                 ignore_files: tuple[str, ...] = ()):
        self.rules = ignores + exceptions
        lines = [r.pattern for r in ignores] + ["!" + r.pattern for r in exceptions]
        self.lines = lines
        self.exceptions = exceptions
        self.ignore_files = ignore_files
        self.first_exception = len(ignores)
        self.markers = MARKER_FILES if markers else ()
        self.anchored = [s for s in (_anchored_segments(r.pattern) for r in exceptions) if s]
        self.empty = not lines
        self.fingerprint = repr((lines, self.markers, self.ignore_files))
        # Only folder patterns (".git/"): a file can match only below a matched
        # folder, which the walk prunes, so files need no check (see tasks.mode_view).
        self.folders_only = bool(ignores) and all(
            r.pattern.endswith("/") and not r.pattern.startswith("!") for r in ignores)
        # each rule's folder name, when the rules have the shape judged without pathspec
        self.folder_names = _folder_names(ignores, exceptions)

    @cached_property
    def spec(self) -> Matcher:
        return Matcher(self.lines)

    @cached_property
    def exception_spec(self) -> Matcher | None:
        return Matcher([r.pattern for r in self.exceptions]) if self.exceptions else None

    def _check(self, rel: str, is_dir: bool) -> tuple[bool | None, int | None]:
        """pathspec's answer for ``rel``: (whether the last matching line ignores it,
        that line's index), (None, None) when none matches."""
        if self.folder_names is not None:
            folders = set(rel.split("/")[:None if is_dir else -1])
            found = [i for i, name in enumerate(self.folder_names) if name in folders]
            if not found:
                return None, None
            # a folder kept by an exception wins over one left out (pathspec: a match
            # of ``name/`` ranks below one of ``**/name/**``); the last line among equals
            return found[-1] < self.first_exception, found[-1]
        return self.spec.check(rel + "/" if is_dir else rel)

    def decide(self, rel: str, is_dir: bool, layers: tuple[Layer, ...] = ()
               ) -> tuple[bool, Rule | None]:
        """(kept?, the rule that decided, if any).

        The deepest per-folder ignore file with a matching pattern decides; else
        the plan (built-ins, ``ignore``, with ``exceptions`` last).  The plan's
        exceptions re-include what an ignore file dropped, too.
        """
        for layer in reversed(layers):
            found = layer.check(rel, is_dir)
            if found is not None:
                ignored, rule = found
                if ignored and self.exception_spec is not None:
                    include, index = self.exception_spec.check(rel + "/" if is_dir else rel)
                    if include and index is not None:
                        return True, self.exceptions[index]
                return not ignored, rule
        if self.empty:
            return True, None
        include, index = self._check(rel, is_dir)
        if index is None:
            return True, None
        return not include, self.rules[index]

    def ignored_by(self, rel: str, is_dir: bool, layers: tuple[Layer, ...] = ()) -> Rule | None:
        """The rule that drops ``rel``, or None when it is kept."""
        kept, rule = self.decide(rel, is_dir, layers)
        return None if kept else rule

    def reincluded(self, rel: str, is_dir: bool, layers: tuple[Layer, ...] = ()) -> bool:
        """True when a re-including rule (an exception, a ``!`` line) decided ``rel``."""
        kept, rule = self.decide(rel, is_dir, layers)
        return kept and rule is not None

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
             use_default: bool, extra: tuple[str, ...] = (), extra_origin: str = "",
             ignore_files: tuple[str, ...] = ()) -> Selector:
    """The selector a walk uses: built-ins + plan + (per mode) extra ignores."""
    ignores = [Rule(p, "built-in") for p in BUILTIN_IGNORES] if use_default else []
    ignores += [Rule(p, "ignore") for p in plan_ignores]
    ignores += [Rule(p, extra_origin) for p in extra]
    exceptions = [Rule(p, "built-in exception") for p in BUILTIN_EXCEPTIONS] if use_default else []
    exceptions += [Rule(p, "exceptions") for p in plan_exceptions]
    return Selector(ignores, exceptions, markers=use_default, ignore_files=ignore_files)


def mode_filter(extra: tuple[str, ...], origin: str,
                plan_exceptions: tuple[str, ...], use_default: bool) -> Selector | None:
    """The extra per-mode selection applied on top of the shared walk, or None."""
    if not extra:
        return None
    exceptions = [Rule(p, "built-in exception") for p in BUILTIN_EXCEPTIONS] if use_default else []
    exceptions += [Rule(p, "exceptions") for p in plan_exceptions]
    return Selector([Rule(p, origin) for p in extra], exceptions, markers=False)
