"""Every doit and snapback command line in the README's code blocks and in examples/
runs, as written, against a real plan in a temporary folder, with the status it documents.

A command line the docs show and the tool refuses (``doit sync --quiet`` once
did) fails here.  Only what cannot be the same on a test machine is replaced:
``~`` and ``%h`` are a temporary home, ``/tmp/...`` a temporary folder, the
README's example run id the id of a run at that time.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml
from support import ROOT, SNAPBACK, make_tree

# Lines the docs say end with another status (README: explain exits 1 when a path is not backed up).
EXPECTED = {"explain ~/proj/app.log": 1}
SCHEDULE = re.compile(r"^(?:[\d*/,-]+\s+){5}")          # a crontab line's five time fields
STARTS = re.compile(r"^(?:\$\s+|run:\s+|ExecStart=)")


def command_of(segment: str) -> str | None:
    """The words after the command when ``segment`` runs doit or snapback (by any path:
    ``~/.local/bin/snapback``, ``%h/...``, ``.venv/bin/snapback``), else None."""
    segment = SCHEDULE.sub("", STARTS.sub("", segment.strip()))
    word, _, rest = segment.partition(" ")
    if word in ("doit", "snapback") or word.endswith("/snapback"):
        return rest.strip()
    return None


def command_lines() -> list[tuple[str, str]]:
    """(where, the words after `doit`/`snapback`) for every command line in the docs."""
    found: list[tuple[str, str]] = []

    def scan(path: Path, lines: list[tuple[int, str]]) -> None:
        for number, line in lines:
            line = line.strip()
            if line.startswith("#"):
                continue
            for segment in re.split(r"&&|;", re.split(r"\|(?!\|)", line)[0]):
                rest = command_of(segment)
                if rest is not None:
                    found.append((f"{path.relative_to(ROOT)}:{number}", rest))

    readme = (ROOT / "README.md").read_text().splitlines()
    block, inside = [], False
    for number, line in enumerate(readme, 1):
        if line.startswith("```"):
            inside = not inside
            continue
        if inside:
            block.append((number, line))
    scan(ROOT / "README.md", block)
    for path in sorted((ROOT / "examples").rglob("*")):
        if path.is_file():
            scan(path, list(enumerate(path.read_text().splitlines(), 1)))
    return found


LINES = command_lines()


def test_the_docs_have_command_lines() -> None:
    where = {w.split(":")[0] for w, _ in LINES}
    assert {"README.md", "examples/crontab", "examples/snapback.service",
            "examples/github/snapback.yml"} <= where
    assert any(rest.startswith("sync --quiet") for _, rest in LINES)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("docs")
    home = base / "home"
    make_tree(home, {"notes": {"todo.md": "buy milk\n"},
                     "proj": {"app.log": "log\n", ".backupignore": "*.log\n",
                              ".git": {"HEAD": "ref: refs/heads/main\n"},
                              "node_modules": {"x.js": "x\n"}, "main.py": "print(1)\n"}})
    (home / ".cache").mkdir()
    plan = base / "backup.yaml"
    plan.write_text(yaml.safe_dump({
        "destination": str(base / "backups"),
        "sources": [{"path": str(home), "name": "home"}],
        "remote": {"target": str(base / "remote")},
    }))
    env = {**os.environ, "HOME": str(home), "PWD": str(base)}

    def doit(*words: str, now: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([*SNAPBACK, *words, f"config={plan}"], cwd=base,
                              env={**env, **({"SNAPBACK_NOW": now} if now else {})},
                              capture_output=True, text=True, timeout=120)

    for when, text in (("2026-11-01T10:00:00", "buy milk\n"),
                       ("2026-11-20T09:30:00", "buy milk\nand bread\n")):
        (home / "notes" / "todo.md").write_text(text)
        assert doit("all", now=when).returncode == 0
    (home / "notes" / "todo.md").write_text("buy milk\nand bread\nand tea\n")
    assert doit("all").returncode == 0
    runs = [json.loads(l) for l in (base / "backups" / ".snapback" / "runs.jsonl")
            .read_text().splitlines()]
    return {"base": base, "home": home, "doit": doit, "run_nov20": runs[1]["run_id"]}


def words_of(rest: str, world: dict) -> list[str]:
    base, home = world["base"], world["home"]
    rest = rest.replace("${{ github.run_id }}", "42").replace("%h", str(home))
    rest = rest.replace("20261120-093000-4242", world["run_nov20"])
    words = []
    for word in shlex.split(rest, comments=True):
        if word.startswith("~"):
            word = str(home) + word[1:]
        elif word.startswith("/tmp/"):
            word = str(base / "tmp" / word[len("/tmp/"):])
            Path(word).parent.mkdir(parents=True, exist_ok=True)
        words.append(word)
    return words


@pytest.mark.parametrize("where, rest", LINES, ids=[w for w, _ in LINES])
def test_doc_command_line_runs(world: dict, where: str, rest: str) -> None:
    words = words_of(rest, world)
    result = world["doit"](*words)
    expected = next((code for start, code in EXPECTED.items() if rest.startswith(start)), 0)
    assert result.returncode == expected, f"{where}: doit {rest}\n{result.stdout}{result.stderr}"
    assert "Traceback" not in result.stderr
    if "--report" in words:                      # relative to where the command ran
        report = Path(words[words.index("--report") + 1])
        assert (report if report.is_absolute() else world["base"] / report).is_file()
