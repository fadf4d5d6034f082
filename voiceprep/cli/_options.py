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

from voiceprep.config import Settings
from voiceprep.units import RATE_MAX, RATE_MIN

_DEFAULTS = Settings  # the defaults' one home: the Settings dataclass


def complete_backend(incomplete: str) -> list[str]:
    """Shell completion of --backend: the installed backends' names (none is loaded)."""
    from voiceprep.backends import backend_entry_points

    return sorted(name for name in backend_entry_points() if name.startswith(incomplete))


Backend = Annotated[
    str | None,
    typer.Option(
        "--backend",
        "-b",
        metavar="NAME",
        help="TTS backend NAME.",
        show_default=_DEFAULTS.backend,
        autocompletion=complete_backend,
    ),
]
Voice = Annotated[
    str | None,
    typer.Option(
        "--voice",
        metavar="VOICE",
        help="VOICE name, id or model path.",
        show_default="the backend's own",
    ),
]
BackendOption = Annotated[
    list[str] | None,
    typer.Option(
        "-O", "--option", metavar="KEY=VALUE", help="Backend option KEY=VALUE (repeatable)."
    ),
]
Rate = Annotated[
    int | None,
    typer.Option(
        "-r",
        "--rate",
        metavar="RATE",
        help=f"Sample RATE in Hz, {RATE_MIN}–{RATE_MAX}.",
        show_default=str(_DEFAULTS.rate),
    ),
]
Channels = Annotated[
    int | None,
    typer.Option(
        "-c",
        "--channels",
        metavar="N",
        help="N channels: 1 (mono) or 2 (stereo).",
        show_default=str(_DEFAULTS.channels),
    ),
]
CacheDir = Annotated[
    Path | None,
    typer.Option(
        "--cache-dir",
        metavar="DIR",
        help="The cache directory DIR.",
        show_default="the user cache directory",
    ),
]
Json = Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")]


class Container(StrEnum):
    raw = "raw"
    wav = "wav"


OutputFormat = Annotated[
    Container | None,
    typer.Option(
        "--format",
        metavar="FORMAT",
        help="Container FORMAT: raw (PCM) or wav.",
        show_default="wav if OUT ends in .wav, else raw",
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
