"""Where the CLI writes: data to stdout, everything else to stderr.

Rich only on a terminal (and never with NO_COLOR); plain lines when piped. Rich is imported
only when something is printed, so `--help` and `--version` stay light.
"""

from __future__ import annotations

import json
import os
import sys
from functools import cache
from typing import TYPE_CHECKING, Any

from voiceprep.cli._safe import safe_message

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
    """One line on stderr: `voiceprep: error: <message>` (secrets and controls removed)."""
    print(f"voiceprep: error: {safe_message(message)}", file=sys.stderr, flush=True)


def warning(message: str) -> None:
    print(f"voiceprep: warning: {safe_message(message)}", file=sys.stderr, flush=True)


def info(message: str) -> None:
    print(safe_message(message), file=sys.stderr, flush=True)


def print_json(data: Any, *, ascii_only: bool = False) -> None:
    """JSON on stdout: an object indented, a list one element per line.

    One element per line stays readable and greppable, and keeps json's C encoder (indent=
    would fall back to the pure-Python one, 10x slower over 10,000 cache entries).
    `ascii_only` escapes non-ASCII: for text taken from argv (file names), which may hold
    undecodable bytes that stdout could not encode.
    """
    if isinstance(data, list):
        rows = ",\n".join("  " + json.dumps(row, ensure_ascii=ascii_only) for row in data)
        sys.stdout.write(f"[\n{rows}\n]\n" if data else "[]\n")
    else:
        sys.stdout.write(json.dumps(data, ensure_ascii=ascii_only, indent=2) + "\n")
