"""voiceprep.decode / probe / load_audio_file on real files encoded with PyAV."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import av
import numpy as np
import pytest
from audiogen import (
    dominant_frequency,
    joined,
    pcm_to_array,
    sine,
    spectrum_peaks,
    truncated,
    with_garbage,
    with_packet_replaced,
    write_audio,
    write_sine,
    write_unmasked_wav,
    write_video,
)

import voiceprep
from voiceprep import decoding
from voiceprep.errors import (
    DecodeError,
    InputError,
    InvalidValueError,
    NoAudioStreamError,
    UsageError,
)
from voiceprep.wav import wav_header

RATE = 24000


def pcm(source: object, **kwargs: object) -> bytes:
    return b"".join(voiceprep.decode(source, **kwargs))  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def fast_path_for_every_file(monkeypatch: pytest.MonkeyPatch) -> None:
    """Short test files would take the robust path; send every path through the fast one.

    Paths then go through amovie and file objects packet by packet, so the tests that
    compare the two compare both engines.
    """
    monkeypatch.setattr(decoding, "_FAST_PATH_MIN_BYTES", 0)


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """make(name, **write_sine kwargs): a sine file, encoded once per session."""
    directory = tmp_path_factory.mktemp("media")
    made: dict[str, Path] = {}

    def make(name: str, **kwargs: object) -> Path:
        if name not in made:
            made[name] = write_sine(directory / name, **kwargs)  # type: ignore[arg-type]
        return made[name]

    return make


@pytest.fixture(scope="session")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("work")


# --- formats: every codec, sample count and content --------------------------------

# name → (write_sine kwargs, input rate, exact sample count expected)
FORMATS: dict[str, tuple[dict[str, object], int, bool]] = {
    "mp3": ({"codec": "mp3"}, 44100, False),
    "aac.m4a": ({"codec": "aac"}, 44100, False),
    "opus.ogg": ({"codec": "opus"}, 48000, False),
    "vorbis.ogg": ({"codec": "vorbis"}, 44100, False),
    "flac16.flac": ({"codec": "flac"}, 44100, True),
    "flac24.flac": ({"codec": "flac", "sample_format": "s32"}, 44100, True),
    "u8.wav": ({"codec": "pcm_u8"}, 44100, True),
    "s16.wav": ({"codec": "pcm_s16le"}, 44100, True),
    "s24.wav": ({"codec": "pcm_s24le"}, 44100, True),
    "f32.wav": ({"codec": "pcm_f32le"}, 44100, True),
    "mulaw.wav": ({"codec": "pcm_mulaw"}, 8000, True),
    "alaw.wav": ({"codec": "pcm_alaw"}, 8000, True),
}


@pytest.fixture(params=sorted(FORMATS))
def stereo_file(request: pytest.FixtureRequest, media: Callable[..., Path]) -> tuple[Path, bool]:
    """A 1-second stereo sine, 440 Hz left and 880 Hz right, in each format."""
    kwargs, rate, exact = FORMATS[request.param]
    path = media(f"stereo_{request.param}", seconds=1.0, rate=rate, channels=2, **kwargs)
    return path, exact


def test_every_format_decodes_to_the_right_length_and_channels(
    stereo_file: tuple[Path, bool],
) -> None:
    path, exact = stereo_file
    out = pcm_to_array(pcm(path, rate=RATE, channels=2), 2)
    if exact:
        assert out.shape[1] == RATE  # lossless: exactly one second
    else:
        # Lossy codecs: within one codec frame. (PyAV's AAC in MP4 keeps the last frame's
        # padding, 520 samples here; the ffmpeg CLI decodes the same count.)
        assert abs(out.shape[1] - RATE) <= 0.025 * RATE
    middle = slice(RATE // 10, RATE * 9 // 10)
    assert dominant_frequency(out[0, middle], RATE) == pytest.approx(440, abs=3)
    assert dominant_frequency(out[1, middle], RATE) == pytest.approx(880, abs=3)
    # Amplitude 0.5 survives (FFmpeg's experimental Vorbis encoder is the loosest).
    assert 0.3 < np.abs(out[:, middle]).max() < 0.8


def test_every_format_downmixes_to_mono_with_both_channels(
    stereo_file: tuple[Path, bool],
) -> None:
    path, _ = stereo_file
    mono = pcm_to_array(pcm(path), 1)[0]
    peaks = spectrum_peaks(mono[RATE // 10 : RATE * 9 // 10], RATE, [440, 880, 660])
    assert peaks[440] > 0.4 and peaks[880] > 0.4  # (L+R)/2: both tones
    assert peaks[660] < 0.05


def test_file_object_path_gives_the_same_bytes_as_a_path(stereo_file: tuple[Path, bool]) -> None:
    # Paths take the amovie fast path, file objects the packet-by-packet path: a fallback
    # from one to the other mid-file is only seamless if both compute the same samples.
    path, _ = stereo_file
    with path.open("rb") as handle:
        assert pcm(handle, rate=16000, channels=2) == pcm(path, rate=16000, channels=2)


def test_short_files_take_the_cheaper_path_with_the_same_result(
    stereo_file: tuple[Path, bool], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, _ = stereo_file
    through_amovie = pcm(path, channels=2)
    monkeypatch.setattr(decoding, "_FAST_PATH_MIN_BYTES", 512 * 1024)  # the default
    assert pcm(path, channels=2) == through_amovie


@pytest.mark.parametrize("in_rate", [8000, 11025, 16000, 22050, 32000, 44100, 48000, 96000])
def test_any_input_rate(media: Callable[..., Path], in_rate: int) -> None:
    path = media(f"rate_{in_rate}.wav", seconds=1.0, rate=in_rate, freq=440)
    out = pcm_to_array(pcm(path), 1)[0]
    assert len(out) == RATE
    assert dominant_frequency(out, RATE) == pytest.approx(440, abs=2)


@pytest.mark.parametrize("out_rate", [8000, 16000, 22050, 44100, 48000, 96000, 192000])
@pytest.mark.parametrize("sample_format", ["s16", "f32"])
def test_any_output_rate_and_sample_format(
    media: Callable[..., Path], out_rate: int, sample_format: str
) -> None:
    path = media("out_rate.flac", seconds=1.0, rate=44100, codec="flac", freq=1000)
    data = pcm(path, rate=out_rate, sample_format=sample_format)
    out = pcm_to_array(data, 1, sample_format)[0]
    assert len(data) == out_rate * (2 if sample_format == "s16" else 4)
    assert dominant_frequency(out, out_rate) == pytest.approx(1000, abs=2)
    assert np.abs(out).max() == pytest.approx(0.5, abs=0.02)


def test_f32_and_s16_carry_the_same_signal(media: Callable[..., Path]) -> None:
    path = media("fmt.wav", seconds=0.5, rate=48000, channels=2)
    as_s16 = pcm_to_array(pcm(path, channels=2), 2)
    as_f32 = pcm_to_array(pcm(path, channels=2, sample_format="f32"), 2, "f32")
    assert as_s16.shape == as_f32.shape
    assert np.abs(as_s16 - as_f32).max() < 2 / 32768


def test_mono_input_to_stereo_fills_both_channels(media: Callable[..., Path]) -> None:
    path = media("mono.mp3", seconds=1.0, rate=44100, codec="mp3", freq=440)
    out = pcm_to_array(pcm(path, channels=2), 2)
    np.testing.assert_array_equal(out[0], out[1])
    assert dominant_frequency(out[0], RATE) == pytest.approx(440, abs=3)


# Channel k of `sine(200, channels=n)` carries 200 * (k + 1) Hz.
SURROUND_51 = {"FL": 200, "FR": 400, "FC": 600, "LFE": 800, "BL": 1000, "BR": 1200}


def _check_51_downmix(data: bytes) -> None:
    left, right = pcm_to_array(data, 2)
    freqs = list(SURROUND_51.values())
    on_left = spectrum_peaks(left, RATE, freqs)
    on_right = spectrum_peaks(right, RATE, freqs)
    # Fronts and backs stay on their side, the centre goes to both, the LFE is dropped
    # (the ffmpeg CLI's default downmix).
    assert on_left[200] > 0.3 and on_left[400] < 0.02
    assert on_right[400] > 0.3 and on_right[200] < 0.02
    assert on_left[600] > 0.3 and on_right[600] > 0.3
    assert on_left[1000] > 0.3 and on_right[1200] > 0.3
    assert on_left[800] < 0.02 and on_right[800] < 0.02


def test_51_downmix_keeps_sides(media: Callable[..., Path]) -> None:
    path = media("surround.flac", seconds=1.0, rate=48000, channels=6, codec="flac", freq=200)
    assert voiceprep.probe(path).layout == "5.1"
    _check_51_downmix(pcm(path, channels=2))


def test_wav_without_channel_mask_gets_a_default_layout(workdir: Path) -> None:
    path = write_unmasked_wav(workdir / "nomask.wav", sine(200, 1.0, 48000, 6), rate=48000)
    info = voiceprep.probe(path)
    assert info.channels == 6 and info.layout == "6 channels"  # no order in the file
    _check_51_downmix(pcm(path, channels=2))
    with path.open("rb") as handle:  # the packet-by-packet path chooses the same layout
        _check_51_downmix(pcm(handle, channels=2))


@pytest.mark.parametrize("count", [3, 4, 8, 16, 24])
def test_any_channel_count_without_a_mask(workdir: Path, count: int) -> None:
    path = write_unmasked_wav(workdir / f"ch{count}.wav", sine(100, 0.5, 48000, count), rate=48000)
    for source in (path, path.read_bytes()):
        out = pcm_to_array(pcm(source, channels=2), 2)
        assert out.shape[1] == RATE // 2
        assert spectrum_peaks(out[0], RATE, [100])[100] > 0.3  # the first channel: left


def test_eight_channels_decode(media: Callable[..., Path]) -> None:
    path = media("71.wav", seconds=0.5, rate=48000, channels=8, freq=100)
    out = pcm_to_array(pcm(path, channels=2), 2)
    assert out.shape[1] == RATE // 2
    assert spectrum_peaks(out[0], RATE, [100])[100] > 0.3  # FL on the left


def test_audio_track_of_a_video(workdir: Path) -> None:
    path = write_video(workdir / "clip.mp4", seconds=2.0, freq=440, channels=2)
    info = voiceprep.probe(path)
    assert (info.codec, info.rate, info.channels) == ("aac", 44100, 2)
    out = pcm_to_array(pcm(path, channels=2), 2)
    assert abs(out.shape[1] - 2 * RATE) <= 0.025 * RATE  # AAC: within one frame
    assert dominant_frequency(out[0, RATE // 2 : -RATE // 2], RATE) == pytest.approx(440, abs=3)
    with path.open("rb") as handle:
        assert pcm(handle, channels=2) == pcm(path, channels=2)


# --- damaged input ------------------------------------------------------------------


@pytest.fixture(scope="session")
def clean_mp3(media: Callable[..., Path]) -> Path:
    return media("clean.mp3", seconds=4.0, rate=44100, channels=2, codec="mp3", freq=440)


def test_garbage_inside_an_mp3_is_decoded_around(
    clean_mp3: Path, workdir: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    damaged = with_garbage(clean_mp3, workdir / "garbage.mp3", size=20_000)
    warnings: list[str] = []
    out = pcm_to_array(pcm(damaged, on_warning=warnings.append), 1)[0]
    assert capfd.readouterr().err == ""  # libav's complaints are not printed
    clean = pcm_to_array(pcm(clean_mp3), 1)[0]
    # ffmpeg's CLI loses the frames the garbage overlaps and nothing else: so do we.
    assert 0.97 * len(clean) <= len(out) <= len(clean)
    assert dominant_frequency(out[-RATE:], RATE) == pytest.approx(440, abs=3)
    assert warnings and all(w.startswith(f"{damaged}: skipped") for w in warnings)
    # The fast path gives up at the garbage and the robust path takes over seamlessly.
    assert pcm(damaged.read_bytes()) == pcm(damaged)


def test_a_packet_that_decodes_as_59_channels_is_skipped(
    media: Callable[..., Path], workdir: Path
) -> None:
    # Found by mutating packets (issue #26): this packet's bogus in-band channel
    # configuration makes libavcodec's AAC decoder output 59 channels, more than the
    # resampler takes, and every packet after it too. It failed the whole file ("cannot
    # convert the audio"); ffmpeg drops the packet and decodes the rest.
    clean = media("fuzzed.m4a", seconds=4, rate=44100, channels=2, codec="aac")
    damaged = with_packet_replaced(
        clean, workdir / "59ch.m4a", index=29, head=bytes.fromhex("e11af9000000c501c2eed7d0")
    )
    with av.open(str(damaged)) as container:
        shapes = {f.layout.nb_channels for p in container.demux() for f in _decoded(p)}
    assert 59 in shapes  # the damage is what the test is about

    warnings: list[str] = []
    out = pcm(damaged, on_warning=warnings.append)
    reference = subprocess.run(
        ["ffmpeg", "-v", "quiet", "-i", damaged, "-ar", "24000", "-ac", "1", "-f", "s16le", "-"],
        capture_output=True,
        check=False,
    ).stdout
    assert len(out) == len(reference)  # the one packet lost, as by ffmpeg
    assert 0 < len(pcm(clean)) - len(out) <= 2 * 1024 * RATE // 44100 * 2
    assert any("skipped a corrupt packet" in w and "59 channels" in w for w in warnings)
    assert pcm(damaged.read_bytes()) == out  # the robust path, from bytes, agrees


def _decoded(packet: av.Packet) -> list[av.AudioFrame]:
    try:
        return packet.decode()  # type: ignore[return-value]
    except av.error.FFmpegError:
        return []


def _ffmpeg_pcm(path: Path) -> bytes:
    """The ffmpeg CLI's decode of `path` to 24 kHz mono s16 (the oracle)."""
    argv = ["ffmpeg", "-v", "quiet", "-i", path, "-ar", "24000", "-ac", "1", "-f", "s16le", "-"]
    return subprocess.run(argv, capture_output=True, check=True).stdout


# Chained Ogg (issue #26): the links after the first were lost without a word (the demuxer
# stops at a new link, amovie as if the file ended). PyAV's Vorbis encoder writes stereo
# only: the Vorbis chain changes the rate, the Opus chain the channels.
CHAINS = {
    "vorbis": (
        {"codec": "vorbis", "rate": 44100, "channels": 2, "freq": 440},
        {"codec": "vorbis", "rate": 22050, "channels": 2, "freq": 300},
    ),
    "opus": (
        {"codec": "opus", "rate": 48000, "channels": 1, "freq": 440},
        {"codec": "opus", "rate": 48000, "channels": 2, "freq": 300},
    ),
}


@pytest.mark.parametrize("codec", sorted(CHAINS))
def test_every_link_of_a_chained_ogg_is_decoded(
    media: Callable[..., Path], workdir: Path, codec: str
) -> None:
    first, second = (
        media(f"link{n}.{codec}.ogg", seconds=3.0, **kwargs)
        for n, kwargs in enumerate(CHAINS[codec])
    )
    chain = joined(workdir / f"chain.{codec}.ogg", first, second)
    warnings: list[str] = []
    out = pcm(chain, on_warning=warnings.append)
    # Each link as the ffmpeg CLI decodes it alone. (On the chain itself, Debian's
    # ffmpeg 5.1 agrees for Opus and keeps 1,098 samples of the second Vorbis link's
    # priming that it drops when decoding that link alone.)
    assert len(out) == len(_ffmpeg_pcm(first)) + len(_ffmpeg_pcm(second))
    if codec == "opus":
        assert len(out) == len(_ffmpeg_pcm(chain))
    samples = pcm_to_array(out, 1)[0]
    assert dominant_frequency(samples[RATE : 2 * RATE], RATE) == pytest.approx(440, abs=3)
    assert dominant_frequency(samples[-2 * RATE : -RATE], RATE) == pytest.approx(300, abs=3)
    assert any("format changed" in w for w in warnings)
    # From bytes and from a seekable file object, the same.
    assert pcm(chain.read_bytes()) == out
    with chain.open("rb") as handle:
        assert pcm(handle) == out


def test_a_chained_ogg_from_a_pipe_fails_in_one_line(
    media: Callable[..., Path], workdir: Path
) -> None:
    first, second = (
        media(f"link{n}.opus.ogg", seconds=3.0, **kwargs) for n, kwargs in enumerate(CHAINS["opus"])
    )
    chain = joined(workdir / "piped-chain.ogg", first, second)
    for reader in _pipe_reader(chain.read_bytes()):
        with pytest.raises(DecodeError, match="chained Ogg .* give the file's path"):
            pcm(reader)


def test_format_change_mid_stream_rebuilds_the_resampler(media: Callable[..., Path]) -> None:
    first = media("join1.mp3", seconds=2.0, rate=44100, channels=2, codec="mp3", freq=440)
    second = media("join2.mp3", seconds=2.0, rate=22050, channels=1, codec="mp3", freq=300)
    both = joined(first.with_name("joined.mp3"), first, second)
    warnings: list[str] = []
    out = pcm_to_array(pcm(both, on_warning=warnings.append), 1)[0]
    # Joined files keep the second one's encoder delay and the first one's end padding
    # (the ffmpeg CLI too: 20 s joined this way gave it +1169 samples).
    assert abs(len(out) - 4 * RATE) <= 0.1 * RATE
    assert dominant_frequency(out[RATE // 2 : 3 * RATE // 2], RATE) == pytest.approx(440, abs=3)
    assert dominant_frequency(out[-3 * RATE // 2 : -RATE // 2], RATE) == pytest.approx(300, abs=3)
    assert any("format changed" in w and "22050 Hz mono" in w for w in warnings)
    assert pcm(both.read_bytes()) == pcm(both)


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [("mp3", {"codec": "mp3"}), ("flac", {"codec": "flac"}), ("ogg", {"codec": "opus"})],
)
def test_truncated_files_decode_what_is_there(
    media: Callable[..., Path], workdir: Path, name: str, kwargs: dict[str, object]
) -> None:
    rate = 48000 if name == "ogg" else 44100
    whole = media(f"whole.{name}", seconds=4.0, rate=rate, **kwargs)
    cut = truncated(whole, workdir / f"cut.{name}", fraction=0.5)
    out = pcm(cut)
    assert 1.5 * RATE < len(out) / 2 < 2.5 * RATE
    # Up to the cut, the same samples as the whole file (bar the resampler's last taps).
    end = len(out) - 200
    assert out[:end] == pcm(whole)[:end]


def test_truncated_wav_decodes_the_data_present(media: Callable[..., Path], workdir: Path) -> None:
    whole = media("whole.wav", seconds=2.0, rate=48000)
    cut = workdir / "cut.wav"
    data = whole.read_bytes()
    header = data.index(b"data") + 8
    cut.write_bytes(data[: header + 48000 * 2])  # the header and exactly one second
    assert len(pcm(cut)) == RATE * 2


def test_truncated_m4a_is_a_clear_decode_error(media: Callable[..., Path], workdir: Path) -> None:
    whole = media("whole.m4a", seconds=2.0, rate=44100, codec="aac")
    cut = truncated(whole, workdir / "cut.m4a", fraction=0.5)  # the index (moov) is gone
    with pytest.raises(DecodeError, match=str(cut)):
        pcm(cut)


# --- start / duration ----------------------------------------------------------------


@pytest.mark.parametrize("name", ["long.flac", "long.mp3"])
@pytest.mark.parametrize(("start", "duration"), [(0.5, 0.75), (0.0, 1.0), (1.23456, None)])
def test_start_and_duration_are_sample_exact(
    media: Callable[..., Path], name: str, start: float, duration: float | None
) -> None:
    codec = "flac" if name.endswith("flac") else "mp3"
    path = media(name, seconds=3.0, rate=44100, channels=2, codec=codec)
    full = pcm(path, channels=2)
    part = pcm(path, channels=2, start=start, duration=duration)
    first = round(start * RATE) * 4
    last = len(full) if duration is None else first + round(duration * RATE) * 4
    assert part == full[first:last]
    if duration is not None:
        assert len(part) == round(duration * RATE) * 4
    with path.open("rb") as handle:  # the same window from the packet-by-packet path
        assert pcm(handle, channels=2, start=start, duration=duration) == part


def test_window_past_the_end(media: Callable[..., Path]) -> None:
    path = media("short.wav", seconds=1.0, rate=24000)
    assert pcm(path, start=5.0) == b""
    assert len(pcm(path, start=0.5, duration=10.0)) == RATE  # half a second, s16
    assert pcm(path, duration=0) == b""


@pytest.mark.parametrize(
    "kwargs",
    [
        {"start": -1.0},
        {"duration": -0.5},
        {"start": float("nan")},
        # Overflowed the sample count ("unexpected OverflowError"), issue #26.
        {"start": float("inf")},
        {"duration": float("inf")},
        {"start": 1e308},
        {"duration": 1e308},
    ],
)
def test_impossible_window_is_a_usage_error(media: Callable[..., Path], kwargs: dict) -> None:
    path = media("short.wav", seconds=1.0, rate=24000)
    with pytest.raises(InvalidValueError) as caught:
        voiceprep.decode(path, **kwargs)
    assert caught.value.exit_code == 2
    assert caught.value.name in kwargs


@pytest.mark.parametrize(
    "kwargs", [{"rate": 7999}, {"rate": 192001}, {"channels": 3}, {"sample_format": "s24"}]
)
def test_bad_output_format_is_a_usage_error(media: Callable[..., Path], kwargs: dict) -> None:
    path = media("short.wav", seconds=1.0, rate=24000)
    with pytest.raises(UsageError) as caught:
        voiceprep.decode(path, **kwargs)
    assert caught.value.exit_code == 2


# --- sources ---------------------------------------------------------------------------


def test_bytes_and_file_objects(media: Callable[..., Path]) -> None:
    path = media("src.flac", seconds=1.0, rate=44100, codec="flac")
    expected = pcm(path)
    assert len(expected) == RATE * 2
    assert pcm(path.read_bytes()) == expected
    assert pcm(io.BytesIO(path.read_bytes())) == expected
    assert pcm(str(path)) == expected


def test_odd_file_names(media: Callable[..., Path], workdir: Path) -> None:
    # The fast path hands the name to libavfilter: colons, commas, quotes and brackets
    # must not be read as filter syntax or as a protocol.
    path = media("plain.mp3", seconds=1.0, rate=44100, codec="mp3")
    odd = workdir / "http:x, it's [a];b=c.mp3"
    odd.write_bytes(path.read_bytes())
    assert pcm(odd) == pcm(path)
    assert len(pcm(path)) > 0


def _pipe_reader(data: bytes) -> Iterator[io.BufferedReader]:
    read_fd, write_fd = os.pipe()

    def feed() -> None:
        try:
            with os.fdopen(write_fd, "wb") as writer:
                writer.write(data)
        except BrokenPipeError:
            pass  # the decoder stopped reading (it failed, as the test expects)

    thread = threading.Thread(target=feed)
    thread.start()
    with os.fdopen(read_fd, "rb") as reader:
        yield reader
    thread.join()


def test_a_pipe_is_read_without_seeking(media: Callable[..., Path]) -> None:
    path = media("pipe.flac", seconds=2.0, rate=44100, channels=2, codec="flac")
    for reader in _pipe_reader(path.read_bytes()):
        assert not reader.seekable()
        assert pcm(reader, channels=2) == pcm(path, channels=2)


def test_mp3_from_a_pipe(media: Callable[..., Path]) -> None:
    path = media("pipe.mp3", seconds=2.0, rate=44100, codec="mp3")
    for reader in _pipe_reader(path.read_bytes()):
        piped = pcm(reader)
    # A pipe cannot be seeked to the LAME header's padding info: a few ms more at the end.
    expected = pcm(path)
    assert piped[: len(expected) // 2] == expected[: len(expected) // 2]
    assert 0 <= len(piped) - len(expected) <= 0.02 * RATE * 2


def test_m4a_from_a_pipe_says_why_it_cannot(workdir: Path) -> None:
    # Long enough that the index at the end is beyond what the demuxer buffers.
    path = write_sine(workdir / "long.m4a", seconds=120.0, rate=44100, codec="aac")
    for reader in _pipe_reader(path.read_bytes()):
        with pytest.raises(DecodeError, match="pipe"):
            pcm(reader)


def test_stdin_dash(media: Callable[..., Path]) -> None:
    path = media("stdin.wav", seconds=1.0, rate=16000)
    code = "import sys, voiceprep\nfor c in voiceprep.decode('-'): sys.stdout.buffer.write(c)"
    with path.open("rb") as stdin:
        result = subprocess.run(
            [sys.executable, "-c", code], stdin=stdin, capture_output=True, check=True
        )
    assert result.stdout == pcm(path)
    assert result.stderr == b""  # the library prints nothing


@pytest.mark.parametrize(("in_rate", "out_rate"), [(44100, 48000), (8000, 192000), (96000, 8000)])
def test_chunks_stream_in_pieces_of_about_a_second(
    media: Callable[..., Path], in_rate: int, out_rate: int
) -> None:
    path = media(f"stream_{in_rate}.flac", seconds=4.0, rate=in_rate, codec="flac")
    for source in (path, path.read_bytes()):  # the fast path and the robust one
        sizes = [len(chunk) for chunk in voiceprep.decode(source, rate=out_rate)]
        assert sum(sizes) == 4 * out_rate * 2
        assert len(sizes) >= 4  # yielded as decoded, not in one piece
        assert max(sizes) <= 1.05 * out_rate * 2  # about a second of s16 mono at most


# --- probe ---------------------------------------------------------------------------


@pytest.mark.parametrize("codec", ["opus", "mp3", "flac", "pcm_s16le"])
def test_probe_duration_is_what_decoding_yields(media: Callable[..., Path], codec: str) -> None:
    # Opus's pre-skip (6.5 ms of encoder delay) is dropped by the decoder: not audio.
    rate = 48000 if codec == "opus" else 44100
    path = media(f"length.{codec}", seconds=1.25, rate=rate, channels=1, codec=codec)
    info = voiceprep.probe(path)
    pcm = b"".join(voiceprep.decode(str(path), rate=rate, channels=1))
    assert info.duration == round(info.duration or 0, 3)  # to the millisecond
    assert info.duration == pytest.approx(len(pcm) / 2 / rate, abs=0.0015)


def test_probe_fields(media: Callable[..., Path]) -> None:
    mp3 = voiceprep.probe(
        media("probe.mp3", seconds=2.0, rate=44100, channels=2, codec="mp3", bit_rate=128000)
    )
    assert (mp3.container, mp3.codec, mp3.rate, mp3.channels, mp3.layout) == (
        "mp3",
        "mp3",  # the codec, as ffprobe names it; not libav's decoder "mp3float"
        44100,
        2,
        "stereo",
    )
    assert mp3.duration == pytest.approx(2.0, abs=0.06)
    assert mp3.bitrate == pytest.approx(128000, rel=0.05)
    wav = voiceprep.probe(media("probe.wav", seconds=1.5, rate=22050, channels=1))
    assert (wav.container, wav.codec, wav.rate, wav.channels, wav.layout) == (
        "wav",
        "pcm_s16le",
        22050,
        1,
        "mono",
    )
    assert wav.duration == pytest.approx(1.5, abs=0.001)
    assert wav.bitrate == 22050 * 16
    opus = voiceprep.probe(media("probe.ogg", seconds=1.0, rate=48000, codec="opus").read_bytes())
    assert (opus.container, opus.codec, opus.rate) == ("ogg", "opus", 48000)


# --- bad input -------------------------------------------------------------------------


def _bad_inputs(workdir: Path, media: Callable[..., Path]) -> dict[str, tuple[Path, type, str]]:
    directory = workdir / "adir"
    directory.mkdir(exist_ok=True)
    empty = workdir / "empty.mp3"
    empty.write_bytes(b"")
    text = workdir / "notes.mp3"
    text.write_text("These are my notes, not audio.\n" * 50)
    noise = workdir / "noise.wav"
    noise.write_bytes(np.random.default_rng(3).integers(0, 256, 30_000, np.uint8).tobytes())
    header_only = workdir / "header.wav"
    header_only.write_bytes(wav_header(rate=24000, channels=1, data_bytes=0))
    video_only = write_video(workdir / "silent_film.mp4", seconds=1.0, with_audio=False)
    return {
        "missing": (workdir / "nope.mp3", InputError, "no such file"),
        "directory": (directory, InputError, "is a directory"),
        "empty": (empty, DecodeError, "empty"),
        "text": (text, DecodeError, ""),
        "random bytes": (noise, DecodeError, ""),
        "header only": (header_only, DecodeError, ""),
        "no audio stream": (video_only, NoAudioStreamError, "no audio stream"),
    }


BAD = ["missing", "directory", "empty", "text", "random bytes", "header only", "no audio stream"]


@pytest.mark.parametrize("case", BAD)
def test_bad_input_raises_a_typed_error_naming_it(
    workdir: Path, media: Callable[..., Path], case: str
) -> None:
    path, error, reason = _bad_inputs(workdir, media)[case]
    with pytest.raises(error) as caught:
        pcm(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and reason in message
    assert "\n" not in message
    assert caught.value.exit_code == (2 if error is InputError else 1)
    if case not in ("missing", "directory"):
        with pytest.raises(error):
            pcm(path.read_bytes())  # the same verdict for bytes


@pytest.mark.parametrize("case", BAD)
def test_probe_bad_input(workdir: Path, media: Callable[..., Path], case: str) -> None:
    path, error, _ = _bad_inputs(workdir, media)[case]
    if case == "header only":  # a readable header describes an empty stream
        assert voiceprep.probe(path).duration in (0.0, None)
        return
    with pytest.raises(error, match=str(path)):
        voiceprep.probe(path)


def test_text_mode_file_object_is_a_usage_error(media: Callable[..., Path]) -> None:
    path = media("text_mode.wav", seconds=0.5, rate=24000)
    with path.open() as handle, pytest.raises(UsageError, match="'rb'"):
        pcm(handle)


def test_no_audio_stream_is_also_a_value_error(workdir: Path, media: Callable[..., Path]) -> None:
    path, _, _ = _bad_inputs(workdir, media)["no audio stream"]
    with pytest.raises(ValueError, match="no audio stream"):
        pcm(path)


# --- load_audio_file: the original API ---------------------------------------------------


def test_load_audio_file_contract(media: Callable[..., Path], workdir: Path) -> None:
    path = media("load.mp3", seconds=1.0, rate=44100, channels=2, codec="mp3")
    data = voiceprep.load_audio_file(path)
    assert isinstance(data, bytes)
    assert data == pcm(path, rate=24000, channels=1)
    stereo16k = voiceprep.load_audio_file(str(path), sample_rate=16000, num_channels=2)
    assert abs(len(stereo16k) / 4 - 16000) <= 160
    for bad in (0, 3, 6):
        with pytest.raises(ValueError, match="num_channels"):
            voiceprep.load_audio_file(path, num_channels=bad)
    video_only = write_video(workdir / "film.mp4", seconds=1.0, with_audio=False)
    with pytest.raises(ValueError):
        voiceprep.load_audio_file(video_only)


def test_load_audio_file_matches_the_original_pattern(media: Callable[..., Path]) -> None:
    """The original decoded every frame through AudioResampler: same samples, less memory."""
    import av

    path = media("orig.flac", seconds=1.0, rate=44100, channels=2, codec="flac")
    resampler = av.AudioResampler(format="s16", layout="mono", rate=24000)
    chunks = []
    with av.open(str(path)) as container:
        for frame in container.decode(audio=0):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().tobytes())
    for out in resampler.resample(None):
        chunks.append(out.to_ndarray().tobytes())
    assert voiceprep.load_audio_file(path) == b"".join(chunks)


def test_write_audio_helper_round_trip(workdir: Path) -> None:
    # The helper the other suites rely on writes what it is given.
    signal = sine(1000, 0.5, 48000, 1)
    path = write_audio(workdir / "rt.wav", signal, rate=48000)
    out = pcm_to_array(pcm(path, rate=48000), 1)[0]
    np.testing.assert_allclose(out, signal[0], atol=2 / 32768)
