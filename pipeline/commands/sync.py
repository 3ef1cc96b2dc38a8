"""doit sync [--dry-run] [--verbose]: the backup to the plan's rclone remote."""

from __future__ import annotations

from doit.exceptions import TaskFailed

from .. import sync
from .base import Context, no_paths


def run(ctx: Context, paths: list[str], dry_run: bool = False,
        verbose: bool = False) -> TaskFailed | None:
    """Send the backup to the plan's rclone remote (the mirror mirrored, history kept)."""
    no_paths(paths, "sync sends the whole backup")
    with ctx.reading() as catalog:      # the lock held: no backup changes it meanwhile
        catalog.close()                 # (not held open: sync folds a killed run's journal)
        done = sync.sync(ctx.plan, dry_run)
    ctx.say("\n".join(sync.describe(done, dry_run, verbose)))
    note = sync.cannot_hold(ctx.plan)          # what the remote cannot hold: one line
    if note:
        print(note)
    return None
