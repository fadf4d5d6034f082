"""Options shared by several commands, so `warm`, `say`, `serve`, `cache get`, `cache rm`
and `cache pull` select entries with the same flags and defaults (and `decode` and `cache
get` shape their output with the same -r/-c/--format). Every value defaults to None,
meaning "not given": `voiceprep.config.resolve_settings` then applies env > config file >
default.

A set of options several commands take is an `option_group`, declared once: a command
names one keyword-only parameter for the whole group, and gets the options' values in it
as one mapping (`selection_options` below; `_processing.processing_options`).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from voiceprep import defaults
from voiceprep.audio_format import check_sample_format
from voiceprep.errors import InvalidValueError
from voiceprep.units import ACCEPTED_JOBS, RATE_MAX, RATE_MIN


def complete_backend(incomplete: str) -> list[str]:
    """Shell completion of --backend: the installed backends' names (none is loaded)."""
    from voiceprep.backends import backend_entry_points  # deferred: +29 % on --help

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
MaxEntries = Annotated[
    int | None, typer.Option("--max-entries", metavar="N", help="Keep at most N entries.")
]
MaxSize = Annotated[
    str | None,
    typer.Option("--max-size", metavar="SIZE", help="Keep at most SIZE (500MB, 2GiB)."),
]
Json = Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")]
NoReview = Annotated[
    bool, typer.Option("--no-review", help="With the export, no review page (index.html).")
]


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


Flags = dict[str, Any]  # an option group's values by parameter name; None: not given


def option_group(into: str, **options: Any) -> Callable[[Callable[..., Any]], _Grouped]:
    """A decorator putting `options` (parameter name → its `Annotated` option type; each
    defaults to None) into a command's signature where its keyword-only parameter `into`
    stands, and passing the command their values as one `Flags` mapping in `into`."""
    return lambda command: _Grouped(command, into, options)


class _Grouped:
    """A command with an option group in its signature. Typer reads a command's options
    from `inspect.signature`, which answers with `__signature__`, and calls it with
    keywords only."""

    __name__: str  # the command's, as its help and errors name it

    def __init__(self, command: Callable[..., Any], into: str, options: dict[str, Any]) -> None:
        functools.update_wrapper(self, command, updated=())  # its name and help
        self._command, self._into, self._options = command, into, options

    def __call__(self, **values: Any) -> Any:
        values[self._into] = {name: values.pop(name) for name in self._options}
        return self._command(**values)

    @functools.cached_property
    def __signature__(self) -> inspect.Signature:
        # Made when Typer builds the parser, not at import: evaluating a command's
        # annotations takes about a millisecond, which `--version` need not pay.
        signature = inspect.signature(self._command, eval_str=True)
        if self._into not in signature.parameters:
            raise TypeError(f"{self.__name__} has no parameter {self._into!r}")
        group = [
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=kind)
            for name, kind in self._options.items()
        ]
        parameters = []
        for parameter in signature.parameters.values():
            parameters += group if parameter.name == self._into else [parameter]
        return signature.replace(parameters=parameters)


# What selects a backend's audio in the cache, as warm stores it.
selection_options = option_group(
    "selection",
    backend=Backend,
    voice=Voice,
    option=BackendOption,
    rate=Rate,
    channels=Channels,
    cache_dir=CacheDir,
)


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


SampleFormat = Annotated[
    str | None,
    typer.Option(
        "--sample-format",
        metavar="FMT",
        help="Sample FMT: s16 (16-bit integer) or f32 (32-bit float), little-endian; "
        "ulaw or alaw (G.711, 8000 Hz unless -r says otherwise).",
        show_default="s16, or what OUT's suffix needs (.ulaw, .alaw, .sln16, ...)",
        callback=checked(check_sample_format),
    ),
]
# What the synthesizing commands (warm, say, serve) share.
Retries = Annotated[
    int | None,
    typer.Option(
        "--retries",
        metavar="N",
        help="Retry a transient failure N times per phrase.",
        show_default=str(defaults.RETRIES),
    ),
]
Timeout = Annotated[
    float | None,
    typer.Option(
        "--timeout",
        metavar="SEC",
        help="Give each attempt SEC seconds.",
        show_default=f"{defaults.TIMEOUT:g}",
    ),
]


def option_name(opts: list[str] | tuple[str, ...]) -> str:
    """`-r/--rate`: an option's spellings as messages name it (short first)."""
    return "/".join(sorted(opts, key=lambda o: (o.startswith("--"), o)))


# The command-line spelling of each setting whose option has a short form.
_FLAGS = {"rate": "-r/--rate", "channels": "-c/--channels", "jobs": "-j/--jobs"}
_FLAGS |= {"backend": "-b/--backend", "options": "-O/--option"}


def _check_jobs(value: int | None) -> int | None:
    if value is not None and value < 1:
        raise InvalidValueError(flag_for("jobs"), value, ACCEPTED_JOBS)
    return value


def jobs_option(help: str, default: str) -> Any:
    """-j/--jobs N, declared once for every command that works in parallel (`help` says
    what N counts; `default` is shown). N below 1 is a usage error naming -j/--jobs.
    Use as `Annotated[int | None, jobs_option(...)]`."""
    return typer.Option(
        "-j", "--jobs", metavar="N", help=help, show_default=default, callback=_check_jobs
    )


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
    from voiceprep.config import parse_options  # deferred: +6.4 % on --help

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
