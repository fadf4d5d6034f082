"""RIFF/WAVE headers for raw PCM: written by `decode --format wav`, the cache and exports.

The sample formats voiceprep produces: s16 (PCM), f32 (IEEE float), little-endian,
interleaved, and G.711 ulaw/alaw (format tags 7 and 6, 8 bits, as ffprobe reads them).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import BinaryIO

from voiceprep.audio_format import SAMPLE_BYTES

_FORMAT_TAG = {"s16": 1, "f32": 3, "ulaw": 7, "alaw": 6}
_TAG_FORMAT = {tag: name for name, tag in _FORMAT_TAG.items()}
# A WAV whose length is unknown (streamed to a pipe) carries these sizes, as ffmpeg does.
UNKNOWN_SIZE = 0xFFFFFFFF
HEADER_BYTES = 44


def wav_header(
    *, rate: int, channels: int, sample_format: str = "s16", data_bytes: int | None
) -> bytes:
    """A 44-byte canonical WAV header; `data_bytes=None` marks a stream of unknown length."""
    width = SAMPLE_BYTES[sample_format]
    block_align = channels * width
    if data_bytes is None:
        riff_size = data_size = UNKNOWN_SIZE
    else:
        data_size = data_bytes
        riff_size = min(36 + data_bytes, UNKNOWN_SIZE)
    return (
        b"RIFF"
        + struct.pack("<I", riff_size)
        + b"WAVEfmt "
        + struct.pack(
            "<IHHIIHH",
            16,
            _FORMAT_TAG[sample_format],
            channels,
            rate,
            rate * block_align,
            block_align,
            width * 8,
        )
        + b"data"
        + struct.pack("<I", data_size)
    )


def riff_chunk(chunk_id: bytes, body: bytes) -> bytes:
    """One RIFF chunk: id, little-endian size, body, a pad byte when the size is odd."""
    if len(chunk_id) != 4:
        raise ValueError(f"a RIFF chunk id is 4 bytes, not {chunk_id!r}")
    return chunk_id + struct.pack("<I", len(body)) + body + (b"\0" if len(body) & 1 else b"")


def wav_bytes(
    pcm: bytes,
    *,
    rate: int,
    channels: int,
    sample_format: str = "s16",
    trailer: bytes = b"",
) -> bytes:
    """PCM wrapped in a complete WAV file.

    `trailer` is whole RIFF chunks (see `riff_chunk`) placed after the data chunk: the
    44-byte canonical header stays as it is, and players and ffprobe skip chunks they do
    not know.
    """
    header = bytearray(
        wav_header(rate=rate, channels=channels, sample_format=sample_format, data_bytes=len(pcm))
    )
    if trailer:
        struct.pack_into("<I", header, 4, min(36 + len(pcm) + len(trailer), UNKNOWN_SIZE))
    return bytes(header) + pcm + trailer


def patch_wav_sizes(fileobj: BinaryIO, data_bytes: int) -> None:
    """Rewrite the size fields of a header written with `data_bytes=None` (seekable files)."""
    fileobj.seek(4)
    fileobj.write(struct.pack("<I", min(36 + data_bytes, UNKNOWN_SIZE)))
    fileobj.seek(40)
    fileobj.write(struct.pack("<I", min(data_bytes, UNKNOWN_SIZE)))
    fileobj.seek(0, 2)


@dataclass(frozen=True)
class WavFormat:
    rate: int
    channels: int
    sample_format: str
    data_offset: int
    data_bytes: int


def parse_wav_header(blob: bytes) -> WavFormat:
    """Read the format and data position of a WAV written by voiceprep (or any plain PCM WAV).

    Walks the chunks, so WAVs with LIST or fact chunks are read too. Raises ValueError when
    the bytes are not a PCM/float WAV.
    """
    if len(blob) < 12 or blob[:4] != b"RIFF" or blob[8:12] != b"WAVE":
        raise ValueError("not a RIFF/WAVE file")
    pos = 12
    fmt: tuple[int, int, int, int] | None = None
    while pos + 8 <= len(blob):
        chunk_id = blob[pos : pos + 4]
        (size,) = struct.unpack_from("<I", blob, pos + 4)
        body = pos + 8
        if chunk_id == b"fmt ":
            if size < 16 or body + 16 > len(blob):
                raise ValueError("truncated fmt chunk")
            tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", blob, body)
            fmt = (tag, channels, rate, bits)
        elif chunk_id == b"data":
            if fmt is None:
                raise ValueError("data chunk before fmt chunk")
            tag, channels, rate, bits = fmt
            sample_format = _TAG_FORMAT.get(tag)
            if sample_format is None or SAMPLE_BYTES[sample_format] * 8 != bits:
                raise ValueError(f"unsupported WAV sample format (tag {tag}, {bits} bits)")
            available = len(blob) - body
            data_bytes = available if size == UNKNOWN_SIZE else min(size, available)
            return WavFormat(rate, channels, sample_format, body, data_bytes)
        pos = body + size + (size & 1)
    raise ValueError("no data chunk")


def find_chunk(blob: bytes, chunk_id: bytes, *, start: int = 12) -> bytes | None:
    """The body of the first chunk `chunk_id` at or after `start` (a chunk boundary)."""
    pos = start
    while pos + 8 <= len(blob):
        (size,) = struct.unpack_from("<I", blob, pos + 4)
        body = pos + 8
        if blob[pos : pos + 4] == chunk_id:
            return blob[body : body + size] if body + size <= len(blob) else None
        pos = body + size + (size & 1)
    return None


# Enough for the chunks before `data` in any WAV seen in practice (fmt, LIST, fact…).
WAV_HEAD_BYTES = 64 * 1024


def wav_promise(head: bytes, size: int) -> tuple[int, int] | None:
    """(declared, held) data bytes of a WAV whose header declares more than it holds."""
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
