"""The ``substratus`` command line (typer): the composition root.

``main`` is the console entry point (``substratus = "substratus.cli:main"``).
"""

from substratus.cli.app import main, tune_gc

__all__ = ["main", "tune_gc"]
