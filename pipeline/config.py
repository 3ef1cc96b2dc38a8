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


def load_plan_or_exit(config: str | None) -> Plan:
    """Load the plan; on any problem print one line per problem and exit 2."""
    try:
        return load(locate(config))
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
