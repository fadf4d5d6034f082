"""Cache entries as playable files plus a manifest.json (`cache export`, `warm --export`).

Three layouts:

- `flat` (the default): `DIR/<name>.wav` at the entry's rate and channels (s16), or in
  G.711 (`sample_format` ulaw/alaw: 8000 Hz mono, WAV format tag 7/6).
- `asterisk`: `DIR/<lang>/<name>.<ext>` for each of `codecs` (default `ulaw`, `alaw`,
  `sln16`, `g722`, `wav`), the siblings Asterisk chooses among for a call's codec; the
  names are voiceprep.telephony's (`wav` is 8 kHz s16, `wav16` 16 kHz), `<lang>` as
  Asterisk spells it (`en`, `en_GB`).
- `freeswitch`: `DIR/<lang>/<region>/<voice>/<rate>/<name>.wav` at 8000, 16000, 32000
  and 48000 Hz, the folders FreeSWITCH picks from by the call's rate. `<region>` comes
  from the language tag (`en_US` → `en/us`); without one it is `us` for `en` (FreeSWITCH's
  own `en/us/callie`) and the language itself otherwise (`de/de`). `<voice>` is the
  entry's voice (or its backend's name), made safe for a folder name.

`export_entries` returns an `ExportReport` whose `written` lists every file written,
each with its metadata (the manifest's entries): a hook for what is made from an export.

Each entry's name is the item's `id` (made safe for a file
name) or else a slug of its text. Names are compared case-insensitively (macOS and Windows
filesystems are); when several different entries would share a name, every one of them
gets the first 8 hex digits of its key appended (`yes-1a2b3c4d.wav`), so the result does
not depend on the order of the items. Files and the manifest are written to a temporary
name and renamed into place, so a reader never sees half a file; manifest.json goes
first and comes back last, so only a finished export has one. What is not a regular
file (a FIFO, a device node, a symlink) is never replaced: that phrase fails, or the
export when it is manifest.json or index.html.

manifest.json: `{"version": 1, "layout": ..., "entries": [{"text", "id", "file", "key",
"duration", "sha256", "rate", "channels", "backend", "voice", "lang", "format", "words"},
...]}`, one entry per file, where `sha256` is the digest of the exported file itself (what
`sha256sum` prints), `file` is relative to the manifest, `format` is the file's sample
format or codec (s16, ulaw, alaw, g722) and `words` the entry's word timings
(`[{"text", "start", "end"}, ...]` in seconds, or null when its backend gave none).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import tempfile
import unicodedata
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from voiceprep.batch import stopping_held
from voiceprep.errors import CacheError, UsageError, VoiceprepError
from voiceprep.output import OutputSpec, convert_pcm, phone_spec
from voiceprep.phrases import LANG_TAG
from voiceprep.review import PAGE_NAME, PageMeasurer, export_page
from voiceprep.telephony import G711, G711_RATE, PHONE_FILES
from voiceprep.timings import Words, words_to_json
from voiceprep.wav import wav_bytes

if TYPE_CHECKING:
    from voiceprep.cache import AudioCache

__all__ = [
    "CODECS",
    "LAYOUTS",
    "ExportItem",
    "ExportOptions",
    "ExportReport",
    "ManifestEntry",
    "export_entries",
    "slugify",
]

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1
_MAX_NAME = 64
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_NON_WORD = re.compile(r"[^a-z0-9]+")

LAYOUTS = ("flat", "asterisk", "freeswitch")
# Asterisk's sibling formats: the file suffix → (rate, sample format, WAV or raw).
CODECS = ("ulaw", "alaw", "sln", "sln16", "sln24", "sln32", "sln48", "g722", "wav", "wav16")
DEFAULT_CODECS = ("ulaw", "alaw", "sln16", "g722", "wav")
FREESWITCH_RATES = (8000, 16000, 32000, 48000)
DEFAULT_LANG = "en"


@dataclass(frozen=True)
class ExportOptions:
    """How an export is laid out (see the module's description); checked when made."""

    layout: str = "flat"
    codecs: tuple[str, ...] = DEFAULT_CODECS  # asterisk
    sample_format: str = "s16"  # flat: s16, ulaw or alaw
    lang: str = DEFAULT_LANG  # for items without their own

    def __post_init__(self) -> None:
        if not LANG_TAG.fullmatch(self.lang):
            raise UsageError(f"invalid language {self.lang!r}: use a tag such as en or en_GB")
        if self.layout not in LAYOUTS:
            raise UsageError(f"invalid layout {self.layout!r}: use {', '.join(LAYOUTS)}")
        unknown = [c for c in self.codecs if c not in CODECS]
        if unknown or not self.codecs:
            raise UsageError(
                f"invalid codecs {','.join(self.codecs)!r}: choose from {','.join(CODECS)}"
            )
        if self.sample_format not in ("s16", *G711):
            raise UsageError(
                f"invalid export sample format {self.sample_format!r}: use s16, ulaw or alaw"
            )
        if self.sample_format != "s16" and self.layout != "flat":
            raise UsageError(
                f"--sample-format is for the flat layout; the {self.layout} layout "
                "writes its own formats (--codecs)"
            )


@dataclass(frozen=True)
class ExportItem:
    """One entry to export: its cache key, its text, and an optional id that names the file."""

    key: str
    text: str
    id: str | None = None
    lang: str | None = None  # None: the export's


@dataclass(frozen=True)
class ManifestEntry:
    text: str
    id: str | None
    file: str
    key: str
    duration: float
    sha256: str
    rate: int
    channels: int
    backend: str | None
    voice: str | None
    lang: str = DEFAULT_LANG
    format: str = "s16"
    words: Words | None = None

    def as_dict(self) -> dict[str, Any]:
        words = None if self.words is None else words_to_json(self.words)
        return asdict(self) | {"words": words}


@dataclass
class ExportReport:
    directory: Path
    written: list[ManifestEntry] = field(default_factory=list)
    missing: list[ExportItem] = field(default_factory=list)
    failed: list[tuple[ExportItem, str]] = field(default_factory=list)

    @property
    def manifest_path(self) -> Path:
        return self.directory / MANIFEST_NAME

    @property
    def ok(self) -> bool:
        return not self.missing and not self.failed


def slugify(text: str) -> str:
    """`"One moment, please."` → `one-moment-please` (ASCII, at most 64 characters)."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = _NON_WORD.sub("-", ascii_text.lower()).strip("-")
    slug = slug[:_MAX_NAME].rstrip("-")
    return slug or "phrase"


def _safe_id(ident: str) -> str:
    # Keep ids recognisable but never let one escape the directory or hide as a dotfile.
    name = _UNSAFE.sub("-", ident).strip(".-")[:_MAX_NAME]
    return name or slugify(ident)


def _base_name(item: ExportItem) -> str:
    return _safe_id(item.id) if item.id else slugify(item.text)


def assign_file_names(
    items: Iterable[ExportItem], default_lang: str = DEFAULT_LANG
) -> list[tuple[ExportItem, str]]:
    """Each distinct (key, language, name) once, with a name (no suffix) unique among the
    files of its language."""
    unique: dict[tuple[str, str, str], ExportItem] = {}
    for item in items:
        lang = item.lang or default_lang
        unique.setdefault((item.key, lang, _base_name(item).casefold()), item)
    keys_by_name: dict[tuple[str, str], set[str]] = {}
    for key, lang, folded in unique:
        keys_by_name.setdefault((lang, folded), set()).add(key)
    named: list[tuple[ExportItem, str]] = []
    for (key, lang, folded), item in unique.items():
        base = _base_name(item)
        name = base if len(keys_by_name[(lang, folded)]) == 1 else f"{base}-{key[:8]}"
        named.append((item, name))
    return named


def export_entries(
    cache: AudioCache,
    items: Iterable[ExportItem],
    directory: str | os.PathLike[str],
    options: ExportOptions | None = None,
    *,
    review: bool = True,
) -> ExportReport:
    """Write each item's cached audio, laid out as `options` say (default: flat WAVs),
    and a manifest.json listing every file into `directory`; with `review`, the review
    page of what was written, index.html (see review.py).

    Items not in the cache land in `report.missing`, unreadable ones (corrupt, vanished) in
    `report.failed`; the others are written. Raises VoiceprepError when the directory
    cannot be created or written.
    """
    options = options or ExportOptions()
    target = Path(directory)
    _make_dir(target)
    # A directory with a manifest holds a finished export: the last one's goes first, so
    # one stopped midway (Ctrl-C, SIGTERM, a full disk) never looks finished.
    for finished in (MANIFEST_NAME, PAGE_NAME) if review else (MANIFEST_NAME,):
        _remove(target / finished)
    report = ExportReport(directory=target)
    named = assign_file_names(items, options.lang)
    with PageMeasurer(target, len(named) if review else 0) as page:
        _write_entries(cache, named, options, report, page if review else None)
        measured = page.results()
    manifest = {
        "version": MANIFEST_VERSION,
        "layout": options.layout,
        "entries": [m.as_dict() for m in report.written],
    }
    text = json.dumps(manifest, ensure_ascii=False, indent=2) + "\n"
    _write_atomically(report.manifest_path, text.encode("utf-8"))
    if review:
        _write_atomically(target / PAGE_NAME, export_page(cache, report, measured))
    return report


def _write_entries(
    cache: AudioCache,
    named: list[tuple[ExportItem, str]],
    options: ExportOptions,
    report: ExportReport,
    page: PageMeasurer | None,
) -> None:
    """Each named item's files, listed in `report` (see `export_entries`); each entry
    written also goes to `page`, for the review page."""
    target = report.directory
    for item, name in named:
        entry = cache.entry(item.key)
        if entry is None:
            report.missing.append(item)
            continue
        try:
            pcm = cache.get(item.key, rate=entry.rate, channels=entry.channels)
        except CacheError as exc:
            report.failed.append((item, str(exc)))
            continue
        if pcm is None:  # removed by another process since entry() was read
            report.missing.append(item)
            continue
        words = _words(cache, item.key)
        lang = item.lang or options.lang
        if not LANG_TAG.fullmatch(lang):  # never a path: a folder name is made of it
            report.failed.append((item, f"invalid language {lang!r}"))
            continue
        files = _files(options, lang, name, entry.voice or entry.backend, entry)
        odd = next((target / relative for relative, _ in files if _odd(target / relative)), None)
        if odd is not None:
            report.failed.append((item, f"{odd}: {_LEFT_ALONE}"))
            continue
        written: list[tuple[ManifestEntry, bytes]] = []
        for relative, spec in files:
            data = convert_pcm(pcm, rate=entry.rate, channels=entry.channels, spec=spec)
            blob = (
                wav_bytes(
                    data, rate=spec.rate, channels=spec.channels, sample_format=spec.sample_format
                )
                if spec.container == "wav"
                else data
            )
            _make_dir((target / relative).parent)
            _write_atomically(target / relative, blob)
            manifest_entry = ManifestEntry(
                text=item.text,
                id=item.id,
                file=relative,
                key=item.key,
                duration=round(spec.seconds(len(data)), 6),
                sha256=hashlib.sha256(blob).hexdigest(),
                rate=spec.rate,
                channels=spec.channels,
                backend=entry.backend,
                voice=entry.voice,
                lang=lang,
                format=spec.codec or spec.sample_format,
                words=words,
            )
            report.written.append(manifest_entry)
            written.append((manifest_entry, data))
        if page is not None:
            page.add(entry, item.text, pcm, written)


def _files(
    options: ExportOptions, lang: str, name: str, voice: str | None, entry: Any
) -> list[tuple[str, OutputSpec]]:
    """(path relative to the export directory, the file's shape) of one entry's files."""
    if options.layout == "flat":
        if options.sample_format in G711:
            spec = _wav(G711_RATE, options.sample_format)
        else:
            spec = OutputSpec(rate=entry.rate, channels=entry.channels, container="wav")
        return [(f"{name}.wav", spec)]
    if options.layout == "asterisk":
        folder = lang.replace("-", "_")
        return [(f"{folder}/{name}.{codec}", _codec_spec(codec)) for codec in options.codecs]
    language, _, region = lang.replace("-", "_").partition("_")
    region = (region or ("us" if language.lower() == "en" else language)).lower()
    folder = f"{language.lower()}/{region}/{_safe_id(voice or 'voice')}"
    return [(f"{folder}/{rate}/{name}.wav", _wav(rate)) for rate in FREESWITCH_RATES]


def _codec_spec(codec: str) -> OutputSpec:
    if codec in ("wav", "wav16"):  # Asterisk's .wav is 8 kHz s16, .wav16 16 kHz
        return _wav(16000 if codec == "wav16" else G711_RATE)
    return phone_spec(PHONE_FILES[f".{codec}"])


def _wav(rate: int, sample_format: str = "s16") -> OutputSpec:
    return OutputSpec(rate=rate, channels=1, sample_format=sample_format, container="wav")


def _make_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise VoiceprepError(f"{path}: cannot create directory: {exc.strerror}") from None


_LEFT_ALONE = "not a regular file; left alone"


def _odd(path: Path) -> bool:
    """True when something other than a regular file is at `path` (never replaced)."""
    try:
        return not stat.S_ISREG(os.lstat(path).st_mode)
    except (FileNotFoundError, NotADirectoryError):
        return False


def _remove(path: Path) -> None:
    if _odd(path):
        raise VoiceprepError(f"{path}: {_LEFT_ALONE}")
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        raise VoiceprepError(f"{path}: cannot remove: {exc.strerror}") from None


def _write_atomically(path: Path, data: bytes) -> None:
    if _odd(path):
        raise VoiceprepError(f"{path}: {_LEFT_ALONE}")
    tmp = ""
    try:
        # A stopping signal as mkstemp returns would leave a file whose name is not known
        # yet: held until `tmp` is set (raised here, as the block ends, if one came).
        with stopping_held():
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            fh = os.fdopen(fd, "wb")
        with fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; exports are meant to be shared
        os.replace(tmp, path)
    except OSError as exc:
        if tmp:
            Path(tmp).unlink(missing_ok=True)
        raise VoiceprepError(f"{path}: cannot write: {exc.strerror}") from None
    except BaseException:
        if tmp:
            Path(tmp).unlink(missing_ok=True)
        raise


def _words(cache: AudioCache, key: str) -> Words | None:
    """The entry's word timings (the same for every file made of it: a new rate or codec
    does not move them)."""
    try:
        return cache.words(key)
    except CacheError:
        return None
