"""The command line, read once: what doit will do with the words of one invocation.

It is read (``read_command_line``) as doit will split it: doit's command, each
task with its words, doit's own run options (``-n`` and ``-P`` are refused: the
folder tasks share one session), and ``--config``.
The ``snapback`` application reads the words it is given (``pipeline.app``);
dodo.py, loaded by ``doit``, reads ``sys.argv`` when doit was started as a
command, and checks every source when the words are not known (a program
running doit itself).  A mistake is refused before any task exists, in
snapback's words with status 2 (doit's parser would dump its options and exit
3): the option, the command's options, and the closest match.  Each command's
paths and options, as read, are what its action gets (``run_command``).  The
words also say which checks the plan needs: a backup command needs every
source readable; the recovery commands must work when a source is gone.
"""

from __future__ import annotations

import difflib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from .commands import MODES_OF, REGISTRY
from .errors import PlanError, UsageError
from .paths import user_cwd
from .plan import Plan, load, locate

BACKUP_COMMANDS = tuple(MODES_OF)                 # snapshot, versioned, all, cleanup
# Commands that read the sources, and so need each of them readable.
READS_SOURCES = (*BACKUP_COMMANDS, "explain")


@dataclass
class CommandLine:
    """The words of one invocation, read once (``read``): doit's command, each task
    named with its own words, the options doit reads before the tasks, and the plan
    given with ``--config FILE`` / ``config=FILE``."""
    command: str = "run"
    tasks: list[tuple[str, list[str]]] = field(default_factory=list)
    config: str | None = None
    run_options: dict[str, Any] = field(default_factory=dict)
    program: str = "snapback"          # how messages name the command: snapback, or doit
    parsed: dict[str, tuple[list[str], dict[str, Any]]] = field(default_factory=dict)

    @property
    def reads_sources(self) -> bool:
        """Does the run need every source readable (a backup, explain)?"""
        if self.command != "run":
            return False                   # list, help, info...: nothing is read
        return not self.tasks or any(n.split(":", 1)[0] in READS_SOURCES for n, _ in self.tasks)


def command_options() -> dict[str, dict[str, type]]:
    """Every command -> {"--option": type}."""
    return {c.name: {flag: o.type for flag, o in c.table().items()} for c in REGISTRY.values()}


def _doit_parse(options: tuple[dict[str, Any], ...], words: list[str]
                ) -> tuple[dict[str, Any], list[str]]:
    """doit's own options (as doit reads them: getopt) and the words left."""
    from doit.cmdparse import CmdOption, CmdParse, CmdParseError
    try:
        params, left = CmdParse([CmdOption(o) for o in options]).parse_only(words)
        return dict(params), list(left)
    except CmdParseError:
        return {}, words


def take_config(words: list[str]) -> tuple[list[str], str | None]:
    """``--config FILE`` (or ``--config=FILE``) anywhere before a ``--``, taken out of
    the words: the plan is the application's option, not any one command's."""
    out: list[str] = []
    config: str | None = None
    index = 0
    while index < len(words):
        word = words[index]
        index += 1
        if word == "--":
            out.extend(words[index - 1:])
            break
        if word == "--config":
            if index >= len(words):
                raise UsageError("--config needs a file: --config path/to/plan.yaml")
            config = words[index]
            index += 1
        elif word.startswith("--config="):
            config = word.partition("=")[2]
        else:
            out.append(word)
    return out, config


def read_command_line(words: list[str], loader_options: tuple[dict[str, Any], ...] = ()
                      ) -> CommandLine:
    """The one reading of the command line, as doit will split it."""
    from doit.cmd_run import Run
    from doit.doit_cmd import DoitMain
    words, config = take_config(words)
    line = CommandLine(config=config)
    _params, words = _doit_parse(loader_options, words)
    for word in words:
        if word[:1] != "-" and "=" in word:                  # config=FILE etc.
            name, _, value = word.partition("=")
            if name == "config":
                line.config = value
    words = [w for w in words if not (w[:1] != "-" and "=" in w)]
    doit_commands = {cls.get_name() for cls in DoitMain.DOIT_CMDS}
    if words and words[0] in doit_commands:
        line.command = words.pop(0)
        if line.command != "run":
            return line
    line.run_options, words = _doit_parse(
        Run.base_options + tuple(loader_options) + Run.cmd_options, words)
    options = command_options()
    while words:
        name = words.pop(0)
        own: list[str] = []
        base = name.split(":", 1)[0]
        if base in options and base not in BACKUP_COMMANDS:     # pos_arg: every word left
            own, words = words, []
        else:                                 # doit reads options up to the next word
            table = options.get(base, {})
            while words and words[0].startswith("-") and words[0] != "-":
                word = words.pop(0)
                own.append(word)
                if word == "--":
                    break
                if table.get(word.partition("=")[0]) not in (None, bool) \
                        and "=" not in word and words:
                    own.append(words.pop(0))
        line.tasks.append((name, own))
    return line


# doit's commands that act on its own state (forget, ignore, dumpdb, reset-dep, info...)
# have nothing to act on here: snapback keeps no doit state.  Run, list and help.
DOIT_KEPT = ("run", "list", "help")


def check_doit_command(word: str | None, program: str = "snapback") -> None:
    """Refuse one of doit's own commands that snapback does not keep (the snapback
    command, and ``doit`` in the checkout: the same line, status 2)."""
    from doit.doit_cmd import DoitMain
    if word in {cmd.get_name() for cmd in DoitMain.DOIT_CMDS} - set(DOIT_KEPT):
        raise UsageError(f"{word} is a doit command for doit's own state, which snapback "
                         f"does not keep; commands: {', '.join(REGISTRY)} ({program} help)")


# doit's run options that would move its state or replace snapback's output (the
# lock note, the counts and the exit status are the reporter's)
DOIT_STATE_OPTIONS = {"dep_file": "--db-file", "backend": "--backend", "codec_cls": "--codec-cls",
                      "check_file_uptodate": "--check_file_uptodate", "reporter": "--reporter",
                      "outfile": "--output-file"}


def _doit_defaults() -> dict[str, Any]:
    from doit.cmd_run import Run
    return {o["name"]: o.get("default") for o in Run.base_options + Run.cmd_options}


DOIT_DEFAULTS = _doit_defaults()


def check_run_options(line: CommandLine) -> None:
    """doit's parallel runs are refused: folder tasks share one session (the lock, the
    catalog connection, the counts), which worker processes would each copy."""
    given = line.run_options
    if given.get("num_process") not in (None, 0, 1) or "par_type" in given:
        raise UsageError("-n/--process and -P/--parallel-type are not supported: snapback "
                         "runs its folder tasks one after another (drop the option)")
    for key, flag in DOIT_STATE_OPTIONS.items():
        if key in given and given[key] != DOIT_DEFAULTS[key]:
            raise UsageError(f"{flag} is doit's option, which snapback sets itself (its "
                             "state is the backup's catalog, its output its own): drop it")


def _closest(word: str, choices: list[str]) -> str:
    match = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean {match[0]}?)" if match else ""


def check_words(name: str, words: list[str], program: str = "snapback"
                ) -> tuple[list[str], dict[str, Any]]:
    """The paths and option values of ``name``'s words (options may follow PATH);
    raise UsageError for the first option ``name`` does not take."""
    commands = {c.name: c for c in REGISTRY.values()}
    base = name.split(":", 1)[0]
    if base not in commands:
        if name.startswith("-"):
            raise UsageError(f"unknown option {name}")
        raise UsageError(f"unknown command {name}{_closest(name, list(commands))}; "
                         f"commands: {', '.join(sorted(commands))} ({program} list)")
    table = commands[base].table()
    known = ", ".join(table) or "none"
    if ":" in name and base in BACKUP_COMMANDS and words:
        raise UsageError(f"options belong to the command, not to one of its folders: "
                         f"{program} {base} {' '.join(words)} (not {program} {name} ...)")
    paths: list[str] = []
    values: dict[str, Any] = {}
    index = 0
    while index < len(words):
        word = words[index]
        index += 1
        if word == "--":
            paths.extend(words[index:])
            break
        if not word.startswith("-") or word == "-":
            paths.append(word)
            continue
        option, eq, value = word.partition("=")
        if option not in table:
            raise UsageError(f"unknown option {option} for {program} {base}"
                             f"{_closest(option, list(table))}; its options: {known}")
        spec = table[option]
        if spec.type is bool:
            if eq:
                raise UsageError(f"{option} takes no value ({program} {base})")
            values[spec.key] = True
            continue
        if not eq:
            if index >= len(words):
                raise UsageError(f"{option} needs a value ({program} {base})")
            value = words[index]
            index += 1
        if spec.type is int:
            try:
                values[spec.key] = int(value)
            except ValueError:
                raise UsageError(f"{option} takes a whole number, got {value!r}") from None
        else:
            values[spec.key] = value
        if option == "--report" and not value:
            raise UsageError("--report needs a file name")
    return paths, values


def one_run_options(tasks: list[tuple[str, list[str]]], program: str = "snapback") -> None:
    """Backup commands on one line are one run with one set of options: they are
    written once, after the last of them (``snapshot versioned --note X``)."""
    backups = [(name, own) for name, own in tasks if name.split(":", 1)[0] in BACKUP_COMMANDS]
    for name, own in backups[:-1]:
        if own:
            last = backups[-1][0]
            raise UsageError(f"{program} {name} {' '.join(own)} {last}: the backup commands "
                             f"on one line are one run with one set of options; write them "
                             f"once, after the last command ({program} {name} {last} "
                             f"{' '.join(own)})")


def report_inside(plan: Plan, tasks: list[tuple[str, list[str]]]) -> str | None:
    """A --report FILE inside the backup destination as written (refused: never write
    into it).  Links are not followed here (helper-62: another user's link in /tmp made
    root's backup exit 2, nothing backed up): the report's writer refuses the rest, a
    warning (pipeline/reportfile.py)."""
    dests = {os.path.realpath(plan.destination), os.path.abspath(plan.destination)}
    for _name, own in tasks:
        for index, word in enumerate(own):
            value = word.partition("=")[2] if word.startswith("--report=") else (
                own[index + 1] if word == "--report" and index + 1 < len(own) else None)
            if not value:
                continue
            expanded = os.path.expanduser(value)
            path = expanded if os.path.isabs(expanded) else os.path.join(user_cwd(), expanded)
            folder = os.path.abspath(os.path.dirname(path))
            if any(folder == dest or folder.startswith(dest.rstrip(os.sep) + os.sep)
                   for dest in dests):
                return value
    return None


def _refuse(lines: list[str]) -> NoReturn:
    for line in lines:
        print(f"snapback: {line}", file=sys.stderr)
    raise SystemExit(2)


def load_plan_or_exit(line: CommandLine | None, *, default: Path | None = None) -> Plan:
    """Check the command line, then find and load the plan (with the checks the
    commands need); on any problem print one line per problem and exit 2.  ``line``
    None: the words are not known (a program running doit itself): every check."""
    try:
        if line is not None:
            check_run_options(line)
            for name, own in line.tasks:
                line.parsed[name] = check_words(name, own, line.program)
            one_run_options(line.tasks, line.program)
        where = locate(line.config if line is not None else None, default)
    except UsageError as exc:
        _refuse([str(exc)])
    except PlanError as exc:
        _refuse(exc.problems)
    try:
        plan = load(where, backup=line is None or line.reads_sources)
    except PlanError as exc:
        # one line a problem, the last saying that nothing was done (SPEC: one line)
        _refuse([*exc.problems[:-1], f"{exc.problems[-1]} (the plan is invalid; nothing "
                 "was done)"] if exc.problems else ["the plan is invalid; nothing was done"])
    tasks = line.tasks if line is not None else []
    try:
        inside = report_inside(plan, tasks)
    except UsageError as exc:             # (a relative --report, the current folder gone)
        _refuse([str(exc)])
    if inside is not None:
        _refuse([f"--report {inside}: is inside the backup destination {plan.destination}; "
                 "write the report somewhere else"])
    return plan


