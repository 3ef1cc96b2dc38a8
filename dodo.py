"""snapback's doit entry point: the plan compiled into tasks.  Thin by design.

``doit snapshot`` / ``doit list`` / ``doit help snapshot``; another plan with
``doit snapshot config=path/to/plan.yaml`` or ``SNAPBACK_CONFIG``.
"""

from doit import create_after, get_var, task_params

from pipeline import commands, tasks
from pipeline.config import doit_config, load_plan_or_exit

PLAN = load_plan_or_exit(get_var("config", None))
DOIT_CONFIG = doit_config(PLAN)

# The backup tasks need a walk of every source, so they are created only when
# a backup command runs (never for `doit list`).  Each command has its own
# creator for its own doc line; whichever runs first creates them all.  The
# creators' own names start with "_": doit parses the words after any word
# equal to a creator's name as that creator's options, and `--from snapshot`
# must stay a value.  The options reach the run through the reporter.


@create_after(creates=["snapshot"])
@task_params(tasks.BACKUP_PARAMS)
def task__snapshot(**options):
    """mirror every source into <destination>/system_snapshot/, then cleanup, then report"""
    return tasks.backup_tasks(PLAN, "snapshot", **options)


@create_after(creates=["cleanup"])
@task_params(tasks.BACKUP_PARAMS)
def task__cleanup(**options):
    """remove from the backup what left the sources or became ignored"""
    return tasks.backup_tasks(PLAN, "cleanup", **options)


@create_after(creates=["report"])
@task_params(tasks.BACKUP_PARAMS)
def task__report(**options):
    """write the run record to .snapback/runs.jsonl (snapshot, versioned and all run it)"""
    return tasks.backup_tasks(PLAN, "report", **options)


@create_after(creates=["versioned"])
@task_params(tasks.BACKUP_PARAMS)
def task__versioned(**options):
    """record new, changed and deleted files in <destination>/versioned_backup/, then report"""
    return tasks.backup_tasks(PLAN, "versioned", **options)


@create_after(creates=["all"])
@task_params(tasks.BACKUP_PARAMS)
def task__all(**options):
    """snapshot and versioned in one run, walking each source once"""
    return tasks.backup_tasks(PLAN, "all", **options)


def task_history():
    """the runs; with PATH, that file's versions (or a folder's changes): history [PATH]"""
    return commands.task("history", PLAN, task_history.__doc__, [])


def task_restore():
    """rebuild a file or folder as it was: restore PATH [--at TIME] [--to DIR] [--from snapshot|versioned] [--force]"""
    return commands.task("restore", PLAN, task_restore.__doc__, ["at", "to", "from", "force"])


def task_diff():
    """the unified diff between two versions: diff PATH [--at TIME] [--against TIME] [--vscode]"""
    return commands.task("diff", PLAN, task_diff.__doc__, ["at", "against", "vscode"])


def task_verify():
    """check every stored file against its checksum: verify [--deep] rebuilds every version too"""
    return commands.task("verify", PLAN, task_verify.__doc__, ["deep"])


def task_sync():
    """send the backup to the plan's remote through rclone: sync [--dry-run] [--verbose]"""
    return commands.task("sync", PLAN, task_sync.__doc__, ["dry-run", "verbose"])


def task_protect():
    """make the backup read-only (backup runs still update it)"""
    return commands.task("protect", PLAN, task_protect.__doc__, [])


def task_unprotect():
    """make the backup writable again"""
    return commands.task("unprotect", PLAN, task_unprotect.__doc__, [])


def task_explain():
    """is PATH backed up, by which mode, and why: explain PATH... | explain --tree [DIR]"""
    return commands.task("explain", PLAN, task_explain.__doc__, ["tree"])


def task_prune():
    """drop the versions the retention rules do not keep: prune [--dry-run] [--keep-last N] ..."""
    return commands.task("prune", PLAN, task_prune.__doc__, commands.PRUNE_OPTIONS)
