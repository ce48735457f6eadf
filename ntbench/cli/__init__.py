"""The ``ntbench`` command line: thin command modules over the library functions.

``apps`` holds the typer applications, ``ui`` what the commands share (consoles, errors, the progress
bar, option parsing); each other module registers the commands of one area on import.
"""
from __future__ import annotations

import inspect
import sys

from ntbench.cli import bench, data, info, suites, takeoff, trials  # noqa: F401  (each registers its commands)
from ntbench.cli.apps import app
from ntbench.cli.ui import SUITE_HAD_FAILURES

__all__ = ["SUITE_HAD_FAILURES", "app", "main"]


def reflowed(doc: str) -> str:
    """A docstring as help text: each paragraph on one line. Typer's rich help keeps a docstring's line
    breaks, so a sentence wrapped at 120 columns in the source broke mid-line on every terminal width."""
    return "\n\n".join(" ".join(part.split()) for part in inspect.cleandoc(doc).split("\n\n") if part.strip())


def _reflow_commands(typer_app) -> None:
    for command in typer_app.registered_commands:
        doc = command.help or (command.callback.__doc__ if command.callback else None)
        if doc:
            command.help = reflowed(doc)
    for group in typer_app.registered_groups:
        _reflow_commands(group.typer_instance)


_reflow_commands(app)


def main() -> None:  # pragma: no cover
    app(sys.argv[1:])
