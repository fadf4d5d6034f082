"""Decoding any file libav reads into raw PCM at a chosen rate and channel count.

FIRST DRAFT (scaffolding): correct API, simple streaming loop. To be completed and
optimised (corrupt packets, format changes, start/duration, speed).
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from voiceprep.errors import DecodeError, InputError, NoAudioStreamError
from voiceprep.units import check_channels, check_rate

Source = str | os.PathLike[str] | bytes | IO[bytes]
_AV_FORMAT = {"s16": "s16", "f32": "flt"}


@dataclass(frozen=True)
class AudioInfo:
    container: str
    codec: str
    rate: int
    channels: int
    layout: str
    duration: float | None
    bitrate: int | None


def _source_name(source: Source) -> str:
    if isinstance(source, bytes):
        return "<bytes>"
    if isinstance(source, str | os.PathLike):
        return "<stdin>" if str(source) == "-" else str(source)
    return getattr(source, "name", "<stream>")


def _open(source: Source) -> Any:
    import av

    name = _source_name(source)
    target: Any
    if isinstance(source, bytes):
        target = io.BytesIO(source)
    elif isinstance(source, str | os.PathLike):
        if str(source) == "-":
            target = sys.stdin.buffer
        else:
            path = Path(source)
            if not path.exists():
                raise InputError(f"{name}: no such file")
            if path.is_dir():
                raise InputError(f"{name}: is a directory")
            if path.stat().st_size == 0:
                raise DecodeError(f"{name}: empty file")
            target = str(path)
    else:
        target = source
    try:
        return av.open(target, mode="r")
    except PermissionError:
        raise InputError(f"{name}: permission denied") from None
    except av.error.FFmpegError as exc:
        raise DecodeError(f"{name}: not a readable audio file ({exc.strerror})") from None


def decode(
    source: Source,
    *,
    rate: int = 24000,
    channels: int = 1,
    sample_format: str = "s16",
    start: float | None = None,
    duration: float | None = None,
) -> Iterator[bytes]:
    """Yield little-endian interleaved PCM chunks at `rate` and `channels`."""
    import av

    check_rate(rate)
    check_channels(channels)
    if sample_format not in _AV_FORMAT:
        raise ValueError(f"sample_format must be 's16' or 'f32', not {sample_format!r}")
    name = _source_name(source)
    container = _open(source)
    with container:
        if not container.streams.audio:
            raise NoAudioStreamError(f"{name}: no audio stream")
        stream = container.streams.audio[0]
        layout = "mono" if channels == 1 else "stereo"
        resampler = av.AudioResampler(format=_AV_FORMAT[sample_format], layout=layout, rate=rate)
        width = channels * (2 if sample_format == "s16" else 4)
        for packet in container.demux(stream):
            try:
                frames = packet.decode()
            except av.error.InvalidDataError:
                continue
            for frame in frames:
                for out in resampler.resample(frame):
                    yield bytes(memoryview(out.planes[0])[: out.samples * width])
        for out in resampler.resample(None):
            yield bytes(memoryview(out.planes[0])[: out.samples * width])


def probe(source: Source) -> AudioInfo:
    name = _source_name(source)
    container = _open(source)
    with container:
        if not container.streams.audio:
            raise NoAudioStreamError(f"{name}: no audio stream")
        stream = container.streams.audio[0]
        ctx = stream.codec_context
        duration = container.duration / 1_000_000 if container.duration else None
        return AudioInfo(
            container=container.format.name,
            codec=ctx.name,
            rate=ctx.sample_rate,
            channels=ctx.channels,
            layout=ctx.layout.name,
            duration=duration,
            bitrate=container.bit_rate or None,
        )


def load_audio_file(
    path: str | os.PathLike[str], sample_rate: int = 24000, num_channels: int = 1
) -> bytes:
    """The original API: the whole file as s16le PCM. ValueError for bad channels or no audio."""
    if num_channels not in (1, 2):
        raise ValueError(f"num_channels must be 1 or 2, not {num_channels}")
    return b"".join(decode(path, rate=sample_rate, channels=num_channels))
