"""The rules judged without pathspec (pipeline/selection.py): a selector made only of
folders left out by name (``name/``) and folders kept by name (``**/name/**``), the
versioned mode's by default, answers as pathspec does; anything else is pathspec's
to judge; a pattern ``pattern_error`` passes without pathspec is one pathspec accepts."""

from __future__ import annotations

import os
import shutil

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import INVALID, Backup, make_tree

from pipeline.selection import Rule, Selector, _check, compile_spec, pattern_error

NAMES = [".git", "templates", "a", "node_modules", "b c", "é"]


@st.composite
def selectors(draw: st.DrawFn) -> Selector:
    names = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=5, unique=True))
    split = draw(st.integers(1, len(names)))
    return Selector([Rule(f"{n}/", "versioned.ignore") for n in names[:split]],
                    [Rule(f"**/{n}/**", "exceptions") for n in names[split:]], markers=False)


@settings(max_examples=500, deadline=None)
@given(selectors(), st.lists(st.sampled_from([*NAMES, "x", "git", ".gitx", "templates2"]),
                             min_size=1, max_size=4), st.booleans())
def test_folder_names_are_judged_as_pathspec_judges_them(selector: Selector,
                                                         parts: list[str], is_dir: bool
                                                         ) -> None:
    assert selector.folder_names is not None
    rel = "/".join(parts)
    result = _check(compile_spec(selector.lines), rel + "/" if is_dir else rel)
    assert selector._check(rel, is_dir) == (result.include, result.index), selector.lines


def test_the_versioned_mode_s_default_rules_are_judged_without_pathspec() -> None:
    from pipeline.selection import mode_filter
    selector = mode_filter((".git/",), "versioned.ignore", (), True)
    assert selector is not None and selector.folder_names == [".git", "templates"]


@pytest.mark.parametrize(("ignores", "exceptions"), [
    ([".git"], []), (["/.git/"], []), (["a/b/"], []), (["*.git/"], []), (["gi?/"], []),
    (["[ab]/"], []), (["\\#x/"], []), (["!x/"], []), (["**/x/**"], []), (["x/**"], []),
    (["./"], []), (["../"], []), ([" x/"], []), (["x /"], []), (["x/", "x/"], []),
    ([".git/"], [".git/"]), ([".git/"], ["**/.git/**"]), ([".git/"], ["keep/"]),
    ([".git/"], ["**/a*/**"]), ([".git/"], ["**/a/b/**"])])
def test_anything_else_is_left_to_pathspec(ignores: list[str], exceptions: list[str]) -> None:
    selector = Selector([Rule(p, "i") for p in ignores], [Rule(p, "e") for p in exceptions],
                        markers=False)
    assert selector.folder_names is None


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(["", "!"]),
       st.text(alphabet=st.sampled_from(list("ab.*?/ ~+@,=%-_é9!")), min_size=0,
               max_size=8))
def test_a_pattern_passed_without_pathspec_is_one_pathspec_accepts(bang: str, body: str
                                                                   ) -> None:
    import pathspec
    pattern = bang + body
    if not pattern:
        return
    if pattern_error(pattern) is None:
        pathspec.GitIgnoreSpec.from_lines([pattern], backend="re2")   # does not raise


@pytest.mark.parametrize("pattern", ["!", "\\", "a\\", " ", "! ", "!\\"])
def test_a_pattern_pathspec_rejects_is_still_refused(pattern: str) -> None:
    assert pattern_error(pattern)


@pytest.mark.parametrize("pattern", ["?" * 8188, "*a" * 7821, "a" * 40309],
                         ids=["8188 ?", "7821 *a", "40309 a"])
def test_a_plain_pattern_too_long_for_re2_is_refused(pattern: str) -> None:
    """pathspec's re2 backend cannot compile these (its memory budget): the plan is
    refused, as before the plain shortcut, and no run reaches a traceback."""
    assert pattern_error(pattern) == \
        "too long or complex to match (over the matcher's memory budget)"


def test_a_plan_with_a_pattern_too_long_for_re2_is_refused_in_one_line(backup: Backup) -> None:
    make_tree(backup.src, {"a": {"f": "x"}})
    backup.write_plan(ignore=["?" * 8188])
    result = backup.doit("snapshot")
    assert result.returncode == INVALID, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert "ignore[0]: invalid pattern '??????" in result.stderr
    assert "... (8,188 characters): too long or complex to match" in result.stderr
    assert len(result.stderr) < 500, result.stderr
    assert not backup.mirror.exists()




LONG_SET = ["**/" + "a*b?c[xyz]" * 40 + str(i) for i in range(150)]


def test_many_long_plan_patterns_are_matched_in_parts(backup: Backup) -> None:
    """re2 compiles a list of patterns as one set within a memory budget: 150 long
    patterns, each valid, exceed it together (helper-24: a traceback, status 70,
    mid-run).  The list is matched in parts, and leaves out what it matches."""
    import pathspec
    with pytest.raises(Exception, match="failed to compile Set"):
        pathspec.GitIgnoreSpec.from_lines(LONG_SET, backend="re2")   # the case itself
    matched = "abXcx" * 40 + "7"
    make_tree(backup.src, {"d": {matched: "left out", "kept.txt": "kept"}})
    for keys, mirrored, stored in (({"ignore": LONG_SET}, False, False),
                                   ({"versioned": {"ignore": LONG_SET}}, True, False),
                                   ({"ignore": ["d/*"], "exceptions": LONG_SET}, True, True)):
        shutil.rmtree(backup.dest, ignore_errors=True)
        backup.write_plan(**keys)
        result = backup.doit("all")
        assert result.returncode == 0, result.stderr[-2000:]
        assert "Traceback" not in result.stderr
        assert (backup.mirror / "d" / matched).exists() == mirrored, keys
        assert (backup.versions / "d" / matched).exists() == stored, keys
        assert (backup.mirror / "d" / "kept.txt").exists() == (len(keys) == 1), keys
        explained = backup.doit("explain", f"src/d/{matched}")
        assert explained.returncode == (0 if mirrored or stored else 1), explained.stderr
        assert LONG_SET[7][:30] in explained.stdout, explained.stdout


def test_a_large_ignore_file_is_used_whole(backup: Backup) -> None:
    """A generated ignore file of a few thousand short lines is too large for one re2
    set too (helper-26: 2,191 lines of ``*.eN``): it is matched in parts, its first
    line as much as its last, and a no-change run still compiles none of it."""
    lines = ["secrets.env", *(f"*.e{i}" for i in range(1, 2301)), "!keep.e7", "last-line"]
    make_tree(backup.src, {"secrets.env": "TOKEN=abc", "a.e5": "x", "a.e2300": "x",
                           "keep.e7": "kept", "last-line": "x", "plain.txt": "kept",
                           "sub": {"b.e1234": "x", "c.txt": "kept"},
                           ".backupignore": "\n".join(lines) + "\n"})
    backup.write_plan(ignore_files=[".backupignore"])
    result = backup.doit("all")
    assert result.returncode == 0, result.stderr[-2000:]
    kept = sorted(str(p.relative_to(backup.mirror)) for p in backup.mirror.rglob("*")
                  if p.is_file())
    assert kept == [".backupignore", "keep.e7", "plain.txt", "sub/c.txt"], kept
    out = backup.doit("explain", "src/secrets.env").stdout
    assert ".backupignore:1" in out, out
    out = backup.doit("explain", "src/keep.e7").stdout
    assert ".backupignore:2302" in out, out
    from test_signature import _imports_pathspec
    assert not _imports_pathspec(backup, "all")           # (helper-26: it did, each run)
    assert _imports_pathspec(backup, "all", "--dry-run") is False


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["a", "b", "*.x", "a*", "!a", "!*.x", "b/", "!b/", "**/c",
                                 "?", "[ab]", "!?"]), min_size=1, max_size=12),
       st.integers(1, 6), st.sampled_from(["a", "b", "c", "a.x", "ab", "z"]), st.booleans())
def test_a_list_matched_in_parts_answers_as_one_set(lines: list[str], part: int,
                                                    name: str, is_dir: bool) -> None:
    """Parts of a few characters against the whole list in one set, for a path whose
    parent no line can match (there pathspec ranks every match alike: the last
    matching line decides)."""
    from pipeline.selection import Matcher
    path = name + "/" if is_dir else name
    whole_set = _check(compile_spec(lines), path)
    assert Matcher(lines, part_chars=part).check(path) == (whole_set.include,
                                                           whole_set.index), lines


def test_a_pattern_with_a_nested_bracket_is_quiet(backup: Backup) -> None:
    """Python's re warns of a "possible nested set" for "[[" when pathspec compiles such
    a line (helper-26: two lines of FutureWarning on stderr, every run, --quiet too)."""
    make_tree(backup.src, {"[x": "left out", "b": {"[y": "left out", "c": "kept"},
                           ".backupignore": "[[]y\n"})
    backup.write_plan(ignore=["[[]x"], ignore_files=[".backupignore"])
    for _ in range(2):
        result = backup.doit("all", "--quiet")
        assert result.returncode == 0, result.stderr
        assert (result.stdout, result.stderr) == ("", "")
    assert sorted(p.name for p in backup.mirror.rglob("*")) == [".backupignore", "b", "c"]


def test_an_ignore_file_s_lines_are_git_s(backup: Backup) -> None:
    """Lines end at a newline alone, as git reads them (helper-27): a carriage return
    before it is dropped, one inside a line is part of it (``foo\\rbar`` leaves out
    neither foo nor bar), so is a Unicode line separator; a byte-order mark before the
    first line is skipped; a line with bytes that are not UTF-8 is skipped (it left out
    other names that differ in those bytes)."""
    make_tree(backup.src, {"foo": "kept", "bar": "kept", "docs": {"d": "kept"},
                           "a.log": "left out", "keep.log": "kept", "c.bak": "left out",
                           "mid\u2028dle": {"e": "left out"}, "middle": "kept"})
    (backup.src / "caf\udce8.txt".encode("utf-8", "surrogateescape").decode(
        "utf-8", "surrogateescape")).write_bytes(b"kept")
    (backup.src / ".backupignore").write_bytes(
        b"\xef\xbb\xbf*.log\r\nfoo\rbar\nmid\xe2\x80\xa8dle/\n#\n!keep.log\r\n"
        b"caf\xe9.txt\n*.bak\n")
    backup.write_plan(ignore_files=[".backupignore"])
    result = backup.doit("all")
    assert result.returncode == 0, result.stderr[-2000:]
    kept = sorted(os.fsencode(p.relative_to(backup.mirror)) for p in backup.mirror.rglob("*")
                  if p.is_file())
    assert kept == [b".backupignore", b"bar", b"caf\xe8.txt", b"docs/d", b"foo",
                    b"keep.log", b"middle"], kept
    out = backup.doit("explain", "src/c.bak").stdout
    assert ".backupignore:7" in out, out                  # line numbers as git counts them
