"""`snapback list` and `snapback help` show snapback's commands first, each help text
written for its own command (issue 16); `doit help` of a name that is no
command is one line and status 2."""

from __future__ import annotations

from support import Backup


def test_help_lists_snapbacks_commands_first(backup: Backup) -> None:
    result = backup.doit("help", check=True)
    lines = result.stdout.splitlines()
    first = lines.index("Commands") + 1
    ours = [line.split()[1] for line in lines[first:first + 15]]
    assert ours == ["snapshot", "versioned", "all", "cleanup", "history", "restore", "diff",
                    "verify", "sync", "fetch", "check", "protect", "unprotect", "explain",
                    "prune"]
    assert "doit's own commands" in result.stdout          # then doit's, said to be doit's
    assert result.stdout.index("snapback list") > result.stdout.index("snapback prune")
    assert "snapback reset-dep" not in result.stdout      # doit's state: snapback keeps none


def test_each_help_text_is_written_for_its_own_command(backup: Backup) -> None:
    prune = backup.doit("help", "prune", check=True).stdout
    sync = backup.doit("help", "sync", check=True).stdout
    assert "say which versions would be dropped" in prune and "sent" not in prune
    assert "say what would be sent" in sync
    snapshot = backup.doit("help", "snapshot", check=True).stdout
    assert "--note" in snapshot and "--dry-run" in snapshot


def test_help_of_no_command_is_one_line_and_status_2(backup: Backup) -> None:
    result = backup.doit("help", "frob")
    assert result.returncode == 2
    assert result.stderr.startswith("snapback: unknown command frob")
    assert len(result.stderr.splitlines()) == 1


def test_list_has_no_command_that_does_nothing(backup: Backup) -> None:
    listed = [line.split()[0] for line in backup.doit("list", check=True).stdout.splitlines()]
    assert "report" not in listed
    assert sorted(listed) == sorted(["all", "check", "cleanup", "diff", "explain", "fetch",
                                     "history", "protect", "prune", "restore", "snapshot",
                                     "sync", "unprotect", "verify", "versioned"])
