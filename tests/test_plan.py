"""Invalid plans: one line per problem naming the key, exit 2, nothing written."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from support import ROOT, SNAPBACK, Backup

from pipeline import plan as planmod
from pipeline.errors import PlanError

BAD = [
    # (plan text with {src} and {dest}, what the message must name)
    ("destination: {dest}\nsources: [{src}]\nbogus: 1\n", "bogus: unknown key"),
    ("destination: {dest}\nsources: [{src}]\nchecker: sha1\n", "checker: expected one of hash, mtime"),
    ("destination: {dest}\nsources: [{src}]\nignore: '*.tmp'\n", "ignore: expected a list of strings"),
    ("destination: {dest}\nsources: [{src}]\nignore: ['ok', 'bad\\']\n", "ignore[1]: invalid pattern"),
    ("destination: {dest}\nsources: [{src}]\nexceptions: ['[z-a]']\n", "exceptions[0]: invalid pattern"),
    ("destination: {dest}\nsources: [{src}/missing]\n", "sources[0].path: "),
    ("destination: {dest}\nsources: [{src}/file.txt]\n", "is not a folder"),
    ("destination: {dest}\nsources: [{src}, {src}]\n", "sources[1].name: 'src' is already the name"),
    ("destination: {src}\nsources: [{src}/inner]\n", "is inside the destination"),
    ("sources: [{src}]\n", "destination: missing"),
    ("destination: {dest}\n", "sources: missing"),
    ("destination: {dest}\nsources: [{src}]\nversioned: {{max_diff_bytes: lots}}\n",
     "versioned.max_diff_bytes: expected a size"),
    ("destination: {dest}\nsources: [{src}]\nsnapshot: {{cleanup: 'yes'}}\n",
     "snapshot.cleanup: expected true/false, got a string"),
    ("destination: {dest}\nsources: [{src}]\nsnapshot: {{clean: true}}\n", "snapshot.clean: unknown key"),
    ("destination: {dest}\nsources: [{src}]\nremote: {{}}\n", "remote.target: missing"),
    ("destination: {dest}\nsources: [{src}]\nversion: 2\n", "reads plan version 1"),
    ("destination: [unclosed\n", "not valid YAML"),
    ("destination: {dest}\nsources: [{src}, {src}/inner]\n", "/inner is inside "),
    ("destination: {dest}\nsources: [{src}/inner/, {src}]\n", "sources inside other sources are refused"),
    ("- just\n- a list\n", "expected a mapping of plan keys"),
    ("a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
     "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
     "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n",
     "aliases"),
]


@pytest.mark.parametrize("text, message", BAD)
def test_invalid_plan_exits_2_with_one_line_and_writes_nothing(backup: Backup, text, message) -> None:
    (backup.src / "inner").mkdir()
    (backup.src / "file.txt").write_text("x")
    backup.plan.write_text(text.format(src=backup.src, dest=backup.dest))
    result = backup.doit("snapshot")
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    problems = result.stderr.splitlines()
    assert problems and all(l.startswith("snapback: ") for l in problems)
    assert problems[-1].endswith("(the plan is invalid; nothing was done)")
    assert len(problems) == 1, problems                 # one problem: one line
    assert not backup.dest.exists()
    assert result.stdout == ""


def test_every_problem_is_reported_at_once_with_its_line(tmp_path: Path) -> None:
    file = tmp_path / "backup.yaml"
    file.write_text("destination: /tmp/x\nsources:\n  - path: /nonexistent\nchecker: no\nextra: 1\n")
    with pytest.raises(PlanError) as err:
        planmod.load(file)
    problems = err.value.problems
    assert len(problems) == 3
    assert any(p.startswith(f"{file}:3: sources[0].path:") for p in problems)
    assert any(p.startswith(f"{file}:4: checker:") for p in problems)
    assert any(p.startswith(f"{file}:5: extra: unknown key") for p in problems)


def test_a_missing_plan_says_how_to_name_another(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match="give another with --config FILE"):
        planmod.load(tmp_path / "nope.yaml")


def test_relative_paths_and_defaults(tmp_path: Path) -> None:
    (tmp_path / "work").mkdir()
    file = tmp_path / "backup.yaml"
    file.write_text("destination: out\nsources:\n  - work\n  - path: work/../work2\n    name: two\n"
                    "versioned: {max_diff_bytes: 2MiB}\n")
    (tmp_path / "work2").mkdir()
    plan = planmod.load(file)
    assert plan.destination == tmp_path / "out"
    assert [(s.path, s.name) for s in plan.sources] == [
        (tmp_path / "work", "work"), (tmp_path / "work2", "two")]
    assert plan.versioned.max_diff_bytes == 2 << 20
    assert plan.versioned.ignore == (".git/",) and plan.snapshot.ignore == ()
    assert plan.checker == "hash" and plan.snapshot.cleanup is True


def test_shipped_plan_is_valid() -> None:
    plan = planmod.load(Path(__file__).resolve().parent.parent / "backup.yaml")
    assert plan.destination == Path.home() / "backups"
    assert [s.path for s in plan.sources] == [Path.home()]


def test_a_relative_config_is_read_from_where_the_user_is(backup: Backup) -> None:
    (backup.src / "a.txt").write_text("a")
    (backup.base / "plans").mkdir()
    backup.plan.rename(backup.base / "plans" / "mine.yaml")
    result = subprocess.run([*SNAPBACK, "snapshot",
                             "config=plans/mine.yaml"], capture_output=True, text=True,
                            cwd=backup.base, env={**os.environ, "PWD": str(backup.base)})
    assert result.returncode == 0, result.stderr
    assert (backup.mirror / "a.txt").read_text() == "a"


@pytest.mark.parametrize("target", ["backups", "-x:y", "--config=/etc/passwd"])
def test_a_remote_target_must_name_an_rclone_remote(tmp_path, target: str) -> None:
    src = tmp_path / "src"
    src.mkdir()
    plan = tmp_path / "backup.yaml"
    plan.write_text(json.dumps({"destination": str(tmp_path / "dest"),
                                "sources": [{"path": str(src)}],
                                "remote": {"target": target}}))          # JSON is YAML
    with pytest.raises(PlanError) as info:
        planmod.load(plan)
    assert any("remote.target" in p and "is not an rclone remote" in p
               for p in info.value.problems)


def test_a_plan_that_cannot_be_looked_for_is_one_line(nobody_backup) -> None:
    """``sudo -u someone snapback`` keeps $HOME: the plan in another user's config folder
    cannot even be looked for (helper-42: a PermissionError traceback, status 3)."""
    import subprocess

    from support import NOBODY
    b, nobody_python = nobody_backup
    home = b.base / "home"
    (home / ".config").mkdir(parents=True)
    home.chmod(0o700)                                  # root's, as /root is
    cwd = b.base / "cwd"
    cwd.mkdir()
    cwd.chmod(0o777)
    result = subprocess.run([*NOBODY, nobody_python, "-m", "pipeline", "history"],
                            capture_output=True, text=True, cwd=cwd, timeout=120,
                            env={"PATH": "/usr/bin:/bin", "HOME": str(home)})
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip().splitlines() == [
        f"snapback: cannot look for a plan at {home}/.config/snapback/backup.yaml: "
        "Permission denied; give one with --config FILE or SNAPBACK_CONFIG (README, The plan)"
    ], result.stderr


def test_a_destination_that_cannot_be_looked_at_is_one_line(nobody_backup) -> None:
    """A plan found, naming a destination in another user's home (``~/backups`` under
    ``sudo -u``): one line, status 2, for every command (helper-43: a traceback)."""
    import subprocess

    from support import NOBODY
    b, nobody_python = nobody_backup
    home = b.base / "home"
    home.mkdir()
    home.chmod(0o700)                                  # root's, as /root is
    b.plan.write_text(f"destination: {home}/backups\nsources: [{b.src}]\n")
    for command in ("list", "all", "history"):
        result = subprocess.run([*NOBODY, nobody_python, "-m", "pipeline", command,
                                 f"--config={b.plan}"], capture_output=True, text=True,
                                cwd=b.base, timeout=120)
        assert result.returncode == 2, (command, result.stdout + result.stderr)
        assert "Traceback" not in result.stderr
        assert f"{home}/backups cannot be looked at: Permission denied" in result.stderr, \
            (command, result.stderr)


def test_a_current_folder_removed_is_one_line(backup, tmp_path) -> None:
    """The shell's folder removed under it: one line, status 2 (helper-43: a traceback);
    with an absolute --config, a command that needs no folder of the user's runs."""
    import subprocess
    import sys
    gone = tmp_path / "gone"
    gone.mkdir()
    script = ("import os, sys, subprocess; os.chdir(sys.argv[1]); os.rmdir(sys.argv[1]); "
              "r = subprocess.run(sys.argv[2:]); sys.exit(r.returncode)")
    backup.doit("all", check=True)
    for args, code in ((["history", f"--config={backup.plan}"], 0), (["history"], 2),
                       (["all", f"--config={backup.plan}", "--report", "r.json"], 2)):
        result = subprocess.run([sys.executable, "-c", script, str(gone), sys.executable,
                                 "-m", "pipeline", *args], capture_output=True, text=True,
                                timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert result.returncode == code, (args, result.stdout + result.stderr)
        assert "Traceback" not in result.stderr, result.stderr
        gone.mkdir()
