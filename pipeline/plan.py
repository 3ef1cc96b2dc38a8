"""The plan: ``backup.yaml`` loaded once, checked against one schema, frozen.

Every problem is collected before anything is written, and each is reported on
one line that names the key and, where the YAML says it, the line:
``backup.yaml:7: ignore[2]: invalid pattern 'a[': ...``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from .errors import PlanError
from .layout import META
from .retention import CHECKS as RETENTION_CHECKS
from .retention import Policy
from .retention import from_mapping as retention_policy

PLAN_NAME = "backup.yaml"
MAX_PLAN_BYTES = 1 << 20   # a plan is a few hundred bytes; refuse anything huge
MAX_YAML_NODES = 100_000   # alias expansion past this is a "billion laughs" bomb

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?i?B?)\s*$", re.IGNORECASE)
_UNITS = {"": 1, "B": 1, "K": 1000, "KB": 1000, "KIB": 1024, "M": 10**6, "MB": 10**6,
          "MIB": 1 << 20, "G": 10**9, "GB": 10**9, "GIB": 1 << 30,
          "T": 10**12, "TB": 10**12, "TIB": 1 << 40}


class Source(NamedTuple):
    path: Path          # absolute, resolved
    name: str           # its folder inside the backup


class ModeOptions(NamedTuple):
    ignore: tuple[str, ...]
    cleanup: bool = True
    max_diff_bytes: int = 8 << 20


class Plan(NamedTuple):
    file: Path
    destination: Path
    sources: tuple[Source, ...]
    use_default_ignores: bool
    ignore: tuple[str, ...]
    exceptions: tuple[str, ...]
    ignore_files: tuple[str, ...]
    checker: str
    snapshot: ModeOptions
    versioned: ModeOptions
    protect: bool
    remote_target: str | None
    retention: Policy = Policy()

    @property
    def meta_dir(self) -> Path:
        """The tool's own data: run log, catalog, lock, doit state."""
        return self.destination / META

    def mode(self, name: str) -> ModeOptions:
        return self.snapshot if name == "snapshot" else self.versioned


# ---- the schema: key -> (check, default); a check returns (value, error) ----

Check = Callable[[Any], "tuple[Any, str | None]"]


def _is(kind: type, label: str) -> Check:
    def check(value: Any) -> tuple[Any, str | None]:
        if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
            return value, None
        if value is None:
            return None, (f"expected {label}, got nothing "
                          '(YAML reads a bare ~ as nothing: quote it, "~")')
        return None, f"expected {label}, got {_kind(value)}"
    return check


def _strings(value: Any) -> tuple[Any, str | None]:
    if value is None:
        return (), None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return None, f"expected a list of strings, got {_kind(value)}"
    return tuple(value), None


def _choice(*choices: str) -> Check:
    def check(value: Any) -> tuple[Any, str | None]:
        if value in choices:
            return value, None
        return None, f"expected one of {', '.join(choices)}, got {value!r}"
    return check


def _size(value: Any) -> tuple[Any, str | None]:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value, None
    match = _SIZE.match(value) if isinstance(value, str) else None
    unit = match.group(2).upper() if match else ""
    if not match or unit not in _UNITS:
        return None, f"expected a size such as 8MiB or 500KB, got {value!r}"
    return int(float(match.group(1)) * _UNITS[unit]), None


def _kind(value: Any) -> str:
    names = {dict: "a mapping", list: "a list", str: "a string", bool: "true/false",
             int: "a number", float: "a number", type(None): "nothing"}
    return names.get(type(value), type(value).__name__)


TOP: dict[str, tuple[Check, Any]] = {
    "version": (_is(int, "1"), 1),
    "destination": (_is(str, "a folder path"), None),
    "sources": (_is(list, "a list of sources"), None),
    "use_default_ignores": (_is(bool, "true/false"), True),
    "ignore": (_strings, ()),
    "exceptions": (_strings, ()),
    "ignore_files": (_strings, (".backupignore",)),
    "checker": (_choice("hash", "mtime"), "hash"),
    "snapshot": (_is(dict, "a mapping"), {}),
    "versioned": (_is(dict, "a mapping"), {}),
    "protect": (_is(bool, "true/false"), False),
    "remote": (_is(dict, "a mapping"), None),
    "retention": (_is(dict, "a mapping"), None),
}
RETENTION: dict[str, tuple[Check, Any]] = {
    **{key: (check, None) for key, check in RETENTION_CHECKS.items()},
    "auto": (_is(bool, "true/false"), False),
}
SOURCE: dict[str, tuple[Check, Any]] = {
    "path": (_is(str, "a folder path"), None),
    "name": (_is(str, "a name"), None),
}
MODES: dict[str, dict[str, tuple[Check, Any]]] = {
    "snapshot": {"cleanup": (_is(bool, "true/false"), True), "ignore": (_strings, ())},
    "versioned": {"max_diff_bytes": (_size, 8 << 20), "ignore": (_strings, (".git/",))},
}
REMOTE: dict[str, tuple[Check, Any]] = {"target": (_is(str, "an rclone remote"), None)}


class _Problems:
    """Collects one line per problem, each with the YAML line of its key."""

    def __init__(self, file: Path, lines: dict[str, int]):
        self.file, self.lines = file, lines
        self.items: list[str] = []

    def add(self, key: str, message: str) -> None:
        line = self.lines.get(key) or self.lines.get(key.split("[")[0].rsplit(".", 1)[0])
        where = f"{self.file}:{line}" if line else str(self.file)
        self.items.append(f"{where}: {key}: {message}" if key else f"{where}: {message}")


def _read_section(data: dict[str, Any], schema: dict[str, tuple[Check, Any]], prefix: str,
                  problems: _Problems) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in data:
        if key not in schema:
            known = ", ".join(schema)
            problems.add(f"{prefix}{key}", f"unknown key (known keys: {known})")
    for key, (check, default) in schema.items():
        if key not in data or (data[key] is None and default is not None):
            out[key] = default
            continue
        value, error = check(data[key])
        if error:
            problems.add(f"{prefix}{key}", error)
        out[key] = value if error is None else default
    return out


def _key_lines(node: yaml.Node, prefix: str = "", out: dict[str, int] | None = None,
               budget: list[int] | None = None) -> dict[str, int]:
    """Map each key path (``snapshot.ignore``, ``sources[0].path``) to its line.

    Also counts nodes as aliases expand them, so that a YAML bomb is refused
    before ``safe_load`` would try to build it.
    """
    out = {} if out is None else out
    budget = [MAX_YAML_NODES] if budget is None else budget
    budget[0] -= 1
    if budget[0] < 0:
        raise PlanError([f"{prefix or 'plan'}: the YAML expands to more than "
                         f"{MAX_YAML_NODES} nodes (aliases); refusing it"])
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = f"{prefix}{key_node.value}"
            out.setdefault(key, key_node.start_mark.line + 1)
            _key_lines(value_node, key + ".", out, budget)
    elif isinstance(node, yaml.SequenceNode):
        base = prefix.rstrip(".")
        for index, item in enumerate(node.value):
            key = f"{base}[{index}]"
            out.setdefault(key, item.start_mark.line + 1)
            _key_lines(item, key + ".", out, budget)
    return out


_REMOTE = re.compile(r"^(/|:?[A-Za-z0-9_][A-Za-z0-9_.\- ]*:)")   # name:path, or /a/folder


def _inside(path: Path, destination: Path) -> bool:
    """Is ``path`` the destination or below it, however either is named (symlinks, bind
    mounts, ``..``)?  By resolved paths, and by device and inode of every folder above."""
    real, real_dest = Path(os.path.realpath(path)), Path(os.path.realpath(destination))
    if real == real_dest or real_dest in real.parents:
        return True
    try:
        target = os.stat(destination)
    except OSError:
        return False                          # no destination yet: the paths said it all
    for folder in (real, *real.parents):
        try:
            st = os.stat(folder)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (target.st_dev, target.st_ino):
            return True
    return False


def _expand(path: str, base: Path) -> Path:
    expanded = Path(os.path.expanduser(os.path.expandvars(path)))
    return Path(os.path.abspath(base / expanded))


def load(file: str | os.PathLike[str], backup: bool = True) -> Plan:
    """Read, check and freeze the plan; raise PlanError listing every problem.

    ``backup``: also check what a backup run needs (each source exists and is a
    readable folder).  The recovery commands (history, restore, diff, verify,
    sync, prune...) read only the backup: a source folder that is gone is no
    reason to refuse them, it is when they are needed most."""
    path = Path(os.path.abspath(file))
    try:
        if path.stat().st_size > MAX_PLAN_BYTES:
            raise PlanError([f"{path}: the plan is larger than 1 MiB; refusing it"])
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PlanError([f"{path}: no such plan (give another with --config FILE "
                         "or SNAPBACK_CONFIG)"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PlanError([f"{path}: cannot read the plan: {exc}"]) from None
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        root = yaml.compose(text, Loader=loader)
        lines = _key_lines(root) if root is not None else {}
        data = yaml.load(text, Loader=loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise PlanError([f"{where}: not valid YAML: {problem}"]) from None
    return check(data, path, lines, backup)


def check(data: Any, path: Path, lines: dict[str, int] | None = None,
          backup: bool = True) -> Plan:
    """Turn parsed YAML into a Plan, or raise PlanError with every problem."""
    problems = _Problems(path, lines or {})
    if not isinstance(data, dict):
        raise PlanError([f"{path}: expected a mapping of plan keys, got {_kind(data)}"])
    top = _read_section(data, TOP, "", problems)
    if top["version"] not in (1, None) and isinstance(top["version"], int):
        problems.add("version", f"this snapback reads plan version 1, got {top['version']}")
    base = path.parent
    destination = None
    if top["destination"] is None:
        problems.add("destination", "missing: where should the backup go?")
    else:
        destination = _expand(top["destination"], base)
        try:
            if destination.exists() and not destination.is_dir():
                problems.add("destination", f"{destination} exists and is not a folder")
        except OSError as exc:          # (another user's home, as sudo -u leaves $HOME)
            problems.add("destination", f"{destination} cannot be looked at: "
                         f"{exc.strerror or exc}")
    sources = _read_sources(top["sources"], base, problems, backup)
    modes = {}
    for mode, schema in MODES.items():
        modes[mode] = _read_section(top[mode] or {}, schema, f"{mode}.", problems)
    remote = _read_section(top["remote"], REMOTE, "remote.", problems) if top["remote"] else {}
    retention = _read_section(top["retention"] or {}, RETENTION, "retention.", problems)
    if top["remote"] is not None and not remote.get("target"):
        problems.add("remote.target", "missing: an rclone remote such as gdrive:backups")
    elif remote.get("target") and not _REMOTE.match(remote["target"]):
        # a relative path would be taken from wherever doit runs (dodo.py's folder), and
        # a leading dash would be read as one of rclone's options
        problems.add("remote.target", f"{remote['target']!r} is not an rclone remote: "
                     "write it as name:path (gdrive:backups, a name from rclone config) "
                     "or as an absolute folder (/mnt/usb/backups)")
    for key, patterns in (("ignore", top["ignore"]), ("exceptions", top["exceptions"]),
                          ("snapshot.ignore", modes["snapshot"]["ignore"]),
                          ("versioned.ignore", modes["versioned"]["ignore"])):
        if backup:           # the commands that select (backups, explain) check the rules;
            _check_patterns(key, patterns, problems)   # list, restore... never apply them
    for index, name in enumerate(top["ignore_files"] or ()):
        if not name or "/" in name or name in (".", ".."):
            problems.add(f"ignore_files[{index}]", f"{name!r} is not a file name")
    if destination is not None:
        for index, source in enumerate(sources):
            if _inside(source.path, destination):
                problems.add(f"sources[{index}].path",
                             f"{source.path} is inside the destination {destination}")
    if problems.items:
        raise PlanError(problems.items)
    assert destination is not None
    return Plan(
        file=path, destination=destination, sources=tuple(sources),
        use_default_ignores=top["use_default_ignores"],
        ignore=tuple(top["ignore"]), exceptions=tuple(top["exceptions"]),
        ignore_files=tuple(top["ignore_files"]),
        checker=top["checker"],
        snapshot=ModeOptions(ignore=tuple(modes["snapshot"]["ignore"]),
                             cleanup=modes["snapshot"]["cleanup"]),
        versioned=ModeOptions(ignore=tuple(modes["versioned"]["ignore"]),
                              max_diff_bytes=modes["versioned"]["max_diff_bytes"]),
        protect=top["protect"], remote_target=remote.get("target"),
        retention=retention_policy(retention),
    )


def _read_sources(raw: Any, base: Path, problems: _Problems, backup: bool = True
                  ) -> list[Source]:
    if raw is None:
        problems.add("sources", "missing: which folders should be backed up?")
        return []
    if not raw:
        problems.add("sources", "empty: list at least one folder")
    sources: list[Source] = []
    names: dict[str, int] = {}
    for index, item in enumerate(raw):
        key = f"sources[{index}]"
        if isinstance(item, str):
            item = {"path": item}
        if not isinstance(item, dict):
            problems.add(key, f"expected a mapping with path and name, got {_kind(item)}")
            continue
        fields = _read_section(item, SOURCE, f"{key}.", problems)
        if not fields["path"]:
            if "path" not in item:
                problems.add(f"{key}.path", "missing: the folder to back up")
            continue
        folder = _expand(fields["path"], base)
        problem = _source_problem(folder) if backup else None
        if problem:
            problems.add(f"{key}.path", problem)
            continue
        name = fields["name"] or folder.name or "root"
        if name in (".", "..") or "/" in name or "\0" in name or name.startswith(META):
            problems.add(f"{key}.name", f"{name!r} cannot be a folder name in the backup")
            continue
        if name in names:
            problems.add(f"{key}.name", f"{name!r} is already the name of sources[{names[name]}]"
                         " (give each source its own name)")
            continue
        real = Path(os.path.realpath(folder))   # however the plan spells them
        twice = next((s.path for s in sources if folder == s.path
                      or real == Path(os.path.realpath(s.path))), None)
        if twice is not None:
            same = "" if twice == folder else f" (as {twice})"
            problems.add(f"{key}.path", f"{folder} is listed twice{same}")
            continue
        nested = next((s.path for s in sources if Path(os.path.realpath(s.path)) in real.parents
                       or real in Path(os.path.realpath(s.path)).parents), None)
        if nested is not None:      # one folder backed up twice, under two names
            inner, outer = (folder, nested) if len(str(nested)) < len(str(folder)) \
                else (nested, folder)
            problems.add(f"{key}.path", f"{inner} is inside {outer}, another source: sources "
                         "inside other sources are refused (drop one of them: the outer "
                         "one holds the inner one already)")
            continue
        names[name] = index
        sources.append(Source(path=folder, name=name))
    return sources


def _source_problem(folder: Path) -> str | None:
    """What keeps a backup run from reading a source folder (None: nothing)."""
    try:
        if not folder.exists():
            return f"{folder} does not exist"
        if not folder.is_dir():
            return f"{folder} is not a folder"
    except OSError as exc:
        return f"{folder} cannot be looked at: {exc.strerror or exc}"
    if not os.access(folder, os.R_OK | os.X_OK):
        return f"{folder} is not readable"
    return None


def _check_patterns(key: str, patterns: tuple[str, ...], problems: _Problems) -> None:
    from .selection import pattern_error
    for index, pattern in enumerate(patterns):
        error = pattern_error(pattern)
        if error:
            shown = repr(pattern) if len(pattern) <= 80 else \
                f"{pattern[:60]!r}... ({len(pattern):,} characters)"
            problems.add(f"{key}[{index}]", f"invalid pattern {shown}: {error}")


def _there(path: Path) -> bool:
    """Is there a plan at ``path``?  One that cannot even be looked for (another user's
    home, as ``sudo -u`` leaves $HOME) is a line of its own, not a traceback."""
    try:
        return path.exists()
    except OSError as exc:
        raise PlanError([f"cannot look for a plan at {path}: {exc.strerror or exc}; give "
                         "one with --config FILE or SNAPBACK_CONFIG (README, The plan)"]
                        ) from None


def locate(config: str | None, default: Path | None = None) -> Path:
    """The plan file: ``--config FILE``/``config=FILE``, else $SNAPBACK_CONFIG (both
    relative to where the user ran the command), else ``default`` (dodo.py's
    backup.yaml in the checkout) or ./backup.yaml, else the user's
    ``~/.config/snapback/backup.yaml`` ($XDG_CONFIG_HOME is honoured)."""
    from .paths import user_cwd
    if config is not None and not config.strip():
        raise PlanError(["config= names no file (an unset variable in a cron line?): "
                         "give the plan's path"])
    given = config or os.environ.get("SNAPBACK_CONFIG")
    if given:
        found = Path(os.path.expanduser(given))
        return found if found.is_absolute() else user_cwd() / found
    here = default if default is not None else user_cwd() / PLAN_NAME
    if _there(here):
        return here
    home = Path(os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config"))
    mine = home / "snapback" / PLAN_NAME
    if _there(mine):
        return mine
    raise PlanError([f"no plan: none at {here} nor at {mine}; give one with --config FILE "
                     "or SNAPBACK_CONFIG (README, The plan)"])
