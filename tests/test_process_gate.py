"""The plausibility gate: silent, truncated and babbling syntheses are refused, retried,
reported and never cached; real Piper and espeak-ng speech passes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from audiogen import sine
from helpers import CLI

from voiceprep.backends import get_backend
from voiceprep.backends.base import SynthesizedAudio
from voiceprep.cache import AudioCache
from voiceprep.errors import ImplausibleAudioError
from voiceprep.fill import Filler
from voiceprep.gate import judge
from voiceprep.keys import BackendIdentity
from voiceprep.phrases import Phrase
from voiceprep.sources import BackendSource
from voiceprep.warm import warm

RATE = 24000
LONG_TEXT = "Your call is important to us. Please stay on the line for the next agent."


def pcm_of(signal: np.ndarray) -> bytes:
    return (np.clip(signal, -1, 1) * 32767).astype("<i2").tobytes()


def voice_like(seconds: float) -> bytes:
    """Syllables: 150 ms tone bursts with 50 ms gaps, like speech's rhythm."""
    burst = sine(220, 0.15, RATE, amp=0.3)[0]
    unit = np.concatenate([burst, np.zeros(int(0.05 * RATE), dtype=np.float32)])
    reps = int(np.ceil(seconds / 0.2))
    return pcm_of(np.tile(unit, reps)[: int(seconds * RATE)])


SILENT = pcm_of(np.zeros(2 * RATE, dtype=np.float32))
TRUNCATED = voice_like(0.3)  # a word, for a 70-character sentence
BABBLING = voice_like(30.0)  # half a minute, for "Hello there."
MOSTLY_SILENT = voice_like(2.4) + pcm_of(np.zeros(10 * RATE, dtype=np.float32))


class FakeTTS:
    """A TTS that answers with fixed audio (what a misbehaving neural TTS returns)."""

    name = "fake"

    def __init__(self, *answers: bytes) -> None:
        self.answers = list(answers)
        self.calls = 0

    def identity(self, voice: str | None = None) -> BackendIdentity:
        return BackendIdentity("fake", voice=voice)

    async def synthesize(
        self, text: str, *, voice: str | None = None, rate: int, channels: int
    ) -> SynthesizedAudio:
        answer = self.answers[min(self.calls, len(self.answers) - 1)]
        self.calls += 1
        return SynthesizedAudio(answer, rate=RATE, channels=1)

    def unavailable_reason(self) -> str | None:
        return None


@pytest.mark.parametrize(
    ("pcm", "text", "reason"),
    [
        (SILENT, "Hello there.", "silent"),
        (TRUNCATED, LONG_TEXT, "too short"),
        (BABBLING, "Hello there.", "too long"),
        (MOSTLY_SILENT, LONG_TEXT, "mostly silence"),
    ],
)
def test_each_kind_of_bad_synthesis_is_refused(pcm: bytes, text: str, reason: str) -> None:
    verdict = judge(pcm, rate=RATE, channels=1, text=text)
    assert verdict.reason is not None and verdict.reason.startswith(reason)


def test_bad_syntheses_are_retried_reported_and_never_cached(tmp_path: Path) -> None:
    cache = AudioCache(tmp_path / "cache")
    for pcm, text in [(SILENT, "Hello there."), (TRUNCATED, LONG_TEXT), (BABBLING, "Hello.")]:
        tts = FakeTTS(pcm)
        summary = asyncio.run(warm([Phrase(text)], tts, cache, retries=2))
        assert tts.calls == 3  # the first try and two retries
        assert summary.synthesized == 0 and len(summary.failed) == 1
        assert "implausible synthesis" in summary.failed[0].reason
    assert cache.entries() == []


def test_a_retry_that_succeeds_is_cached(tmp_path: Path) -> None:
    cache = AudioCache(tmp_path / "cache")
    tts = FakeTTS(TRUNCATED, voice_like(4.0))
    summary = asyncio.run(warm([Phrase(LONG_TEXT)], tts, cache, retries=2))
    assert tts.calls == 2 and summary.synthesized == 1 and not summary.failed
    assert len(cache.entries()) == 1


def test_relaxed_and_off_let_more_through() -> None:
    slow = voice_like(7.0)  # 7 s for "Hello there.": strict refuses, relaxed accepts
    assert judge(slow, rate=RATE, channels=1, text="Hello there.").reason is not None
    assert judge(slow, rate=RATE, channels=1, text="Hello there.", mode="relaxed").reason is None
    assert judge(BABBLING, rate=RATE, channels=1, text="Hi.", mode="relaxed").reason is not None
    assert judge(BABBLING, rate=RATE, channels=1, text="Hi.", mode="off").reason is None


def test_dense_scripts_get_their_own_band() -> None:
    # 8 Han characters spoken in 2 s: 0.25 s a character, fine for Chinese;
    # the same duration for 8 Latin letters would be too slow.
    two_seconds = voice_like(2.0)
    assert judge(two_seconds, rate=RATE, channels=1, text="请稍等一下谢谢").reason is None
    assert judge(voice_like(0.3), rate=RATE, channels=1, text="请稍等一下谢谢您的来电").reason


def test_gave_up_error_names_the_reason() -> None:
    tts = FakeTTS(SILENT)
    source = BackendSource(tts, rate=RATE, channels=1, timeout=None)
    filler = Filler(source, None, rate=RATE, channels=1, retries=1)
    prompt = filler.prompt(tts.identity(), "Hello.", None)
    with pytest.raises(ImplausibleAudioError, match="silent.*gave up after 2 attempts"):
        asyncio.run(filler.synthesize(prompt))
    assert tts.calls == 2


@pytest.mark.parametrize(
    ("backend", "text"),
    [
        ("piper", "Yes."),
        ("piper", LONG_TEXT),
        ("espeak", "OK."),
        ("espeak", LONG_TEXT),
    ],
)
def test_real_speech_passes(backend: str, text: str) -> None:
    tts = get_backend(backend)
    audio = asyncio.run(tts.synthesize(text, rate=RATE, channels=1))
    pcm = audio.to_pcm(rate=RATE, channels=1)
    assert judge(pcm, rate=RATE, channels=1, text=text).reason is None


def test_warm_cli_reports_refusals_and_gate_off_caches(tmp_path: Path, cli: CLI) -> None:
    # A real espeak-ng slowed to 80 words a minute with 2 s gaps: "babbling" for strict.
    phrases = tmp_path / "p.txt"
    phrases.write_text("Hi there, how are you?\n", encoding="utf-8")
    args = ["warm", str(phrases), "--cache-dir", str(tmp_path / "c"), "-b", "espeak"]
    slow = ["-O", "speed=80", "-O", "word_gap=200", "--retries", "0"]
    code, out, err = cli(*[*args, *slow])
    assert code == 1 and "implausible synthesis" in err, err
    code, out, err = cli(*[*args, *slow, "--gate", "off"])
    assert code == 0, err
