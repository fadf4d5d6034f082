"""Real test audio made with PyAV's encoders, plus helpers to measure what comes out."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

# codec → (container format, encoder sample format)
CODECS: dict[str, tuple[str, str]] = {
    "mp3": ("mp3", "fltp"),
    "aac": ("mp4", "fltp"),
    "opus": ("ogg", "flt"),
    "vorbis": ("ogg", "fltp"),
    "libvorbis": ("ogg", "fltp"),  # not in PyAV's wheels: written with the native "vorbis"
    "flac": ("flac", "s16"),
    "pcm_s16le": ("wav", "s16"),
    "pcm_u8": ("wav", "u8"),
    "pcm_s24le": ("wav", "s32"),
    "pcm_f32le": ("wav", "flt"),
    "pcm_mulaw": ("wav", "s16"),
    "pcm_alaw": ("wav", "s16"),
}
LAYOUTS = {1: "mono", 2: "stereo", 4: "quad", 6: "5.1", 8: "7.1"}
# PyAV's wheels have no libvorbis; FFmpeg's own Vorbis encoder is marked experimental.
ENCODER_ALIASES = {"libvorbis": "vorbis"}
ENCODER_OPTIONS: dict[str, dict[str, str]] = {"vorbis": {"strict": "experimental"}}


def sine(freq: float, seconds: float, rate: int, channels: int = 1, amp: float = 0.5) -> np.ndarray:
    """Float32 array (channels, samples); channel k carries freq * (k + 1) so maps are testable."""
    t = np.arange(int(round(seconds * rate))) / rate
    rows = [amp * np.sin(2 * np.pi * freq * (k + 1) * t) for k in range(channels)]
    return np.asarray(rows, dtype=np.float32)


def sine_pcm(freq: float, seconds: float = 0.5, rate: int = 24000, channels: int = 1) -> bytes:
    """s16le interleaved PCM of `sine` (channel k at freq × (k + 1))."""
    signal = sine(freq, seconds, rate, channels)
    return (np.clip(signal.T, -1, 1) * 32767).astype("<i2").tobytes()


def write_audio(
    path: Path,
    signal: np.ndarray,
    *,
    rate: int,
    codec: str = "pcm_s16le",
    container_format: str | None = None,
    sample_format: str | None = None,
    bit_rate: int | None = None,
) -> Path:
    """Encode a (channels, samples) float32 signal with PyAV into `path`."""
    fmt, enc_fmt = CODECS.get(codec, (container_format or "wav", sample_format or "s16"))
    fmt = container_format or fmt
    enc_fmt = sample_format or enc_fmt
    channels = signal.shape[0]
    layout = LAYOUTS[channels]
    codec = ENCODER_ALIASES.get(codec, codec)
    with av.open(str(path), "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=rate, options=ENCODER_OPTIONS.get(codec))
        stream.layout = layout
        stream.format = enc_fmt
        if bit_rate:
            stream.bit_rate = bit_rate
        chunk = 1024
        pts = 0
        for start in range(0, signal.shape[1], chunk):
            block = signal[:, start : start + chunk]
            frame = av.AudioFrame.from_ndarray(
                _to_format(block, "flt"), format="flt", layout=layout
            )
            frame.rate = rate
            frame.pts = pts
            frame.time_base = Fraction(1, rate)
            pts += block.shape[1]
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def _to_format(block: np.ndarray, fmt: str) -> np.ndarray:
    # Packed float: interleave channels into one row.
    return np.ascontiguousarray(block.T.reshape(1, -1), dtype=np.float32)


def write_sine(
    path: Path,
    *,
    freq: float = 440.0,
    seconds: float = 1.0,
    rate: int = 44100,
    channels: int = 1,
    codec: str = "pcm_s16le",
    **kwargs: object,
) -> Path:
    return write_audio(path, sine(freq, seconds, rate, channels), rate=rate, codec=codec, **kwargs)  # type: ignore[arg-type]


def pcm_to_array(pcm: bytes, channels: int, sample_format: str = "s16") -> np.ndarray:
    """Interleaved PCM → float array (channels, samples) in [-1, 1]."""
    if sample_format == "s16":
        data = np.frombuffer(pcm, dtype="<i2").astype(np.float64) / 32768.0
    else:
        data = np.frombuffer(pcm, dtype="<f4").astype(np.float64)
    return data.reshape(-1, channels).T


def dominant_frequency(samples: np.ndarray, rate: int) -> float:
    """The frequency (Hz) of the strongest FFT bin of a 1-D signal."""
    windowed = samples * np.hanning(len(samples))
    spectrum = np.abs(np.fft.rfft(windowed))
    spectrum[0] = 0
    return float(np.argmax(spectrum) * rate / len(samples))


# --- fixtures for unusual inputs (added for the decoder tests) -------------------------


def write_unmasked_wav(path: Path, signal: np.ndarray, *, rate: int) -> Path:
    """A plain PCM WAV (WAVE_FORMAT_PCM, no channel mask): libav sees "N channels", no order."""
    from voiceprep.wav import wav_bytes

    pcm = np.clip(signal.T * 32768.0, -32768, 32767).astype("<i2").tobytes()
    path.write_bytes(wav_bytes(pcm, rate=rate, channels=signal.shape[0]))
    return path


def write_video(
    path: Path,
    *,
    seconds: float = 1.0,
    audio_rate: int = 44100,
    freq: float = 440.0,
    channels: int = 2,
    with_audio: bool = True,
    size: int = 64,
    fps: int = 10,
) -> Path:
    """An MP4 with an MPEG-4 video track (a moving gradient) and, optionally, an AAC track."""
    with av.open(str(path), "w", format="mp4") as out:
        video = out.add_stream("mpeg4", rate=fps)
        video.width = video.height = size
        video.pix_fmt = "yuv420p"
        audio = out.add_stream("aac", rate=audio_rate) if with_audio else None
        if audio is not None:
            audio.layout = LAYOUTS[channels]
        for index in range(int(seconds * fps)):
            image = np.full((size, size, 3), (index * 10) % 256, dtype=np.uint8)
            image[:, : size // 2, 0] = 255
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = index
            for packet in video.encode(frame):
                out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
        if audio is not None:
            signal = sine(freq, seconds, audio_rate, channels)
            for start in range(0, signal.shape[1], 1024):
                block = signal[:, start : start + 1024]
                frame = av.AudioFrame.from_ndarray(
                    _to_format(block, "flt"), format="flt", layout=LAYOUTS[channels]
                )
                frame.rate = audio_rate
                frame.pts = start
                frame.time_base = Fraction(1, audio_rate)
                for packet in audio.encode(frame):
                    out.mux(packet)
            for packet in audio.encode(None):
                out.mux(packet)
    return path


def with_garbage(source: Path, dest: Path, *, size: int = 20_000, seed: int = 7) -> Path:
    """A copy of `source` with `size` random bytes inserted in the middle."""
    data = source.read_bytes()
    middle = len(data) // 2
    garbage = np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes()
    dest.write_bytes(data[:middle] + garbage + data[middle:])
    return dest


def truncated(source: Path, dest: Path, *, fraction: float) -> Path:
    """The first `fraction` of `source`'s bytes."""
    data = source.read_bytes()
    dest.write_bytes(data[: int(len(data) * fraction)])
    return dest


def with_packet_replaced(source: Path, dest: Path, *, index: int, head: bytes) -> Path:
    """A remux of `source`'s audio with the first bytes of packet `index` replaced by
    `head` (a fuzzer's finding, made again)."""
    with av.open(str(source)) as inp, av.open(str(dest), "w") as out:
        stream = inp.streams.audio[0]
        copy = out.add_stream_from_template(stream)
        packets = (packet for packet in inp.demux(stream) if packet.size)
        for number, packet in enumerate(packets):
            if number == index:
                data = head + bytes(packet)[len(head) :]
                damaged = av.Packet(data)
                damaged.pts, damaged.dts = packet.pts, packet.dts
                damaged.duration, damaged.time_base = packet.duration, packet.time_base
                packet = damaged
            packet.stream = copy
            out.mux(packet)
    return dest


def joined(dest: Path, *sources: Path) -> Path:
    """Files concatenated byte for byte (e.g. two MP3s of different rate and channels)."""
    dest.write_bytes(b"".join(source.read_bytes() for source in sources))
    return dest


def spectrum_peaks(samples: np.ndarray, rate: int, freqs: list[float]) -> dict[float, float]:
    """Relative magnitude (0–1, vs the strongest bin) of the spectrum at each frequency."""
    windowed = samples * np.hanning(len(samples))
    spectrum = np.abs(np.fft.rfft(windowed))
    spectrum[0] = 0
    peak = float(spectrum.max()) or 1.0
    bins = [int(round(f * len(samples) / rate)) for f in freqs]
    return {
        f: float(spectrum[max(b - 2, 0) : b + 3].max()) / peak
        for f, b in zip(freqs, bins, strict=True)
    }
