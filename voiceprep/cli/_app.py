"""The Typer application object that every command module decorates."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer
from typer.core import TyperGroup

from voiceprep.cli import _output


class _OneLineUsageErrors(TyperGroup):
    """Usage errors anywhere on the command line (unknown command or option, bad or missing
    value) become one `voiceprep: error:` line and their exit code (2).

    Typer would print a usage block and a boxed message; the spec asks for one line. The
    root group parses its own options, then invokes every subcommand and subgroup, so
    wrapping its `parse_args` and `invoke` covers them all. Typer's parsing errors all
    derive from `typer.TyperException`.
    """

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        with _one_line_errors(ctx):
            return super().parse_args(ctx, args)

    def invoke(self, ctx: Any) -> Any:
        with _one_line_errors(ctx):
            return super().invoke(ctx)


@contextmanager
def _one_line_errors(ctx: Any) -> Iterator[None]:
    try:
        yield
    except typer.TyperException as exc:
        # `voiceprep` or `voiceprep cache` alone: that "error" is the help text, shown as is.
        if type(exc).__name__ == "NoArgsIsHelpError":
            raise
        _output.error(_usage_message(exc, getattr(exc, "ctx", None) or ctx))
        raise typer.Exit(exc.exit_code) from None


def _usage_message(exc: typer.TyperException, ctx: Any) -> str:
    """`cache get: missing option '-o' / '--output'; see 'voiceprep cache get --help'`."""
    message = " ".join(exc.format_message().split()).rstrip(".")
    message = message[:1].lower() + message[1:]
    command = ctx.command_path.partition(" ")[2]  # without the program name
    if command:
        message = f"{command}: {message}"
    if message.endswith("?"):  # "Did you mean 'decode'?" is hint enough
        return message
    return f"{message}; see '{ctx.command_path} --help'"


app = typer.Typer(
    name="voiceprep",
    cls=_OneLineUsageErrors,
    help="Audio in the exact shape a voice agent plays: decode files to raw PCM and "
    "prebuild TTS prompts into a shared on-disk cache.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
