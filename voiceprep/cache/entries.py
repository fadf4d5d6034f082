"""Entry files: naming, writing, reading, parsing and scanning (the role of diskcache's `Disk`).

An entry file is an ordinary WAV (s16le, 44-byte canonical header) followed by a `vpmd`
RIFF chunk holding JSON: the key, the text, the key parts (backend, model, voice,
options, rate, channels), the sha256 of the PCM, the creation time, the loudness and,
when the backend gave them, the word timings (`words`, seconds from the start of the audio).
Players and ffprobe skip a chunk they do not know; `read_entry` needs nothing else to
check the file and to rebuild its index row. Files written before schema 2 have no
chunk: they are still read (the index holds their metadata) and `verify --repair`
rewrites them.

Nothing read from an index row is trusted as a path: a row's file must be the cache's
own name for that key (`audio/<kk>/<key>.<write id>.wav`) in a real directory of this
cache, a regular file of a plausible size. Anything else is a corrupt entry.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import socket
import stat
import struct
import time
import uuid
from pathlib import Path
from typing import Any

from voiceprep.audio_format import AudioFormat
from voiceprep.cache import faults
from voiceprep.cache.records import EntryMeta
from voiceprep.errors import CacheCorruptError, CacheError, CacheReadOnlyError, InvalidValueError
from voiceprep.keys import BackendIdentity, cache_key
from voiceprep.timings import check_duration, words_from_json, words_to_json
from voiceprep.wav import find_chunk, parse_wav_header, riff_chunk, wav_bytes

AUDIO_DIR = "audio"
ENTRY_CHUNK = b"vpmd"
ENTRY_FORMAT = 1  # version of the metadata chunk
# No entry is larger: an hour of 48 kHz stereo s16 is 691 MB. A bigger "entry" is not ours.
MAX_ENTRY_BYTES = 1 << 30
# A temporary whose writer cannot be checked (another host) is stale after this long.
STALE_TEMP_SECONDS = 15 * 60
# An unreferenced WAV of a live writer younger than this may be a write about to commit.
ORPHAN_GRACE_SECONDS = 60

HOST_TAG = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]
_KEY = re.compile(r"[0-9a-f]{64}")
# audio/<kk>/<key>.<write id>.wav: the only names an index row may hold.
_ENTRY_NAME = re.compile(r"audio/([0-9a-f]{2})/([0-9a-f]{64})\.([A-Za-z0-9-]{1,64})\.wav")
_FILE_NAME = re.compile(r"([0-9a-f]{64})\.([A-Za-z0-9-]{1,64})\.(wav|tmp|del)")


def check_key(key: str) -> str:
    # The key names files: only a lowercase hex sha256 is accepted (no path tricks).
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        raise CacheError(f"{key!r}: not a cache key (expected a hex sha256)")
    return key


def is_key(key: object) -> bool:
    return isinstance(key, str) and _KEY.fullmatch(key) is not None


def writer_tag() -> str:
    """`<host>-<pid>-<random>`: names each file a write creates, unique per write."""
    return f"{HOST_TAG}-{os.getpid()}-{uuid.uuid4().hex[:12]}"


def writer_id() -> str:
    """`<host>-<pid>`: who holds a lease."""
    return f"{HOST_TAG}-{os.getpid()}"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def parse_writer(tag: str) -> tuple[str, int] | None:
    """(host tag, pid) from `<host>-<pid>[-<random>]`, else None."""
    host, _, rest = tag.partition("-")
    pid_text = rest.partition("-")[0]
    return (host, int(pid_text)) if host and pid_text.isdigit() else None


def writer_of(path: Path) -> tuple[str, int] | None:
    """(host tag, pid) from a name written by `writer_tag`, else None."""
    parts = path.name.split(".")
    return parse_writer(parts[1]) if len(parts) >= 3 else None


def writer_gone(writer: tuple[str, int] | None) -> bool:
    """Whether that writer (host tag, pid) has exited on this host."""
    return writer is not None and writer[0] == HOST_TAG and not pid_alive(writer[1])


def older_than(path: Path, seconds: float) -> bool:
    try:
        return time.time() - path.stat().st_mtime > seconds
    except FileNotFoundError:
        return False


def entry_name(key: str) -> str:
    """A fresh file name (relative to the cache directory) for a write of `key`."""
    return f"{AUDIO_DIR}/{key[:2]}/{key}.{writer_tag()}.wav"


def valid_name(key: str, relative: object) -> bool:
    """Whether an index row's file is this cache's own name for `key`."""
    if not isinstance(relative, str):
        return False
    match = _ENTRY_NAME.fullmatch(relative)
    return match is not None and match[2] == key and match[1] == key[:2]


# --- the metadata chunk ----------------------------------------------------------------


def encode_entry(pcm: bytes, meta: EntryMeta) -> bytes:
    """The whole entry file: WAV header, PCM, then the metadata chunk."""
    document = {
        "voiceprep_entry": ENTRY_FORMAT,
        "key": meta.key,
        "text": meta.text,
        "backend": meta.identity.as_dict(),
        "rate": meta.rate,
        "channels": meta.channels,
        "sha256": meta.sha256,
        # Whole microseconds: the chunk of a given text and identity always has one size.
        "created_us": round(meta.created * 1_000_000),
        "loudness": meta.loudness,
    }
    if meta.words is not None:
        document["words"] = words_to_json(meta.words)
    body = json.dumps(document, sort_keys=True, ensure_ascii=False, default=str).encode()
    return wav_bytes(
        pcm, rate=meta.rate, channels=meta.channels, trailer=riff_chunk(ENTRY_CHUNK, body)
    )


def _meta_from(document: Any) -> EntryMeta:
    if not isinstance(document, dict) or document.get("voiceprep_entry") != ENTRY_FORMAT:
        raise ValueError("unknown metadata format")
    backend = document["backend"]
    options = backend.get("options") or {}
    if not isinstance(options, dict):
        raise ValueError("options are not a mapping")
    loudness = document.get("loudness")
    words = document.get("words")
    meta = EntryMeta(
        key=str(document["key"]),
        text=str(document["text"]),
        identity=BackendIdentity(
            str(backend["name"]),
            None if backend.get("model") is None else str(backend["model"]),
            None if backend.get("voice") is None else str(backend["voice"]),
            options,
        ),
        rate=int(document["rate"]),
        channels=int(document["channels"]),
        sha256=str(document["sha256"]),
        created=int(document["created_us"]) / 1_000_000,
        loudness=None if loudness is None else float(loudness),
        # Checked against the audio's length by read_entry, which knows it.
        words=None if words is None else words_from_json(words),
    )
    return meta


def check_pcm(blob: bytes, *, rate: int, channels: int, sha256: str, where: str) -> bytes:
    """The PCM of an entry file after the checks every read makes; CacheCorruptError if not."""
    return _checked_pcm(blob, rate=rate, channels=channels, sha256=sha256, where=where)[0]


def _checked_pcm(
    blob: bytes, *, rate: int, channels: int, sha256: str, where: str
) -> tuple[bytes, int]:
    """(PCM, the offset just past it)."""
    try:
        fmt = parse_wav_header(blob)
    except (ValueError, struct.error) as exc:  # struct.error: a truncated header
        raise CacheCorruptError(
            f"{where}: not a valid WAV ({exc}); run `voiceprep cache verify --repair`"
        ) from exc
    if (fmt.rate, fmt.channels, fmt.sample_format) != (rate, channels, "s16"):
        raise CacheCorruptError(
            f"{where}: the file holds {fmt.rate} Hz / {fmt.channels} ch "
            f"{fmt.sample_format}, the index says {rate} Hz / {channels} ch s16"
        )
    end = fmt.data_offset + fmt.data_bytes
    pcm = blob[fmt.data_offset : end]
    if hashlib.sha256(pcm).hexdigest() != sha256:
        raise CacheCorruptError(
            f"{where}: audio does not match its recorded sha256 "
            "(altered or damaged); run `voiceprep cache verify --repair`"
        )
    return pcm, end


def check_entry(
    blob: bytes, *, key: str, rate: int, channels: int, sha256: str, where: str, full: bool = False
) -> tuple[bytes, bool]:
    """(PCM, whether the file describes itself) of a row's file, after every check.

    Besides `check_pcm`: whatever follows the audio must be this entry's metadata chunk
    (same key, same sha256; with `full`, everything `read_entry` checks). A file with
    nothing after its audio is an old-format entry.
    """
    pcm, end = _checked_pcm(blob, rate=rate, channels=channels, sha256=sha256, where=where)
    if end >= len(blob):
        return pcm, False
    try:
        body = find_chunk(blob, ENTRY_CHUNK, start=end)
        if body is None:
            raise ValueError("no metadata chunk")
        document = json.loads(body)
        if not isinstance(document, dict) or document.get("voiceprep_entry") != ENTRY_FORMAT:
            raise ValueError("unknown metadata format")
    except (ValueError, KeyError, TypeError, UnicodeDecodeError, struct.error) as exc:
        raise CacheCorruptError(
            f"{where}: damaged metadata after the audio ({exc}); "
            "run `voiceprep cache verify --repair`"
        ) from exc
    if document.get("key") != key or document.get("sha256") != sha256:
        raise CacheCorruptError(
            f"{where}: the file describes another entry than the index; "
            "run `voiceprep cache verify --repair`"
        )
    if full:  # what read_entry checks besides the audio, which is checked (hashed) once
        try:
            meta = _meta_from(document)
        except (ValueError, KeyError, TypeError) as exc:
            raise CacheCorruptError(f"{where}: unreadable metadata chunk ({exc})") from exc
        if (meta.rate, meta.channels) != (rate, channels):
            raise CacheCorruptError(f"{where}: the metadata describes another format")
        _check_key_parts(meta, pcm, where)
    return pcm, True


def file_meta(blob: bytes) -> EntryMeta | None:
    """The metadata chunk of an entry file, unchecked; None when it has none (old format)."""
    try:
        fmt = parse_wav_header(blob)
        body = find_chunk(blob, ENTRY_CHUNK, start=fmt.data_offset + fmt.data_bytes)
        return None if body is None else _meta_from(json.loads(body))
    except (ValueError, KeyError, TypeError, struct.error, UnicodeDecodeError):
        return None


def read_entry(
    data: bytes, *, where: str = "entry", key: str | None = None
) -> tuple[EntryMeta, bytes]:
    """Parse a self-describing entry file: (metadata, PCM), both checked.

    Checks the WAV, the sha256 of its PCM against the metadata, that the key is the one
    `voiceprep.keys.cache_key` gives for the key parts, and, given `key`, that it is the
    entry of that key (a file found under that key's name), and that nothing follows the
    RIFF (a padded file). Raises CacheCorruptError otherwise (also for a file written
    before entries described themselves).
    """
    try:
        fmt = parse_wav_header(data)
    except (ValueError, struct.error) as exc:
        raise CacheCorruptError(f"{where}: not a valid WAV ({exc})") from exc
    body = find_chunk(data, ENTRY_CHUNK, start=fmt.data_offset + fmt.data_bytes)
    if body is None:
        raise CacheCorruptError(
            f"{where}: no voiceprep metadata chunk (not a self-describing entry)"
        )
    try:
        meta = _meta_from(json.loads(body))
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise CacheCorruptError(f"{where}: unreadable metadata chunk ({exc})") from exc
    if not is_key(meta.key):
        raise CacheCorruptError(f"{where}: the metadata names no valid key")
    if len(data) != 8 + struct.unpack_from("<I", data, 4)[0]:  # an entry is its RIFF, whole
        raise CacheCorruptError(f"{where}: its size is not the one its RIFF header gives")
    pcm = check_pcm(data, rate=meta.rate, channels=meta.channels, sha256=meta.sha256, where=where)
    _check_key_parts(meta, pcm, where)
    if key is not None and meta.key != key:
        raise CacheCorruptError(f"{where}: holds the entry of another key ({meta.key[:12]})")
    return meta, pcm


def _check_key_parts(meta: EntryMeta, pcm: bytes, where: str) -> None:
    """The key is the one the text and key parts make; the audio is whole frames."""
    if not is_key(meta.key):
        raise CacheCorruptError(f"{where}: the metadata names no valid key")
    try:
        expected = cache_key(meta.identity, meta.text, rate=meta.rate, channels=meta.channels)
    except (TypeError, ValueError) as exc:
        raise CacheCorruptError(f"{where}: the key parts do not make a key ({exc})") from exc
    if expected != meta.key:
        raise CacheCorruptError(f"{where}: the key does not match the text and key parts")
    try:
        shape = AudioFormat(meta.rate, meta.channels)  # what the CLI and put accept
    except InvalidValueError as exc:
        raise CacheCorruptError(f"{where}: {exc}") from None
    if not pcm or len(pcm) % shape.frame_bytes:
        raise CacheCorruptError(f"{where}: the audio is not whole s16 frames")
    if meta.words:
        try:
            check_duration(meta.words, shape.seconds(len(pcm)))
        except ValueError as exc:
            raise CacheCorruptError(f"{where}: {exc}") from exc


# --- the files of one cache -------------------------------------------------------------


def unlink_quietly(path: Path | str) -> None:
    with contextlib.suppress(FileNotFoundError, NotADirectoryError, PermissionError):
        os.unlink(path)


class UnsafeEntry(Exception):
    """An index row's file is not a regular file of this cache (never read, never deleted)."""


class EntryFiles:
    """The entry files under one cache directory (paths as strings: reads are hot)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._root = str(directory)
        self._audio = os.path.join(self._root, AUDIO_DIR)

    def path(self, relative: str) -> Path:
        return self.directory / relative

    def _check_parents(self, relative: str) -> None:
        # The audio directory and its shard must be real directories of this cache.
        for part in (self._audio, f"{self._audio}/{relative[6:8]}"):
            mode = os.lstat(part).st_mode
            if not stat.S_ISDIR(mode):
                raise UnsafeEntry(f"{part}: not a directory of this cache")

    def read(self, key: str, relative: str, *, limit: int = MAX_ENTRY_BYTES) -> bytes | None:
        """The bytes of a row's file; None when it is gone (evicted meanwhile).

        Raises UnsafeEntry when the row does not name this cache's own, regular file.
        """
        if not valid_name(key, relative):
            raise UnsafeEntry(f"{relative!r}: not an entry file name of this cache")
        path = f"{self._root}/{relative}"
        try:
            self._check_parents(relative)
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise UnsafeEntry(f"{path}: a symbolic link, not an entry file") from exc
            raise CacheError(f"{path}: cannot read ({exc.strerror or exc})") from exc
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise UnsafeEntry(f"{path}: not a regular file")
            if info.st_size > limit:
                raise UnsafeEntry(f"{path}: {info.st_size} bytes, too large for an entry")
            chunks = []
            left = info.st_size
            while left > 0:  # os.read may return less (a file shrinking under us: EOF)
                chunk = os.read(fd, left)
                if not chunk:
                    break
                chunks.append(chunk)
                left -= len(chunk)
            return b"".join(chunks)
        except OSError as exc:
            raise CacheError(f"{path}: cannot read ({exc.strerror or exc})") from exc
        finally:
            os.close(fd)

    def size(self, key: str, relative: str) -> int | None:
        """The size of a row's regular file; None when gone; UnsafeEntry when not ours."""
        if not valid_name(key, relative):
            raise UnsafeEntry(f"{relative!r}: not an entry file name of this cache")
        try:
            self._check_parents(relative)
            info = os.lstat(f"{self._root}/{relative}")
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not stat.S_ISREG(info.st_mode):
            raise UnsafeEntry(f"{self._root}/{relative}: not a regular file")
        return info.st_size

    def exists(self, key: str, relative: str) -> bool:
        try:
            return self.size(key, relative) is not None
        except (UnsafeEntry, OSError):
            return False

    def unlink(self, key: str, relative: str) -> None:
        """Delete a row's file, only if it is this cache's own name in a real shard."""
        if not valid_name(key, relative):
            return
        with contextlib.suppress(UnsafeEntry, OSError):
            self._check_parents(relative)
            unlink_quietly(self.directory / relative)

    def doom(self, key: str, relative: str) -> Path | None:
        """Rename a row's file to `<name>.del` (inside the transaction that drops its row):
        from then on no scan takes it for an entry the index lost. None if not ours/gone."""
        if not valid_name(key, relative):
            return None
        path = self.directory / relative
        doomed = path.with_suffix(".del")
        try:
            self._check_parents(relative)
            os.rename(path, doomed)
        except (UnsafeEntry, OSError):
            return None
        return doomed

    def undoom(self, key: str, relative: str) -> bool:
        """Undo `doom` whose transaction never committed (its writer was killed): rename
        `<name>.del` back. Only under the write lock, with the row still naming `relative`."""
        if not valid_name(key, relative):
            return False
        path = self.directory / relative
        doomed = path.with_suffix(".del")
        try:
            self._check_parents(relative)
            if os.path.lexists(path) or not stat.S_ISREG(os.lstat(doomed).st_mode):
                return False
            os.rename(doomed, path)
        except (UnsafeEntry, OSError):
            return False
        return True

    def write(self, relative: str, key: str, blob: bytes) -> None:
        """Temp file in the same directory, fsync, rename: the name appears complete or not."""
        path = self.directory / relative
        temp = path.with_name(f"{key}.{writer_tag()}.tmp")
        try:
            try:
                self._check_parents(relative)
            except FileNotFoundError:  # a new cache or shard (mkdir costs more than lstat)
                path.parent.mkdir(parents=True, exist_ok=True)
                self._check_parents(relative)
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
            try:
                view = memoryview(blob)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            faults.reached("temp-written")
            os.replace(temp, path)
        except UnsafeEntry as exc:
            raise CacheError(f"{self.directory}: {exc}; nothing was stored") from exc
        except OSError as exc:
            unlink_quietly(temp)
            raise write_error(self.directory, exc) from exc
        except BaseException:  # Ctrl-C, SIGTERM, SIGHUP (voiceprep.cli._signals)
            unlink_quietly(temp)
            raise

    def scan(self) -> tuple[list[Path], list[Path]]:
        """(entry files, temporaries) under audio/: real shard directories, our names only."""
        wavs: list[Path] = []
        temps: list[Path] = []
        audio = self.directory / AUDIO_DIR
        try:
            if not stat.S_ISDIR(os.lstat(audio).st_mode):
                return wavs, temps
            shards = list(os.scandir(audio))
        except (FileNotFoundError, NotADirectoryError):
            return wavs, temps
        for shard in shards:
            if not shard.is_dir(follow_symlinks=False) or len(shard.name) != 2:
                continue
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                for item in os.scandir(shard.path):
                    match = _FILE_NAME.fullmatch(item.name)
                    if match is None:
                        continue
                    if not item.is_file(follow_symlinks=False):
                        continue
                    # `.del`: a file whose row is gone, deleted after the commit (a crash
                    # may leave one): cleaned like a temporary.
                    (wavs if match[3] == "wav" else temps).append(Path(item.path))
        return wavs, temps


def write_error(directory: Path, exc: OSError) -> CacheError:
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return CacheReadOnlyError(f"{directory}: cache is read-only ({reason}); nothing was stored")
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return CacheError(f"{directory}: no space left on device; nothing was stored")
    if exc.errno == errno.EIO:
        return CacheError(f"{directory}: I/O error while writing; nothing was stored")
    return CacheError(f"{directory}: cannot write an entry ({reason}); nothing was stored")
