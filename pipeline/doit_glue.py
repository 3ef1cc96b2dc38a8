"""Everything snapback asks of doit, in one place.

**State.**  doit skips a task when its ``uptodate`` values hold and every
``file_dep`` is unchanged against the state doit saved.  Saved state of its own
would be a second record of what the backup holds, and it went wrong exactly
where the two disagreed: a folder moved away and back, a folder put back by a
restore, a file no longer ignored (doit's state said "up to date", the mirror
was empty).  So doit keeps no state here: the backend (``CatalogState``,
registered as the doit backend ``snapback`` by an entry point in
pyproject.toml) stores nothing and holds nothing; the checker, made for each
invocation with its ``Session``, compares each file's lstat with what the
catalog records for it (``Session.expected``, filled at task creation from the
catalog; the rule is ``pipeline.change``).  Whatever removes something from
the catalog makes the next run store it again; nothing can go stale, get lost
or outlive a folder.  A folder's own changes (entries added or removed, rules
changed, its mode) are judged at task creation against the catalog too
(``pipeline.backup``).

**The command line.**  doit parses a task's options itself, before any task
runs, and answers a mistake with its parser's dump and status 3.  dodo.py is
loaded after doit has read its own options and before it reads the tasks', so
``load_plan_or_exit`` reads the same words first, as doit will
(``read_command_line``), and refuses a mistake in snapback's words with status
2: the option, the command's options, and the closest match.  doit gives a dodo
file no access to its command line, so the words are taken from the frame of
``DoitMain.run`` (the one place that holds them, for ``doit``, ``python -m
doit`` and the API alike).  Options written *before* the command name (``doit
--dry-run snapshot``) are doit's own, read before dodo.py loads: doit reports
those.  The words also say which checks the plan needs: a backup command needs
every source readable; the recovery commands must work when a source is gone.

**Tasks.**  ``task_creators`` turns the command registry
(``pipeline.commands``) into the functions dodo.py exposes.  The backup
commands walk every source, so their tasks are created only when one of them
runs (doit's ``create_after``), never for ``doit list``; their creators are
named ``task__snapshot`` etc.: doit parses the words after any word equal to a
creator's own name as that creator's options, and ``--from snapshot`` must stay
a value.  A creator's user-fixable error (a catalog of another format) ends the
run with one line and its status instead of doit's traceback and status 3.
Every other command is one task with ``pos_arg`` (its words) and
``uptodate: [False]``.

**The exit status** is decided by the reporter (``pipeline.reporter``).
"""

from __future__ import annotations

import difflib
import functools
import os
import sys
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

from doit import create_after, task_params
from doit.dependency import FileChangedChecker

from . import change
from .commands import REGISTRY
from .commands.base import run_command
from .errors import PlanError, SnapbackError, UsageError
from .plan import Plan, load, locate
from .reporter import Reporter
from .session import COMMANDS as BACKUP_MODES_OF
from .session import Session

BACKUP_COMMANDS = tuple(BACKUP_MODES_OF)          # snapshot, versioned, all, cleanup
# Commands that read the sources, and so need each of them readable.
READS_SOURCES = (*BACKUP_COMMANDS, "explain")


# ---- doit's state: the catalog ------------------------------------------------

class CatalogState:
    """doit backend that keeps nothing: the state of a file_dep is what the catalog
    records, which the session's checker looks up itself.  ``get`` answers "ask the
    checker" for a file and "nothing saved" for doit's own keys (``checker:``,
    ``deps:``, results, values), so no saved value can ever count."""

    desc = "snapback: doit's state is what the catalog records (nothing of its own)"

    def __init__(self, name: str, codec: Any, *, module_name: str | None = None):
        self.name = name

    def get(self, task_id: str, dependency: str) -> Any:
        return (task_id,) if dependency.startswith("/") else None   # file_deps are absolute

    def set(self, task_id: str, dependency: str, value: Any) -> None:
        pass                          # the actions wrote the catalog; doit keeps nothing

    def in_(self, task_id: str) -> bool:
        return False

    def remove(self, task_id: str) -> None:
        pass

    def remove_all(self) -> None:
        pass

    def dump(self) -> None:
        pass


class _Checker(FileChangedChecker):  # type: ignore[misc]  # doit ships no types
    """A file_dep is unchanged when its lstat (from the walk) gives the key of what the
    catalog records for it in that task (``pipeline.change``)."""

    CheckerError = OSError
    session: Session
    rule = "hash"

    def __init__(self) -> None:
        self.key = change.key_function(self.rule)
        self.stored = change.stored_key_function(self.rule)

    def exists(self, file_path: str) -> bool:
        return os.path.lexists(file_path)

    def info(self, file_path: str) -> os.stat_result:
        st = self.session.stats.get(file_path)
        return st if st is not None else os.lstat(file_path)

    def check_modified(self, file_path: str, file_stat: os.stat_result, state: Any) -> bool:
        record = self.session.expected.get(state[0], {}).get(file_path)
        return record is None or self.key(file_stat) != self.stored(record)

    def get_state(self, dep: str, current_state: Any) -> None:
        return None                   # nothing to save: the catalog is the state


# ---- the command line ---------------------------------------------------------

def command_options() -> dict[str, dict[str, type]]:
    """Every command -> {"--option": type}."""
    return {c.name: {flag: o.type for flag, o in c.table().items()} for c in REGISTRY.values()}


def doit_words() -> list[str] | None:
    """The words doit is running with (None when doit is not on the stack)."""
    try:
        from doit.doit_cmd import DoitMain
    except ImportError:          # pragma: no cover
        return None
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        if frame.f_code is DoitMain.run.__code__:
            words = frame.f_locals.get("all_args")
            return list(words) if words is not None else None
        frame = frame.f_back
    return None


def _doit_parse(options: tuple[dict[str, Any], ...], words: list[str]) -> list[str]:
    """The words left after doit's own options (as doit reads them: getopt)."""
    from doit.cmdparse import CmdOption, CmdParse, CmdParseError
    try:
        left: list[str] = CmdParse([CmdOption(o) for o in options]).parse_only(words)[1]
        return left
    except CmdParseError:
        return words


def read_command_line(words: list[str]) -> tuple[str, list[tuple[str, list[str]]]]:
    """(doit's command, [(task name, the words that belong to it)]), as doit splits them."""
    from doit.cmd_base import DodoTaskLoader
    from doit.cmd_run import Run
    from doit.doit_cmd import DoitMain
    words = _doit_parse(DodoTaskLoader.cmd_options, words)
    words = [w for w in words if not (w[:1] != "-" and "=" in w)]      # config=FILE etc.
    doit_commands = {cls.get_name() for cls in DoitMain.DOIT_CMDS}
    if words and words[0] in doit_commands:
        command = words.pop(0)
        if command != "run":
            return command, []
    words = _doit_parse(Run.base_options + DodoTaskLoader.cmd_options + Run.cmd_options, words)
    options = command_options()
    tasks: list[tuple[str, list[str]]] = []
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
        tasks.append((name, own))
    return "run", tasks


def _closest(word: str, choices: list[str]) -> str:
    match = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean {match[0]}?)" if match else ""


def check_words(name: str, words: list[str]) -> None:
    """Raise UsageError for the first option ``name`` does not take."""
    options = command_options()
    base = name.split(":", 1)[0]
    if base not in options:
        if name.startswith("-"):
            raise UsageError(f"unknown option {name}")
        raise UsageError(f"unknown command {name}{_closest(name, list(options))}; "
                         f"commands: {', '.join(sorted(options))} (doit list)")
    table = options[base]
    known = ", ".join(table) or "none"
    if ":" in name and base in BACKUP_COMMANDS and words:
        raise UsageError(f"options belong to the command, not to one of its folders: "
                         f"doit {base} {' '.join(words)} (not doit {name} ...)")
    index = 0
    while index < len(words):
        word = words[index]
        index += 1
        if word == "--":
            break
        if not word.startswith("-") or word == "-":
            continue
        option, eq, value = word.partition("=")
        if option not in table:
            raise UsageError(f"unknown option {option} for doit {base}"
                             f"{_closest(option, list(table))}; its options: {known}")
        if table[option] is bool:
            if eq:
                raise UsageError(f"{option} takes no value (doit {base})")
            continue
        if not eq:
            if index >= len(words):
                raise UsageError(f"{option} needs a value (doit {base})")
            value = words[index]
            index += 1
        if table[option] is int:
            try:
                int(value)
            except ValueError:
                raise UsageError(f"{option} takes a whole number, got {value!r}") from None
        if option == "--report":
            check_report(value)


def one_run_options(tasks: list[tuple[str, list[str]]]) -> None:
    """Backup commands on one line are one run with one set of options: they are
    written once, after the last of them (``doit snapshot versioned --note X``)."""
    backups = [(name, own) for name, own in tasks if name.split(":", 1)[0] in BACKUP_COMMANDS]
    for name, own in backups[:-1]:
        if own:
            last = backups[-1][0]
            raise UsageError(f"doit {name} {' '.join(own)} {last}: the backup commands on one "
                             f"line are one run with one set of options; write them once, "
                             f"after the last command (doit {name} {last} {' '.join(own)})")


def report_inside(plan: Plan, tasks: list[tuple[str, list[str]]]) -> str | None:
    """A --report FILE inside the backup destination (refused: never write into it)."""
    from .paths import user_cwd
    dest = os.path.realpath(plan.destination)
    for _name, own in tasks:
        for index, word in enumerate(own):
            value = word.partition("=")[2] if word.startswith("--report=") else (
                own[index + 1] if word == "--report" and index + 1 < len(own) else None)
            if not value:
                continue
            path = os.path.join(user_cwd(), os.path.expanduser(value))
            real = os.path.realpath(os.path.dirname(path))
            if real == dest or real.startswith(dest + os.sep):
                return value
    return None


def check_report(value: str) -> None:
    """--report FILE: a file that can be created, checked before the run."""
    if not value:
        raise UsageError("--report needs a file name")
    from .paths import user_cwd  # doit runs in dodo.py's folder
    path = os.path.join(user_cwd(), os.path.expanduser(value))
    folder = os.path.dirname(path) or "."
    if os.path.isdir(path):
        raise UsageError(f"--report {value}: is a folder; give a file name")
    if not os.path.isdir(folder):
        raise UsageError(f"--report {value}: no folder {folder}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"--report {value}: the folder {folder} is not writable")


def _refuse(lines: list[str]) -> None:
    for line in lines:
        print(f"snapback: {line}", file=sys.stderr)
    raise SystemExit(2)


def load_plan_or_exit(config: str | None) -> Plan:
    """Check the command line, then load the plan (with the checks the commands
    need); on any problem print one line per problem and exit 2."""
    words = doit_words()
    strict = True                          # unknown command line: every check
    tasks: list[tuple[str, list[str]]] = []
    if words is not None:
        try:
            command, tasks = read_command_line(words)
            for name, own in tasks:
                check_words(name, own)
            one_run_options(tasks)
        except UsageError as exc:
            _refuse([str(exc)])
        if command == "run":
            strict = not tasks or any(n.split(":", 1)[0] in READS_SOURCES for n, _ in tasks)
        else:
            strict = False                 # list, help, info...: nothing is read
    try:
        plan = load(locate(config), backup=strict)
    except PlanError as exc:
        _refuse([*exc.problems, "the plan is invalid; nothing was done"])
        raise                              # pragma: no cover (_refuse exits)
    inside = report_inside(plan, tasks)
    if inside is not None:
        _refuse([f"--report {inside}: is inside the backup destination {plan.destination}; "
                 "write the report somewhere else"])
    return plan


# ---- what dodo.py gets --------------------------------------------------------

def configure(plan: Plan) -> tuple[Session, dict[str, Any]]:
    """This doit invocation's session and DOIT_CONFIG: our state backend, a checker
    and a reporter that know the session."""
    session = Session(plan)
    checker = type("Checker", (_Checker,), {"session": session, "rule": plan.checker})
    reporter = type("SnapbackReporter", (Reporter,), {"session": session})
    return session, {
        "backend": "snapback",                     # CatalogState (entry point)
        "dep_file": os.fspath(plan.meta_dir),      # unused: the backend keeps no file
        "check_file_uptodate": checker,
        "reporter": reporter,
        "continue": True,                          # one bad folder must not stop the others
        "default_tasks": ["snapshot"],
        "verbosity": 0,
    }


def task_creators(session: Session) -> dict[str, Callable[..., Any]]:
    """``task_<name>`` -> doit task creator, for every command of the registry."""
    out: dict[str, Callable[..., Any]] = {}
    for command in REGISTRY.values():
        if command.backup:
            out[f"task__{command.name}"] = _backup_creator(session, command.name, command.doc)
        else:
            out[f"task_{command.name}"] = _command_creator(session.plan, command.name)
    return out


def _backup_creator(session: Session, name: str, doc: str) -> Callable[..., Any]:
    # The options are declared here (so that doit accepts them after the command's
    # name) but reach the session through the reporter (``Session.start``): doit parses
    # a creator's options only when the word equals the creator's own name, and the
    # names are ``_snapshot``...
    def create(**_defaults: Any) -> Iterator[dict[str, Any]]:
        from .backup import backup_tasks  # the walk, pathspec, the modes: only for a backup
        try:
            yield from backup_tasks(session, name)
        except SnapbackError as exc:   # the runner's finally still calls the reporter
            print(f"snapback: {exc}", file=sys.stderr)
            raise SystemExit(exc.status) from None
    create.__doc__ = doc
    delayed: Callable[..., Any] = create_after(creates=[name])(
        task_params([o.doit() for o in REGISTRY[name].options])(create))
    return delayed


def _command_creator(plan: Plan, name: str) -> Callable[[], dict[str, Any]]:
    command = REGISTRY[name]

    def create() -> dict[str, Any]:
        return {
            "actions": [functools.partial(run_command, command, plan)],
            "pos_arg": "words",
            "params": [o.doit() for o in command.options],
            "uptodate": [False],
            "verbosity": 2,
            "doc": command.doc,
        }
    create.__doc__ = command.doc
    return create


# ---- doit help ------------------------------------------------------------------

def _doit_help() -> type:
    from doit.cmd_help import Help as DoitHelp

    class Help(DoitHelp):  # type: ignore[misc]  # doit ships no types
        """``doit help`` (the doit command ``help``, entry point in pyproject.toml):
        for snapback's dodo.py, snapback's commands first, each with its line, then
        doit's own; ``doit help <command>`` as doit shows it; an unknown name is one
        line and status 2.  For any other dodo file, doit's own help."""

        USAGE = "__snapback_usage__"

        def execute(self, params: Any, args: list[str]) -> int:
            if len(args) == 1 and (args[0] in self.cmds or args[0] == "task"):
                result: int = super().execute(params, args)
                return result
            if len(args) > 1:
                print(f"snapback: doit help takes one name, got {' '.join(args)}",
                      file=sys.stderr)
                return 2
            if args and args[0] in REGISTRY:      # needs no plan: the registry says it
                self._command_help(REGISTRY[args[0]])
                return 0
            self.ours = False
            try:
                found = DoitCmdBase_execute(self, params, [args[0] if args else self.USAGE])
            except SystemExit:                     # snapback's dodo.py, with a bad plan:
                self.ours, found = True, False     # it said why; the usage still helps
                if not args:
                    self._usage()
                    return 2
            except Exception:                      # no dodo.py here, or not ours: doit's
                found = False
            if self.ours:
                return 0 if found else 2
            result = super().execute(params, args)
            return result

        def _command_help(self, command: Any) -> None:
            from doit.cmdparse import CmdOption, TaskParse
            print(f"{command.name}  {command.doc}")
            parse = TaskParse([CmdOption(o.doit()) for o in command.options])
            for option in parse.options:
                print("\n".join(option.help_doc()))

        def _usage(self) -> None:
            print("snapback: a backup of your working folders (README.md)\n")
            print("Commands")
            for command in REGISTRY.values():
                print(f"  doit {command.name:<10} {command.doc}")
            print("\n  doit help COMMAND   its options")
            print("\ndoit's own commands (snapback keeps no doit state: forget, ignore, "
                  "reset-dep and dumpdb have nothing to act on)")
            for name in sorted(self.cmds):
                print(f"  doit {name:<14} {self.cmds[name].doc_purpose}")

        def _execute(self, pos_args: list[str]) -> bool:
            names = {t.name for t in self.task_list}
            self.ours = all(c in names for c in REGISTRY if not REGISTRY[c].backup)
            if not self.ours:
                return False
            if pos_args[0] == self.USAGE:
                self._usage()
                return True
            if pos_args[0] in {t.name for t in self.task_list}:
                found: bool = super()._execute(pos_args)
                return found
            print(f"snapback: unknown command {pos_args[0]}{_closest(pos_args[0], list(REGISTRY))}"
                  f"; commands: {', '.join(REGISTRY)} (doit help)", file=sys.stderr)
            return False

    return Help


def DoitCmdBase_execute(command: Any, params: Any, args: list[str]) -> bool:
    """doit's loading of dodo.py and its tasks, then ``command._execute(args)``."""
    from doit.cmd_base import DoitCmdBase
    found: bool = DoitCmdBase.execute(command, params, args)
    return found


Help = _doit_help()
