"""What ``dodo.py`` needs at load time: the plan (or a one-line exit) and DOIT_CONFIG."""

from __future__ import annotations

import sys
from typing import Any

from . import run
from .errors import PlanError
from .plan import Plan, load, locate
from .report import Reporter
from .doit_glue import doit_settings
from .tasks import forget_scans


# Commands that read the sources, and so need each of them readable; the others
# (restore, verify, fetch...) must work on a new machine where the sources are gone.
READS_SOURCES = ("snapshot", "versioned", "all", "cleanup", "report", "explain")


def _reads_sources() -> bool:
    """Does the doit command running read the sources?  doit gives a dodo file no
    access to its command line: the words are taken from ``DoitMain.run``'s frame
    (issue 14 reads them the same way, with every option checked)."""
    from doit.doit_cmd import DoitMain
    frame = sys._getframe(1)
    while frame is not None and frame.f_code is not DoitMain.run.__code__:
        frame = frame.f_back
    words = list(frame.f_locals.get("all_args") or []) if frame is not None else None
    if words is None:
        return True
    with_value = {"-f", "--file", "-d", "--dir", "--db-file", "--backend", "--reporter",
                  "-r", "-n", "--process", "-P", "--parallel-type", "-o", "--output-file",
                  "--check_file_uptodate", "--codec-cls"}
    index = 0
    while index < len(words):
        word = words[index]
        if word in with_value:
            index += 2
            continue
        if word.startswith("-") or ("=" in word and not word.startswith("-")) or word == "run":
            index += 1
            continue
        return word.split(":", 1)[0] in READS_SOURCES
    return True                                  # no command: doit's default, a snapshot


def load_plan_or_exit(config: str | None) -> Plan:
    """Load the plan; on any problem print one line per problem and exit 2."""
    try:
        return load(locate(config), backup=_reads_sources())
    except PlanError as exc:
        for problem in exc.problems:
            print(f"snapback: {problem}", file=sys.stderr)
        print("snapback: the plan is invalid; nothing was done", file=sys.stderr)
        raise SystemExit(2) from None


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
