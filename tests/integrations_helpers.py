"""What the agent-integration tests and benchmark share: counting TTSes of the real
frameworks (LiveKit `tts.TTS`, Pipecat `TTSService`) and `voiceprep warm` in a child
process (the same command CI runs to fill the cache)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys
from collections.abc import AsyncGenerator, Mapping

from audiogen import sine_pcm


def text_frequency(text: str) -> float:
    """The pitch the counting TTSes speak `text` with: each text its own tone."""
    return 300.0 + 20.0 * (hashlib.sha256(text.encode()).digest()[0] % 20)


def tone_for(text: str, rate: int, channels: int = 1) -> bytes:
    return sine_pcm(text_frequency(text), 0.4, rate, channels)


def warm(
    *args: str, stdin: str, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`voiceprep warm - ARGS` as a child process, phrases on stdin, no VOICEPREP_* leaking in."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("VOICEPREP_")}
    return subprocess.run(
        [sys.executable, "-m", "voiceprep", "warm", "-", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env={**clean, **(env or {})},
        timeout=120,
    )


# --- LiveKit -------------------------------------------------------------------------------


def livekit_counting_tts(sample_rate: int = 24000, num_channels: int = 1):  # type: ignore[no-untyped-def]
    """A LiveKit TTS recording every synthesize() (`.calls`) and speaking a tone per text.

    `.delay` is slept between its four chunks (and before the first when `.latency`);
    `.fail = True` raises after the second chunk.
    """
    from livekit.agents import APIConnectionError, tts
    from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS, APIConnectOptions

    class CountingStream(tts.ChunkedStream):
        async def _run(self, output_emitter: tts.AudioEmitter) -> None:
            owner = self._tts
            output_emitter.initialize(
                request_id="counting",
                sample_rate=owner.sample_rate,
                num_channels=owner.num_channels,
                mime_type="audio/pcm",
            )
            await asyncio.sleep(owner.latency)
            pcm = owner.pcm_for(self._input_text)
            quarter = len(pcm) // 4 // (2 * owner.num_channels) * (2 * owner.num_channels)
            for i in range(4):
                output_emitter.push(pcm[i * quarter : (i + 1) * quarter if i < 3 else len(pcm)])
                if owner.fail and i == 1:
                    raise APIConnectionError("connection dropped mid-synthesis")
                await asyncio.sleep(owner.delay)
            output_emitter.flush()

    class CountingTTS(tts.TTS):
        def __init__(self) -> None:
            super().__init__(
                capabilities=tts.TTSCapabilities(streaming=False),
                sample_rate=sample_rate,
                num_channels=num_channels,
            )
            self.calls: list[str] = []
            self.delay = 0.0
            self.latency = 0.0
            self.fail = False

        @property
        def model(self) -> str:
            return "tone-1"

        @property
        def provider(self) -> str:
            return "counting"

        def synthesize(
            self, text: str, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
        ) -> tts.ChunkedStream:
            self.calls.append(text)
            return CountingStream(tts=self, input_text=text, conn_options=conn_options)

        def pcm_for(self, text: str) -> bytes:
            return tone_for(text, self.sample_rate, self.num_channels)

    return CountingTTS()


# --- Pipecat -------------------------------------------------------------------------------


def pipecat_counting_service(sample_rate: int | None = 24000, **kwargs: object):  # type: ignore[no-untyped-def]
    """A Pipecat HTTP-style TTSService (audio yielded from run_tts) recording its calls.

    Speaks a tone per text in four chunks, sleeping `.delay` between them (and `.latency`
    before the first); `.fail = True` yields an ErrorFrame after the second chunk.
    """
    from pipecat.frames.frames import ErrorFrame, Frame, TTSAudioRawFrame
    from pipecat.services.settings import TTSSettings
    from pipecat.services.tts_service import TTSService

    class CountingTTSService(TTSService):
        def __init__(self, **more: object) -> None:
            super().__init__(
                push_start_frame=True,
                push_stop_frames=True,
                sample_rate=sample_rate,
                settings=TTSSettings(model="tone-1", voice="tone", language=None),
                **more,
            )
            self.calls: list[str] = []
            self.delay = 0.0
            self.latency = 0.0
            self.fail = False
            self.chunk_started = asyncio.Event()
            self.run_ended = asyncio.Event()  # run_tts finished, whole or cancelled

        def can_generate_metrics(self) -> bool:
            return True

        def pcm_for(self, text: str) -> bytes:
            return tone_for(text, self.sample_rate)

        async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[Frame | None, None]:
            self.calls.append(text)
            try:
                await asyncio.sleep(self.latency)
                pcm = self.pcm_for(text)
                quarter = len(pcm) // 4 // 2 * 2
                for i in range(4):
                    chunk = pcm[i * quarter : (i + 1) * quarter if i < 3 else len(pcm)]
                    await self.stop_ttfb_metrics()
                    yield TTSAudioRawFrame(chunk, self.sample_rate, 1, context_id=context_id)
                    self.chunk_started.set()
                    if self.fail and i == 1:
                        yield ErrorFrame(error="connection dropped mid-synthesis")
                        return
                    await asyncio.sleep(self.delay)
            finally:
                self.run_ended.set()

    return CountingTTSService(**kwargs)


def pipecat_websocket_style_service(sample_rate: int = 24000):  # type: ignore[no-untyped-def]
    """A Pipecat service shaped like the websocket ones (Cartesia, ElevenLabs WS): run_tts
    sends the text and yields None; a receive task appends the audio to the audio context
    later and closes the context when the provider says it is done."""
    from pipecat.frames.frames import Frame, TTSAudioRawFrame
    from pipecat.services.settings import TTSSettings
    from pipecat.services.tts_service import TTSService

    class WebsocketStyleService(TTSService):
        def __init__(self) -> None:
            super().__init__(
                push_start_frame=True,
                push_stop_frames=True,
                sample_rate=sample_rate,
                settings=TTSSettings(model="ws-tone", voice="tone", language=None),
            )
            self.calls: list[str] = []
            self.latency = 0.05
            self._receivers: set[asyncio.Task[None]] = set()

        def pcm_for(self, text: str) -> bytes:
            return tone_for(text, self.sample_rate)

        async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[Frame | None, None]:
            self.calls.append(text)
            task = asyncio.create_task(self._receive(text, context_id))
            self._receivers.add(task)
            task.add_done_callback(self._receivers.discard)
            yield None

        async def _receive(self, text: str, context_id: str) -> None:
            await asyncio.sleep(self.latency)
            pcm = self.pcm_for(text)
            for start in range(0, len(pcm), 4800):
                frame = TTSAudioRawFrame(
                    pcm[start : start + 4800], self.sample_rate, 1, context_id=context_id
                )
                await self.append_to_audio_context(context_id, frame)
                await asyncio.sleep(0.01)
            await self.remove_audio_context(context_id)  # the provider's "done"

    return WebsocketStyleService()
