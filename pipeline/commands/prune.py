"""doit prune [--dry-run] [--keep-*]: drop the versions the retention rules do not keep."""

from __future__ import annotations

from typing import Any

from doit.exceptions import TaskFailed

from .. import prune, runlog
from ..errors import UsageError
from ..layout import STAGING
from ..protect import marker
from ..retention import Policy, from_options
from ..session import clock
from ..store import clear_staging
from .base import Context, needs_backup, no_paths


def run(ctx: Context, paths: list[str], dry_run: bool = False, **given: Any
        ) -> TaskFailed | None:
    """Drop the versions the retention rules do not keep (--dry-run: only say which)."""
    plan = ctx.plan
    no_paths(paths, "prune works on the whole history")
    policy: Policy = from_options(plan.retention, given)
    if policy.empty:
        ctx.say("no retention rules (plan section `retention:` or --keep-* options): "
                "nothing is pruned")
        return None
    needs_backup(plan)
    if marker(plan.meta_dir).exists() and not dry_run:
        raise UsageError("the backup is protected: run snapback unprotect first")
    with (ctx.reading() if dry_run else ctx.writing()) as catalog:
        if not dry_run:                      # what a killed prune or run left there
            clear_staging(plan.meta_dir / STAGING)
        outcomes = prune.run(catalog, plan.destination, policy, clock(),
                             plan.versioned.max_diff_bytes, dry_run)
        lines = prune.describe(outcomes, dry_run)
        print("\n".join(lines))
        if not dry_run and outcomes and catalog.run is not None:
            runlog.append(plan.meta_dir, runlog.prune_record(outcomes, lines[-1],
                                                             *catalog.run))
    failed = [o for o in outcomes if o.problem]
    return TaskFailed(f"{len(failed)} file(s) could not be pruned") if failed else None
