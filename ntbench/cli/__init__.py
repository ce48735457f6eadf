"""The ``ntbench`` command line: thin command modules over the library functions.

``apps`` holds the typer applications, ``ui`` what the commands share (consoles, errors, the progress
bar, option parsing); each other module registers the commands of one area on import.
"""
from __future__ import annotations

import sys

from ntbench.cli import bench, data, info, suites, takeoff, trials  # noqa: F401  (each registers its commands)
from ntbench.cli.apps import app
from ntbench.cli.ui import SUITE_HAD_FAILURES

__all__ = ["SUITE_HAD_FAILURES", "app", "main"]


def main() -> None:  # pragma: no cover
    app(sys.argv[1:])
