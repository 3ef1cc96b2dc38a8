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

**The command line** is read once, in ``pipeline.cmdline``.

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

import functools
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from doit import create_after, task_params
from doit.cmd_base import TaskLoader2
from doit.dependency import FileChangedChecker

from . import change
from .cmdline import CommandLine, _refuse, check_doit_command, load_plan_or_exit, read_command_line
from .commands import REGISTRY
from .commands.base import run_command
from .errors import SnapbackError, UsageError
from .lstat import AnyStat
from .plan import Plan
from .reporter import Reporter
from .session import Session

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

    def info(self, file_path: str) -> AnyStat:
        st = self.session.stats.get(file_path)
        return st if st is not None else os.lstat(file_path)

    def check_modified(self, file_path: str, file_stat: os.stat_result, state: Any) -> bool:
        record = self.session.expected.get(state[0], {}).get(file_path)
        return record is None or self.key(file_stat) != self.stored(record)

    def get_state(self, dep: str, current_state: Any) -> None:
        return None                   # nothing to save: the catalog is the state


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
        self.ends_process = False     # doit's own process (dodo.py): ended when run is done

    def load_doit_config(self) -> dict[str, Any]:
        plan = load_plan_or_exit(self.line, default=self.default_plan)
        self.session, config = configure(plan)
        self.session.line = self.line
        self.session.ends_process = self.ends_process
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
        import gc

        from doit import get_var
        from doit.cmd_base import DodoTaskLoader
        gc.disable()        # a run keeps no cycles to collect (see pipeline.__main__.command)
        if not backend_known():
            _refuse(["doit does not know snapback's state backend here: run doit from the "
                     f"checkout ({os.path.dirname(dodo)}), whose pyproject.toml names it, or "
                     "use the snapback command from any folder"])
        line = None
        program = os.path.basename(sys.argv[0]) if sys.argv else ""
        own = program == "doit" or sys.argv[0].endswith(os.path.join("doit", "__main__.py"))
        if own:
            # output that cannot be written ends quietly, as the snapback command's does
            # (helper-57: `doit verify > /dev/full` said status 1, "damage")
            from .__main__ import quiet_streams
            quiet_streams()
            try:
                line = read_command_line(sys.argv[1:], DodoTaskLoader.cmd_options)
                line.program = "doit"
                check_doit_command(line.command, "doit")     # (helper-58: `doit info`)
            except UsageError as exc:
                _refuse([str(exc)])
        config = get_var("config", None)
        if line is None and config is not None:         # the plan, at least
            line = CommandLine(config=config, program="doit")
        loader = cls(line, Path(dodo).resolve().parent / "backup.yaml")
        # doit's own process ends as the snapback command does, once the run is done
        # (its report flushed, the catalog closed, the lock released): without the
        # interpreter's teardown (pipeline.__main__.end)
        loader.ends_process = own
        return loader


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
