"""Chained Ogg: several complete streams one after another in one file.

An Ogg file may be a chain of links (a playlist or a radio recording joined byte for byte),
and each link may change the codec's rate and channels. libav's Ogg demuxer stops at the
second link ("patches welcome") and libavfilter's `amovie` even ends there as if the file
ended, so the decoder reads the links itself: `chain_offsets()` walks the page headers
(27 bytes and a segment table per page, a few milliseconds for an hour of audio) and
`LinkReader` presents one link as a file of its own. A new link starts at a
beginning-of-stream page that follows other pages; the BOS pages at the very start belong
to streams multiplexed together (grouped), not chained.
"""

from __future__ import annotations

import io
import os
import struct
from typing import IO

_CAPTURE = b"OggS"
_HEADER = struct.Struct("<4sBBqIIIB")  # capture, version, flags, granule, serial, seq, crc, segs
_BOS = 0x02


def chain_offsets(source: str | os.PathLike[str] | bytes | IO[bytes]) -> list[int]:
    """Byte offsets where the links of a chained Ogg file start (the first is 0); [] for a
    file that is not Ogg, not chained, or that cannot be read twice (a pipe)."""
    handle: IO[bytes]
    if isinstance(source, bytes | bytearray | memoryview):
        handle = io.BytesIO(source)
    elif isinstance(source, str | os.PathLike):
        try:
            handle = open(source, "rb")  # noqa: SIM115  closed below
        except OSError:
            return []
    else:
        try:
            if not source.seekable():
                return []
            start = source.tell()
        except (AttributeError, OSError, ValueError):
            return []
        try:
            return _walk(source)
        except (OSError, ValueError, TypeError):  # e.g. a file opened in text mode
            return []
        finally:
            source.seek(start)
    with handle:
        return _walk(handle)


def _walk(handle: IO[bytes]) -> list[int]:
    handle.seek(0)
    offsets = [0]
    position, grouped = 0, True
    while True:
        header = handle.read(_HEADER.size)
        if len(header) < _HEADER.size:
            break
        capture, _, flags, _, _, _, _, segments = _HEADER.unpack(header)
        if capture != _CAPTURE:
            break  # not Ogg, or damage: libav decides what to make of the rest
        table = handle.read(segments)
        if len(table) < segments:
            break
        if flags & _BOS:
            if not grouped:
                offsets.append(position)
                grouped = True
        else:
            grouped = False
        position += _HEADER.size + segments + sum(table)
        handle.seek(position)
    return offsets if len(offsets) > 1 else []


class LinkReader(io.RawIOBase):
    """Bytes `start` … `end` of a file (or of bytes) as a seekable file of their own."""

    def __init__(
        self,
        source: str | os.PathLike[str] | bytes | IO[bytes],
        start: int,
        end: int | None,
        name: str,
    ) -> None:
        super().__init__()
        self._owned = True
        if isinstance(source, bytes | bytearray | memoryview):
            self._file: IO[bytes] = io.BytesIO(source)
        elif isinstance(source, str | os.PathLike):
            self._file = open(source, "rb")  # noqa: SIM115  closed by close()
        else:  # a seekable file object of the caller's: read, never closed here
            self._file, self._owned = source, False
        if end is None:
            end = self._file.seek(0, os.SEEK_END)
        self._start, self._size, self._position = start, end - start, 0
        self.name = name

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        left = self._size - self._position
        size = left if size < 0 else min(size, left)
        if size <= 0:
            return b""
        self._file.seek(self._start + self._position)
        data = self._file.read(size)
        self._position += len(data)
        return data

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._position, os.SEEK_END: self._size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def tell(self) -> int:
        return self._position

    def close(self) -> None:
        if self._owned:
            self._file.close()
        super().close()
