"""What ``dodo.py`` needs at load time: the command line checked, the plan (or a
one-line exit 2), and DOIT_CONFIG.

doit parses a task's options itself, before any task runs, and answers a
mistake with its parser's dump and status 3 (``ERROR: Error parsing Task:
option --dryrun not recognized (parsing options: [CmdOption(...``).  dodo.py is
loaded after doit has read its own options and before it reads the tasks', so
this module reads the same words first, as doit will (``read_command_line``),
and refuses a mistake in snapback's words with status 2: the option, the
command's options, and the closest match.  doit gives a dodo file no access to
its command line, so the words are taken from the frame of ``DoitMain.run``
(the one place that holds them, for ``doit``, ``python -m doit`` and the API
alike).  Options written *before* the command name (``doit --dry-run
snapshot``) are doit's own, read before dodo.py loads: doit reports those.

The words also say which checks the plan needs: a backup command needs every
source readable; the recovery commands (history, restore, diff, verify...)
must work when a source folder is gone.
"""

from __future__ import annotations

import difflib
import functools
import os
import sys
from typing import Any

from . import run
from .errors import PlanError, SnapbackError, UsageError
from .plan import Plan, load, locate
from .report import Reporter
from .doit_glue import doit_settings
from .tasks import BACKUP_PARAMS, COMMAND_DOCS, forget_scans

# The options of each snapback command, as written on the command line.
BACKUP_OPTIONS = {f"--{p['long']}": p["type"] for p in BACKUP_PARAMS}
BACKUP_COMMANDS = tuple(COMMAND_DOCS)               # snapshot, versioned, all, cleanup, report
# Commands that read the sources, and so need each of them readable.
READS_SOURCES = (*BACKUP_COMMANDS, "explain")


def command_options() -> dict[str, dict[str, type]]:
    """Every command -> {"--option": type}."""
    from .commands import COMMAND_OPTIONS, OPTIONS
    out = {name: dict(BACKUP_OPTIONS) for name in BACKUP_COMMANDS}
    for name, keys in COMMAND_OPTIONS.items():
        out[name] = {f"--{OPTIONS[k]['long']}": OPTIONS[k]["type"] for k in keys}
    return out


def doit_words() -> list[str] | None:
    """The words doit is running with (None when doit is not on the stack)."""
    try:
        from doit.doit_cmd import DoitMain
    except ImportError:          # pragma: no cover
        return None
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code is DoitMain.run.__code__:
            words = frame.f_locals.get("all_args")
            return list(words) if words is not None else None
        frame = frame.f_back
    return None


def _doit_parse(options: tuple, words: list[str]) -> list[str]:
    """The words left after doit's own options (as doit reads them: getopt)."""
    from doit.cmdparse import CmdOption, CmdParse, CmdParseError
    try:
        return CmdParse([CmdOption(o) for o in options]).parse_only(words)[1]
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


def check_report(value: str) -> None:
    """--report FILE: a file that can be created, checked before the run."""
    if not value:
        raise UsageError("--report needs a file name")
    from .paths import user_cwd                  # doit runs in dodo.py's folder
    path = os.path.join(user_cwd(), os.path.expanduser(value))
    folder = os.path.dirname(path) or "."
    if os.path.isdir(path):
        raise UsageError(f"--report {value}: is a folder; give a file name")
    if not os.path.isdir(folder):
        raise UsageError(f"--report {value}: no folder {folder}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"--report {value}: the folder {folder} is not writable")


def guarded(creator):
    """A backup command's (delayed) task creator whose user-fixable error (a catalog
    of another format, say) ends the run with one line and its status, instead of
    doit's traceback and status 3: the creator runs inside doit's runner, whose
    ``finally`` still saves doit's state and calls the reporter on the way out."""
    @functools.wraps(creator)        # keeps doit's attributes (create_after, task_params)
    def create(**options: Any):
        try:
            yield from creator(**options)
        except SnapbackError as exc:
            print(f"snapback: {exc}", file=sys.stderr)
            raise SystemExit(exc.status) from None
    return create


def _refuse(lines: list[str]) -> None:
    for line in lines:
        print(f"snapback: {line}", file=sys.stderr)
    raise SystemExit(2)


def load_plan_or_exit(config: str | None) -> Plan:
    """Check the command line, then load the plan (with the checks the commands
    need); on any problem print one line per problem and exit 2."""
    words = doit_words()
    strict = True                          # unknown command line: every check
    if words is not None:
        try:
            command, tasks = read_command_line(words)
            for name, own in tasks:
                check_words(name, own)
        except UsageError as exc:
            _refuse([str(exc)])
        if command == "run":
            strict = not tasks or any(n.split(":", 1)[0] in READS_SOURCES for n, _ in tasks)
        else:
            strict = False                 # list, help, info...: nothing is read
    try:
        return load(locate(config), backup=strict)
    except PlanError as exc:
        _refuse([*exc.problems, "the plan is invalid; nothing was done"])
        raise                              # pragma: no cover (_refuse exits)


def doit_config(plan: Plan) -> dict[str, Any]:
    """doit's settings: our checker and state (pipeline.doit_glue), our reporter."""
    run.reset()
    forget_scans()
    return {
        **doit_settings(plan.checker, plan.meta_dir),  # doit's state is the catalog
        "reporter": Reporter,
        "continue": True,                            # one bad folder must not stop the others
        "default_tasks": ["snapshot"],
        "verbosity": 0,
    }
