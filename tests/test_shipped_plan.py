"""The plan that ships: the README shows it as it is, and it leaves out nothing
that a person's own files could be named (only the built-in caches, virtual
environments, toolchains and litter)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from support import ROOT, Backup, make_tree

from pipeline import plan as planmod

SHIPPED = ROOT / "backup.yaml"
HEADING = "## The plan (`backup.yaml`)"

# Names people give their own files.  Every one must be backed up by the shipped plan.
USER_FILES = [
    "sales_data.json", "build_log.json", "plugin_registry.json", "zoneinfo_data.json",
    "notes.tmp", "server.log", "Documents/report.docx", "Documents/taxes 2025.pdf",
    "Pictures/IMG_0001.JPG", "Music/song.mp3", "Desktop/todo.txt", "data.db", "backup.zip",
    "code/app/main.py", "code/app/templates/page.html", "code/build/output.txt",
    "code/venv/lib.py", "code/dist/app.tar.gz", ".bashrc", ".config/app/settings.json",
    ".ssh/config", "projects/site/.git/HEAD",
]


def readme_plan() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert text.count(HEADING) == 1, f"README.md has no single {HEADING!r} section"
    section = text.split(HEADING, 1)[1]
    match = re.match(r"\s*```yaml\n(.*?)```\n", section, re.DOTALL)
    assert match, f"the {HEADING!r} section does not start with a yaml block"
    return match.group(1)


def test_the_readme_shows_the_plan_that_ships() -> None:
    assert readme_plan() == SHIPPED.read_text(encoding="utf-8")


def shipped_for(backup: Backup) -> Path:
    """The shipped plan with only its destination and source moved into tmp."""
    data = yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))
    assert data["destination"] == "~/backups" and data["sources"] == [{"path": "~",
                                                                       "name": "home"}]
    data["destination"] = str(backup.dest)
    data["sources"] = [{"path": str(backup.src), "name": "src"}]
    backup.plan.write_text(yaml.safe_dump(data))
    return backup.plan


def test_the_shipped_plan_ignores_no_name_of_its_own() -> None:
    plan = planmod.load(SHIPPED, backup=False)
    assert plan.ignore == ()
    assert plan.use_default_ignores is True
    assert plan.snapshot.ignore == () and plan.versioned.ignore == (".git/",)


def test_the_shipped_plan_backs_up_ordinary_user_files(backup: Backup) -> None:
    shipped_for(backup)
    spec: dict = {}
    for rel in USER_FILES:
        *folders, name = rel.split("/")
        node = spec
        for folder in folders:
            node = node.setdefault(folder, {})
        node[name] = f"the content of {rel}\n"
    make_tree(backup.src, spec)
    explained = backup.doit("explain", *(str(backup.src / rel) for rel in USER_FILES))
    assert explained.returncode == 0, explained.stdout + explained.stderr
    assert "left out" not in explained.stdout.replace(
        "versioned  left out: inside projects/site/.git/", "")   # git is its own history
    result = backup.doit("all")
    assert result.returncode == 0, result.stdout + result.stderr
    for rel in USER_FILES:
        assert (backup.mirror / rel).read_text() == f"the content of {rel}\n", rel


@pytest.mark.parametrize("rel", ["code/__pycache__/m.cpython-311.pyc", "code/node_modules/x.js",
                                 ".cache/pip/wheel.whl", "doc.txt.swp"])
def test_the_shipped_plan_still_leaves_out_caches_and_litter(backup: Backup, rel: str) -> None:
    shipped_for(backup)
    path = backup.src / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("x")
    result = backup.doit("explain", str(path))
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.count("left out: ") == 2


def test_built_in_rules_find_project_caches_at_any_depth_and_keep_personal_files(
        backup: Backup) -> None:
    """Project caches live inside projects (anchored patterns never matched them);
    ~/.gem/credentials, ~/.stack/config.yaml and a file named ._resume.docx are a
    person's files."""
    make_tree(backup.src, {
        "proj": {".next": {"cache": {"a": "x"}}, ".yarn": {"cache": {"b": "x"}},
                 ".angular": {"cache": {"c": "x"}}, ".gradle": {"caches": {"d": "x"}},
                 "src.py": "x"},
        ".gem": {"credentials": "secret", "ruby": {"3.2": {"gems": {"g": "x"}}}},
        ".stack": {"config.yaml": "x", "programs": {"ghc": "x"}},
        "._resume.docx": "x",
    })
    backup.doit("snapshot", check=True)
    kept = {str(p.relative_to(backup.mirror)) for p in backup.mirror.rglob("*") if p.is_file()}
    assert kept == {"proj/src.py", ".gem/credentials", ".stack/config.yaml", "._resume.docx"}
