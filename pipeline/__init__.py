"""snapback: a backup of a person's working folders, compiled into doit tasks."""

__version__ = "0.1.0"
