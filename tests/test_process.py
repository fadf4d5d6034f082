"""The processing chain (voiceprep.process) on real audio, checked by independent meters.

Loudness and true peak are checked by the ffmpeg program's `ebur128` (tests/loudmeter.py),
a separate FFmpeg build run as a subprocess; the true peak there is resampled to 192 kHz,
not interpolated as voiceprep does.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from audiogen import sine
from loudmeter import ffmpeg_loudness

from voiceprep.backends import get_backend
from voiceprep.errors import UsageError
from voiceprep.keys import BackendIdentity, cache_key
from voiceprep.loudness import measure, to_float, to_pcm
from voiceprep.process import (
    NO_PROCESSING,
    ProcessSettings,
    fade,
    process_pcm,
    process_samples,
    settings_from,
)

RATE = 24000
TARGET = -16.0
CEILING = -1.5


def lufs(samples: np.ndarray, rate: int = RATE) -> float:
    return ffmpeg_loudness(samples, rate)[0]


def true_peak_db(samples: np.ndarray) -> float:
    return ffmpeg_loudness(samples, RATE)[1]


def tone(seconds: float, level: float, freq: float = 440.0, channels: int = 1) -> np.ndarray:
    return sine(freq, seconds, RATE, channels, amp=level).T.copy()


def noise(seconds: float, level: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # speech-like spectrum: white noise through a gentle low-pass (most energy < 4 kHz)
    white = rng.standard_normal(int(seconds * RATE))
    shaped = np.convolve(white, np.ones(4) / 4, mode="same")
    shaped *= level / np.abs(shaped).max()
    return shaped.astype(np.float32).reshape(-1, 1)


def speech(backend: str, text: str) -> np.ndarray:
    tts = get_backend(backend)
    audio = asyncio.run(tts.synthesize(text, rate=RATE, channels=1))
    return to_float(audio.to_pcm(rate=RATE, channels=1), 1)


def normalized(samples: np.ndarray) -> np.ndarray:
    settings = ProcessSettings(loudness=TARGET, true_peak=CEILING)
    out = process_pcm(to_pcm(samples), rate=RATE, channels=samples.shape[1], settings=settings)
    return to_float(out.pcm, samples.shape[1])


def assert_on_target(out: np.ndarray) -> None:
    integrated, peak = ffmpeg_loudness(out, RATE)
    assert abs(integrated - TARGET) <= 0.5, integrated
    assert peak <= CEILING, peak


# --- loudness ---------------------------------------------------------------------------


@pytest.mark.parametrize("seconds", [0.5, 1.0, 2.0, 3.0, 10.0, 30.0])
@pytest.mark.parametrize("level", [0.01, 0.3, 0.99])  # -43, -13, 0 dBFS peak
def test_tones_of_every_length_reach_the_target(seconds: float, level: float) -> None:
    assert_on_target(normalized(tone(seconds, level)))


@pytest.mark.parametrize("seconds", [0.5, 2.0, 30.0])
@pytest.mark.parametrize("level", [0.05, 0.9])
def test_noise_with_peaks_is_limited_under_the_ceiling(seconds: float, level: float) -> None:
    # Noise has a crest factor of ~12 dB: at -16 LUFS its peaks need the limiter.
    assert_on_target(normalized(noise(seconds, level)))


def test_stereo_tone_reaches_the_target() -> None:
    assert_on_target(normalized(tone(2.0, 0.05, channels=2)))


@pytest.mark.parametrize(
    ("backend", "text"),
    [
        ("piper", "One moment, please."),
        ("piper", "Press one for billing, two for technical support, or stay on the line."),
        ("espeak", "Yes."),
        ("espeak", "Your appointment is confirmed for Tuesday at three thirty."),
    ],
)
def test_real_speech_reaches_the_target(backend: str, text: str) -> None:
    # Piper peak-normalizes its output to 0 dBFS: +4 to +7 dB of gain need limiting.
    source = speech(backend, text)
    assert 0.5 <= len(source) / RATE <= 30
    assert_on_target(normalized(source))


def test_silence_is_left_alone() -> None:
    silent = np.zeros((RATE, 1), dtype=np.float32)
    out, level = process_samples(silent, RATE, ProcessSettings(loudness=TARGET))
    assert level is None and not out.any()


def test_measure_reports_what_an_independent_meter_sees() -> None:
    clip = np.concatenate([np.zeros((RATE // 4, 1)), tone(2.0, 0.2), np.zeros((RATE // 2, 1))])
    report = measure(clip.astype(np.float32), RATE)
    assert report.integrated is not None
    integrated, peak = ffmpeg_loudness(clip, RATE)
    assert abs(report.integrated - integrated) <= 0.1
    assert abs((report.true_peak or 0) - peak) <= 0.1
    assert abs((report.sample_peak or 0) - 20 * np.log10(0.2)) <= 0.01
    assert abs(report.leading_silence - 0.25) <= 0.001
    assert abs(report.trailing_silence - 0.5) <= 0.001
    assert abs(report.duration - 2.75) <= 0.001


# --- trim -------------------------------------------------------------------------------


def silence_at_ends(samples: np.ndarray, threshold_db: float = -50.0) -> tuple[float, float]:
    loud = np.flatnonzero(np.abs(samples).max(axis=1) >= 10 ** (threshold_db / 20))
    return loud[0] / RATE, (len(samples) - 1 - loud[-1]) / RATE


def test_trim_keeps_the_pad_and_every_burst() -> None:
    gap = np.zeros((RATE // 5, 1), dtype=np.float32)  # 200 ms pauses inside "speech"
    bursts = [tone(0.3, 0.3, 300), gap, tone(0.05, 0.01, 900), gap, tone(0.4, 0.2, 500)]
    body = np.concatenate(bursts)
    clip = np.concatenate([np.zeros((RATE, 1)), body, np.zeros((2 * RATE, 1))]).astype(np.float32)
    out, _ = process_samples(clip, RATE, ProcessSettings(trim_silence=True, trim_pad=50))
    lead, trail = silence_at_ends(out)
    assert lead <= 0.050 + 0.010 and trail <= 0.050 + 0.010
    # Nothing inside is cut: the body (pauses and the quiet burst too) is there, intact.
    first_loud = np.flatnonzero(np.abs(body[:, 0]) >= 10 ** (-50 / 20))[0]
    start = int(round(lead * RATE)) - first_loud
    assert np.array_equal(out[start : start + len(body)], body)


def test_trim_never_cuts_real_speech() -> None:
    source = speech("piper", "Hello. I am listening, take your time.")
    padded = np.concatenate([np.zeros((RATE, 1)), source, np.zeros((RATE, 1))])
    padded = padded.astype(np.float32)
    out, _ = process_samples(padded, RATE, ProcessSettings(trim_silence=True))
    lead, trail = silence_at_ends(out)
    assert lead <= 0.060 and trail <= 0.060
    # every 20 ms window of the source that holds speech is in the output, sample for sample
    first_loud = np.flatnonzero(np.abs(source[:, 0]) >= 10 ** (-50 / 20))[0]
    offset = int(round(lead * RATE)) - first_loud
    windows = source[: len(source) // 480 * 480].reshape(-1, 480)
    voiced = np.flatnonzero(np.sqrt((windows**2).mean(axis=1)) > 0.01)
    for index in voiced:
        begin = index * 480 + offset
        assert np.array_equal(out[begin : begin + 480, 0], windows[index])


def test_trim_of_pure_silence_keeps_it() -> None:
    silent = np.zeros((RATE, 1), dtype=np.float32)
    out, _ = process_samples(silent, RATE, ProcessSettings(trim_silence=True))
    assert len(out) == RATE


# --- fades and pads ---------------------------------------------------------------------


def test_fades_are_monotone() -> None:
    flat = np.full((RATE, 2), 0.5, dtype=np.float32)
    out = fade(flat, RATE, 100, 250)
    rise, fall = out[: RATE // 10, 0], out[-RATE // 4 :, 1]
    assert rise[0] == 0 and np.all(np.diff(rise) >= 0) and rise[-1] < 0.5
    assert np.all(np.diff(fall) <= 0) and fall[-1] == 0 and fall[0] < 0.5
    assert np.all(out[RATE // 10 : -RATE // 4] == 0.5)


def test_pads_add_exact_silence() -> None:
    clip = tone(0.5, 0.3)
    settings = ProcessSettings(pad_start=100, pad_end=250)
    out, _ = process_samples(clip, RATE, settings)
    assert len(out) == len(clip) + RATE // 10 + RATE // 4
    assert not out[: RATE // 10].any() and not out[-RATE // 4 :].any()


def test_whole_chain_in_order() -> None:
    clip = np.concatenate([np.zeros((RATE, 1)), tone(1.0, 0.05), np.zeros((RATE, 1))])
    settings = ProcessSettings(
        loudness=-20, trim_silence=True, fade_in=10, fade_out=20, pad_start=30, pad_end=40
    )
    out = process_pcm(to_pcm(clip.astype(np.float32)), rate=RATE, channels=1, settings=settings)
    samples = to_float(out.pcm, 1)
    assert abs(lufs(samples) + 20) <= 0.5
    expected = 0.030 + 0.050 + 1.0 + 0.050 + 0.040
    assert abs(len(samples) / RATE - expected) <= 0.002


# --- settings and keys ----------------------------------------------------------------


def test_empty_settings_leave_keys_and_audio_unchanged() -> None:
    identity = BackendIdentity("piper", None, "en_US-joe-medium", {"length_scale": "1.0"})
    assert NO_PROCESSING.is_empty
    assert NO_PROCESSING.identity(identity) is identity
    pcm = to_pcm(tone(0.5, 0.3))
    assert process_pcm(pcm, rate=RATE, channels=1, settings=NO_PROCESSING).pcm == pcm


def test_key_changes_with_each_setting() -> None:
    identity = BackendIdentity("piper", None, "en_US-joe-medium")
    variants = [
        ProcessSettings(),
        ProcessSettings(loudness=-16),
        ProcessSettings(loudness=-23),
        ProcessSettings(loudness=-16, true_peak=-2),
        ProcessSettings(trim_silence=True),
        ProcessSettings(trim_silence=True, silence_threshold=-40),
        ProcessSettings(trim_silence=True, trim_pad=10),
        ProcessSettings(fade_in=10),
        ProcessSettings(fade_out=10),
        ProcessSettings(pad_start=10),
        ProcessSettings(pad_end=10),
    ]
    keys = {cache_key(v.identity(identity), "Hello.", rate=RATE, channels=1) for v in variants}
    assert len(keys) == len(variants)
    # settings of a step that is off do not matter; -16 and -16.0 are one setting
    assert ProcessSettings(true_peak=-3).is_empty
    same = [ProcessSettings(loudness=-16), ProcessSettings(loudness=-16.0, silence_threshold=-40)]
    assert (
        len({cache_key(v.identity(identity), "Hello.", rate=RATE, channels=1) for v in same}) == 1
    )


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"loudness": 3}, "--loudness"),
        ({"true_peak": 2}, "--true-peak"),
        ({"fade_in": -1}, "--fade-in"),
        ({"loudness": "loud"}, "number"),
        ({"volume": 3}, "unknown processing setting"),
        ({"trim_silence": "yes"}, "true or false"),
    ],
)
def test_bad_settings_are_refused(values: dict[str, object], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        settings_from(values)
