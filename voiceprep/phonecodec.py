"""The phone codecs, from 16-bit PCM: G.711 μ-law and A-law (one byte per sample) and
G.722 (16 kHz audio at 64 kbit/s), as Asterisk, FreeSWITCH and Twilio play them.

Each is libavcodec's own encoder (`pcm_mulaw`, `pcm_alaw`, `g722`) run through PyAV over
a stream of chunks, so the bytes are exactly ffmpeg's (`-f mulaw`, `-f alaw`, `-f g722`)
and the work stays in C: the chunks are copied into frames, not converted in Python
(about 40 µs per second of audio; no numpy, whose import alone would cost more).
G.711 codes every sample on its own, so interleaved channels are coded as one stream.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from voiceprep.telephony import G711_RATE, G722_RATE

_AV_CODEC = {"ulaw": "pcm_mulaw", "alaw": "pcm_alaw", "g722": "g722"}


def encode_g711(pcm: bytes, law: str) -> bytes:
    """s16le samples (any channel count, interleaved) as G.711 bytes, one per sample."""
    return b"".join(g711_chunks([pcm], law))


def g711_chunks(chunks: Iterable[bytes], law: str) -> Iterator[bytes]:
    """A stream of s16le chunks as G.711 chunks (an odd byte is carried to the next)."""
    return _encoded(chunks, law, G711_RATE)


def g722_chunks(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """A stream of 16 kHz mono s16le chunks as a raw G.722 bitstream (as `ffmpeg -f g722`)."""
    return _encoded(chunks, "g722", G722_RATE)


def decode_g711(data: bytes, law: str) -> bytes:
    """G.711 bytes back to s16le samples."""
    import av

    if not data:
        return b""
    context: Any = av.CodecContext.create(_AV_CODEC[law], "r")
    context.sample_rate = G711_RATE
    context.layout = "mono"
    context.open()
    frames = [*context.decode(av.Packet(data)), *context.decode(None)]
    return b"".join(bytes(f.planes[0])[: f.samples * 2] for f in frames)


def _encoded(chunks: Iterable[bytes], codec: str, rate: int) -> Iterator[bytes]:
    import av

    context: Any = av.CodecContext.create(_AV_CODEC[codec], "w")
    context.sample_rate = rate
    context.layout = "mono"
    context.format = "s16"
    context.open()
    carry = b""
    for chunk in chunks:
        data = carry + chunk if carry else chunk
        usable = len(data) - len(data) % 2
        data, carry = data[:usable], data[usable:]
        if not data:
            continue
        frame = av.AudioFrame(format="s16", layout="mono", samples=usable // 2)
        frame.sample_rate = rate
        frame.planes[0].update(data)
        yield b"".join(bytes(packet) for packet in context.encode(frame))
    tail = b"".join(bytes(packet) for packet in context.encode(None))
    if tail:
        yield tail
