"""The voiceprep command line: parsing, output and exit codes over the library.

Command modules import nothing heavy at module level (no av, httpx or piper), so
`voiceprep --help` and `--version` start fast.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Annotated

import typer

from voiceprep import __version__
from voiceprep.cli import _output, _signals
from voiceprep.cli._app import app
from voiceprep.errors import ExitStatus, VoiceprepError


@dataclass
class Invocation:
    """What one run of `main` carries (Typer's context object): `debug` shows tracebacks.
    Made afresh by every call, so nothing of one run sticks to the next (tests run the CLI
    in-process many times)."""

    debug: bool = False


def _show_version(value: bool) -> None:
    if value:
        print(f"voiceprep {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
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
    if debug and isinstance(ctx.obj, Invocation):
        ctx.obj.debug = True


def main(argv: list[str] | None = None, *, debug: bool | None = None) -> None:
    """Console-script entry point: every failure becomes one line and its exit code.

    `debug` (default: `--debug` or VOICEPREP_DEBUG, read at each call) lets errors raise.

    Known errors carry their exit code; a closed stdout (`| head`) ends quietly with 1; a
    full device or another system error is one line with 1; anything else (a bug) is one
    line naming the exception, with the traceback only under --debug. SIGTERM and SIGHUP
    stop a command as Ctrl-C does (temporary files removed), exiting 143 and 129.
    """
    _signals.install()
    if sys.stdout is None:  # started with stdout closed (`>&-`)
        sys.stdout = _output.ClosedStdout()
    if sys.stderr is None:  # and stderr (`2>&-`): messages go nowhere, exit codes stand
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115  (for the process's life)
    run = Invocation(bool(os.environ.get("VOICEPREP_DEBUG")) if debug is None else debug)
    try:
        if (sys.argv[1:] if argv is None else argv) == ["--version"]:
            # Answered before Typer builds the whole command tree (~13 ms of ~100 ms).
            print(f"voiceprep {__version__}")
            return
        app(args=argv, prog_name="voiceprep", obj=run)
    except SystemExit as exc:
        # A command that handled the interruption itself exits 130; say which signal.
        if _signals.was_terminated() and exc.code == ExitStatus.INTERRUPTED:
            sys.exit(_signals.interrupted_status())
        raise
    except VoiceprepError as exc:
        if run.debug:
            raise
        _output.error(str(exc))
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(_signals.interrupted_status())
    except BrokenPipeError:
        # The reader went away (`| head -c`): stop quietly, as other filters do.
        _discard_stdout()
        sys.exit(ExitStatus.FAILURE)
    except OSError as exc:
        if run.debug:
            raise
        _discard_stdout()  # what is still buffered would fail again at exit
        _output.error(_os_error_message(exc))
        sys.exit(ExitStatus.FAILURE)
    except RecursionError:
        if run.debug:
            raise
        _output.error("input nested too deeply")
        sys.exit(ExitStatus.USAGE)
    except Exception as exc:
        if run.debug:
            raise
        _output.error(f"unexpected {type(exc).__name__}: {exc} (--debug shows the traceback)")
        sys.exit(ExitStatus.FAILURE)


def _os_error_message(exc: OSError) -> str:
    reason = (exc.strerror or str(exc)).lower()
    if exc.filename is not None:
        return f"{exc.filename}: {reason}"
    # Files voiceprep writes report their own errors: one without a name is stdout's.
    return f"cannot write to stdout: {reason}"


def _discard_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's final flush cannot fail."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # no real descriptor (tests)
        pass
