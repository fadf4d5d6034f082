"""Cache entries as playable WAV files plus a manifest.json (`cache export`, `warm --export`).

Each entry becomes `<name>.wav`, where the name is the item's `id` (made safe for a file
name) or else a slug of its text. Names are compared case-insensitively (macOS and Windows
filesystems are); when several different entries would share a name, every one of them
gets the first 8 hex digits of its key appended (`yes-1a2b3c4d.wav`), so the result does
not depend on the order of the items. Files and the manifest are written to a temporary
name and renamed into place, so a reader never sees half a file.

manifest.json: `{"version": 1, "entries": [{"text", "id", "file", "key", "duration",
"sha256", "rate", "channels", "backend", "voice"}, ...]}` where `sha256` is the digest of
the exported WAV file itself (what `sha256sum` prints) and `file` is relative to the
manifest.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from voiceprep.audio_format import AudioFormat
from voiceprep.errors import CacheError, VoiceprepError
from voiceprep.review import PAGE_NAME, export_page
from voiceprep.wav import wav_bytes

if TYPE_CHECKING:
    from voiceprep.cache import AudioCache

__all__ = ["ExportItem", "ExportReport", "ManifestEntry", "export_entries", "slugify"]

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1
_MAX_NAME = 64
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_NON_WORD = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True)
class ExportItem:
    """One entry to export: its cache key, its text, and an optional id that names the file."""

    key: str
    text: str
    id: str | None = None


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

    def as_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "id": self.id,
            "file": self.file,
            "key": self.key,
            "duration": self.duration,
            "sha256": self.sha256,
            "rate": self.rate,
            "channels": self.channels,
            "backend": self.backend,
            "voice": self.voice,
        }


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


def assign_file_names(items: Iterable[ExportItem]) -> list[tuple[ExportItem, str]]:
    """Each distinct (key, name) once, with a file name unique in the directory."""
    unique: dict[tuple[str, str], ExportItem] = {}
    for item in items:
        unique.setdefault((item.key, _base_name(item).casefold()), item)
    keys_by_name: dict[str, set[str]] = {}
    for key, folded in unique:
        keys_by_name.setdefault(folded, set()).add(key)
    named: list[tuple[ExportItem, str]] = []
    for (key, folded), item in unique.items():
        base = _base_name(item)
        name = base if len(keys_by_name[folded]) == 1 else f"{base}-{key[:8]}"
        named.append((item, f"{name}.wav"))
    return named


def export_entries(
    cache: AudioCache,
    items: Iterable[ExportItem],
    directory: str | os.PathLike[str],
    *,
    review: bool = True,
) -> ExportReport:
    """Write each item's cached audio as `<name>.wav` and a manifest.json into `directory`,
    and with `review` the review page of what was written, index.html (see review.py).

    Items not in the cache land in `report.missing`, unreadable ones (corrupt, vanished) in
    `report.failed`; the others are written. The manifest lists what was written. Raises
    VoiceprepError when the directory cannot be created or written.
    """
    target = Path(directory)
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise VoiceprepError(f"{target}: cannot create directory: {exc.strerror}") from None
    report = ExportReport(directory=target)
    for item, file_name in assign_file_names(items):
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
        blob = wav_bytes(pcm, rate=entry.rate, channels=entry.channels)
        _write_atomically(target / file_name, blob)
        report.written.append(
            ManifestEntry(
                text=item.text,
                id=item.id,
                file=file_name,
                key=item.key,
                duration=round(AudioFormat(entry.rate, entry.channels).seconds(len(pcm)), 6),
                sha256=hashlib.sha256(blob).hexdigest(),
                rate=entry.rate,
                channels=entry.channels,
                backend=entry.backend,
                voice=entry.voice,
            )
        )
    manifest = {
        "version": MANIFEST_VERSION,
        "entries": [m.as_dict() for m in report.written],
    }
    text = json.dumps(manifest, ensure_ascii=False, indent=2) + "\n"
    _write_atomically(report.manifest_path, text.encode("utf-8"))
    if review:
        _write_atomically(target / PAGE_NAME, export_page(cache, report))
    return report


def _write_atomically(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; exports are meant to be shared
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise VoiceprepError(f"{path}: cannot write: {exc.strerror}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
