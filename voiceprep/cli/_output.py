"""Where the CLI writes: data to stdout, everything else to stderr.

Rich only on a terminal (and never with NO_COLOR); plain lines when piped. Rich is imported
only when something is printed, so `--help` and `--version` stay light.
"""

from __future__ import annotations

import os
import sys
from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console


def stderr_is_terminal() -> bool:
    return sys.stderr.isatty()


def stdout_is_terminal() -> bool:
    return sys.stdout.isatty()


@cache
def err_console() -> Console:
    from rich.console import Console

    return Console(stderr=True, no_color="NO_COLOR" in os.environ, highlight=False)


@cache
def out_console() -> Console:
    from rich.console import Console

    return Console(no_color="NO_COLOR" in os.environ, highlight=False)


def error(message: str) -> None:
    """One line on stderr: `voiceprep: error: <message>`."""
    print(f"voiceprep: error: {message}", file=sys.stderr, flush=True)


def warning(message: str) -> None:
    print(f"voiceprep: warning: {message}", file=sys.stderr, flush=True)


def info(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
