"""A folder whose name holds a newline: the rules judge the paths below it as any
other (README, Selection).  pathspec's regular expressions end a ``.`` at a newline,
so ``node_modules/`` did not match ``x\\ny/node_modules/``, and the versioned mode's
``.git/`` judged by name (pipeline/selection.py) disagreed with pathspec there."""

from __future__ import annotations

import pytest
from support import OK, Backup, make_tree

from pipeline.selection import Rule, Selector, _check, compile_spec, for_mode

ODD = "x\ny"


@pytest.mark.parametrize("rel", [f"{ODD}/.git", f"{ODD}/.git/config", f"a/{ODD}/.git/x",
                                 f"{ODD}/templates/.git/x", f".git/{ODD}"])
def test_folder_names_below_a_newline_are_judged_as_pathspec_judges_them(rel: str) -> None:
    selector = Selector([Rule(".git/", "versioned.ignore")],
                        [Rule("**/templates/**", "built-in exception")], markers=False)
    assert selector.folder_names is not None
    for is_dir in (True, False):
        result = _check(compile_spec(selector.lines), rel + "/" if is_dir else rel)
        assert selector._check(rel, is_dir) == (result.include, result.index), (rel, is_dir)


def test_a_built_in_ignore_reaches_below_a_folder_with_a_newline_in_its_name() -> None:
    selector = for_mode((), (), True)
    assert selector.ignored_by("p/node_modules", True) is not None
    assert selector.ignored_by(f"{ODD}/node_modules", True) is not None
    assert selector.ignored_by(f"{ODD}/a.pyc", False) is not None


@pytest.mark.parametrize("extra", [[], ["*.log"]], ids=["by name", "by pathspec"])
def test_a_backup_leaves_out_below_a_newline_what_it_leaves_out_elsewhere(
        backup: Backup, extra: list[str]) -> None:
    for name in ("p", ODD):
        make_tree(backup.src / name, {".git": {"config": "c"}, "node_modules": {"m.js": "m"},
                                      "keep.txt": "k"})
    backup.write_plan(versioned={"ignore": [".git/", *extra]})
    result = backup.doit("all")
    assert result.returncode == OK, result.stdout + result.stderr
    for name in ("p", ODD):
        assert (backup.mirror / name / "keep.txt").exists()
        assert not (backup.mirror / name / "node_modules").exists(), name
        assert (backup.versions / name / "keep.txt").exists()
        assert not (backup.versions / name / ".git").exists(), name
        assert not (backup.versions / name / "node_modules").exists(), name


@pytest.mark.parametrize("pattern", ["x\ny/", "**/x\ny/**", "a\nb"])
def test_a_pattern_cannot_hold_a_newline(pattern: str) -> None:
    """A newline in a path is matched by a wildcard (``x?y/``); a pattern that spells
    one would match nothing, or match by name what pathspec does not: refused."""
    from pipeline.selection import pattern_error
    assert pattern_error(pattern) is not None
    assert pattern_error("x?y/") is None
    assert for_mode(("x?y/",), (), False).ignored_by(f"a/{ODD}", True) is not None


def test_a_pattern_s_last_newline_is_dropped_as_before(backup: Backup) -> None:
    """A plan may spell a pattern as a YAML block (``- |``), which ends in a newline:
    accepted, and the rule applies."""
    from pipeline.selection import pattern_error
    assert pattern_error("build/\n") is None
    assert for_mode(("build/\n",), (), False).ignored_by("a/build", True) is not None
    make_tree(backup.src, {"build": {"out.o": "o"}, "keep.txt": "k"})
    backup.plan.write_text(f"destination: {backup.dest}\nsources:\n  - path: {backup.src}\n"
                           "ignore:\n  - |\n    build/\n")
    result = backup.doit("snapshot")
    assert result.returncode == OK, result.stdout + result.stderr
    assert (backup.mirror / "keep.txt").exists()
    assert not (backup.mirror / "build").exists()
