"""Turning the bytes a provider or a program sends, as they arrive, into the items of a
backend's `stream()`: raw s16le PCM, frame-aligned, one rate and channel count per stream.

- `pcm_chunks`: a raw PCM byte stream, cut wherever the network or a pipe cut it, re-aligned
  to whole frames (the odd byte waits for the next piece);
- `wav_chunks`: a WAV as it is written to a stream — a header whose sizes may be
  0xFFFFFFFF (OpenAI, espeak-ng, ffmpeg to a pipe), then the samples — read as PCM once the
  header has arrived; a WAV that is not s16 (or not a WAV at all) is decoded whole at the end;
- `whole`: audio that cannot be read incrementally (MP3, Opus…) as one chunk, decoded;
- `server_events`: a `text/event-stream` answer (Cartesia's `/tts/sse`) as its events, each
  as soon as its closing blank line has arrived.
"""

from __future__ import annotations

import struct
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass

from voiceprep.backends.base import SynthesizedAudio
from voiceprep.errors import EmptyAudioError, PermanentBackendError
from voiceprep.wav import UNKNOWN_SIZE, parse_wav_header

# A streamed WAV header is 44 bytes; one with LIST/fact chunks a little more. Past this,
# the stream is not a WAV whose samples could be passed on as they come.
_MAX_HEADER = 64 * 1024
# One server-sent event holds at most a few seconds of base64 audio; past this, the answer
# is not what it claims (and would otherwise grow in memory without end).
_MAX_EVENT = 16 * 1024 * 1024


async def pcm_chunks(
    source: AsyncIterable[bytes], *, rate: int, channels: int, empty: str
) -> AsyncIterator[SynthesizedAudio]:
    """Whole frames of `source` as they arrive; EmptyAudioError(`empty`) when none came."""
    frame = 2 * channels
    carry = b""
    sent = False
    async for piece in source:
        data = carry + piece if carry else piece
        cut = len(data) - len(data) % frame
        carry = data[cut:]
        if cut:
            sent = True
            yield SynthesizedAudio(data[:cut], rate=rate, channels=channels)
    if not sent:
        raise EmptyAudioError(empty)


async def wav_chunks(
    source: AsyncIterable[bytes], *, rate: int, channels: int, empty: str
) -> AsyncIterator[SynthesizedAudio]:
    """The samples of a streamed s16 WAV as they arrive (see the module's docstring).

    `rate`/`channels` are only used to decode what is not an s16 WAV."""
    iterator = aiter(source)
    head = b""
    async for piece in iterator:
        head += piece
        header = _wav_header(head)
        if header is None and len(head) < _MAX_HEADER and b"RIFF".startswith(head[:4]):
            continue
        if header is None:
            break
        rate_in, channels_in, offset, size = header
        async for chunk in pcm_chunks(
            _data_bytes(head[offset:], iterator, size),
            rate=rate_in,
            channels=channels_in,
            empty=empty,
        ):
            yield chunk
        return
    # Not an s16 WAV whose samples can be passed on: decode what came, whole.
    async for piece in iterator:
        head += piece
    if not head:
        raise EmptyAudioError(empty)
    async for chunk in whole(SynthesizedAudio(head), rate=rate, channels=channels):
        yield chunk


def _wav_header(head: bytes) -> tuple[int, int, int, int | None] | None:
    """(rate, channels, data offset, data size or None when unknown) of an s16 WAV whose
    header is complete in `head`; None while it is not (or when it is not an s16 WAV)."""
    try:
        fmt = parse_wav_header(head)
    except (ValueError, struct.error):
        return None
    if fmt.sample_format != "s16" or fmt.channels < 1:
        return None
    (size,) = struct.unpack_from("<I", head, fmt.data_offset - 4)
    return fmt.rate, fmt.channels, fmt.data_offset, None if size == UNKNOWN_SIZE else size


async def _data_bytes(
    first: bytes, rest: AsyncIterator[bytes], size: int | None
) -> AsyncIterator[bytes]:
    """The data chunk's bytes: `first`, then the rest of the stream, up to `size` if known
    (chunks after the data chunk, such as LIST, are not samples)."""
    left = size
    if left is None:
        if first:
            yield first
        async for piece in rest:
            yield piece
        return
    if first:
        yield first[:left]
        left -= min(left, len(first))
    async for piece in rest:
        if left <= 0:
            continue  # drain: the connection is reused only when its body was read
        yield piece[:left]
        left -= min(left, len(piece))


async def whole(
    audio: SynthesizedAudio, *, rate: int, channels: int
) -> AsyncIterator[SynthesizedAudio]:
    """`audio` (any format libav reads) as one chunk of s16le PCM at `rate`/`channels`."""
    yield SynthesizedAudio(
        await audio.to_pcm_async(rate=rate, channels=channels), rate=rate, channels=channels
    )


@dataclass(frozen=True)
class ServerEvent:
    """One server-sent event: its `event:` name ("message" when none) and its data."""

    name: str
    data: str


async def server_events(
    source: AsyncIterable[bytes], *, backend: str
) -> AsyncIterator[ServerEvent]:
    """The events of a `text/event-stream` body as they arrive (the WHATWG format: `data:`
    lines joined with newlines, `event:` names, `:` comments, a blank line ends an event;
    lines end with LF or CRLF). An event left unfinished at the end is dropped, as browsers
    do. PermanentBackendError when one event grows past 16 MiB."""
    buffer = b""
    name, size = "", 0
    data: list[str] = []
    async for piece in source:
        buffer += piece
        *lines, buffer = buffer.split(b"\n")
        for raw in lines:
            line = raw.removesuffix(b"\r")
            if not line:
                if data:
                    yield ServerEvent(name or "message", "\n".join(data))
                name, data, size = "", [], 0
                continue
            field, _, value = line.partition(b":")
            value = value.removeprefix(b" ")
            if field == b"data":
                data.append(value.decode("utf-8", "replace"))
                size += len(value)
            elif field == b"event":
                name = value.decode("utf-8", "replace")
        if len(buffer) + size > _MAX_EVENT:
            raise PermanentBackendError(f"{backend}: an event of the answer is over 16 MiB")
