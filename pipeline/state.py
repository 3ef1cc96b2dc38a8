"""TEMPORARY (this session only): the entry point name while branches merge."""
from .doit_glue import CatalogState as StateDB  # noqa: F401
