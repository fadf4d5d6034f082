"""Issue 14 item 4: `voiceprep warm -b cartesia|deepgram` fills exactly the entries the
LiveKit and Pipecat integrations read for those providers' plugins (the local fake servers
of tests/fakeproviders.py stand in for the upstream APIs)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from audiogen import dominant_frequency, pcm_to_array
from fakeproviders import FakeProvider, fake_cartesia, fake_deepgram, voice_frequency
from integrations_helpers import warm

from voiceprep.backends import get_backend
from voiceprep.integrations.livekit import CachedTTS, livekit_identity
from voiceprep.integrations.pipecat import pipecat_identity

CARTESIA_VOICE = "a0e99841-438c-4a64-b679-ae501e7d6091"


@pytest.fixture
def cartesia_server() -> Iterator[FakeProvider]:
    with fake_cartesia() as fake:
        yield fake


@pytest.fixture
def deepgram_server() -> Iterator[FakeProvider]:
    with fake_deepgram() as fake:
        yield fake


async def first_pcm(cached: CachedTTS, text: str) -> bytes:
    audio = b""
    async with cached.synthesize(text) as stream:
        async for ev in stream:
            audio += ev.frame.data.tobytes()
    return audio


async def test_warm_cartesia_fills_what_the_livekit_plugin_reads(
    tmp_path: Path, cartesia_server: FakeProvider
) -> None:
    from livekit.plugins import cartesia

    plugin = cartesia.TTS(
        api_key="not-used-on-a-hit",
        model="sonic-3",
        voice=CARTESIA_VOICE,
        sample_rate=24000,
        base_url=cartesia_server.base_url,
    )
    cached = CachedTTS(plugin, cache_dir=tmp_path)
    assert cached.identity == get_backend(
        "cartesia", voice=CARTESIA_VOICE, options={"model": "sonic-3", "language": "en"}
    ).identity(CARTESIA_VOICE)
    done = warm(
        "-b", "cartesia", "--voice", CARTESIA_VOICE, "-O", "model=sonic-3", "-O", "language=en",
        "-O", f"base_url={cartesia_server.base_url}", "-r", "24000",
        "--cache-dir", str(tmp_path),
        stdin="Your appointment is confirmed.\n",
        env={"CARTESIA_API_KEY": cartesia_server.api_key},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert cartesia_server.request_count == 1
    pcm = await first_pcm(cached, "Your appointment is confirmed.")
    assert cartesia_server.request_count == 1  # the warmed entry: no request
    freq = dominant_frequency(pcm_to_array(pcm, 1)[0], 24000)
    assert freq == pytest.approx(voice_frequency(CARTESIA_VOICE), abs=5)
    await cached.aclose()


async def test_warm_deepgram_fills_what_the_livekit_plugin_reads(
    tmp_path: Path, deepgram_server: FakeProvider
) -> None:
    from livekit.plugins import deepgram

    plugin = deepgram.TTS(
        api_key="not-used-on-a-hit",
        model="aura-2-andromeda-en",
        sample_rate=24000,
        base_url=deepgram_server.base_url,
    )
    cached = CachedTTS(plugin, cache_dir=tmp_path)
    assert cached.identity == get_backend("deepgram", voice="aura-2-andromeda-en").identity(
        "aura-2-andromeda-en"
    )
    done = warm(
        "-b", "deepgram", "--voice", "aura-2-andromeda-en",
        "-O", f"base_url={deepgram_server.base_url}", "-r", "24000",
        "--cache-dir", str(tmp_path),
        stdin="We are open until six.\n",
        env={"DEEPGRAM_API_KEY": deepgram_server.api_key},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    requests = deepgram_server.request_count
    pcm = await first_pcm(cached, "We are open until six.")
    assert deepgram_server.request_count == requests
    freq = dominant_frequency(pcm_to_array(pcm, 1)[0], 24000)
    assert freq == pytest.approx(voice_frequency("aura-2-andromeda-en"), abs=5)
    await cached.aclose()


def test_livekit_cartesia_settings_map_onto_the_backend_options() -> None:
    from livekit.plugins import cartesia

    plugin = cartesia.TTS(
        api_key="k", model="sonic-3", voice=CARTESIA_VOICE, speed=1.2, emotion=["calm"]
    )
    assert livekit_identity(plugin) == get_backend(
        "cartesia",
        voice=CARTESIA_VOICE,
        options={"model": "sonic-3", "language": "en", "speed": "1.2", "emotion": "calm"},
    ).identity(CARTESIA_VOICE)


async def test_pipecat_cartesia_and_deepgram_services_map_onto_the_backends() -> None:
    import aiohttp
    from pipecat.services.cartesia.tts import CartesiaHttpTTSService, GenerationConfig
    from pipecat.services.deepgram.tts import DeepgramHttpTTSService

    cartesia = CartesiaHttpTTSService(
        api_key="k",
        settings=CartesiaHttpTTSService.Settings(
            voice=CARTESIA_VOICE,
            model="sonic-3",
            generation_config=GenerationConfig(speed=0.9),
        ),
    )
    language = str(cartesia._settings.language)
    options = {"model": "sonic-3", "speed": "0.9", "language": language}
    assert pipecat_identity(cartesia) == get_backend(
        "cartesia", voice=CARTESIA_VOICE, options=options
    ).identity(CARTESIA_VOICE)
    async with aiohttp.ClientSession() as session:
        deepgram = DeepgramHttpTTSService(
            api_key="k",
            aiohttp_session=session,
            settings=DeepgramHttpTTSService.Settings(voice="aura-2-helena-en"),
        )
        assert pipecat_identity(deepgram) == get_backend(
            "deepgram", voice="aura-2-helena-en"
        ).identity("aura-2-helena-en")
