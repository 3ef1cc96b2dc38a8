"""doit explain PATH... | explain --tree [DIR]: is PATH backed up, by which mode, and why."""

from __future__ import annotations

from doit.exceptions import TaskFailed

from .. import explain
from ..errors import UsageError
from ..paths import Target, in_source
from ..show import human_size, plural
from .base import Context


def run(ctx: Context, paths: list[str], tree: bool = False) -> TaskFailed | None:
    """Whether each PATH is backed up by each mode, and the rule that decided."""
    plan = ctx.plan
    if tree:
        targets = [in_source(plan, p) for p in paths] or [Target(s, "") for s in plan.sources]
        for target in targets:                 # every DIR checked before anything is printed
            explain.tree_folder(plan, target)
        for target in targets:
            rows = explain.left_out_tree(plan, target)
            print(f"left out below {target.label}/: {plural(len(rows), 'folder')}")
            for size, count, label, why in rows:
                print(f"  {human_size(size):>9} {plural(count, 'file'):>14}  {label}  {why}")
        return None
    if not paths:
        raise UsageError("explain needs a PATH (or --tree [DIR])")
    missing = 0
    for text in paths:
        target = in_source(plan, text)
        verdicts = explain.explain(plan, target)
        print(f"{target.label}")
        for verdict in verdicts:
            print(f"  {verdict.mode:<10} {verdict.text}")
        missing += not any(v.kept for v in verdicts)
    if missing:
        return TaskFailed(f"{missing} of {len(paths)} path(s) are not backed up")
    return None
