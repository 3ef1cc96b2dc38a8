"""doit fetch [--force]: the backup back from the plan's remote into its destination."""

from __future__ import annotations

import sys
import time

from doit.exceptions import TaskFailed

from .. import offsite, rclone
from .base import Context


def run(ctx: Context, paths: list[str], force: bool = False) -> TaskFailed | None:
    if paths:
        raise offsite.OffsiteUsage("fetch brings back the whole backup: it takes no PATH")
    started = time.monotonic()
    done = offsite.fetch(ctx.plan, force)
    print("\n".join(offsite.describe_fetch(ctx.plan, done, time.monotonic() - started)))
    sys.stdout.flush()
    if done.problems:
        return TaskFailed(f"{len(done.problems)} file(s) could not be brought back from "
                          f"{rclone.remote_root(ctx.plan)}")
    return None
