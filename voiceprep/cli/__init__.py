"""The voiceprep command line: parsing, output and exit codes over the library.

Command modules import nothing heavy at module level (no av, httpx or piper), so
`voiceprep --help` and `--version` start fast.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from voiceprep import __version__
from voiceprep.cli import _output
from voiceprep.cli._app import app, register
from voiceprep.errors import ExitStatus, VoiceprepError

_debug = {"on": bool(os.environ.get("VOICEPREP_DEBUG"))}


def _show_version(value: bool) -> None:
    if value:
        print(f"voiceprep {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_show_version, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show full tracebacks (also VOICEPREP_DEBUG=1).")
    ] = False,
) -> None:
    if debug:
        _debug["on"] = True


register(app)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: known errors become one line and their exit code."""
    if (sys.argv[1:] if argv is None else argv) == ["--version"]:
        # Answered before Typer builds the whole command tree (~13 ms of a ~100 ms start).
        print(f"voiceprep {__version__}")
        return
    try:
        app(args=argv, prog_name="voiceprep")
    except VoiceprepError as exc:
        if _debug["on"]:
            raise
        _output.error(str(exc))
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(ExitStatus.INTERRUPTED)
