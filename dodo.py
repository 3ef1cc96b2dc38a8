"""snapback's doit entry point: the plan compiled into tasks.  Thin by design.

``doit snapshot`` / ``doit list`` / ``doit help snapshot``; another plan with
``doit snapshot config=path/to/plan.yaml`` or ``SNAPBACK_CONFIG``.
"""

from doit import create_after, get_var, task_params

from pipeline import tasks
from pipeline.config import doit_config, load_plan_or_exit

PLAN = load_plan_or_exit(get_var("config", None))
DOIT_CONFIG = doit_config(PLAN)

# The backup tasks need a walk of every source, so they are created only when
# a backup command runs (never for `doit list`).  Each command has its own
# creator for its own doc line; whichever runs first creates them all.


@create_after(creates=["snapshot"])
@task_params(tasks.BACKUP_PARAMS)
def task_snapshot(**options):
    """mirror every source into <destination>/system_snapshot/, then cleanup, then report"""
    return tasks.backup_tasks(PLAN, **options)


@create_after(creates=["cleanup"])
@task_params(tasks.BACKUP_PARAMS)
def task_cleanup(**options):
    """remove from the backup what left the sources or became ignored"""
    return tasks.backup_tasks(PLAN, **options)


@create_after(creates=["report"])
@task_params(tasks.BACKUP_PARAMS)
def task_report(**options):
    """write the run record to .snapback/runs.jsonl (snapshot, versioned and all run it)"""
    return tasks.backup_tasks(PLAN, **options)


@create_after(creates=["versioned"])
@task_params(tasks.BACKUP_PARAMS)
def task_versioned(**options):
    """record new, changed and deleted files in <destination>/versioned_backup/, then report"""
    return tasks.backup_tasks(PLAN, **options)


@create_after(creates=["all"])
@task_params(tasks.BACKUP_PARAMS)
def task_all(**options):
    """snapshot and versioned in one run, walking each source once"""
    return tasks.backup_tasks(PLAN, **options)
