"""What the integrations share: key identities equal to `voiceprep warm`'s for the real
LiveKit/Pipecat plugins, TTSAudioCache.lookup/store, and agents in several processes
sharing one cache directory."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from audiogen import dominant_frequency, pcm_to_array, sine_pcm
from integrations_helpers import text_frequency, tone_for

from voiceprep.backends import get_backend
from voiceprep.cache import AudioCache
from voiceprep.errors import EmptyAudioError
from voiceprep.integrations._common import open_prompt_cache
from voiceprep.integrations.livekit import livekit_identity
from voiceprep.integrations.pipecat import pipecat_identity
from voiceprep.keys import BackendIdentity, cache_key

TESTS = Path(__file__).parent


def warm_identity(backend: str, voice: str, **options: str) -> BackendIdentity:
    """The identity `voiceprep warm -b BACKEND --voice VOICE -O k=v...` keys with."""
    identity: BackendIdentity = get_backend(backend, voice=voice, options=options).identity(voice)
    return identity


def test_livekit_openai_plugin_maps_to_the_openai_backend() -> None:
    from livekit.plugins import openai

    plain = openai.TTS(api_key="sk-test", voice="coral")
    assert livekit_identity(plain) == warm_identity(
        "openai", "coral", model="gpt-4o-mini-tts", response_format="mp3"
    )
    tuned = openai.TTS(
        api_key="sk-test",
        model="tts-1",
        voice="ash",
        speed=1.25,
        instructions="Speak warmly.",
        response_format="pcm",
    )
    assert livekit_identity(tuned) == warm_identity(
        "openai",
        "ash",
        model="tts-1",
        speed="1.25",
        instructions="Speak warmly.",
        response_format="pcm",
    )
    assert livekit_identity(tuned, voice="override").voice == "override"


def test_livekit_elevenlabs_plugin_maps_to_the_elevenlabs_backend() -> None:
    from livekit.plugins import elevenlabs

    pcm = elevenlabs.TTS(
        api_key="xi-test",
        voice_id="EXAVITQu4vr4xnSDxMaL",
        model="eleven_flash_v2_5",
        encoding="pcm_24000",
        voice_settings=elevenlabs.VoiceSettings(stability=0.4, similarity_boost=0.8),
    )
    # pcm_24000 at 24 kHz is what the backend asks for by itself: no output_format option.
    assert livekit_identity(pcm) == warm_identity(
        "elevenlabs",
        "EXAVITQu4vr4xnSDxMaL",
        model="eleven_flash_v2_5",
        stability="0.4",
        similarity_boost="0.8",
    )
    default = elevenlabs.TTS(api_key="xi-test")  # mp3_22050_32, LiveKit's default
    identity = livekit_identity(default)
    assert identity == warm_identity(
        "elevenlabs",
        default._opts.voice_id,
        model=default._opts.model,
        output_format="mp3_22050_32",
    )
    languaged = elevenlabs.TTS(api_key="xi-test", encoding="pcm_24000", language="de")
    assert livekit_identity(languaged).options["language"] == "de"  # not warmable, still keyed


def test_unknown_livekit_plugins_get_a_fallback_identity() -> None:
    from integrations_helpers import livekit_counting_tts

    counting = livekit_counting_tts()
    identity = livekit_identity(counting, voice="v1")
    assert identity.name.endswith("CountingTTS")
    assert (identity.model, identity.voice, dict(identity.options)) == (
        "tone-1",
        "v1",
        {"provider": "counting"},
    )


async def test_pipecat_services_map_to_the_backends() -> None:
    import aiohttp
    from pipecat.services.elevenlabs.tts import ElevenLabsHttpTTSService
    from pipecat.services.openai.tts import OpenAITTSService

    service = OpenAITTSService(
        api_key="sk-test",
        settings=OpenAITTSService.Settings(voice="sage", model="tts-1-hd", speed=1.5),
    )
    assert pipecat_identity(service) == warm_identity(
        "openai", "sage", model="tts-1-hd", speed="1.5", response_format="pcm"
    )
    async with aiohttp.ClientSession() as session:
        eleven = ElevenLabsHttpTTSService(
            api_key="xi-test",
            aiohttp_session=session,
            sample_rate=22050,
            settings=ElevenLabsHttpTTSService.Settings(
                voice="EXAVITQu4vr4xnSDxMaL", model="eleven_multilingual_v2", stability=0.5
            ),
        )
        # What start() sets: the sample rate, and the output format from it.
        eleven._sample_rate, eleven._output_format = 22050, "pcm_22050"
        assert pipecat_identity(eleven) == warm_identity(
            "elevenlabs", "EXAVITQu4vr4xnSDxMaL", model="eleven_multilingual_v2", stability="0.5"
        )


def prompt_cache(directory: Path, rate: int, channels: int = 1):  # type: ignore[no-untyped-def]
    identity = BackendIdentity("test-tts", model="m", voice="v")
    return open_prompt_cache(
        None,
        identity=identity,
        rate=rate,
        channels=channels,
        cache_dir=directory,
        max_entries=None,
        max_bytes=None,
    )


async def test_lookup_converts_an_entry_stored_at_another_format(tmp_path: Path) -> None:
    at_24k = prompt_cache(tmp_path, 24000)
    assert await at_24k.lookup("Hold on.", voice_id="v") is None
    stored = await at_24k.store("Hold on.", tone_for("Hold on.", 24000), voice_id="v")
    assert await at_24k.lookup("Hold on.", voice_id="v") == stored

    stereo_48k = prompt_cache(tmp_path, 48000, channels=2)
    pcm = await stereo_48k.lookup("Hold on.", voice_id="v")
    assert pcm is not None
    left, right = pcm_to_array(pcm, 2)
    assert len(left) == pytest.approx(0.4 * 48000, abs=64)
    assert dominant_frequency(left, 48000) == pytest.approx(text_frequency("Hold on."), abs=5)
    assert (left == right).all()
    # ... and stored under its own key, so the next lookup is a plain hit.
    with AudioCache(tmp_path) as disk:
        key = cache_key(stereo_48k.identity("v"), "Hold on.", rate=48000, channels=2)
        assert disk.entry(key) is not None
    # Another voice is another prompt: no conversion across identities.
    assert await stereo_48k.lookup("Hold on.", voice_id="w") is None
    with pytest.raises(EmptyAudioError):
        await at_24k.store("Silence.", b"", voice_id="v")
    assert not at_24k.contains("Silence.", voice_id="v")


async def test_lookup_prefers_the_closest_higher_rate(tmp_path: Path) -> None:
    # Two stored versions of one prompt that sound different, so the choice is audible.
    low, high = prompt_cache(tmp_path, 16000), prompt_cache(tmp_path, 48000)
    await low.store("Prompt.", sine_pcm(300.0, 0.4, 16000), voice_id="v")
    await high.store("Prompt.", sine_pcm(600.0, 0.4, 48000), voice_id="v")
    pcm = await prompt_cache(tmp_path, 24000).lookup("Prompt.", voice_id="v")
    assert pcm is not None
    assert dominant_frequency(pcm_to_array(pcm, 1)[0], 24000) == pytest.approx(600, abs=5)
    # With only the lower rate stored, that one is converted rather than missed.
    only_low = tmp_path / "low"
    await prompt_cache(only_low, 16000).store("Prompt.", sine_pcm(300.0, 0.4, 16000), voice_id="v")
    pcm = await prompt_cache(only_low, 24000).lookup("Prompt.", voice_id="v")
    assert pcm is not None
    assert dominant_frequency(pcm_to_array(pcm, 1)[0], 24000) == pytest.approx(300, abs=5)


def test_agents_in_several_processes_share_one_cache(tmp_path: Path) -> None:
    """Three agent processes, overlapping prompts, one directory: every entry whole."""
    script = textwrap.dedent(
        f"""
        import asyncio, sys
        sys.path.insert(0, {str(TESTS)!r})
        from integrations_helpers import livekit_counting_tts
        from voiceprep.integrations.livekit import CachedTTS

        async def main(worker):
            inner = livekit_counting_tts()
            cached = CachedTTS(inner, cache_dir={str(tmp_path)!r})
            for round in range(3):
                for i in range(8):
                    async with cached.synthesize(f"Prompt {{(i + worker) % 8}} here.") as s:
                        async for _ in s:
                            pass
            await cached.aclose()
            print(len(inner.calls))

        asyncio.run(main(int(sys.argv[1])))
        """
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(n)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for n in range(3)
    ]
    calls = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode()
        calls.append(int(out.decode().split()[-1]))
    assert all(c <= 8 for c in calls)  # each process synthesized a prompt at most once
    with AudioCache(tmp_path) as disk:
        assert len(disk) == 8
        assert not disk.verify().damaged
        for entry in disk.entries():
            pcm = disk.get(entry.key, rate=24000, channels=1)
            assert pcm == tone_for(entry.text, 24000)
