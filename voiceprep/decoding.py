"""Decoding any file libav reads into raw PCM at a chosen rate and channel count.

`decode()` streams: it yields little-endian interleaved PCM chunks of about a second and
never holds the file in memory. It has two engines, which produce the same bytes
(libavcodec's decoder, then libswresample with its defaults, as the ffmpeg CLI): the
**fast path** (voiceprep.graph: a libavfilter graph does it all, Python sees one frame per
chunk) for regular files of 512 KiB or more, and the **robust path** (voiceprep.packets:
packet by packet, around corrupt packets and through format changes) for everything
else (bytes, file objects, pipes, stdin, chained Ogg) and as the fast path's fallback.

On a fallback the robust path starts again from the beginning and drops the bytes the
fast path already yielded; as both paths compute the same samples, the output is
seamless.
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import IO, Any

from voiceprep import defaults, graph
from voiceprep.audio_format import STDIO, AudioFormat
from voiceprep.errors import DecodeError, InputError, NoAudioStreamError, UsageError
from voiceprep.graph import Target
from voiceprep.ogg import LinkReader, chain_offsets
from voiceprep.packets import Regrouper, WarningHandler, decode_packets, reason, warn
from voiceprep.phonecodec import g711_chunks
from voiceprep.telephony import G711, phone_file, raw_input_options
from voiceprep.units import check_seconds
from voiceprep.wav import WAV_HEAD_BYTES, wav_promise

Source = str | os.PathLike[str] | bytes | IO[bytes]

# Below this size the robust path's cheaper set-up wins (measured on a 4 s MP3: 5.4 ms
# robust vs 12.6 ms fast; the fast path saves ~0.3 ms per second of audio). 512 KiB is
# about 30 s of 128 kb/s MP3.
_FAST_PATH_MIN_BYTES = 512 * 1024


@dataclass(frozen=True)
class AudioInfo:
    """What `probe()` reports about a file's (first, best) audio stream."""

    container: str
    codec: str
    rate: int
    channels: int
    layout: str
    duration: float | None  # seconds; None when unknown (e.g. some pipes)
    bitrate: int | None  # bits per second; None when unknown


# --- public API ---------------------------------------------------------------------


def decode(
    source: Source,
    *,
    rate: int = defaults.RATE,
    channels: int = defaults.CHANNELS,
    sample_format: str = "s16",
    start: float | None = None,
    duration: float | None = None,
    on_warning: WarningHandler | None = None,
) -> Iterator[bytes]:
    """Yield little-endian interleaved PCM chunks at `rate` and `channels`, as decoded.

    `source` is a path, `"-"` (stdin), a binary file object (a pipe is fine: it is only
    seeked when seekable) or bytes. `start` and `duration` (seconds) are sample-exact:
    the output skips `round(start * rate)` samples and holds `round(duration * rate)`
    samples when the input is long enough.

    `on_warning(message)` is called for each recoverable problem (a corrupt packet
    skipped, a format change mid-stream); nothing is printed.

    Checked at once, when called: the arguments (UsageError), a missing path or a
    directory (InputError), an empty file (DecodeError). The rest arrives during
    iteration: InputError (unreadable), DecodeError (not audio, nothing decodable),
    NoAudioStreamError (also a ValueError). Nothing from PyAV escapes untyped.
    """
    if sample_format in G711:  # encoded from the 16-bit decode (voiceprep.phonecodec)
        pcm = decode(
            source,
            rate=rate,
            channels=channels,
            start=start,
            duration=duration,
            on_warning=on_warning,
        )
        return g711_chunks(pcm, sample_format)
    target = _target(rate, channels, sample_format)
    skip = _samples(start, rate, "start")
    limit = _samples(duration, rate, "duration")
    _check_path(source)
    chunks = _decode_pcm(source, target, on_warning)
    return window(chunks, (skip or 0) * target.frame_bytes, _scaled(limit, target.frame_bytes))


def probe(source: Source) -> AudioInfo:
    """Container, codec, rate, channels, layout, duration and bit rate of `source`."""
    _check_path(source)
    with _open(source) as container:
        return _info(container, _audio_stream(container, _source_name(source)))


def probe_start(path: Path) -> tuple[AudioInfo, int, int]:
    """`probe(path)`, and where decoding starts: the first decoded sample's timestamp
    counted in input samples (1105 for an MP3 whose encoder delay is dropped) and the
    rate it counts at. Read from one opening of the file (a long MP4's index costs
    megabytes) by one decoding thread (no libav thread may hold a lock when the caller
    forks). Raises as probe() does, or an av.error.FFmpegError."""
    _check_path(path)
    with _open(path) as container:
        stream = _audio_stream(container, str(path))
        info = _info(container, stream)
        stream.codec_context.thread_count = 1
        for frame in container.decode(stream):
            timestamp = Fraction(frame.pts or 0) * frame.time_base * frame.sample_rate
            return info, round(timestamp), int(frame.sample_rate)
    raise DecodeError("no audio could be decoded", path=str(path))


def _info(container: Any, stream: Any) -> AudioInfo:
    ctx = stream.codec_context
    return AudioInfo(
        container=container.format.name,
        # the codec's name (mp3), not libav's decoder's (mp3float), as ffprobe shows it
        codec=ctx.codec.canonical_name,
        rate=ctx.sample_rate,
        channels=ctx.channels,
        layout=_layout_name(ctx.layout),
        duration=_duration(container, stream),
        # the stream's own rate (exact for PCM); the container's is file size / time
        bitrate=ctx.bit_rate or container.bit_rate or None,
    )


def load_audio_file(
    path: str | os.PathLike[str],
    sample_rate: int = defaults.RATE,
    num_channels: int = defaults.CHANNELS,
) -> bytes:
    """The original API: the whole file as s16le PCM. ValueError for bad channels or no audio."""
    if num_channels not in (1, 2):
        raise ValueError(f"num_channels must be 1 or 2, not {num_channels}")
    return b"".join(decode(path, rate=sample_rate, channels=num_channels))


# --- argument checks ----------------------------------------------------------------


def _target(rate: int, channels: int, sample_format: str) -> Target:
    return Target.of(AudioFormat(rate, channels, sample_format))  # checked here, once


def _samples(seconds: float | None, rate: int, what: str) -> int | None:
    if seconds is None:
        return None
    return round(check_seconds(seconds, what) * rate)


def _scaled(value: int | None, factor: int) -> int | None:
    return None if value is None else value * factor


def _source_name(source: Source) -> str:
    if isinstance(source, bytes | bytearray | memoryview):
        return "<bytes>"
    if isinstance(source, str | os.PathLike):
        return "<stdin>" if str(source) == STDIO else str(source)
    name = getattr(source, "name", None)
    return name if isinstance(name, str) else "<stream>"


def _regular_file(source: Source) -> Path | None:
    """The path when `source` names a regular file (the fast path can reopen it)."""
    if isinstance(source, str | os.PathLike) and str(source) != STDIO:
        path = Path(source)
        if path.is_file():
            return path
    return None


def _check_path(source: Source) -> None:
    """Fail early, with a message naming the file, for paths that cannot be audio."""
    if not isinstance(source, str | os.PathLike) or str(source) == STDIO:
        if isinstance(source, bytes | bytearray) and not source:
            raise DecodeError("empty input", path="<bytes>")
        return
    name = str(source)
    path = Path(source)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise InputError("no such file", path=name) from None
    except PermissionError:
        raise InputError("permission denied", path=name) from None
    except OSError as exc:
        raise InputError(f"{exc.strerror or 'cannot be read'}", path=name) from None
    if path.is_dir():
        raise InputError("is a directory", path=name)
    if path.is_file():
        if info.st_size == 0:
            raise DecodeError("empty file", path=name)
        if not os.access(path, os.R_OK):
            raise InputError("permission denied", path=name)


# --- opening ------------------------------------------------------------------------


def _open(source: Source) -> Any:
    """An av input container for `source`; typed errors naming it."""
    import av

    name = _source_name(source)
    target: Any
    if isinstance(source, bytes | bytearray | memoryview):
        target = io.BytesIO(source)
    elif isinstance(source, str | os.PathLike):
        target = sys.stdin.buffer if str(source) == STDIO else str(source)
    elif isinstance(source, io.TextIOBase):
        raise UsageError("not a binary file object (open it with 'rb')", path=name)
    else:
        target = source
    try:
        # a raw phone file (clip.ulaw, clip.sln16) is read as its name says
        return av.open(target, mode="r", **raw_input_options(source))
    except PermissionError:
        raise InputError("permission denied", path=name) from None
    except (FileNotFoundError, IsADirectoryError):
        raise InputError("no such file", path=name) from None
    except av.error.FFmpegError as exc:
        raise DecodeError(f"not a readable audio file ({reason(exc)})", path=name) from None
    except OSError as exc:  # a file object that fails to read
        raise InputError(f"{exc.strerror or exc}", path=name) from None
    except TypeError:  # e.g. a file opened in text mode
        raise UsageError("not a binary file object (open it with 'rb')", path=name) from None


def _audio_stream(container: Any, name: str) -> Any:
    if not container.streams.audio:
        raise NoAudioStreamError("no audio stream", path=name)
    return container.streams.best("audio") or container.streams.audio[0]


def _layout_name(layout: Any) -> str:
    """A mono or stereo file without a channel mask is still plainly mono or stereo."""
    unordered = all(channel.name == "NONE" for channel in layout.channels)
    if unordered and layout.nb_channels in (1, 2):
        return "mono" if layout.nb_channels == 1 else "stereo"
    return str(layout.name)  # e.g. "6 channels": decode() downmixes it as 5.1


def _duration(container: Any, stream: Any) -> float | None:
    """Seconds, to the millisecond, as decoding yields them: an encoder's delay that the
    decoder drops (Opus's pre-skip) is not audio."""
    seconds = None
    if stream.duration is not None and stream.time_base is not None:
        seconds = float(stream.duration * stream.time_base)
        delay, rate = stream.codec_context.delay or 0, stream.codec_context.sample_rate
        if rate:
            seconds = max(0.0, seconds - delay / rate)
    elif container.duration:
        seconds = container.duration / 1_000_000
    return None if seconds is None else round(seconds, 3)


# --- the two engines ----------------------------------------------------------------


def _decode_pcm(
    source: Source, target: Target, on_warning: WarningHandler | None
) -> Iterator[bytes]:
    """Every PCM chunk of the file; DecodeError when nothing at all decodes. A regular
    file that grew while it was decoded, or a WAV whose header promises more audio than
    the file holds, decodes what is there with a warning (as ffmpeg does, but said)."""
    name = _source_name(source)
    path = _regular_file(source)
    before = _file_state(path)
    yield from _decode_chunks(source, target, on_warning, name, path)
    if before is not None and path is not None:  # decoded to the end: say what was odd
        for message in _file_warnings(path, name, before):
            warn(on_warning, message)


def _decode_chunks(
    source: Source,
    target: Target,
    on_warning: WarningHandler | None,
    name: str,
    path: Path | None,
) -> Iterator[bytes]:
    import av

    produced = 0
    # A chained Ogg file: amovie would end at the first link as if the file ended.
    links = chain_offsets(source) if _maybe_ogg(source, path) else []
    if path is not None and not links and _worth_a_graph(path):
        try:
            for chunk in graph.whole_file(path, target):
                produced += len(chunk)
                yield chunk
            if produced:
                return
        except av.error.FFmpegError:
            # Not audio, a corrupt packet or a format change: the robust path decides,
            # and reports the error if there is one.
            pass
    regroup = Regrouper(target, name)
    seekable = _seekable(source)
    ends: list[int | None] = [*links[1:], None] if links else []
    readers = [LinkReader(source, start, end, name) for start, end in zip(links, ends, strict=True)]
    chunks = _robust_links(readers or [source], regroup, name, seekable, on_warning)
    for chunk in _drop(chunks, produced):
        produced += len(chunk)
        yield chunk
    if not produced:
        raise DecodeError("no audio could be decoded", path=name)


def _robust_links(
    sources: list[Any],
    regroup: Regrouper,
    name: str,
    seekable: bool,
    on_warning: WarningHandler | None,
) -> Iterator[bytes]:
    """The robust path over each link of a chained Ogg file in turn (or the one source),
    through one regrouper: a link of another rate or layout is a format change."""
    for source in sources:
        container = _open(source)
        try:
            stream = _audio_stream(container, name)
            yield from decode_packets(container, stream, regroup, name, seekable, on_warning)
        finally:
            container.close()
            if isinstance(source, LinkReader):
                source.close()
    yield from regroup.finish()


def _maybe_ogg(source: Source, path: Path | None) -> bool:
    """Whether `source` starts like an Ogg file (read only from a path or bytes)."""
    if isinstance(source, bytes | bytearray | memoryview):
        return bytes(source[:4]) == b"OggS"
    if path is None:
        return not isinstance(source, str | os.PathLike)  # a file object: chain_offsets looks
    try:
        with open(path, "rb") as handle:
            return handle.read(4) == b"OggS"
    except OSError:
        return False


@dataclass(frozen=True)
class _FileState:
    size: int
    promised: tuple[int, int] | None  # a lying WAV header: (declared, held) data bytes


def _file_state(path: Path | None) -> _FileState | None:
    if path is None:
        return None
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            head = handle.read(WAV_HEAD_BYTES)
    except OSError:
        return None
    return _FileState(size, wav_promise(head, size))


def _file_warnings(path: Path, name: str, before: _FileState) -> list[str]:
    messages = []
    if before.promised is not None:
        declared, held = before.promised
        messages.append(
            f"{name}: the WAV header promises {declared} bytes of audio, the file holds "
            f"{held} (truncated?): decoded what is there"
        )
    try:
        after = path.stat().st_size
    except OSError:
        return messages
    if after > before.size:
        messages.append(
            f"{name}: the file grew by {after - before.size} bytes while it was decoded "
            "(still being written?): the output may end before the file does"
        )
    return messages


def _worth_a_graph(path: Path) -> bool:
    """Small files set up faster on the robust path (no second probe of the file); a raw
    phone file needs its format named, which amovie cannot pass on."""
    if phone_file(path) is not None:
        return False
    try:
        return path.stat().st_size >= _FAST_PATH_MIN_BYTES
    except OSError:
        return False


def _seekable(source: Source) -> bool:
    if isinstance(source, bytes | bytearray | memoryview):
        return True
    if isinstance(source, str | os.PathLike):
        if str(source) != STDIO:
            return Path(source).is_file()
        source = sys.stdin.buffer
    try:
        return bool(source.seekable())
    except (AttributeError, OSError, ValueError):
        return False


# --- byte windows -------------------------------------------------------------------


def _drop(chunks: Iterator[bytes], count: int) -> Iterator[bytes]:
    """`chunks` without their first `count` bytes."""
    for chunk in chunks:
        if count >= len(chunk):
            count -= len(chunk)
            continue
        yield chunk[count:] if count else chunk
        count = 0


def window(chunks: Iterator[bytes], skip: int, limit: int | None) -> Iterator[bytes]:
    """Bytes `skip` … `skip + limit` of the stream (`limit` None: to its end); stops
    decoding once `limit` is reached."""
    if limit == 0:
        return
    try:
        for chunk in _drop(chunks, skip):
            if limit is not None and len(chunk) >= limit:
                yield chunk[:limit]
                return
            if limit is not None:
                limit -= len(chunk)
            yield chunk
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
