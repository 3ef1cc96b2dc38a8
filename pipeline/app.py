"""The ``snapback`` application: on top of doit, as doit documents them
(and as Nikola's ``nikola`` command is).

``Snapback`` is a ``DoitMain`` whose task loader is snapback's
(``doit_glue.SnapbackLoader``): doit still parses, checks and runs every task.
Nothing here is registered with doit for other projects: the state backend is
named in this application's own doit configuration (``BACKEND``), and ``help``
is this application's command (``DOIT_CMDS``), never doit's.  The words are read
once, here (``cmdline.read_command_line``); the plan is found as SPEC.md says.
"""

from __future__ import annotations

import sys
from typing import Any

from doit.cmd_help import Help as DoitHelp
from doit.doit_cmd import DoitMain

from . import cmdline, doit_glue
from .commands import REGISTRY
from .errors import UsageError

NAME = "snapback"


class Help(DoitHelp):  # type: ignore[misc]  # doit ships no types
    """``snapback help``: snapback's commands, each with its line, then doit's own;
    ``help COMMAND`` its options; a name that is no command is one line, status 2."""

    def execute(self, params: Any, args: list[str]) -> int:
        if len(args) > 1:
            print(f"{NAME}: help takes one name, got {' '.join(args)}", file=sys.stderr)
            return 2
        if not args:
            self._usage()
            return 0
        if args[0] in REGISTRY:                    # needs no plan: the registry says it
            self._command_help(REGISTRY[args[0]])
            return 0
        if args[0] in self.cmds or args[0] == "task":
            result: int = super().execute(params, args)
            return result
        print(f"{NAME}: unknown command {args[0]}{cmdline._closest(args[0], list(REGISTRY))}"
              f"; commands: {', '.join(REGISTRY)} ({NAME} help)", file=sys.stderr)
        return 2

    def _command_help(self, command: Any) -> None:
        from doit.cmdparse import CmdOption, TaskParse
        print(f"{command.name}  {command.doc}")
        parse = TaskParse([CmdOption(o.doit()) for o in command.options])
        for option in parse.options:
            print("\n".join(option.help_doc()))

    def _usage(self) -> None:
        print(f"{NAME}: a backup of your working folders (README.md)\n")
        print(f"usage: {NAME} [--config PLAN] [COMMAND] [OPTIONS]   (no COMMAND: all)\n")
        print("Commands")
        for command in REGISTRY.values():
            print(f"  {NAME} {command.name:<10} {command.doc}")
        print(f"\n  {NAME} help COMMAND   its options")
        print("\ndoit's own commands (snapback keeps no doit state, so doit's forget, "
              "ignore, reset-dep and dumpdb are not here)")
        for name in sorted(self.cmds):
            print(f"  {NAME} {name:<14} {self.cmds[name].doc_purpose}")


KEPT = cmdline.DOIT_KEPT
PARALLEL = ("-n", "--process", "-P", "--parallel-type")


class Snapback(DoitMain):  # type: ignore[misc]  # doit ships no types
    BIN_NAME = NAME
    DOIT_CMDS = tuple(Help if cmd is DoitHelp else cmd for cmd in DoitMain.DOIT_CMDS
                      if cmd.get_name() in KEPT)

    def __init__(self, line: cmdline.CommandLine | None = None) -> None:
        # no doit.cfg/pyproject.toml of the folder the user happens to be in: snapback's
        # doit configuration is its own (its state backend among it)
        super().__init__(doit_glue.SnapbackLoader(line), config_filenames=(),
                         extra_config={"BACKEND": dict(doit_glue.BACKEND)})

    def run(self, all_args: list[str]) -> int:
        if all_args[:1] in (["--help"], ["-h"]):
            all_args = ["help"]
        if all_args[:1] == ["--version"]:
            from . import __version__
            print(f"{NAME} {__version__}")
            return 0
        try:
            all_args = leading_options(list(all_args))
            line = cmdline.read_command_line(list(all_args))
        except UsageError as exc:
            print(f"{NAME}: {exc}", file=sys.stderr)
            return 2
        self.task_loader.line = line
        words, _config = cmdline.take_config(list(all_args))     # the loader has it
        status: int = super().run(words)
        return status


def leading_options(words: list[str]) -> list[str]:
    """The words as doit will read them.  An empty word (an unset variable in a cron
    line) is refused; ``--help`` after a command is ``help COMMAND``; options before
    any command are the options of ``all`` (``snapback --quiet`` is ``snapback all
    --quiet``); doit's own options are refused: snapback decides its backend,
    reporter, folder and task file itself."""
    if any(word == "" for word in words):
        raise UsageError("an empty word on the command line (an unset variable?); "
                         "nothing was done")
    words, config = cmdline.take_config(words)
    head = ["--config", config] if config is not None else []
    rest = [w for w in words if not (w[:1] != "-" and "=" in w)]     # config=FILE
    if rest[:1] == ["run"]:
        rest = rest[1:]
    if rest and rest[0] in REGISTRY and any(w in ("--help", "-h") for w in rest[1:]):
        return ["help", rest[0]]
    first = rest[0] if rest else None
    cmdline.check_doit_command(first, NAME)
    if first is not None and first.partition("=")[0] in PARALLEL:
        return [*head, *words]            # refused, with the reason (check_run_options)
    if first is not None and first.startswith("-") and first != "-":
        backup = REGISTRY["all"].table()
        if first.partition("=")[0] not in backup:
            raise UsageError(f"{first.partition('=')[0]} is doit's option, not snapback's "
                             f"(the backup options: {', '.join(backup)}; {NAME} help)")
        return [*head, "all", *words]
    return [*head, *words]
