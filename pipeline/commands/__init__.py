"""Every snapback command, on one registry that ``dodo.py`` turns into doit tasks.

A ``Command`` names its options (``Option``, shared by the command line
check in ``doit_glue`` and by doit's own parser) and where its code is: the
backup commands (snapshot, versioned, all, cleanup) are compiled into folder
tasks by ``pipeline.backup``; every other command is one module of this
package with a ``run(ctx, paths, **options)`` function, imported only when
that command runs (a no-change backup does not pay for restore or sync).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, NamedTuple

from doit.exceptions import TaskFailed


class Option(NamedTuple):
    long: str                 # --long on the command line
    type: type
    default: Any
    help: str
    name: str = ""            # the keyword the command's code receives (default: long)

    @property
    def key(self) -> str:
        return self.name or self.long.replace("-", "_")

    def doit(self) -> dict[str, Any]:
        """doit's param dictionary."""
        return {"name": self.key, "long": self.long, "type": self.type,
                "default": self.default, "help": self.help}

    def says(self, help: str) -> Option:
        """The same option with a help text written for another command."""
        return self._replace(help=help)


QUIET = Option("quiet", bool, False, "print only problems and what was asked for")
DRY_RUN = Option("dry-run", bool, False, "say what would be done; change nothing")
VERBOSE = Option("verbose", bool, False, "also say why each skipped path was skipped")
FORCE = Option("force", bool, False, "overwrite files that exist already")
AT = Option("at", str, "", "the time: 2026-11-23, 2026-11-23T14:30, or a run id "
            "(default: latest)")

BACKUP_OPTIONS = (
    Option("note", str, "", "a note kept with this run in the history"),
    DRY_RUN,
    VERBOSE,
    QUIET.says("print nothing unless something failed (for cron)"),
    Option("report", str, "", "write the run summary as JSON to this file"),
    Option("allow-mass-delete", bool, False, "mirror a source that lost most of its "
           "entries as deleted (an unmounted disk is refused by default)"),
)

RetentionOptions = (
    DRY_RUN.says("say which versions would be dropped; drop nothing"),
    Option("keep-within", str, "", "keep every version newer than this (30d, 12h, 2w, 6m, 1y)"),
    Option("keep-last", int, None, "keep the N newest versions of each file"),
    Option("keep-daily", int, None, "keep the newest version of each of the last N days"),
    Option("keep-weekly", int, None, "keep the newest version of each of the last N weeks"),
    Option("keep-monthly", int, None, "keep the newest version of each of the last N months"),
    Option("keep-deleted", str, "", "drop the history of files deleted longer ago than this"),
)

Run = Callable[..., "TaskFailed | None"]


class Command(NamedTuple):
    name: str
    doc: str                           # `doit list`'s line: what it does, then its syntax
    options: tuple[Option, ...]
    module: str = ""                   # pipeline.commands.<module>.run; "" for backups
    modes: tuple[str, ...] = ()        # a backup command: the modes it runs

    @property
    def backup(self) -> bool:
        return not self.module

    def table(self) -> dict[str, Option]:
        """--long -> Option, as written on the command line."""
        return {f"--{o.long}": o for o in self.options}

    def runner(self) -> Run:
        run: Run = importlib.import_module(f"{__name__}.{self.module}").run
        return run


BACKUP_COMMANDS = (
    Command("snapshot", "mirror every source into <destination>/system_snapshot/",
            BACKUP_OPTIONS, modes=("snapshot",)),
    Command("versioned", "record new, changed and deleted files in "
            "<destination>/versioned_backup/", BACKUP_OPTIONS, modes=("versioned",)),
    Command("all", "snapshot and versioned in one run, walking each source once",
            BACKUP_OPTIONS, modes=("snapshot", "versioned")),
    Command("cleanup", "remove from the backup what left the sources or became ignored",
            BACKUP_OPTIONS, modes=("snapshot", "versioned")),
)
# The modes each backup command runs: the one table (session, backup and doit_glue read it)
MODES_OF: dict[str, tuple[str, ...]] = {c.name: c.modes for c in BACKUP_COMMANDS}

OTHER_COMMANDS = (
    Command("history", "the runs; with PATH, that file's versions (or a folder's changes): "
            "history [PATH]", (QUIET,), "history"),
    Command("restore", "rebuild a file or folder as it was: restore PATH [--at TIME] "
            "[--to DIR] [--from snapshot|versioned] [--force]",
            (AT,
             Option("to", str, None, "restore into this folder (default: ./restored/)"),
             Option("from", str, "", "versioned: only the history; snapshot: only the "
                    "mirror (default: the history, and for the latest state what only the "
                    "mirror holds, such as .git/)", name="origin"),
             FORCE, QUIET), "restore"),
    Command("diff", "the unified diff between two versions: diff PATH [--at TIME] "
            "[--against TIME] [--vscode]",
            (AT.says("the newer version's time or run id (default: the latest)"),
             Option("against", str, "", "compare with the version at this time "
                    "(default: the one before)"),
             Option("vscode", bool, False, "open the two versions in VS Code (code --diff)"),
             QUIET), "diff"),
    Command("verify", "check every stored file against its checksum: verify [--deep] "
            "rebuilds every version too",
            (Option("deep", bool, False, "also rebuild every version of every file"), QUIET),
            "verify"),
    Command("sync", "send the backup to the plan's remote through rclone: sync [--dry-run] "
            "[--verbose]",
            (DRY_RUN.says("say what would be sent; send nothing"),
             VERBOSE.says("list every file sent or deleted"), QUIET), "sync"),
    Command("fetch", "bring the backup back from the plan's remote into its destination: "
            "fetch [--force]",
            (FORCE.says("replace the backup at the destination with the remote's"), QUIET),
            "fetch"),
    Command("check", "compare the remote with the catalog (sizes, sha256): check; exit 1 on "
            "any problem", (QUIET,), "check"),
    Command("protect", "make the backup read-only (backup runs still update it)",
            (QUIET,), "protect"),
    Command("unprotect", "make the backup writable again", (QUIET,), "unprotect"),
    Command("explain", "is PATH backed up, by which mode, and why: explain PATH... | "
            "explain --tree [DIR]",
            (Option("tree", bool, False, "list the folders left out below DIR (default: "
                    "every source), largest first"), QUIET), "explain"),
    Command("prune", "drop the versions the retention rules do not keep: prune [--dry-run] "
            "[--keep-last N] ...", (*RetentionOptions, QUIET), "prune"),
)

REGISTRY: dict[str, Command] = {c.name: c for c in (*BACKUP_COMMANDS, *OTHER_COMMANDS)}
