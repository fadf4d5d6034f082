"""Response formats: the cache's s16le PCM as each OpenAI `response_format`.

- `pcm`: raw s16le mono at 24 kHz, exactly what OpenAI sends (clients hard-code it), so a
  cache at another rate or with two channels is converted.
- `wav`: the cached PCM as is, in a WAV header that states its rate and channels.
- `mp3` (MPEG audio), `opus` (Ogg Opus, as OpenAI's), `aac` (ADTS), `flac`: encoded with
  PyAV at the cache's rate when the codec takes it, else at the codec's nearest rate.
- `ulaw`, `alaw` (an extension for phone lines): raw G.711 at 8 kHz, as `audio/basic`
  and `audio/x-alaw-basic`.
- `sample_rate` (as speaches takes it, 8000–48000): `pcm` and `wav` at that rate instead.

`encode` (a whole body) and `StreamEncoder.feed` (a chunk) are CPU work for the codecs:
async callers run them in a worker thread (SpeechService does).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any, cast

from voiceprep.audio_format import layout_of
from voiceprep.backends.openai import PCM_RATE as PCM_RATE  # OpenAI's `pcm`: 24 kHz mono
from voiceprep.wav import HEADER_BYTES, wav_bytes, wav_header


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
    """`pcm` (s16le at `rate`/`channels`) as the complete bytes of response format `fmt`
    (`sample_rate`: `pcm` and `wav` at that rate)."""
    encoder = StreamEncoder(
        fmt, rate=rate, channels=channels, sample_rate=sample_rate, seekable=True
    )
    body = encoder.feed(pcm) + encoder.finish()
    if fmt == "wav":  # the whole file: its header states the length
        return wav_bytes(body[HEADER_BYTES:], rate=sample_rate or rate, channels=channels)
    return body


class StreamEncoder:
    """PCM chunks in, the bytes of response format `fmt` out as soon as they exist.

    For a miss that streams: `wav` starts with a header whose RIFF and data sizes are
    0xFFFFFFFF (length unknown, as OpenAI's streamed wav); the codecs are fed chunk by
    chunk and their container's bytes handed on as they are muxed (Ogg pages every 20 ms).
    `seekable=True` (a whole file) lets the muxer rewrite its header at the end (FLAC's
    STREAMINFO, mp3's Xing frame) instead.
    """

    def __init__(
        self,
        fmt: str,
        *,
        rate: int,
        channels: int,
        sample_rate: int | None = None,
        seekable: bool = False,
    ) -> None:
        self.spec = FORMATS[fmt]
        self._frame = 2 * channels
        self._rest = b""
        self._header = b""
        self._codec: _AvEncoder | None = None
        self._resampler: _Resampler | None = None
        if self.spec.name == "wav":
            to_rate = sample_rate or rate
            self._header = wav_header(rate=to_rate, channels=channels, data_bytes=None)
            if to_rate != rate:
                self._resampler = _Resampler(rate, channels, to_rate, channels, "s16")
        elif self.spec.name == "pcm":
            to_rate = sample_rate or PCM_RATE
            if (rate, channels) != (to_rate, 1):
                self._resampler = _Resampler(rate, channels, to_rate, 1, "s16")
        else:
            self._codec = _AvEncoder(self.spec, rate, channels, seekable=seekable)

    @property
    def needs_cpu(self) -> bool:
        """False when feeding is only copying bytes (run it on the event loop)."""
        return self._codec is not None or self._resampler is not None

    def feed(self, pcm: bytes) -> bytes:
        if self._rest:
            pcm = self._rest + pcm
        whole = len(pcm) - len(pcm) % self._frame
        pcm, self._rest = pcm[:whole], pcm[whole:]
        head, self._header = self._header, b""
        if self._codec is not None:
            return head + self._codec.feed(pcm)
        if self._resampler is not None:
            return head + b"".join(f.to_ndarray().tobytes() for f in self._resampler.feed(pcm))
        return head + pcm

    def finish(self) -> bytes:
        head, self._header = self._header, b""
        if self._codec is not None:
            return head + self._codec.finish()
        if self._resampler is not None:
            return head + b"".join(f.to_ndarray().tobytes() for f in self._resampler.flush())
        return head


class _Sink:
    """A write-only file for PyAV's muxer: what was written since the last `take()`."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: Any) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        out = b"".join(self._parts)
        self._parts.clear()
        return out


class _Resampler:
    """s16le PCM at `rate`/`channels` → frames of `fmt` at `to_rate`/`to_channels`."""

    def __init__(
        self,
        rate: int,
        channels: int,
        to_rate: int,
        to_channels: int,
        fmt: str,
        frame_size: int | None = None,
    ) -> None:
        import av

        self._av = av
        self.rate = rate
        self.layout = layout_of(channels)
        self._pts = 0
        self._channels = channels
        self._resampler = av.AudioResampler(
            format=fmt, layout=layout_of(to_channels), rate=to_rate, frame_size=frame_size
        )

    def feed(self, pcm: bytes) -> list[Any]:
        import numpy as np

        if not pcm:
            return []
        samples = np.frombuffer(pcm, dtype="<i2").reshape(1, -1)
        frame = self._av.AudioFrame.from_ndarray(samples, format="s16", layout=self.layout)
        frame.rate = self.rate
        frame.pts = self._pts
        self._pts += samples.shape[1] // self._channels
        return list(self._resampler.resample(frame))

    def flush(self) -> list[Any]:
        return list(self._resampler.resample(None))


class _AvEncoder:
    def __init__(self, spec: Format, rate: int, channels: int, *, seekable: bool) -> None:
        import av

        assert spec.codec is not None and spec.container is not None
        layout = layout_of(channels)
        out_rate = output_rate(spec, rate)
        self._file: Any = io.BytesIO() if seekable else _Sink()
        # Ogg holds pages up to a second by default: hand them on every 20 ms instead.
        options = {"page_duration": "20000"} if spec.container == "ogg" else {}
        self._out: Any = av.open(self._file, "w", format=spec.container, options=options)
        self._stream = cast(Any, self._out.add_stream(spec.codec, rate=out_rate, layout=layout))
        self._stream.format = spec.sample_format
        self._stream.codec_context.open()
        frame_size = self._stream.codec_context.frame_size or 4096
        self._resampler = _Resampler(
            rate, channels, out_rate, channels, spec.sample_format, frame_size
        )

    def feed(self, pcm: bytes) -> bytes:
        self._encode(self._resampler.feed(pcm))
        return self._take()

    def finish(self) -> bytes:
        self._encode(self._resampler.flush())
        self._encode([None])
        self._out.close()
        if isinstance(self._file, io.BytesIO):
            return self._file.getvalue()
        return self._take()

    def _encode(self, frames: list[Any]) -> None:
        for frame in frames:
            for packet in self._stream.encode(frame):
                self._out.mux(packet)

    def _take(self) -> bytes:
        return self._file.take() if isinstance(self._file, _Sink) else b""
