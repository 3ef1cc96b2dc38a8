"""Selection semantics as a table: (plan patterns, path, kept?), on real walks."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.ignores import BUILTIN_IGNORES
from pipeline.scan import mode_view, walk
from pipeline.selection import for_mode, mode_filter, pattern_error, read_layer


def kept_paths(root: Path, ignore=(), exceptions=(), default=True, extra=()) -> set[str]:
    selector = for_mode(tuple(ignore), tuple(exceptions), default)
    folders = mode_view(walk(root, selector),
                        mode_filter(tuple(extra), "versioned.ignore", tuple(exceptions), default))
    out = set()
    for folder in folders:
        out.add(folder.rel + "/")
        out.update(folder.child(n) for n in [*folder.files, *folder.links])
    return out


CASES = [
    # (ignore, exceptions, path, kept)
    ((), (), "a/__pycache__/m.pyc", False),
    ((), (), "m.pyc", False),
    ((), (), "venv/lib/python.py", True),                # a name is not a virtualenv
    ((), (), "node_modules/x.js", False),
    ((), (), "a/b/node_modules/x.js", False),
    ((), (), "a/templates/cache.pyc", True),             # built-in exception
    ((), (), "node_modules/pkg/templates/t.html", False),  # ...never enters node_modules
    ((), (), ".cache/pip/x", False),
    ((), (), ".pyenv/versions/3.11/bin/python", False),
    ((), (), ".rustup/toolchains/x", False),
    ((), (), ".m2/repository/org/x.jar", False),
    ((), (), ".m2/settings.xml", True),
    ((), (), ".cargo/registry/cache/x.crate", False),
    ((), (), ".cargo/config.toml", True),
    ((), (), ".cargo/bin/rustc", False),
    ((), (), "proj/.cargo/bin/tool", True),              # anchored: only the home's toolchain
    ((), (), ".git/config", True),                      # git history is user data
    ((), (), "notes.txt~", False),
    ((), (), ".DS_Store", False),
    ((), (), "build/out.txt", True),                    # build/ may be real content
    (("build/",), ("build/keep/**",), "build/keep/x.txt", True),   # anchored: walk enters
    (("build/",), ("build/keep/**",), "build/other.txt", False),
    (("build/",), ("**/keep/**",), "build/keep/x.txt", False),     # unanchored: no entry
    (("*.log",), ("important.log",), "a/important.log", True),
    (("*.log",), ("important.log",), "a/debug.log", False),
    (("*.log", "!keep.log"), (), "keep.log", True),
    (("docs/*.md",), (), "docs/a.md", False),           # inner slash: anchored at root
    (("docs/*.md",), (), "x/docs/a.md", True),
    (("/top.txt",), (), "top.txt", False),
    (("/top.txt",), (), "a/top.txt", True),
    (("data/",), (), "data/x.csv", False),              # trailing slash: folders only
    (("data/",), (), "sub/data", True),
    (("node_modules/",), ("mylib/node_modules/",), "mylib/node_modules/x.js", True),
    (("*_data.json",), (), "zoneinfo_data.json", False),
]


@pytest.mark.parametrize("ignore, exceptions, path, kept", CASES)
def test_selection_table(tmp_path: Path, ignore, exceptions, path, kept) -> None:
    target = tmp_path / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("x")
    assert (path in kept_paths(tmp_path, ignore, exceptions)) is kept


def test_builtin_set_is_large_and_valid() -> None:
    assert len(BUILTIN_IGNORES) >= 80
    assert [p for p in BUILTIN_IGNORES if pattern_error(p)] == []


def test_default_ignores_can_be_turned_off(tmp_path: Path) -> None:
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "m.pyc").write_text("x")
    assert "__pycache__/m.pyc" in kept_paths(tmp_path, default=False)


@pytest.mark.parametrize("marker", ["CACHEDIR.TAG", "pyvenv.cfg"])
def test_folders_marked_as_cache_or_virtualenv_are_left_out(tmp_path: Path, marker) -> None:
    (tmp_path / "anyname" / "lib").mkdir(parents=True)
    (tmp_path / "anyname" / marker).write_text("x")
    (tmp_path / "anyname" / "lib" / "big.so").write_text("x")
    (tmp_path / "kept.txt").write_text("x")
    assert kept_paths(tmp_path) == {"/", "kept.txt"}


def test_mode_ignores_add_to_the_global_lists(tmp_path: Path) -> None:
    (tmp_path / ".git" / "objects").mkdir(parents=True)
    (tmp_path / ".git" / "objects" / "ab").write_text("x")
    (tmp_path / "code.py").write_text("x")
    assert ".git/objects/ab" in kept_paths(tmp_path)
    assert ".git/objects/ab" not in kept_paths(tmp_path, extra=(".git/",))
    assert "code.py" in kept_paths(tmp_path, extra=(".git/",))


def test_unreadable_patterns_are_reported() -> None:
    assert pattern_error("   ") == "empty pattern"
    assert pattern_error("ok/*.txt") is None


# ---- per-folder ignore files and the deciding rule (Selector.decide, read_layer) ----

def test_an_ignore_file_names_each_rule_by_its_file_and_line() -> None:
    layer = read_layer("docs", ".backupignore", "# comment\n\n*.tmp\n!keep.tmp\n")
    assert layer is not None and layer.folder == "docs"
    assert [(r.pattern, r.origin) for r in layer.rules] == [
        ("*.tmp", "docs/.backupignore:3"), ("!keep.tmp", "docs/.backupignore:4")]
    assert read_layer("", ".backupignore", "# only a comment\n\n") is None


def test_the_deepest_ignore_file_with_a_matching_pattern_decides() -> None:
    selector = for_mode((), (), use_default=False, ignore_files=(".backupignore",))
    top = read_layer("", ".backupignore", "*.log\n")
    inner = read_layer("a", ".backupignore", "!keep.log\n")
    assert selector.decide("a/x.log", False, (top, inner)) == (False, top.rules[0])
    assert selector.decide("a/keep.log", False, (top, inner)) == (True, inner.rules[0])
    assert selector.decide("keep.log", False, (top,)) == (False, top.rules[0])   # not below a/
    assert selector.decide("a/x.txt", False, (top, inner)) == (True, None)


def test_plan_exceptions_reinclude_what_an_ignore_file_dropped() -> None:
    selector = for_mode((), ("important.log",), use_default=False)
    layer = read_layer("", ".backupignore", "*.log\n")
    kept, rule = selector.decide("a/important.log", False, (layer,))
    assert kept and rule is not None and rule.origin == "exceptions"
    assert selector.reincluded("a/important.log", False, (layer,))
    assert selector.ignored_by("a/debug.log", False, (layer,)) == layer.rules[0]


def test_the_rule_that_decided_is_named() -> None:
    selector = for_mode(("*.bak",), (), use_default=True)
    assert selector.ignored_by("x/a.bak", False).describe() == "'*.bak' (ignore)"
    assert selector.ignored_by("a/node_modules", True).origin == "built-in"
    assert selector.ignored_by("a/notes.md", False) is None


def test_a_name_that_is_not_utf8_is_judged_by_the_wildcards() -> None:
    selector = for_mode(("*.log",), (), use_default=False)
    latin1 = b"caf\xe9.log".decode("utf-8", "surrogateescape")
    assert selector.ignored_by(latin1, False) is not None
    assert selector.ignored_by(b"caf\xe9.txt".decode("utf-8", "surrogateescape"), False) is None


@pytest.mark.parametrize("exception, folder, enters", [
    ("build/keep/**", "build", True),
    ("build/keep/**", "build/keep", True),
    ("build/keep/**", "build/other", False),
    ("build/*/x.txt", "build/any", True),
    ("**/keep/**", "build", False),             # unanchored: no reason to enter
    ("keep.txt", "build", False),
])
def test_only_an_anchored_exception_enters_an_ignored_folder(exception, folder, enters) -> None:
    selector = for_mode(("build/",), (exception,), use_default=False)
    assert selector.enters(folder) is enters


def test_a_walk_honours_nested_ignore_files(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / ".backupignore").write_text("*.log\n")
    (tmp_path / "a" / ".backupignore").write_text("!keep.log\n")
    (tmp_path / "a" / "b" / ".backupignore").write_text("keep.log\n")
    for rel in ("x.log", "a/keep.log", "a/x.log", "a/b/keep.log", "a/b/y.txt"):
        (tmp_path / rel).write_text("x")
    selector = for_mode((), (), use_default=False, ignore_files=(".backupignore",))
    kept = set()
    for folder in walk(tmp_path, selector).folders:
        kept.update(folder.child(n) for n in folder.files)
    assert kept == {".backupignore", "a/.backupignore", "a/b/.backupignore", "a/keep.log",
                    "a/b/y.txt"}
