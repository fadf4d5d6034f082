"""Options shared by several commands, so `warm`, `say`, `cache get` and `cache rm` select
entries with the same flags and defaults (and `decode` and `cache get` shape their output
with the same -r/-c/--format). Every value defaults to None, meaning "not given":
`voiceprep.config.resolve_settings` then applies env > config file > default.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

Backend = Annotated[
    str | None, typer.Option("--backend", "-b", help="TTS backend (default: piper).")
]
Voice = Annotated[str | None, typer.Option("--voice", help="Voice name, id or model path.")]
BackendOption = Annotated[
    list[str] | None,
    typer.Option("-O", "--option", metavar="KEY=VALUE", help="Backend option (repeatable)."),
]
Rate = Annotated[
    int | None,
    typer.Option("-r", "--rate", help="Sample rate in Hz, 8000–192000. \\[default: 24000]"),
]
Channels = Annotated[
    int | None, typer.Option("-c", "--channels", help="Channels, 1 or 2. \\[default: 1]")
]
CacheDir = Annotated[
    Path | None,
    typer.Option("--cache-dir", help="Cache directory. \\[default: the user cache dir]"),
]


class Container(StrEnum):
    raw = "raw"
    wav = "wav"


OutputFormat = Annotated[
    Container | None,
    typer.Option(
        "--format", help="raw PCM or a WAV file. \\[default: wav if OUT ends in .wav, else raw]"
    ),
]


def selection_flags(
    *,
    backend: str | None = None,
    voice: str | None = None,
    option: list[str] | None = None,
    rate: int | None = None,
    channels: int | None = None,
    cache_dir: Path | None = None,
    **more: Any,
) -> dict[str, Any]:
    """The flags dict `resolve_settings` takes, from the shared options' values."""
    from voiceprep.config import parse_options

    flags: dict[str, Any] = {
        "backend": backend,
        "voice": voice,
        "options": parse_options(option),
        "rate": rate,
        "channels": channels,
        "cache_dir": cache_dir,
    }
    flags.update(more)
    return flags
