"""Options shared by several commands, so `warm`, `say`, `cache get` and `cache rm` select
entries with the same flags and defaults (and `decode` and `cache get` shape their output
with the same -r/-c/--format). Every value defaults to None, meaning "not given":
`voiceprep.config.resolve_settings` then applies env > config file > default.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from voiceprep import defaults
from voiceprep.errors import InvalidValueError
from voiceprep.units import RATE_MAX, RATE_MIN


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
        show_default=defaults.BACKEND,
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
        show_default=str(defaults.RATE),
    ),
]
Channels = Annotated[
    int | None,
    typer.Option(
        "-c",
        "--channels",
        metavar="N",
        help="N channels: 1 (mono) or 2 (stereo).",
        show_default=str(defaults.CHANNELS),
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


def checked(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """A parser callback running one of voiceprep's own checks on an option's value (None:
    not given); its `InvalidValueError` reads like the parser's refusals."""

    def callback(value: Any) -> Any:
        if value is None:
            return None
        try:
            return check(value)
        except InvalidValueError as exc:
            raise typer.BadParameter(str(exc)) from exc

    return callback


def option_name(opts: list[str] | tuple[str, ...]) -> str:
    """`-r/--rate`: an option's spellings as messages name it (short first)."""
    return "/".join(sorted(opts, key=lambda o: (o.startswith("--"), o)))


# The command-line spelling of each setting whose option has a short form.
_FLAGS = {"rate": "-r/--rate", "channels": "-c/--channels", "jobs": "-j/--jobs"}
_FLAGS |= {"backend": "-b/--backend", "options": "-O/--option"}


def flag_for(setting: str) -> str:
    """`rate` → `-r/--rate`, `max_size` → `--max-size`."""
    return _FLAGS.get(setting, "--" + setting.replace("_", "-"))


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
