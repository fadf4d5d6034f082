"""Decoding any file libav reads into raw PCM at a chosen rate and channel count.

`decode()` streams: it yields little-endian interleaved PCM chunks of about a second and
never holds the file in memory. It has two engines, which produce the same
bytes (libavcodec's decoder, then libswresample with its defaults, as the ffmpeg CLI):

- the **fast path**, for regular files of 512 KiB or more: libavfilter's `amovie` source
  demuxes and decodes inside one filter graph, `aformat` converts, `asetnsamples` groups
  the output into chunks. Python only sees one frame per output chunk, so what remains is libav's
  own work, as in the ffmpeg CLI (per-frame Python work, not the codec, is what made the
  simple loop slow; see docs/performance.md).
- the **robust path**, for everything else (bytes, file objects, pipes, stdin) and as the
  fallback when the fast path meets something it does not survive: `amovie` stops at a
  corrupt packet or a mid-stream format change, while the ffmpeg CLI decodes around the
  first and rebuilds its filter graph on the second. The robust path demuxes packet by
  packet, skips packets that fail to decode (reporting each through `on_warning`), and
  starts a new resampler when the input's rate, layout or sample format changes. Frames
  are grouped in an `AudioFifo` before the resampler: fewer, bigger resampler calls.

On a fallback the robust path starts again from the beginning and drops the bytes the
fast path already yielded; as both paths compute the same samples, the output is
seamless.
"""

from __future__ import annotations

import io
import os
import struct
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from voiceprep.audio_format import STDIO, AudioFormat
from voiceprep.errors import DecodeError, InputError, NoAudioStreamError, UsageError
from voiceprep.phonecodec import G711, g711_chunks
from voiceprep.telephony import phone_file, raw_input_options

Source = str | os.PathLike[str] | bytes | IO[bytes]
WarningHandler = Callable[[str], None]

# sample format name → (libav sample format, bytes per sample)
# libav's name of each sample format (the formats themselves: voiceprep.audio_format)
_AV_FORMATS = {"s16": "s16", "f32": "flt"}
# Samples per yielded chunk (and per resampler call on the robust path). Bigger means
# less Python per second of audio: 1 s instead of 0.25 s saved 3–10 % on a 30-minute
# AAC file; a chunk is still small (at most 1.5 MB: 192 kHz stereo f32).
_CHUNK_SECONDS = 1.0
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


@dataclass(frozen=True)
class _Target:
    """The output format asked for."""

    rate: int
    channels: int
    av_format: str
    sample_bytes: int

    @property
    def layout(self) -> str:
        return "mono" if self.channels == 1 else "stereo"

    @property
    def frame_bytes(self) -> int:
        return self.channels * self.sample_bytes

    @property
    def chunk_samples(self) -> int:
        return max(1024, int(self.rate * _CHUNK_SECONDS))


# --- public API ---------------------------------------------------------------------


def decode(
    source: Source,
    *,
    rate: int = 24000,
    channels: int = 1,
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
    return _window(chunks, (skip or 0) * target.frame_bytes, _scaled(limit, target.frame_bytes))


def probe(source: Source) -> AudioInfo:
    """Container, codec, rate, channels, layout, duration and bit rate of `source`."""
    _check_path(source)
    name = _source_name(source)
    with _open(source) as container:
        stream = _audio_stream(container, name)
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
    path: str | os.PathLike[str], sample_rate: int = 24000, num_channels: int = 1
) -> bytes:
    """The original API: the whole file as s16le PCM. ValueError for bad channels or no audio."""
    if num_channels not in (1, 2):
        raise ValueError(f"num_channels must be 1 or 2, not {num_channels}")
    return b"".join(decode(path, rate=sample_rate, channels=num_channels))


# --- argument checks ----------------------------------------------------------------


def _target(rate: int, channels: int, sample_format: str) -> _Target:
    shape = AudioFormat(rate, channels, sample_format)  # checked here, once
    return _Target(rate, channels, _AV_FORMATS[sample_format], shape.sample_bytes)


def _samples(seconds: float | None, rate: int, what: str) -> int | None:
    if seconds is None:
        return None
    if not seconds >= 0:  # also rejects NaN
        raise UsageError(f"invalid {what} {seconds}: must be 0 or more seconds")
    return round(seconds * rate)


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
        raise DecodeError(f"not a readable audio file ({_reason(exc)})", path=name) from None
    except OSError as exc:  # a file object that fails to read
        raise InputError(f"{exc.strerror or exc}", path=name) from None
    except TypeError:  # e.g. a file opened in text mode
        raise UsageError("not a binary file object (open it with 'rb')", path=name) from None


def _reason(exc: Exception) -> str:
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return str(text).rstrip(".")


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
    source: Source, target: _Target, on_warning: WarningHandler | None
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
            _warn(on_warning, message)


def _decode_chunks(
    source: Source,
    target: _Target,
    on_warning: WarningHandler | None,
    name: str,
    path: Path | None,
) -> Iterator[bytes]:
    import av

    produced = 0
    if path is not None and _worth_a_graph(path):
        try:
            for chunk in _fast_path(path, target):
                produced += len(chunk)
                yield chunk
            if produced:
                return
        except av.error.FFmpegError:
            # Not audio, a corrupt packet or a format change: the robust path decides,
            # and reports the error if there is one.
            pass
    container = _open(source)
    try:
        stream = _audio_stream(container, name)
        seekable = _seekable(source)
        chunks = _robust_path(container, stream, target, name, seekable, on_warning)
        for chunk in _drop(chunks, produced):
            produced += len(chunk)
            yield chunk
        if not produced:
            raise DecodeError("no audio could be decoded", path=name)
    finally:
        container.close()


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
            head = handle.read(_WAV_HEAD_BYTES)
    except OSError:
        return None
    return _FileState(size, _wav_promise(head, size))


# Enough for the chunks before `data` in any WAV seen in practice (fmt, LIST, fact…).
_WAV_HEAD_BYTES = 64 * 1024


def _wav_promise(head: bytes, size: int) -> tuple[int, int] | None:
    """(declared, held) data bytes of a WAV whose header declares more than it holds."""
    from voiceprep.wav import UNKNOWN_SIZE, parse_wav_header

    if head[:4] != b"RIFF":
        return None
    try:
        fmt = parse_wav_header(head)
    except (ValueError, struct.error):
        return None  # not a PCM WAV: libav judges it
    (declared,) = struct.unpack_from("<I", head, fmt.data_offset - 4)  # the chunk's size
    if declared in (0, UNKNOWN_SIZE):  # "length unknown" (a stream written to a file)
        return None
    held = size - fmt.data_offset
    return (declared, held) if declared > held else None


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


def _fast_path(path: Path, target: _Target) -> Iterator[bytes]:
    """amovie → aformat → asetnsamples → sink: decoding and resampling all in libav.

    amovie opens the file itself (it is not opened twice: the index of a long MP4 costs
    megabytes) and picks the best audio stream ("da"), as `streams.best("audio")` does.
    """
    from av.filter import Graph

    graph = Graph()
    # "file:" keeps a name with a colon from being read as a protocol.
    source = graph.add("amovie", filename="file:" + str(path.resolve()), streams="da")
    convert = graph.add(
        "aformat",
        sample_fmts=target.av_format,
        sample_rates=str(target.rate),
        channel_layouts=target.layout,
    )
    group = graph.add("asetnsamples", n=str(target.chunk_samples), p="0")
    sink = graph.add("abuffersink")
    source.link_to(convert)
    convert.link_to(group)
    group.link_to(sink)
    graph.configure()
    yield from _pull_all(sink, target.frame_bytes)


def _pull_all(sink: Any, frame_bytes: int) -> Iterator[bytes]:
    import av

    while True:
        try:
            frame = sink.pull()
        except av.error.EOFError:
            return
        # (EAGAIN, never seen with amovie as the source, would raise an FFmpegError: the
        # caller then falls back to the robust path rather than stop early.)
        # planes[0] carries alignment padding past the samples: slice it off.
        yield bytes(memoryview(frame.planes[0])[: frame.samples * frame_bytes])


def _robust_path(
    container: Any,
    stream: Any,
    target: _Target,
    name: str,
    seekable: bool,
    on_warning: WarningHandler | None,
) -> Iterator[bytes]:
    """Packet by packet: skip corrupt packets, rebuild the resampler on format changes."""
    import av
    from av.stream import Discard

    for other in container.streams:
        if other is not stream:
            other.discard = Discard.all  # do not even parse video or subtitle packets
    if stream.codec_context.name == "flac":
        stream.thread_type = "FRAME"  # FLAC decodes frames in parallel; others cannot
    regroup = _Regrouper(target, name)
    time_base = stream.time_base
    for packet in _packets(container, stream, name, seekable, on_warning):
        try:
            frames = packet.decode()
        except av.error.InvalidDataError as exc:
            _warn(on_warning, f"{name}: skipped a corrupt packet{_at(packet, time_base)}", exc)
            continue
        except av.error.FFmpegError as exc:
            _warn(on_warning, f"{name}: skipped a packet{_at(packet, time_base)}", exc)
            continue
        for frame in frames:
            yield from regroup.add(frame, name, on_warning)
    yield from regroup.finish()


def _packets(
    container: Any, stream: Any, name: str, seekable: bool, on_warning: WarningHandler | None
) -> Iterator[Any]:
    """Demuxed packets; a read error ends the stream, as in the ffmpeg CLI (truncated files)."""
    import av

    packets = container.demux(stream)
    count = 0
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            return
        except av.error.FFmpegError as exc:
            if count == 0:
                raise DecodeError(_unreadable_reason(container, exc, seekable), path=name) from None
            _warn(on_warning, f"{name}: stopped reading after {count} packets", exc)
            return
        count += 1
        yield packet


def _unreadable_reason(container: Any, exc: Exception, seekable: bool) -> str:
    if not seekable and "mp4" in container.format.name:
        return (
            "cannot be read from a pipe: this MP4/M4A keeps its index at the end;"
            " give the file's path instead"
        )
    return f"not a readable audio file ({_reason(exc)})"


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


class _Regrouper:
    """AudioFifo in front of an AudioResampler, both rebuilt when the input format changes."""

    def __init__(self, target: _Target, name: str) -> None:
        self.target = target
        self.name = name
        self.fifo: Any = None
        self.resampler: Any = None
        self.input_format: tuple[int, str, str] | None = None
        self.chunk = 0  # input samples per resampler call, set from the input's rate

    def add(self, frame: Any, name: str, on_warning: WarningHandler | None) -> Iterator[bytes]:
        # AudioFifo.write crashes (PyAV 18) on a frame of another format: compare first.
        key = (frame.sample_rate, frame.layout.name, frame.format.name)
        if key != self.input_format:
            yield from self._restart(frame, key, name, on_warning)
        frame.pts = None  # the fifo checks pts continuity; timing is counted in samples
        fifo = self.fifo
        fifo.write(frame)
        while fifo.samples >= self.chunk:
            yield from self._resample(fifo.read(self.chunk))

    def finish(self) -> Iterator[bytes]:
        if self.fifo is not None and self.fifo.samples:
            yield from self._resample(self.fifo.read())
        if self.resampler is not None:
            yield from self._resample(None)  # the resampler's delayed tail

    def _restart(
        self,
        frame: Any,
        key: tuple[int, str, str],
        name: str,
        on_warning: WarningHandler | None,
    ) -> Iterator[bytes]:
        """Flush what the old format left, as ffmpeg does when it rebuilds its graph."""
        import av

        if self.input_format is not None:
            old = self.input_format
            _warn(
                on_warning,
                f"{name}: format changed mid-stream from {old[0]} Hz {old[1]}"
                f" to {key[0]} Hz {key[1]}",
            )
            yield from self.finish()
        self.input_format = key
        # Counted at the input's rate, so an output chunk stays about _CHUNK_SECONDS long
        # whatever the two rates (8 kHz in, 192 kHz out must not make 24 s chunks).
        self.chunk = max(1024, int(key[0] * _CHUNK_SECONDS))
        self.fifo = av.AudioFifo()
        self.resampler = av.AudioResampler(
            format=self.target.av_format, layout=self.target.layout, rate=self.target.rate
        )

    def _resample(self, frame: Any) -> Iterator[bytes]:
        import av

        frame_bytes = self.target.frame_bytes
        try:
            converted = self.resampler.resample(frame)
        except (av.error.FFmpegError, ValueError) as exc:
            raise DecodeError(
                f"cannot convert the audio ({_reason(exc)})", path=self.name
            ) from None
        for out in converted:
            # planes[0] carries alignment padding past the samples: slice it off.
            yield bytes(memoryview(out.planes[0])[: out.samples * frame_bytes])


def _at(packet: Any, time_base: Any) -> str:
    if packet.pts is None or time_base is None:
        return ""
    return f" at {float(packet.pts * time_base):.2f} s"


def _warn(handler: WarningHandler | None, message: str, exc: Exception | None = None) -> None:
    if handler is not None:
        handler(f"{message} ({_reason(exc)})" if exc is not None else message)


# --- byte windows -------------------------------------------------------------------


def _drop(chunks: Iterator[bytes], count: int) -> Iterator[bytes]:
    """`chunks` without their first `count` bytes."""
    for chunk in chunks:
        if count >= len(chunk):
            count -= len(chunk)
            continue
        yield chunk[count:] if count else chunk
        count = 0


def _window(chunks: Iterator[bytes], skip: int, limit: int | None) -> Iterator[bytes]:
    """Bytes `skip` … `skip + limit` of the stream; stops decoding once `limit` is reached."""
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
