"""Response formats: the cache's s16le PCM as each OpenAI `response_format`.

- `pcm`: raw s16le mono at 24 kHz, exactly what OpenAI sends (clients hard-code it), so a
  cache at another rate or with two channels is converted.
- `wav`: the cached PCM as is, in a WAV header that states its rate and channels.
- `mp3` (MPEG audio), `opus` (Ogg Opus, as OpenAI's), `aac` (ADTS), `flac`: encoded with
  PyAV at the cache's rate when the codec takes it, else at the codec's nearest rate.
- `ulaw`, `alaw` (an extension for phone lines): raw G.711 at 8 kHz, as `audio/basic`
  and `audio/x-alaw-basic`.
- `sample_rate` (as speaches takes it, 8000–48000): `pcm` and `wav` at that rate instead.

`encode` is CPU work: async callers run it in a worker thread (SpeechService does).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

from voiceprep.audio_format import layout_of
from voiceprep.wav import wav_bytes

PCM_RATE = 24000  # OpenAI's `pcm` response format: s16le mono at 24 kHz, fixed


@dataclass(frozen=True)
class Format:
    name: str
    content_type: str
    codec: str | None = None  # PyAV encoder (None: no encoder)
    container: str | None = None
    sample_format: str = "s16"
    rates: tuple[int, ...] = ()  # rates the codec takes (empty: any)


FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format(
            "mp3",
            "audio/mpeg",
            "libmp3lame",
            "mp3",
            "s16p",
            (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000),
        ),
        Format("opus", "audio/opus", "libopus", "ogg", "s16", (8000, 12000, 16000, 24000, 48000)),
        Format(
            "aac",
            "audio/aac",
            "aac",
            "adts",
            "fltp",
            (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000),
        ),
        Format("flac", "audio/flac", "flac", "flac", "s16"),
        Format("ulaw", "audio/basic", "pcm_mulaw", "mulaw", "s16", (8000,)),
        Format("alaw", "audio/x-alaw-basic", "pcm_alaw", "alaw", "s16", (8000,)),
        Format("wav", "audio/wav"),
        Format("pcm", "audio/pcm"),
    )
}
DEFAULT_FORMAT = "mp3"  # OpenAI's default
RESAMPLED_FORMATS = ("pcm", "wav")  # the formats `sample_rate` applies to


def output_rate(fmt: Format, rate: int) -> int:
    """The rate `fmt` is encoded at for a cache at `rate`."""
    if fmt.name == "pcm":
        return PCM_RATE
    if not fmt.rates or rate in fmt.rates:
        return rate
    higher = [r for r in fmt.rates if r >= rate]
    return min(higher) if higher else max(fmt.rates)


def encode(
    pcm: bytes, *, rate: int, channels: int, fmt: str, sample_rate: int | None = None
) -> bytes:
    """`pcm` (s16le at `rate`/`channels`) as the bytes of response format `fmt`
    (`sample_rate`: `pcm` and `wav` at that rate)."""
    spec = FORMATS[fmt]
    if spec.name == "wav":
        if sample_rate not in (None, rate):
            pcm = resample(
                pcm, rate=rate, channels=channels, to_rate=sample_rate, to_channels=channels
            )
            rate = sample_rate
        return wav_bytes(pcm, rate=rate, channels=channels)
    if spec.name == "pcm":
        to_rate = sample_rate or PCM_RATE
        if (rate, channels) == (to_rate, 1):
            return pcm
        return resample(pcm, rate=rate, channels=channels, to_rate=to_rate, to_channels=1)
    return _encode_av(pcm, rate, channels, spec)


def resample(pcm: bytes, *, rate: int, channels: int, to_rate: int, to_channels: int) -> bytes:
    from voiceprep.decoding import decode  # deferred: PyAV

    return b"".join(
        decode(wav_bytes(pcm, rate=rate, channels=channels), rate=to_rate, channels=to_channels)
    )


def _encode_av(pcm: bytes, rate: int, channels: int, spec: Format) -> bytes:
    import av
    import numpy as np

    layout = layout_of(channels)
    out_rate = output_rate(spec, rate)
    assert spec.codec is not None and spec.container is not None
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=spec.container) as out:
        stream: Any = out.add_stream(spec.codec, rate=out_rate, layout=layout)
        stream.format = spec.sample_format
        stream.codec_context.open()
        frame_size = stream.codec_context.frame_size or 4096
        resampler = av.AudioResampler(
            format=spec.sample_format, layout=layout, rate=out_rate, frame_size=frame_size
        )
        samples = np.frombuffer(pcm, dtype="<i2").reshape(1, -1)
        source = av.AudioFrame.from_ndarray(samples, format="s16", layout=layout)
        source.rate = rate
        source.pts = 0
        for frame in [*resampler.resample(source), *resampler.resample(None)]:
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buffer.getvalue()
