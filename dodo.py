"""snapback for ``doit`` in the checkout: the same loader as the ``snapback`` command.

``doit`` / ``doit all`` / ``doit list`` / ``doit restore PATH`` from this folder
(its pyproject.toml names snapback's state backend for doit); another plan with
``doit all config=path/to/plan.yaml`` or ``SNAPBACK_CONFIG``.  From any other
folder, use the ``snapback`` command (``pip install .``, README).
"""

from pipeline.doit_glue import SnapbackLoader

LOADER = SnapbackLoader.for_dodo(__file__)
DOIT_CONFIG = LOADER.load_doit_config()
SESSION = LOADER.session
globals().update(LOADER.namespace())
