"""Everything snapback asks of doit, in one place.

**State.**  doit skips a task when its ``uptodate`` values hold and every
``file_dep`` is unchanged against the state doit saved.  Saved state of its own
would be a second record of what the backup holds, and it went wrong exactly
where the two disagreed: a folder moved away and back, a folder put back by a
restore, a file no longer ignored (doit's state said "up to date", the mirror
was empty).  So doit keeps no state here: the backend (``CatalogState``, named
``snapback`` in the ``snapback`` application's doit configuration, ``BACKEND``,
and for ``doit`` in the checkout in pyproject.toml's
``[tool.doit.plugins.backend]``; never an entry point, which every doit
project would load) stores nothing and holds nothing; the checker, made for each
invocation with its ``Session``, compares each file's lstat with what the
catalog records for it (``Session.expected``, filled at task creation from the
catalog; the rule is ``pipeline.change``).  Whatever removes something from
the catalog makes the next run store it again; nothing can go stale, get lost
or outlive a folder.  A folder's own changes (entries added or removed, rules
changed, its mode) are judged at task creation against the catalog too
(``pipeline.backup``).

**The command line** is read once (``read_command_line``), as doit will split
it: doit's command, each task with its words, doit's own run options (``-n``
and ``-P`` are refused: the folder tasks share one session), and ``--config``.
The ``snapback`` application reads the words it is given (``pipeline.app``);
dodo.py, loaded by ``doit``, reads ``sys.argv`` when doit was started as a
command, and checks every source when the words are not known (a program
running doit itself).  A mistake is refused before any task exists, in
snapback's words with status 2 (doit's parser would dump its options and exit
3): the option, the command's options, and the closest match.  Each command's
paths and options, as read, are what its action gets (``run_command``).  The
words also say which checks the plan needs: a backup command needs every
source readable; the recovery commands must work when a source is gone.

**The loader** (``SnapbackLoader``, doit's ``TaskLoader2``) is what both the
``snapback`` command and dodo.py use: the plan found and loaded, doit's
configuration, and the task creators.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from doit import create_after, task_params
from doit.cmd_base import TaskLoader2
from doit.dependency import FileChangedChecker

from . import change
from .commands import MODES_OF, REGISTRY
from .commands.base import run_command
from .errors import PlanError, SnapbackError, UsageError
from .paths import user_cwd
from .plan import Plan, load, locate
from .reporter import Reporter
from .session import Session

BACKUP_COMMANDS = tuple(MODES_OF)                 # snapshot, versioned, all, cleanup
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


def check_run_options(line: CommandLine) -> None:
    """doit's parallel runs are refused: folder tasks share one session (the lock, the
    catalog connection, the counts), which worker processes would each copy."""
    given = line.run_options
    if given.get("num_process") not in (None, 0, 1) or "par_type" in given:
        raise UsageError("-n/--process and -P/--parallel-type are not supported: snapback "
                         "runs its folder tasks one after another (drop the option)")


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
    """A --report FILE inside the backup destination (refused: never write into it)."""
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
        _refuse([*exc.problems, "the plan is invalid; nothing was done"])
    tasks = line.tasks if line is not None else []
    inside = report_inside(plan, tasks)
    if inside is not None:
        _refuse([f"--report {inside}: is inside the backup destination {plan.destination}; "
                 "write the report somewhere else"])
    return plan


# ---- the loader: what both the snapback command and dodo.py use ----------------

BACKEND = {"snapback": f"{__name__}:CatalogState"}     # doit's plugin table: name -> object


def configure(plan: Plan) -> tuple[Session, dict[str, Any]]:
    """This invocation's session and doit configuration: our state backend, a checker
    and a reporter that know the session."""
    session = Session(plan)
    checker = type("Checker", (_Checker,), {"session": session, "rule": plan.checker})
    reporter = type("SnapbackReporter", (Reporter,), {"session": session})
    return session, {
        "backend": "snapback",                     # CatalogState (BACKEND above)
        "dep_file": os.fspath(plan.meta_dir),      # unused: the backend keeps no file
        "check_file_uptodate": checker,
        "reporter": reporter,
        "continue": True,                          # one bad folder must not stop the others
        "default_tasks": ["all"],                  # a first run keeps a history too
        "verbosity": 0,
    }


class SnapbackLoader(TaskLoader2):  # type: ignore[misc]  # doit ships no types
    """doit's task loader for snapback (the way doit documents applications on top of
    it): the plan, found as SPEC.md says, compiled into doit's configuration and tasks.
    The ``snapback`` command gives it the words it read (``CommandLine``); dodo.py
    makes one from doit's command line."""

    def __init__(self, line: CommandLine | None, default_plan: Path | None = None):
        super().__init__()
        self.line = line
        self.default_plan = default_plan
        self.session: Session | None = None

    def load_doit_config(self) -> dict[str, Any]:
        plan = load_plan_or_exit(self.line, default=self.default_plan)
        self.session, config = configure(plan)
        self.session.line = self.line
        return config

    def namespace(self) -> dict[str, Any]:
        assert self.session is not None, "load_doit_config comes first"
        return task_creators(self.session)

    def load_tasks(self, cmd: Any, pos_args: list[str]) -> list[Any]:
        from doit import loader
        tasks: list[Any] = loader.load_tasks(
            self.namespace(), self.cmd_names, allow_delayed=cmd.execute_tasks,
            args=pos_args, config=self.config, task_opts=self.task_opts)
        return tasks

    @classmethod
    def for_dodo(cls, dodo: str) -> SnapbackLoader:
        """The loader of dodo.py, run by doit: the words are doit's command line when
        doit was started as a command (``doit``, ``python -m doit``), else unknown."""
        from doit import get_var
        from doit.cmd_base import DodoTaskLoader
        if not backend_known():
            _refuse(["doit does not know snapback's state backend here: run doit from the "
                     f"checkout ({os.path.dirname(dodo)}), whose pyproject.toml names it, or "
                     "use the snapback command from any folder"])
        line = None
        program = os.path.basename(sys.argv[0]) if sys.argv else ""
        if program == "doit" or sys.argv[0].endswith(os.path.join("doit", "__main__.py")):
            try:
                line = read_command_line(sys.argv[1:], DodoTaskLoader.cmd_options)
                line.program = "doit"
            except UsageError as exc:
                _refuse([str(exc)])
        config = get_var("config", None)
        if line is None and config is not None:         # the plan, at least
            line = CommandLine(config=config, program="doit")
        return cls(line, Path(dodo).resolve().parent / "backup.yaml")


def backend_known() -> bool:
    """Is the backend ``snapback`` in doit's plugin tables, as doit reads them
    (pyproject.toml and doit.cfg of the folder doit started in, entry points)?"""
    from doit import get_initial_workdir
    from doit.doit_cmd import DoitConfig
    from doit.plugin import PluginDict
    started = get_initial_workdir() or os.getcwd()
    config = DoitConfig()
    tables: dict[str, Any] = dict(config.load_config_toml(
        os.path.join(started, "pyproject.toml"), "tool.doit"))
    ini = config.load_config_ini([os.path.join(started, "doit.cfg")])
    if ini.has_section("BACKEND"):
        tables.setdefault("BACKEND", {}).update(ini["BACKEND"])
    plugins = PluginDict()
    plugins.update(plugins._from_ini(tables, "BACKEND"))
    plugins.update(plugins._from_entry_points("BACKEND"))
    return "snapback" in plugins


def task_creators(session: Session) -> dict[str, Callable[..., Any]]:
    """``task_<name>`` -> doit task creator, for every command of the registry."""
    out: dict[str, Callable[..., Any]] = {}
    for command in REGISTRY.values():
        if command.backup:
            out[f"task__{command.name}"] = _backup_creator(session, command.name, command.doc)
        else:
            out[f"task_{command.name}"] = _command_creator(session, command.name)
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


def _command_creator(session: Session, name: str) -> Callable[[], dict[str, Any]]:
    command = REGISTRY[name]
    # the command line as it was read (None: not known, the action reads doit's words)
    read = session.line.parsed.get(name) if session.line is not None else None

    def create() -> dict[str, Any]:
        return {
            "actions": [functools.partial(run_command, command, session.plan, read=read)],
            "pos_arg": "words",
            "params": [o.doit() for o in command.options],
            "uptodate": [False],
            "verbosity": 2,
            "doc": command.doc,
        }
    create.__doc__ = command.doc
    return create
