"""The snapback command as a user installs it (issue 23): the README's install lines
run as written, then every scheduled line of the README and examples/ (cron,
systemd, the GitHub workflow) runs in an empty environment, as cron and systemd
start it (``env -i HOME=... PATH=/usr/bin:/bin``); installing snapback leaves
another doit project alone; a reader piped into ``head`` ends quietly.

Only what a test machine cannot share is replaced: ``/path/to/snapback`` is a
copy of this checkout and ``python3`` this interpreter (pip installs from the
package index configured on this machine).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from support import ROOT, SNAPBACK, Backup, aged, make_tree

CLEAN = ("__pycache__", ".git", ".venv", "*.egg-info", ".mypy_cache", ".ruff_cache",
         ".pytest_cache", ".hypothesis", "build", "restored")
SCHEDULE = re.compile(r"^(?:[\d*/,-]+\s+){5}(.*)$")


def blocks(title: str) -> list[str]:
    """The lines of the code blocks in the README section ``title``."""
    text = (ROOT / "README.md").read_text()
    section = text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]
    return [line for block in section.split("```")[1::2] for line in block.splitlines()[1:]]


def here(line: str, checkout: Path) -> str:
    return (line.replace("/path/to/snapback", str(checkout))
            .replace("python3 -m venv", f"{sys.executable} -m venv")
            .replace("/bin/pip install", "/bin/pip install -q"))


def clean_run(command: str | list[str], home: Path, cwd: Path | str) -> subprocess.CompletedProcess:
    """As cron (a shell line) or systemd (a word list) starts it: nothing inherited."""
    env = {"HOME": str(home), "PATH": "/usr/bin:/bin"}
    args = ["/bin/sh", "-c", command] if isinstance(command, str) else command
    return subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """A home with the README's install done, a plan in ~/.config/snapback and files."""
    home = tmp_path_factory.mktemp("home")
    checkout = home / "src" / "snapback"
    shutil.copytree(ROOT, checkout, ignore=shutil.ignore_patterns(*CLEAN))
    install = [line for line in blocks("Unattended runs") if "pip install" in line
               or line.startswith("mkdir -p ~/.local/bin")]
    assert len(install) == 2, install
    for line in install:
        result = clean_run(here(line, checkout), home, home)
        assert result.returncode == 0, f"{line}\n{result.stdout}{result.stderr}"
    make_tree(home / "work", {"notes.txt": "n\n", "proj": {"main.py": "print(1)\n",
                                                           ".git": {"HEAD": "ref\n"}}})
    (home / ".config" / "snapback").mkdir(parents=True)
    (home / ".config" / "snapback" / "backup.yaml").write_text(yaml.safe_dump({
        "destination": str(home / "backups"), "sources": [{"path": str(home / "work")}],
        "remote": {"target": str(home / "remote")}}))
    # a first backup, so that a line that only syncs finds one whatever order the
    # lines run in (pytest-xdist spreads them over workers)
    first = clean_run("~/.local/bin/snapback all --quiet", home, home)
    assert first.returncode == 0, first.stdout + first.stderr
    return home


def scheduled() -> list[tuple[str, str | list[str]]]:
    """(where, command) of every cron line and systemd ExecStart in README and examples/."""
    found: list[tuple[str, str | list[str]]] = []
    sources = [("README.md", blocks("Unattended runs"))]
    sources += [(f"examples/{p.name}", p.read_text().splitlines())
                for p in sorted((ROOT / "examples").iterdir()) if p.is_file()]
    for where, lines in sources:
        for line in lines:
            cron = SCHEDULE.match(line.strip())
            if cron and not line.startswith("#"):
                found.append((where, cron.group(1)))
            elif line.startswith("ExecStart="):
                found.append((where, shlex.split(line.partition("=")[2])))
    return found


SCHEDULED = scheduled()


def test_every_schedule_is_found() -> None:
    where = {w for w, _ in SCHEDULED}
    assert where == {"README.md", "examples/crontab", "examples/snapback.service"}
    assert len(SCHEDULED) == 7


@pytest.mark.parametrize("where, command", SCHEDULED,
                         ids=[f"{w}:{c if isinstance(c, str) else ' '.join(c)}"
                              for w, c in SCHEDULED])
def test_a_scheduled_line_runs_in_an_empty_environment(home: Path, where: str,
                                                       command: str | list[str]) -> None:
    if isinstance(command, list):                  # systemd: %h, no shell, cwd /
        command = [w.replace("%h", str(home)) for w in command]
        result = clean_run(command, home, "/")
    else:                                          # cron: /bin/sh in the home folder
        result = clean_run(command, home, home)
    assert result.returncode == 0, f"{where}: {command}\n{result.stdout}{result.stderr}"
    assert result.stdout == result.stderr == ""            # --quiet: cron mails nothing
    assert (home / "backups" / "system_snapshot" / "work" / "notes.txt").exists()
    if "--report" in str(command):
        words = command if isinstance(command, list) else shlex.split(command)
        report = Path(words[words.index("--report") + 1].replace("~", str(home), 1))
        assert json.loads(report.read_text())["modes"]


def test_the_workflow_runs_in_an_empty_environment(home: Path, tmp_path: Path) -> None:
    workflow = (ROOT / "examples" / "github" / "snapback.yml").read_text()
    steps = [line.split("run:", 1)[1].strip() for line in workflow.splitlines()
             if line.strip().startswith("run:")]
    assert len(steps) == 3, steps
    repo = tmp_path / "repo"                       # actions/checkout: the repository
    shutil.copytree(ROOT, repo, ignore=shutil.ignore_patterns(*CLEAN))
    shutil.copy(home / ".config" / "snapback" / "backup.yaml", repo / "backup.yaml")
    for step in steps:
        line = here(step.replace("${{ github.run_id }}", "42"), repo)
        result = clean_run(line, tmp_path, repo)
        assert result.returncode == 0, f"{step}\n{result.stdout}{result.stderr}"
        assert "pip" in line or result.stdout == result.stderr == ""
    assert json.loads((repo / "report.json").read_text())["note"] == "ci 42"


def test_the_command_works_from_any_folder_and_is_the_installed_one(home: Path) -> None:
    result = clean_run("cd / && ~/.local/bin/snapback history", home, home)
    assert result.returncode == 0, result.stderr
    where = clean_run("~/.local/share/snapback/bin/python -c 'import pipeline; "
                      "print(pipeline.__file__)'", home, "/")
    assert where.stdout.startswith(str(home / ".local" / "share" / "snapback")), where.stdout


def test_installing_snapback_leaves_another_doit_project_alone(home: Path,
                                                                tmp_path: Path) -> None:
    """doit's own help, list and run in an unrelated project, with snapback installed in
    the same environment (once, snapback's global `help` replaced doit's)."""
    (tmp_path / "dodo.py").write_text(
        "def task_hello():\n    \"\"\"say hello\"\"\"\n"
        "    return {'actions': ['echo hello > out.txt']}\n")
    python = home / ".local" / "share" / "snapback" / "bin" / "python"
    helped = clean_run([str(python), "-m", "doit", "help", "hello"], home, tmp_path)
    assert helped.returncode == 0, helped.stderr
    assert "hello" in helped.stdout and "say hello" in helped.stdout
    assert "snapback" not in helped.stdout + helped.stderr
    listed = clean_run([str(python), "-m", "doit", "list"], home, tmp_path)
    assert listed.stdout.split() == ["hello", "say", "hello"], listed.stdout + listed.stderr
    ran = clean_run([str(python), "-m", "doit"], home, tmp_path)
    assert ran.returncode == 0 and (tmp_path / "out.txt").read_text() == "hello\n"
    entry_points = clean_run([str(python), "-c", "import importlib.metadata as m; print("
                              "[e.group for e in m.distribution('snapback').entry_points])"],
                             home, "/")
    assert entry_points.stdout.strip() == "['console_scripts']", entry_points.stdout


def test_doit_in_the_checkout_uses_the_same_loader(backup: Backup) -> None:
    """``doit`` in the checkout (dodo.py): plain doit runs all, with the plan named by
    config=; from another folder, one line saying to use snapback, exit 2."""
    make_tree(backup.src, {"a.txt": "a\n"})
    doit = [sys.executable, "-m", "doit"]
    ran = subprocess.run([*doit, f"config={backup.plan}"], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "new      [mirror+history] src/a.txt" in ran.stdout
    listed = subprocess.run([*doit, "list"], cwd=ROOT, capture_output=True, text=True)
    assert "versioned" in listed.stdout.split()
    elsewhere = subprocess.run([*doit, "-f", str(ROOT / "dodo.py"), "list"], cwd=backup.base,
                               capture_output=True, text=True)
    assert elsewhere.returncode == 2
    assert elsewhere.stderr.count("\n") == 1 and "snapback command" in elsewhere.stderr


@pytest.mark.parametrize("words", [["-n", "2", "all"], ["-P", "thread"],
                                   ["run", "-n", "2", "snapshot"]])
def test_doits_parallel_options_are_refused(backup: Backup, words: list[str]) -> None:
    make_tree(backup.src, {"a.txt": "a\n"})
    result = backup.doit(*words)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith("snapback: -n/--process and -P/--parallel-type are not")
    assert result.stderr.count("\n") == 1 and not backup.dest.exists()


def test_the_plan_is_found_in_spec_order(backup: Backup, tmp_path: Path) -> None:
    """--config, then SNAPBACK_CONFIG, then ./backup.yaml, then ~/.config/snapback."""
    home = tmp_path / "h"
    (home / ".config" / "snapback").mkdir(parents=True)
    other = tmp_path / "other.yaml"
    for plan, name in ((other, "o"), (home / ".config" / "snapback" / "backup.yaml", "c"),
                       (backup.base / "backup.yaml", "b")):
        plan.write_text(yaml.safe_dump({"destination": str(tmp_path / f"dest-{name}"),
                                        "sources": [str(backup.src)]}))
    env = {**os.environ, "HOME": str(home)}
    env.pop("SNAPBACK_CONFIG", None)
    env.pop("XDG_CONFIG_HOME", None)

    def dest(*words: str, cwd: Path = backup.base, **extra: str) -> str:
        result = subprocess.run([*SNAPBACK, *words, "all"], cwd=cwd, env={**env, **extra},
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        made = sorted(p.name for p in tmp_path.glob("dest-*"))
        for p in tmp_path.glob("dest-*"):
            shutil.rmtree(p)
        return " ".join(made)

    assert dest("--config", str(other), SNAPBACK_CONFIG="backup.yaml") == "dest-o"
    assert dest(SNAPBACK_CONFIG=str(other)) == "dest-o"
    assert dest() == "dest-b"                          # ./backup.yaml
    assert dest(cwd=home) == "dest-c"                  # ~/.config/snapback/backup.yaml
    (home / ".config" / "snapback" / "backup.yaml").unlink()
    none = subprocess.run([*SNAPBACK, "all"], cwd=home, env=env, capture_output=True,
                          text=True)
    assert none.returncode == 2 and none.stderr.startswith("snapback: no plan: none at ")


def test_a_reader_piped_into_head_ends_quietly(backup: Backup) -> None:
    make_tree(backup.src, {f"file-with-a-rather-long-name-{i:05}.txt": "x" for i in range(4000)})
    backup.doit("all", check=True)
    for command in (f"{shlex.join(SNAPBACK)} history src config={backup.plan}",
                    f"{sys.executable} -m doit history src config={backup.plan}"):
        cwd = backup.base if "pipeline" in command else ROOT
        result = subprocess.run(f"set -o pipefail; {command} | head -1", shell=True,
                                executable="/bin/bash", cwd=cwd, capture_output=True,
                                text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        assert result.stderr == "" and result.stdout.startswith("last change")


@pytest.mark.parametrize("stderr", ["a closed pipe", "/dev/full"])
def test_a_usage_error_is_status_2_whatever_stderr_is(backup: Backup, stderr: str) -> None:
    """The one-line refusal cannot be written: the status still says what happened
    (helper-25: 1, a traceback that could not be written either)."""
    make_tree(backup.src, {"a.txt": "a\n"})
    if stderr == "/dev/full":
        err = os.open("/dev/full", os.O_WRONLY)
    else:
        read, err = os.pipe()
        os.close(read)
    try:
        for words in (["all", "--bogus"], ["restore"]):
            result = subprocess.run([*SNAPBACK, *words, f"config={backup.plan}"],
                                    stderr=err, stdout=subprocess.DEVNULL, cwd=backup.base,
                                    timeout=120)
            assert result.returncode == 2, words
        result = subprocess.run([*SNAPBACK, "all", f"config={backup.plan}"], stderr=err,
                                stdout=subprocess.DEVNULL, cwd=backup.base, timeout=120)
        assert result.returncode == 0
    finally:
        os.close(err)
    assert (backup.mirror / "a.txt").read_text() == "a\n"


def test_the_first_run_says_what_the_built_in_ignores_left_out(backup: Backup) -> None:
    make_tree(backup.src, {"a.txt": "a\n", "node_modules": {"x.js": "12345\n"},
                           "p": {"__pycache__": {"m.pyc": "1"}, "y.pyc": "22"}})
    first = backup.doit("all", check=True)
    assert ("note: the built-in ignores left out 3 files (9 B): caches, virtual "
            "environments, node_modules and the like; snapback explain --tree lists them"
            ) in first.stdout.splitlines()
    (backup.src / "b.txt").write_text("b\n")
    assert "left out" not in backup.doit("all", check=True).stdout
    tree = backup.doit("explain", "--tree", check=True).stdout
    assert "src/node_modules/" in tree and "src/p/__pycache__/" in tree


# -- adversary of issue 23, round 2 -------------------------------------------------

@pytest.mark.parametrize("words", [["all", "--report", ""], ["all", "--note", ""], [""],
                                   ["restore", "x", "--to", ""]])
def test_an_empty_word_is_refused_in_one_line(backup: Backup, words: list[str]) -> None:
    """`--report "$R"` with R unset in a cron line: not doit's IndexError."""
    make_tree(backup.src, {"a.txt": "a\n"})
    result = backup.doit(*words)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr == ("snapback: an empty word on the command line (an unset "
                             "variable?); nothing was done\n")
    assert not backup.dest.exists()


def test_options_before_any_command_are_the_options_of_all(backup: Backup) -> None:
    make_tree(backup.src, {"a.txt": "a\n"})
    result = backup.doit("--quiet")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert (backup.mirror / "a.txt").read_text() == "a\n"
    assert json.loads(backup.runs()[-1])["mode"] == "all"
    result = backup.doit("--note", "by hand", "--dry-run")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("words", [["--backend", "json", "all"], ["--reporter", "json", "all"],
                                   ["-f", "x.py", "all"], ["--dir", "/tmp", "all"],
                                   ["run", "--backend", "dbm", "all"], ["--db-file", "x", "all"]])
def test_doits_own_options_are_refused(backup: Backup, words: list[str]) -> None:
    """They would move doit's state into the backup (dbm files in the destination) or
    replace snapback's reporter (no summary, a lock note left behind)."""
    make_tree(backup.src, {"a.txt": "a\n"})
    result = backup.doit(*words)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.count("\n") == 1 and "doit's option" in result.stderr
    assert not backup.dest.exists()


@pytest.mark.parametrize("words", [["--backend", "json", "all"], ["--reporter", "json", "all"]])
def test_doits_state_options_are_refused_by_doit_in_the_checkout(backup: Backup,
                                                                 words: list[str]) -> None:
    make_tree(backup.src, {"a.txt": "a\n"})
    result = subprocess.run([sys.executable, "-m", "doit", *words, f"config={backup.plan}"],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.count("\n") == 1 and "doit's option" in result.stderr
    assert not backup.dest.exists()


@pytest.mark.parametrize("command", ["dumpdb", "forget", "ignore", "info", "reset-dep"])
def test_doits_state_commands_are_not_snapbacks(backup: Backup, command: str) -> None:
    result = backup.doit(command, "all")
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.count("\n") == 1 and "snapback does not keep" in result.stderr
    # and as `doit` in the checkout (helper-58: `doit info` ended in doit's own words and
    # its status 3, `doit forget` said "forgetting all"); `doit dumpdb` reads no dodo.py
    if command == "dumpdb":
        return
    result = subprocess.run([sys.executable, "-m", "doit", command,
                             f"config={backup.plan}"], capture_output=True, text=True,
                            cwd=ROOT, timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.count("\n") == 1 and "snapback does not keep" in result.stderr
    assert result.stdout == ""


def test_version_and_help_after_a_command(backup: Backup) -> None:
    from pipeline import __version__
    assert backup.doit("--version", check=True).stdout == f"snapback {__version__}\n"
    out = backup.doit("all", "--help", check=True).stdout
    assert out.startswith("all ") and "--quiet" in out


def test_one_folder_through_a_symlink_is_listed_twice(backup: Backup) -> None:
    make_tree(backup.src, {"a.txt": "a\n"})
    (backup.base / "alias").symlink_to(backup.src)
    backup.write_plan(sources=[{"path": str(backup.src)},
                               {"path": str(backup.base / "alias"), "name": "alias"}])
    result = backup.doit("all")
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"is listed twice (as {backup.src})" in result.stderr
    assert not backup.dest.exists()


def test_quiet_says_nothing_after_a_killed_run(backup: Backup) -> None:
    """Taking over the lock a killed run left is not trouble: cron mails nothing."""
    make_tree(backup.src, {"a.txt": "a\n", "b.txt": "b\n"})
    killed = backup.doit("all", env={"SNAPBACK_FAULT": "write:2"})
    assert killed.returncode == -9
    result = backup.doit("all", "--quiet")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


@pytest.mark.parametrize("mode", ["snapshot", "versioned", "all"])
def test_ctrl_c_is_one_line_and_status_130_and_the_next_run_completes(
        backup: Backup, mode: str) -> None:
    """SIGINT in the middle of the copies (at the 5th rename; the reader reading ahead):
    no traceback, status 130 as a shell reports Ctrl-C, the lock and the staging folder
    taken care of by the next run, which stores the rest."""
    make_tree(backup.src, {f"d{d}": {f"f{i}.txt": f"{d}{i}\n" for i in range(4)}
                           for d in range(3)})
    aged(backup.src)
    stopped = backup.doit(mode, env={"SNAPBACK_FAULT": "rename:5:sigint"})
    assert stopped.returncode == 130, stopped.stdout + stopped.stderr
    assert stopped.stderr.splitlines() == [
        "snapback: interrupted; what was committed is kept, and the next run goes on "
        "from there"], stopped.stderr
    result = backup.doit(mode, "--quiet")
    assert (result.returncode, result.stderr) == (0, ""), result.stdout + result.stderr
    assert os.listdir(backup.meta / "tmp") == []
    assert backup.doit("verify", "--deep").returncode == 0
    if mode != "versioned":
        assert (backup.mirror / "d2" / "f3.txt").read_text() == "23\n"


def test_a_first_run_with_nothing_left_out_says_nothing_of_it(backup: Backup) -> None:
    make_tree(backup.src, {"a.txt": "a\n"})
    assert "left out" not in backup.doit("all", check=True).stdout


def test_a_stdout_that_cannot_be_written_costs_only_the_output(backup: Backup) -> None:
    make_tree(backup.src, {"a.txt": "a\n"})
    with open("/dev/full", "w") as full:
        result = subprocess.run([*SNAPBACK, "all", f"config={backup.plan}"], stdout=full,
                                stderr=subprocess.PIPE, text=True, cwd=backup.base)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ("snapback: standard output cannot be written (No space left on "
                             "device); the rest of it is dropped, the run goes on\n")
    assert len(backup.runs()) == 1 and (backup.mirror / "a.txt").exists()
    (backup.src / "a.txt").write_text("b\n")
    result = subprocess.run([*SNAPBACK, "all", f"config={backup.plan}"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, cwd=backup.base,
                            pass_fds=(), close_fds=True,
                            preexec_fn=lambda: os.close(1))
    assert result.returncode == 0, result.stderr
    assert len(backup.runs()) == 2


def test_prune_without_rules_is_quiet_under_quiet(backup: Backup) -> None:
    make_tree(backup.src, {"a.txt": "a\n"})
    backup.doit("all", check=True)
    result = backup.doit("prune", "--quiet", "--dry-run")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert "no retention rules" in backup.doit("prune", check=True).stdout
