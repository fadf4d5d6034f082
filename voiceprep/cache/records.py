"""The records the cache hands out: entries, entry metadata, statistics and reports."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from voiceprep.audio_format import pcm_seconds
from voiceprep.keys import BackendIdentity
from voiceprep.timings import Words


@dataclass(frozen=True)
class CacheEntry:
    """One cached synthesis, as recorded in the index."""

    key: str
    text: str
    backend: str
    model: str | None
    voice: str | None
    options: dict[str, Any]
    rate: int
    channels: int
    duration: float
    size: int
    sha256: str
    created: float
    last_used: float
    hits: int
    path: Path
    loudness: float | None = None  # integrated LUFS; None when unknown

    @classmethod
    def from_meta(
        cls,
        meta: EntryMeta,
        *,
        path: Path,
        size: int,
        pcm_bytes: int,
        last_used: float,
        hits: int = 0,
    ) -> CacheEntry:
        """The entry of a file described by `meta` (`size` bytes, `pcm_bytes` of audio)."""
        return cls(
            key=meta.key,
            text=meta.text,
            backend=meta.identity.name,
            model=meta.identity.model,
            voice=meta.identity.voice,
            options=dict(meta.identity.options),
            rate=meta.rate,
            channels=meta.channels,
            duration=pcm_seconds(pcm_bytes, rate=meta.rate, channels=meta.channels),
            size=size,
            sha256=meta.sha256,
            created=meta.created,
            last_used=last_used,
            hits=hits,
            path=path,
            loudness=meta.loudness,
        )

    @property
    def identity(self) -> BackendIdentity:
        return BackendIdentity(self.backend, self.model, self.voice, dict(self.options))

    @property
    def meta(self) -> EntryMeta:
        """What this entry's file says about itself."""
        return EntryMeta(
            key=self.key,
            text=self.text,
            identity=self.identity,
            rate=self.rate,
            channels=self.channels,
            sha256=self.sha256,
            created=self.created,
            loudness=self.loudness,
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: every field, the path (last) as a string."""
        fields = asdict(self)
        fields["path"] = str(fields.pop("path"))
        return fields


@dataclass(frozen=True)
class EntryMeta:
    """What an entry file says about itself (its metadata chunk): enough to rebuild its row."""

    key: str
    text: str
    identity: BackendIdentity
    rate: int
    channels: int
    sha256: str  # of the PCM payload
    created: float
    loudness: float | None = None
    words: Words | None = None  # when the backend said when each word is spoken


@dataclass(frozen=True)
class CacheStats:
    directory: Path
    entries: int
    bytes: int
    duration: float
    hits: int
    oldest: float | None  # created time of the oldest entry
    newest: float | None  # created time of the newest entry
    last_used: float | None
    read_only: bool
    schema_version: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "directory": str(self.directory),
            "entries": self.entries,
            "bytes": self.bytes,
            "duration": self.duration,
            "hits": self.hits,
            "oldest": self.oldest,
            "newest": self.newest,
            "last_used": self.last_used,
            "read_only": self.read_only,
            "schema_version": self.schema_version,
        }


@dataclass
class VerifyReport:
    """What verify() found. Damage: missing files, corrupt files, a damaged index.

    Leftovers (WAVs no row refers to, stale temporaries, once their writer is gone) waste
    space but never reach a reader; they are reported and removed by `repair`, not
    counted as damage. Entry files no row refers to that describe themselves are
    `adoptable`: repair indexes them instead of deleting them.
    """

    checked: int = 0
    missing: list[str] = field(default_factory=list)  # keys whose file is gone
    corrupt: list[tuple[str, str]] = field(default_factory=list)  # (key, reason)
    index_errors: list[str] = field(default_factory=list)
    orphans: list[Path] = field(default_factory=list)
    stale_temps: list[Path] = field(default_factory=list)
    adoptable: list[Path] = field(default_factory=list)
    old_format: int = 0  # entries written before files described themselves
    repaired: bool = False
    rebuilt: bool = False
    moved_aside: Path | None = None  # where a damaged index went

    @property
    def damaged(self) -> bool:
        return bool(self.missing or self.corrupt or self.index_errors)

    @property
    def clean(self) -> bool:
        return not (self.damaged or self.orphans or self.stale_temps or self.adoptable)

    def as_dict(self) -> dict[str, Any]:
        return {
            "checked": self.checked,
            "missing": self.missing,
            "corrupt": [{"key": key, "reason": reason} for key, reason in self.corrupt],
            "index_errors": self.index_errors,
            "orphans": [str(p) for p in self.orphans],
            "stale_temps": [str(p) for p in self.stale_temps],
            "adoptable": [str(p) for p in self.adoptable],
            "old_format": self.old_format,
            "damaged": self.damaged,
            "repaired": self.repaired,
            "rebuilt": self.rebuilt,
            "moved_aside": str(self.moved_aside) if self.moved_aside else None,
        }


@dataclass
class MergeReport:
    imported: int = 0
    skipped: int = 0  # keys already present
    failed: list[tuple[str, str]] = field(default_factory=list)  # (key, reason)


@dataclass(frozen=True)
class RebuildReport:
    """What rebuild() did: entries indexed from their files, files it could not use."""

    indexed: int
    upgraded: int  # old-format files rewritten with their metadata chunk
    unreadable: list[tuple[Path, str]]  # (file, reason): left in place, never deleted
    moved_aside: Path | None  # the previous index, kept beside the new one
