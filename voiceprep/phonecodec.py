"""The phone codecs, from 16-bit PCM: G.711 μ-law and A-law (one byte per sample) and
G.722 (16 kHz audio at 64 kbit/s), as Asterisk, FreeSWITCH and Twilio play them.

G.711 is a fixed mapping of each 16-bit sample to one byte, so it is a table lookup:
the two 65536-entry tables (and the 256-entry ones back to s16) are made once, by
libavcodec's own `pcm_mulaw`/`pcm_alaw` encoders and decoders through PyAV, so the bytes
are exactly ffmpeg's (`-f mulaw`, `-f alaw`), and a table lookup in numpy costs far less
than the decoding before it. G.722 is an ADPCM codec with state: `g722_chunks` runs one
libavcodec encoder over a stream of chunks.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

G711 = ("ulaw", "alaw")
_AV_CODEC = {"ulaw": "pcm_mulaw", "alaw": "pcm_alaw"}
# The byte of digital silence: what pads a G.711 frame (μ-law 0xFF, A-law 0xD5).
SILENCE = {"ulaw": 0xFF, "alaw": 0xD5}
G722_RATE = 16000


def encode_g711(pcm: bytes, law: str) -> bytes:
    """s16le samples (any channel count, interleaved) as G.711 bytes, one per sample."""
    import numpy as np

    samples = np.frombuffer(pcm, dtype="<u2", count=len(pcm) // 2)
    return _encode_table(law)[samples].tobytes()


def decode_g711(data: bytes, law: str) -> bytes:
    """G.711 bytes back to s16le samples."""
    import numpy as np

    return _decode_table(law)[np.frombuffer(data, dtype=np.uint8)].tobytes()


def g711_chunks(chunks: Iterable[bytes], law: str) -> Iterator[bytes]:
    """A stream of s16le chunks as G.711 chunks (an odd byte is carried to the next)."""
    carry = b""
    for chunk in chunks:
        if carry:
            chunk, carry = carry + chunk, b""
        if len(chunk) & 1:
            chunk, carry = chunk[:-1], chunk[-1:]
        if chunk:
            yield encode_g711(chunk, law)


def g722_chunks(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """A stream of 16 kHz mono s16le chunks as a raw G.722 bitstream (as `ffmpeg -f g722`)."""
    import av
    import numpy as np

    context: Any = av.CodecContext.create("g722", "w")
    context.sample_rate = G722_RATE
    context.layout = "mono"
    context.format = "s16"
    context.open()
    carry = b""
    for chunk in chunks:
        data = carry + chunk
        usable = len(data) - len(data) % 2
        data, carry = data[:usable], data[usable:]
        if not data:
            continue
        frame = av.AudioFrame.from_ndarray(
            np.frombuffer(data, dtype="<i2").reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = G722_RATE
        yield b"".join(bytes(packet) for packet in context.encode(frame))
    yield b"".join(bytes(packet) for packet in context.encode(None))


@functools.cache
def _encode_table(law: str) -> np.ndarray:
    """Index: a sample's 16 bits read as unsigned; value: its G.711 byte."""
    import numpy as np

    every = np.arange(65536, dtype=np.uint16).view("<i2")
    encoded = _run_codec(_AV_CODEC[law], every.tobytes(), encode=True)
    return np.frombuffer(encoded, dtype=np.uint8).copy()


@functools.cache
def _decode_table(law: str) -> np.ndarray:
    import numpy as np

    decoded = _run_codec(_AV_CODEC[law], bytes(range(256)), encode=False)
    return np.frombuffer(decoded, dtype="<i2").copy()


def _run_codec(codec: str, data: bytes, *, encode: bool) -> bytes:
    """One pass of libavcodec's G.711 encoder (s16 in) or decoder (bytes in)."""
    import av
    import numpy as np

    context: Any = av.CodecContext.create(codec, "w" if encode else "r")
    context.sample_rate = 8000
    context.layout = "mono"
    if encode:
        context.format = "s16"
        context.open()
        frame = av.AudioFrame.from_ndarray(
            np.frombuffer(data, dtype="<i2").reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = 8000
        return b"".join(bytes(p) for p in [*context.encode(frame), *context.encode(None)])
    context.open()
    frames = context.decode(av.Packet(data))
    return b"".join(bytes(f.planes[0])[: f.samples * 2] for f in frames)
