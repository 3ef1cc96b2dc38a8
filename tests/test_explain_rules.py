"""explain names the rule that re-included a path, and `explain --tree` on a folder
that is not there is a one-line usage error (status 2)."""

from __future__ import annotations

import pytest
from support import Backup, make_tree

from pipeline import plan as planmod
from pipeline.explain import explain
from pipeline.paths import in_source

TREE = {
    "app": {"templates": {"page.pyc": "t", "page.html": "h"}, "main.pyc": "m"},
    "proj": {".backupignore": "*.txt\n!keep.txt\n", "keep.txt": "k", "drop.txt": "d"},
    "notes.md": "n",
}


def verdicts(backup: Backup, rel: str) -> dict[str, str]:
    plan = planmod.load(backup.plan)
    return {v.mode: v.text for v in explain(plan, in_source(plan, str(backup.src / rel)))}


def test_a_path_re_included_by_a_plan_exception_names_it(backup: Backup) -> None:
    make_tree(backup.src, TREE)
    backup.write_plan(exceptions=["**/templates/**"], ignore=["*.html"])
    assert verdicts(backup, "app/templates/page.html")["snapshot"] == (
        "selected: re-included by exceptions: '**/templates/**' (backup.yaml) over "
        "'*.html' (ignore); not stored yet: the next run stores it")
    backup.doit("all", check=True)
    said = verdicts(backup, "app/templates/page.html")
    assert said == {mode: "backed up: re-included by exceptions: '**/templates/**' "
                          "(backup.yaml) over '*.html' (ignore)"
                    for mode in ("snapshot", "versioned")}
    # a built-in ignore overridden by the same exception
    assert verdicts(backup, "app/templates/page.pyc")["snapshot"] == (
        "backed up: re-included by exceptions: '**/templates/**' (backup.yaml) over "
        "'*.py[cod]' (built-in)")
    # what no ignore matched was not re-included by anything
    assert verdicts(backup, "notes.md")["snapshot"] == "backed up"
    assert verdicts(backup, "app/templates")["snapshot"] == "backed up"
    assert verdicts(backup, "app/main.pyc")["snapshot"] == \
        "left out: ignored by '*.py[cod]' (built-in)"


def test_the_built_in_exception_and_an_ignore_file_negation_are_named(backup: Backup) -> None:
    make_tree(backup.src, TREE)
    backup.doit("all", check=True)
    assert verdicts(backup, "app/templates/page.pyc")["versioned"] == (
        "backed up: re-included by the built-in exception '**/templates/**' over "
        "'*.py[cod]' (built-in)")
    assert verdicts(backup, "proj/keep.txt")["snapshot"] == (
        "backed up: re-included by '!keep.txt' (proj/.backupignore:2) over "
        "'*.txt' (proj/.backupignore:1)")
    assert verdicts(backup, "proj/drop.txt")["snapshot"] == \
        "left out: ignored by '*.txt' (proj/.backupignore:1)"


def test_a_per_mode_ignore_overridden_by_an_exception_is_named(backup: Backup) -> None:
    make_tree(backup.src, {"data": {"big.csv": "1", "small.csv": "2"}})
    backup.write_plan(exceptions=["data/small.csv"], versioned={"ignore": ["*.csv"]})
    backup.doit("all", check=True)
    said = verdicts(backup, "data/small.csv")
    assert said["snapshot"] == "backed up"
    assert said["versioned"] == ("backed up: re-included by exceptions: 'data/small.csv' "
                                 "(backup.yaml) over '*.csv' (versioned.ignore)")
    assert verdicts(backup, "data/big.csv")["versioned"] == \
        "left out: ignored by '*.csv' (versioned.ignore)"


@pytest.mark.parametrize("where, message", [
    ("nope", "explain --tree: src/nope/: no such folder"),
    ("nope/deeper", "explain --tree: src/nope/deeper/: no such folder"),
    ("notes.md", "explain --tree: src/notes.md is not a folder "
                 "(ask without --tree: doit explain PATH)"),
])
def test_explain_tree_of_a_folder_that_is_not_there_is_a_usage_error(
        backup: Backup, where: str, message: str) -> None:
    make_tree(backup.src, TREE)
    result = backup.doit("explain", "--tree", str(backup.src / where))
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout == ""
    assert result.stderr.strip().splitlines() == [f"snapback: {message}"]


def test_explain_tree_outside_every_source_is_a_usage_error(backup: Backup) -> None:
    result = backup.doit("explain", "--tree", str(backup.base / "elsewhere"))
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        f"snapback: {backup.base / 'elsewhere'}: not in any source of the plan"]


def test_explain_tree_of_a_real_folder_still_lists(backup: Backup) -> None:
    make_tree(backup.src, {"a": {"node_modules": {"x.js": "x"}}})
    result = backup.doit("explain", "--tree", str(backup.src / "a"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[0] == "left out below src/a/: 1 folder"
