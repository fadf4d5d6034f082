"""The Typer application object that every command module decorates."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="voiceprep",
    help="Audio in the exact shape a voice agent plays: decode files to raw PCM and "
    "prebuild TTS prompts into a shared on-disk cache.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
