"""The shape of PCM audio, defined once: sample rate, channel count and sample format,
checked when the value is made, with the frame size and the bytes ↔ seconds arithmetic.

Also the one definition of the sample formats (s16: 16-bit integer, f32: 32-bit float,
both little-endian and interleaved; ulaw and alaw: G.711 μ-law and A-law, one byte per
sample, encoded from 16-bit audio, see voiceprep.phonecodec) and of `-`, which names
stdin as an input and stdout as an output.
"""

from __future__ import annotations

from dataclasses import dataclass

from voiceprep import defaults
from voiceprep.errors import InvalidValueError
from voiceprep.units import check_channels, check_rate

SAMPLE_BYTES: dict[str, int] = {"s16": 2, "f32": 4, "ulaw": 1, "alaw": 1}
SAMPLE_FORMATS: tuple[str, ...] = tuple(SAMPLE_BYTES)
ACCEPTED_SAMPLE_FORMATS = ", ".join(SAMPLE_FORMATS[:-1]) + f" or {SAMPLE_FORMATS[-1]}"
LAYOUTS: dict[int, str] = {1: "mono", 2: "stereo"}  # channel count -> FFmpeg's layout name
STDIO = "-"  # as an input: stdin; as an output: stdout


def check_sample_format(sample_format: str) -> str:
    if sample_format not in SAMPLE_BYTES:
        raise InvalidValueError("sample format", sample_format, ACCEPTED_SAMPLE_FORMATS)
    return sample_format


def layout_of(channels: int) -> str:
    """FFmpeg's name of the layout of `channels` channels: "mono" or "stereo"."""
    return LAYOUTS[channels]


def pcm_seconds(pcm_bytes: int, *, rate: int, channels: int, sample_bytes: int = 2) -> float:
    """How long `pcm_bytes` of interleaved PCM plays (s16 unless `sample_bytes` says)."""
    return pcm_bytes / (sample_bytes * channels * rate)


@dataclass(frozen=True)
class AudioFormat:
    """PCM at `rate` Hz with `channels` interleaved channels of `sample_format` samples."""

    rate: int = defaults.RATE
    channels: int = defaults.CHANNELS
    sample_format: str = "s16"

    def __post_init__(self) -> None:
        check_rate(self.rate)
        check_channels(self.channels)
        check_sample_format(self.sample_format)

    @property
    def sample_bytes(self) -> int:
        return SAMPLE_BYTES[self.sample_format]

    @property
    def layout(self) -> str:
        return layout_of(self.channels)

    @property
    def frame_bytes(self) -> int:
        """Bytes of one sample of every channel."""
        return self.channels * self.sample_bytes

    def seconds(self, pcm_bytes: int) -> float:
        """How long `pcm_bytes` of this audio plays."""
        return pcm_seconds(
            pcm_bytes, rate=self.rate, channels=self.channels, sample_bytes=self.sample_bytes
        )

    def bytes_for(self, seconds: float) -> int:
        """Whole frames of PCM for `seconds` of this audio."""
        return int(seconds * self.rate) * self.frame_bytes
