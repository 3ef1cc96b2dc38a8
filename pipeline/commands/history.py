"""doit history [PATH]: the runs; with PATH, a file's versions or a folder's changes."""

from __future__ import annotations

import os

from doit.exceptions import TaskFailed

from .. import history, runlog
from ..catalog import WHOLE_KINDS, open_catalog
from ..paths import locate
from .base import Context, known, one_path, retired_sources, split, with_retired


def run(ctx: Context, paths: list[str]) -> TaskFailed | None:
    plan = ctx.plan
    path = one_path(paths, "history", required=False)
    catalog = open_catalog(plan.meta_dir, writable=False)
    try:
        if path is None:
            print("\n".join(history.format_runs(runlog.read(plan.meta_dir))))
            for name in retired_sources(plan, catalog):
                print(f"in the backup, no longer in the plan: {name} "
                      f"(doit history {name}/PATH, doit restore {name}/PATH)")
            return None
        view = with_retired(plan, catalog)
        target = locate(view, path, known(catalog, view))
        rows = catalog.history(target.source.name, *split(target.rel))
        if not rows and not catalog.rows_under(target.source.name, os.fsencode(target.rel)) \
                and catalog.pruned_under(target.source.name, os.fsencode(target.rel)):
            print(f"{target.label}: no versions kept: it was deleted, and prune dropped "
                  "its history (keep_deleted)")
        elif rows and rows[-1].entry != "dir":
            first = next((r for r in rows if r.kind in WHOLE_KINDS), None)
            origin = catalog.first_seen(first) if first is not None and first.sha256 else None
            print(f"{target.label}:")
            print("\n".join(history.format_versions(rows, origin)))
        else:
            print("\n".join(history.folder_changes(catalog, target)))
    finally:
        catalog.close()
    return None
