"""Per-folder ignore files with git's semantics, and `doit explain`."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from support import Backup, lines, make_tree

from pipeline import plan as planmod
from pipeline.explain import explain
from pipeline.paths import in_source

GIT_TREE = {
    ".gitignore": "*.log\n!important.log\nbuild/\n/top.txt\ndocs/*.tmp\ncache/\n# a comment\n",
    "a.log": "", "important.log": "", "top.txt": "", "cache": "a file named cache",
    "build": {"x.o": ""},
    "docs": {"a.tmp": "", "b.md": ""},
    "sub": {
        ".gitignore": "!*.log\n*.txt\n!keep.txt\n",
        "b.log": "", "c.txt": "", "keep.txt": "", "top.txt": "",
        "build": {"y.o": ""},
        "docs": {"a.tmp": ""},
        "cache": {"z": ""},
        "deeper": {"d.txt": "", "e.md": ""},
    },
    "nested": {".gitignore": "/only_here.md\n", "only_here.md": "", "x": {"only_here.md": ""}},
}
PATHS = ["a.log", "important.log", "top.txt", "cache", "build/x.o", "docs/a.tmp", "docs/b.md",
         "sub/b.log", "sub/c.txt", "sub/keep.txt", "sub/top.txt", "sub/build/y.o",
         "sub/docs/a.tmp", "sub/cache/z", "sub/deeper/d.txt", "sub/deeper/e.md",
         "nested/only_here.md", "nested/x/only_here.md", ".gitignore", "sub/.gitignore"]


@pytest.fixture(scope="module")
def git_tree(tmp_path_factory) -> tuple[Path, planmod.Plan]:
    base = tmp_path_factory.mktemp("git")
    src = base / "src"
    make_tree(src, GIT_TREE)
    subprocess.run(["git", "init", "-q", str(src)], check=True)
    plan_file = base / "backup.yaml"
    plan_file.write_text(f"destination: {base / 'dest'}\nsources: [{src}]\n"
                         "use_default_ignores: false\nignore_files: [.gitignore]\n"
                         "versioned: {ignore: []}\n")
    return src, planmod.load(plan_file)


@pytest.mark.parametrize("rel", PATHS)
def test_nested_ignore_files_agree_with_git_check_ignore(git_tree, rel) -> None:
    src, plan = git_tree
    ignored_by_git = subprocess.run(["git", "-C", str(src), "check-ignore", "-q", rel]).returncode == 0
    verdicts = explain(plan, in_source(plan, str(src / rel)))
    assert all(v.kept is (not ignored_by_git) for v in verdicts), (rel, verdicts)


def test_plan_exceptions_reinclude_what_an_ignore_file_dropped(backup: Backup) -> None:
    make_tree(backup.src, {".backupignore": "*.log\n", "keep.log": "k", "drop.log": "d"})
    backup.write_plan(exceptions=["keep.log"])
    result = backup.doit("snapshot", check=True)
    assert lines(result.stdout, "new") == ["src/.backupignore", "src/keep.log"]


def test_an_edited_ignore_file_takes_effect_next_run(backup: Backup) -> None:
    make_tree(backup.src, {"proj": {"a.csv": "1", "b.txt": "2", "out": {"big.bin": "x"}}})
    backup.doit("snapshot", check=True)
    (backup.src / "proj" / ".backupignore").write_text("*.csv\nout/\n")
    result = backup.doit("snapshot", check=True)
    assert lines(result.stdout, "deleted") == ["src/proj/a.csv", "src/proj/out/ (1 file)"]
    assert lines(result.stdout, "new") == ["src/proj/.backupignore"]
    (backup.src / "proj" / "c.csv").write_text("3")
    assert lines(backup.doit("snapshot", check=True).stdout, "new") == []
    assert not (backup.mirror / "proj" / "c.csv").exists()


def test_explain_says_why_and_exits_1_when_left_out(backup: Backup) -> None:
    make_tree(backup.src, {"notes.md": "n", "m.pyc": "c", ".git": {"HEAD": "h"},
                           "app": {"node_modules": {"x.js": "x"}, "templates": {"t.pyc": "t"}},
                           "env": {"pyvenv.cfg": "home = /usr\n", "lib.py": ""}})
    before = backup.doit("explain", str(backup.src / "notes.md"))
    assert "snapshot   selected: not stored yet: the next run stores it" in before.stdout
    backup.doit("all", check=True)
    ok = backup.doit("explain", str(backup.src / "notes.md"), str(backup.src / "app/templates/t.pyc"))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "snapshot   backed up" in ok.stdout
    out = backup.doit("explain", str(backup.src / "m.pyc"), str(backup.src / ".git/HEAD"),
                      str(backup.src / "app/node_modules/x.js"), str(backup.src / "env"))
    assert out.returncode == 1
    text = out.stdout
    assert "src/m.pyc\n  snapshot   left out: ignored by '*.py[cod]' (built-in)" in text
    assert "src/.git/HEAD\n  snapshot   backed up\n  versioned  left out: inside .git/" in text
    assert "inside app/node_modules/, which is not entered: ignored by 'node_modules/'" in text
    assert "a Python virtual environment (holds pyvenv.cfg)" in text
    assert "3 of 4 path(s) are not backed up" in out.stderr   # .git/HEAD is in the mirror


def test_explain_tree_lists_left_out_folders_largest_first(backup: Backup) -> None:
    make_tree(backup.src, {"a": {"node_modules": {f"m{i}.js": "x" * 1000 for i in range(5)}},
                           "b": {"__pycache__": {"c.pyc": "y" * 10}}, "keep.txt": "k"})
    out = backup.doit("explain", "--tree", check=True).stdout.splitlines()
    assert out[0] == "left out below src/: 2 folders"
    assert "5 files  src/a/node_modules/  ignored by 'node_modules/' (built-in)" in out[1]
    assert "5.0 KB" in out[1]
    assert "src/b/__pycache__/" in out[2]
