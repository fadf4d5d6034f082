"""`voiceprep cache …`: look into, read from, tidy and combine the on-disk audio cache.

Commands that only read (path, ls, stats, get, export, verify without --repair) never
create a cache directory; a missing directory is an empty cache. `get` and `rm` select
entries with the options `warm` uses, resolved the same way (flags > env > config file).
"""

from __future__ import annotations

import shlex
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from voiceprep.audio_format import layout_of
from voiceprep.cli import _output
from voiceprep.cli._common import build_backend, open_cache, plural, resolve
from voiceprep.cli._export import check_export_dir, export_options, export_settings
from voiceprep.cli._options import (
    CacheDir,
    Flags,
    Json,
    MaxEntries,
    MaxSize,
    NoReview,
    OutputFormat,
    SampleFormat,
    flag_for,
    selection_options,
)
from voiceprep.cli._output import print_json
from voiceprep.cli._processing import processing_options
from voiceprep.cli._safe import printable
from voiceprep.cli._write import checked_output, report_written, write_audio
from voiceprep.errors import CacheError, ExitStatus, InvalidValueError, UsageError
from voiceprep.export import ExportItem, export_entries
from voiceprep.keys import BackendIdentity, cache_key, normalize_text
from voiceprep.timings import Words, words_to_json
from voiceprep.units import parse_age

if TYPE_CHECKING:
    from voiceprep.cache import AudioCache, CacheEntry
    from voiceprep.config import Settings
    from voiceprep.process import ProcessSettings


# --- helpers ---------------------------------------------------------------------------


def cache_dir_of(cache_dir: Path | None) -> Path:
    return resolve(cache_dir=cache_dir).cache_dir


def exists(directory: Path) -> bool:
    """Whether the cache directory exists (UsageError when it is a file)."""
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"{directory}: not a directory")
    return directory.exists()


def _selected_identity(settings: Settings) -> BackendIdentity:
    """The identity warm keys by: the backend's, with the processing settings."""
    return settings.process.identity(build_backend(settings).identity(settings.voice))


def _selected_key(text: str, settings: Settings) -> str:
    identity = _selected_identity(settings)
    return cache_key(identity, text, rate=settings.rate, channels=settings.channels)


def _describe_selection(settings: Settings) -> str:
    voice = f", voice {settings.voice}" if settings.voice else ""
    return f"{settings.backend}{voice}, {settings.rate} Hz, {layout_of(settings.channels)}"


def _not_cached(text: str, settings: Settings, held: list[CacheEntry], fill: str) -> str:
    """`not cached: "Hi" (piper, 24000 Hz, mono); cached at 16000 Hz, not 24000: add -r
    16000`, or, when no entry holds the text, the command that would fill it."""
    from voiceprep.process import KEY_ENTRY  # deferred: +2.6 % on --help

    line = f"not cached: {_output.phrase(text)} ({_describe_selection(settings)})"
    identity = _selected_identity(settings)
    wanted_options = dict(identity.options)
    wanted_process = wanted_options.pop(KEY_ENTRY, None)

    def options(entry: CacheEntry) -> tuple[Any, dict[str, Any]]:
        return entry.model, {k: v for k, v in (entry.options or {}).items() if k != KEY_ENTRY}

    # The entry closest to what was asked: same backend, voice, options, then processing.
    ranked = sorted(
        held,
        key=lambda e: (
            e.backend != identity.name,
            e.voice != identity.voice,
            options(e) != (identity.model, wanted_options),
            (e.options or {}).get(KEY_ENTRY) != wanted_process,
        ),
    )
    if not ranked:
        return f"{line}; to fill it: {fill}"
    entry = ranked[0]
    found, flags, verb = [], [], "add"
    if entry.backend != identity.name:
        found.append(f"with {entry.backend}, not {identity.name}")
        flags.append(f"-b {entry.backend}")
    elif entry.voice != identity.voice and entry.voice:
        found.append(f"with voice {entry.voice}, not {identity.voice}")
        flags.append(f"--voice {shlex.quote(entry.voice)}")
    elif options(entry) != (identity.model, wanted_options):
        found.append("with other backend options")
        flags += [f"-O {k}={v}" for k, v in sorted(options(entry)[1].items())]
    elif (entry.options or {}).get(KEY_ENTRY) != wanted_process:
        found.append("with other processing")
        flags.append(_processing_flags(entry) or "no processing flags")
        verb = "use"  # the whole set it was made with, not an addition
    if entry.rate != settings.rate:
        found.append(f"at {entry.rate} Hz, not {settings.rate}")
        flags.append(f"-r {entry.rate}")
    if entry.channels != settings.channels:
        found.append(f"in {layout_of(entry.channels)}, not {layout_of(settings.channels)}")
        flags.append(f"-c {entry.channels}")
    return f"{line}; cached {', '.join(found)}: {verb} {' '.join(flags)}"


def _processing_flags(entry: CacheEntry) -> str:
    """The processing flags an entry was made with ('' for none, or unreadable steps)."""
    from voiceprep.process import KEY_ENTRY, settings_of  # deferred: +2.6 % on --help

    steps = (entry.options or {}).get(KEY_ENTRY)
    try:
        return shlex.join(settings_of(steps).flags()) if isinstance(steps, dict) else ""
    except (UsageError, KeyError, TypeError):  # a cache is input: not ours to trust
        return ""


def _entries_for(cache: AudioCache, text: str) -> list[CacheEntry]:
    wanted = normalize_text(text)
    return [e for e in cache.entries() if normalize_text(e.text) == wanted]


def _say_command(text: str, output: str, flags: dict[str, Any], process: ProcessSettings) -> str:
    """The `voiceprep say` that stores the phrase (and writes OUT), with the flags given."""
    words = ["voiceprep", "say", text]
    for name in ("backend", "voice", "rate", "channels", "cache_dir"):
        if flags.get(name) is not None:
            words += [flag_for(name).split("/")[0], str(flags[name])]  # the short spelling
    for pair in flags.get("option") or []:
        words += ["-O", pair]
    words += process.flags()
    words += ["-o", output]
    return shlex.join(words)


def human_size(size: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def _timestamp(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromtimestamp(float(value), tz=UTC)


def _iso(value: Any) -> str | None:
    moment = _timestamp(value)
    return moment.isoformat().replace("+00:00", "Z") if moment else None


def _local(value: Any) -> str:
    moment = _timestamp(value)
    return moment.astimezone().strftime("%Y-%m-%d %H:%M") if moment else "-"


def entry_json(entry: CacheEntry, words: Words | None = None) -> dict[str, Any]:
    """One entry as the JSON object `cache ls --json` prints."""
    return {
        "key": entry.key,
        "text": entry.text,
        "backend": entry.backend,
        "model": entry.model,
        "voice": entry.voice,
        "options": dict(entry.options or {}),
        "rate": entry.rate,
        "channels": entry.channels,
        "duration": entry.duration,
        "loudness": None if entry.loudness is None else round(entry.loudness, 2),
        "size": entry.size,
        "sha256": entry.sha256,
        "created": _iso(entry.created),
        "last_used": _iso(entry.last_used),
        "hits": entry.hits,
        "path": str(entry.path),
        "words": None if words is None else words_to_json(words),
    }


# --- path, ls, stats -------------------------------------------------------------------


def path_command(cache_dir: CacheDir = None) -> None:
    """Print the cache directory (an absolute path).

    Examples:
      voiceprep cache path
      du -sh "$(voiceprep cache path)"
    """
    print(cache_dir_of(cache_dir))


def ls_command(cache_dir: CacheDir = None, as_json: Json = False) -> None:
    """List cached entries, most recently used first.

    Examples:
      voiceprep cache ls
      voiceprep cache ls --json | jq -r '.[].text'
    """
    directory = cache_dir_of(cache_dir)
    entries: list[CacheEntry] = []
    words: dict[str, Words | None] = {}
    if exists(directory):
        with open_cache(directory) as cache:
            entries = cache.entries()
            if as_json:  # in each entry's file: read only for --json
                words = {e.key: _words(cache, e.key) for e in entries}
    if as_json:
        print_json([entry_json(e, words.get(e.key)) for e in entries])
    else:
        _output.table(_COLUMNS, [_row(entry) for entry in entries])


def _words(cache: AudioCache, key: str) -> Words | None:
    try:
        return cache.words(key)
    except CacheError:
        return None  # a damaged entry: `cache verify` names it


_COLUMNS = [
    _output.Column("text", wide=True),
    _output.Column("backend"),
    _output.Column("voice"),
    _output.Column("rate", right=True),
    _output.Column("channels", right=True),
    _output.Column("duration", right=True),
    _output.Column("loudness", right=True),
    _output.Column("size", right=True),
    _output.Column("last used"),
    _output.Column("hits", right=True),
]


def _spread(entries: list[CacheEntry]) -> tuple[float, float, int] | None:
    """(min, max) LUFS over the entries that have a loudness, and how many do."""
    levels = [e.loudness for e in entries if e.loudness is not None]
    return (min(levels), max(levels), len(levels)) if levels else None


def _row(entry: CacheEntry) -> list[str]:
    return [
        printable(entry.text),  # a cache is input: its texts may hold escape sequences
        printable(entry.backend or "-"),
        printable(entry.voice or "-"),
        str(entry.rate),
        str(entry.channels),
        f"{entry.duration:.2f}s",
        "-" if entry.loudness is None else f"{entry.loudness:.1f}",
        human_size(entry.size),
        _local(entry.last_used),
        str(entry.hits),
    ]


def stats_command(cache_dir: CacheDir = None, as_json: Json = False) -> None:
    """Sum up the cache: entries, size, seconds of audio, hits.

    Examples:
      voiceprep cache stats
      voiceprep cache stats --json --cache-dir .voiceprep-cache
    """
    directory = cache_dir_of(cache_dir)
    exists(directory)
    with open_cache(directory) as cache:
        stats = cache.stats()
        spread = _spread(cache.entries())
    if as_json:
        data = stats.as_dict()
        for name in ("oldest", "newest", "last_used"):
            data[name] = _iso(data[name])
        data["loudness_min"] = round(spread[0], 2) if spread else None
        data["loudness_max"] = round(spread[1], 2) if spread else None
        data["loudness_measured"] = spread[2] if spread else 0
        print_json(data)
        return
    lines = [
        ("directory", str(stats.directory)),
        ("entries", str(stats.entries)),
        ("size", human_size(stats.bytes)),
        ("audio", f"{stats.duration:.1f} s"),
        ("loudness", _spread_text(spread, stats.entries)),
        ("hits", str(stats.hits)),
        ("oldest", _local(stats.oldest)),
        ("newest", _local(stats.newest)),
        ("last used", _local(stats.last_used)),
    ]
    if stats.read_only:
        lines.append(("read-only", "yes"))
    _output.fields(lines)


def _spread_text(spread: tuple[float, float, int] | None, entries: int) -> str:
    if spread is None:
        return "-"
    low, high, measured = spread
    return f"{low:.1f} to {high:.1f} LUFS ({measured} of {entries} entries measured)"


# --- get, export -----------------------------------------------------------------------


@selection_options
@processing_options
def get_command(
    text: Annotated[
        str,
        typer.Argument(metavar="TEXT", help="The phrase, as given to warm.", show_default=False),
    ],
    output: Annotated[
        str,
        typer.Option(
            "-o",
            "--output",
            metavar="OUT",
            help="Write to the file OUT (.wav: WAV, .ulaw/.alaw/.sln16/.g722...: "
            "as Asterisk names them, else raw PCM), or - for stdout.",
        ),
    ],
    output_format: OutputFormat = None,
    sample_format: SampleFormat = None,
    *,
    selection: Flags,
    process: Flags,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing output.")] = False,
) -> None:
    """Write the cached audio of one phrase (never synthesizes).

    The phrase is selected as warm stores it (backend, voice, options, rate, channels,
    processing); exit 1 when it is not cached.

    Examples:
      voiceprep cache get "Thanks for calling." -o thanks.wav
      voiceprep cache get "One moment please." -r 16000 -o - > moment.pcm
      voiceprep cache get "Welcome." --loudness -16 -o welcome.wav   # as warmed
    """
    settings = resolve(**selection, process=process)
    spec = checked_output(
        output, settings, container=output_format, sample_format=sample_format, force=force
    )
    key = _selected_key(text, settings)
    pcm: bytes | None = None
    held: list[CacheEntry] = []
    if exists(settings.cache_dir):
        with open_cache(settings.cache_dir) as cache:
            pcm = cache.get(key, rate=settings.rate, channels=settings.channels)
            held = _entries_for(cache, text) if pcm is None else []
    if pcm is None:
        fill = _say_command(text, output, selection, settings.process)
        _output.error(_not_cached(text, settings, held, fill))
        raise typer.Exit(ExitStatus.FAILURE)
    seconds = write_audio(
        pcm, output, spec, rate=settings.rate, channels=settings.channels, force=force
    )
    report_written(output, seconds, "from the cache")


@export_options
def export_command(
    directory: Annotated[
        Path,
        typer.Argument(
            metavar="DIR", help="Write the WAVs and manifest.json into DIR.", show_default=False
        ),
    ],
    cache_dir: CacheDir = None,
    no_review: NoReview = False,
    *,
    layout: Flags,
) -> None:
    """Write every entry as a WAV named after its text, plus manifest.json and the review
    page, index.html.

    Examples:
      voiceprep cache export prompts/
      voiceprep cache export --layout asterisk --codecs ulaw,g722 /var/lib/asterisk/sounds
      voiceprep cache export --layout freeswitch --lang en_US /usr/share/freeswitch/sounds
    """
    options = export_settings(layout)
    check_export_dir(directory, "cache export")
    source = cache_dir_of(cache_dir)
    if not exists(source):
        raise UsageError(f"{source}: no cache here")
    with open_cache(source) as cache:
        entries = sorted(cache.entries(), key=lambda e: (e.text, e.key))
        items = [ExportItem(key=e.key, text=e.text) for e in entries]
        report = export_entries(cache, items, directory, options, review=not no_review)
    for item in report.missing:
        _output.error(f"{item.text}: vanished from the cache during export")
    for item, reason in report.failed:
        _output.error(f"{item.text}: {reason}")
    _output.info(f"exported {len(report.written)} files and manifest.json to {directory}")
    if not report.ok:
        raise typer.Exit(ExitStatus.FAILURE)


# --- rm, prune, clear ------------------------------------------------------------------


@selection_options
@processing_options
def rm_command(
    texts: Annotated[
        list[str],
        typer.Argument(metavar="TEXT", help="Phrases to remove.", show_default=False),
    ],
    *,
    selection: Flags,
    process: Flags,
) -> None:
    """Remove phrases, selected as warm stores them.

    The processing options select the entries made with them (warm --loudness -16 keeps
    the raw synthesis too: rm without them removes that one). Exit 1 if one of them was
    not cached.

    Examples:
      voiceprep cache rm "Old greeting." "Old goodbye."
      voiceprep cache rm "Hola." --voice es_ES-davefx-medium
    """
    settings = resolve(**selection, process=process)
    keys = {_selected_key(text, settings): text for text in texts}
    missing = list(keys)
    removed = 0
    if exists(settings.cache_dir):
        with open_cache(settings.cache_dir) as cache:
            missing = [key for key in keys if not cache.contains(key)]
            removed = cache.remove([key for key in keys if key not in missing])
    for key in missing:
        _output.error(f"not cached: {_output.phrase(keys[key])} ({_describe_selection(settings)})")
    _output.info(f"removed {removed} {plural(removed, 'entry', 'entries')}")
    if missing:
        raise typer.Exit(ExitStatus.FAILURE)


def prune_command(
    max_entries: MaxEntries = None,
    max_size: MaxSize = None,
    older_than: Annotated[
        str | None,
        typer.Option(
            "--older-than", metavar="AGE", help="Remove entries unused for AGE (30d, 12h)."
        ),
    ] = None,
    cache_dir: CacheDir = None,
) -> None:
    """Evict least recently used entries down to limits.

    Without options, the configured max_entries and max_size apply.

    Examples:
      voiceprep cache prune --max-size 500MB
      voiceprep cache prune --older-than 30d --max-entries 10000
    """

    settings = resolve(cache_dir=cache_dir, max_entries=max_entries, max_size=max_size)
    try:
        age = parse_age(older_than) if older_than is not None else None
    except InvalidValueError as exc:
        raise exc.renamed("--older-than") from None
    if settings.max_entries is None and settings.max_size is None and age is None:
        raise UsageError("nothing to prune by: give --max-entries, --max-size or --older-than")
    removed: list[CacheEntry] = []
    if exists(settings.cache_dir):
        with open_cache(settings.cache_dir) as cache:
            removed = cache.prune(
                max_entries=settings.max_entries, max_bytes=settings.max_size, older_than=age
            )
    freed = sum(e.size for e in removed)
    noun = plural(len(removed), "entry", "entries")
    _output.info(f"removed {len(removed)} {noun} ({human_size(freed)})")


def clear_command(
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    cache_dir: CacheDir = None,
) -> None:
    """Remove every entry (asks first on a terminal).

    Examples:
      voiceprep cache clear
      voiceprep cache clear --yes --cache-dir /tmp/voiceprep-cache
    """
    directory = cache_dir_of(cache_dir)
    if not yes:
        if not (_output.stdin_is_terminal() and _output.stderr_is_terminal()):
            raise UsageError("refusing to clear the cache without --yes (not on a terminal)")
        if not typer.confirm(f"Remove every entry in {directory}?", default=False, err=True):
            _output.info("nothing removed")
            return
    removed = 0
    if exists(directory):
        with open_cache(directory) as cache:
            removed = cache.clear()
    _output.info(f"removed {removed} {plural(removed, 'entry', 'entries')}")
