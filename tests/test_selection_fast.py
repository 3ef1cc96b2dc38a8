"""The rules judged without pathspec (pipeline/selection.py): a selector made only of
folders left out by name (``name/``) and folders kept by name (``**/name/**``), the
versioned mode's by default, answers as pathspec does; anything else is pathspec's
to judge; a pattern ``pattern_error`` passes without pathspec is one pathspec accepts."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import INVALID, Backup, make_tree

from pipeline.selection import Rule, Selector, _check, pattern_error

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
    result = _check(selector.spec, rel + "/" if is_dir else rel)
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
@given(st.text(alphabet=st.sampled_from(list("ab.*?/ ~+@,=%-_é9")), min_size=1,
               max_size=8))
def test_a_pattern_passed_without_pathspec_is_one_pathspec_accepts(pattern: str) -> None:
    import pathspec
    if pattern_error(pattern) is None:
        pathspec.GitIgnoreSpec.from_lines([pattern], backend="re2")   # does not raise


@pytest.mark.parametrize("pattern", ["!", "\\", "a\\", " "])
def test_a_pattern_pathspec_rejects_is_still_refused(pattern: str) -> None:
    assert pattern_error(pattern)


@pytest.mark.parametrize("pattern", ["?" * 8188, "*a" * 7821, "a" * 40309],
                         ids=["8188 ?", "7821 *a", "40309 a"])
def test_a_plain_pattern_too_long_for_re2_is_refused(pattern: str) -> None:
    """pathspec's re2 backend cannot compile these (its memory budget): the plan is
    refused, as before the plain shortcut, and no run reaches a traceback."""
    assert pattern_error(pattern) == "failed to compile Set"


def test_a_plan_with_a_pattern_too_long_for_re2_is_refused_in_one_line(backup: Backup) -> None:
    make_tree(backup.src, {"a": {"f": "x"}})
    backup.write_plan(ignore=["?" * 8188])
    result = backup.doit("snapshot")
    assert result.returncode == INVALID, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert "ignore[0]: invalid pattern" in result.stderr
    assert not backup.mirror.exists()



LONG_SET = ["**/" + "a*b?c[xyz]" * 40 + str(i) for i in range(150)]


def test_many_long_patterns_each_valid_but_not_together_are_refused_in_one_line(
        backup: Backup) -> None:
    """re2 compiles each mode's rules as one set within a memory budget: 150 long
    patterns, each valid, exceed it together.  The plan is refused as a whole, as a
    pattern too long alone is (helper-24: a traceback, status 70, mid-run)."""
    import pathspec
    with pytest.raises(Exception):
        pathspec.GitIgnoreSpec.from_lines(LONG_SET, backend="re2")   # the case itself
    make_tree(backup.src, {"d": {"f": "x"}})
    for keys in ({"ignore": LONG_SET}, {"versioned": {"ignore": LONG_SET}}):
        backup.write_plan(**keys)
        for command in (("all",), ("snapshot",), ("explain", "src/d/f")):
            result = backup.doit(*command)
            assert result.returncode == INVALID, result.stderr[-2000:]
            assert len(result.stderr.splitlines()) == 1, result.stderr[-2000:]
            assert "cannot be used together" in result.stderr
        assert not backup.mirror.exists()


def test_an_ignore_file_too_big_to_use_together_is_not_used(backup: Backup) -> None:
    """The same in a source's ignore file (data, not the plan): its rules are not used,
    so what they would leave out is backed up; the rest of the run goes on."""
    matched = "abXcx" * 40 + "7"
    make_tree(backup.src, {"d": {matched: "would be left out", "kept.txt": "kept"},
                           "e": {"x.log": "left out by a small file"}})
    (backup.src / "d" / ".backupignore").write_text("\n".join(LONG_SET) + "\n")
    (backup.src / "e" / ".backupignore").write_text("*.log\n")
    backup.write_plan(ignore_files=[".backupignore"])
    result = backup.doit("all")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert (backup.mirror / "d" / matched).read_text() == "would be left out"
    assert (backup.mirror / "d" / "kept.txt").read_text() == "kept"
    assert not (backup.mirror / "e" / "x.log").exists()
