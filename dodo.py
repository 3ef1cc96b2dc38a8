"""snapback's doit entry point: the plan compiled into tasks.  Thin by design.

``doit snapshot`` / ``doit list`` / ``doit help snapshot``; another plan with
``doit snapshot config=path/to/plan.yaml`` or ``SNAPBACK_CONFIG``.  Every
command is on the registry in ``pipeline/commands``; ``pipeline/doit_glue.py``
is all that snapback asks of doit.
"""

from doit import get_var

from pipeline import doit_glue

PLAN = doit_glue.load_plan_or_exit(get_var("config", None))
SESSION, DOIT_CONFIG = doit_glue.configure(PLAN)

for _name, _creator in doit_glue.task_creators(SESSION).items():
    globals()[_name] = _creator
