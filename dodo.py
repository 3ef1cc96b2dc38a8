"""snapback's doit entry point: the plan compiled into tasks.  Thin by design.

``doit snapshot`` / ``doit list`` / ``doit help snapshot``; another plan with
``doit snapshot config=path/to/plan.yaml`` or ``SNAPBACK_CONFIG``.
"""

from doit import get_var

from pipeline import commands, tasks
from pipeline.config import doit_config, guarded, load_plan_or_exit

PLAN = load_plan_or_exit(get_var("config", None))
DOIT_CONFIG = doit_config(PLAN)

# The backup commands walk every source, so their tasks are created only when
# one of them runs (doit's create_after), never for `doit list`.  The creators
# are named task__snapshot etc.: doit parses the words after any word equal to
# a creator's own name as that creator's options, and `--from snapshot` must
# stay a value; the options reach the run through the reporter.
for _command, _doc in tasks.COMMAND_DOCS.items():
    globals()[f"task__{_command}"] = guarded(tasks.creator(PLAN, _command, _doc))


def task_history():
    """the runs; with PATH, that file's versions (or a folder's changes): history [PATH]"""
    return commands.task("history", PLAN, task_history.__doc__)


def task_restore():
    """rebuild a file or folder as it was: restore PATH [--at TIME] [--to DIR] [--from snapshot|versioned] [--force]"""
    return commands.task("restore", PLAN, task_restore.__doc__)


def task_diff():
    """the unified diff between two versions: diff PATH [--at TIME] [--against TIME] [--vscode]"""
    return commands.task("diff", PLAN, task_diff.__doc__)


def task_verify():
    """check every stored file against its checksum: verify [--deep] rebuilds every version too"""
    return commands.task("verify", PLAN, task_verify.__doc__)


def task_sync():
    """send the backup to the plan's remote through rclone: sync [--dry-run] [--verbose]"""
    return commands.task("sync", PLAN, task_sync.__doc__)


def task_fetch():
    """bring the backup back from the plan's remote into its destination: fetch [--force]"""
    return commands.task("fetch", PLAN, task_fetch.__doc__)


def task_check():
    """compare the remote with the catalog (sizes, sha256): check; exit 1 on any problem"""
    return commands.task("check", PLAN, task_check.__doc__)


def task_protect():
    """make the backup read-only (backup runs still update it)"""
    return commands.task("protect", PLAN, task_protect.__doc__)


def task_unprotect():
    """make the backup writable again"""
    return commands.task("unprotect", PLAN, task_unprotect.__doc__)


def task_explain():
    """is PATH backed up, by which mode, and why: explain PATH... | explain --tree [DIR]"""
    return commands.task("explain", PLAN, task_explain.__doc__)


def task_prune():
    """drop the versions the retention rules do not keep: prune [--dry-run] [--keep-last N] ..."""
    return commands.task("prune", PLAN, task_prune.__doc__)
