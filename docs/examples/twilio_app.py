"""Play a cached prompt into a Twilio Media Streams call from a Starlette app.

Point a TwiML `<Connect><Stream url="wss://your-host/media"/></Connect>` at this app.
When the call's stream starts, it plays the prompt named by the stream's custom
parameter `prompt` (or a greeting) from the voiceprep cache, then sends a mark; when
Twilio says the mark was reached it hangs up the stream. The caller's audio arrives as
16 kHz PCM in `on_caller_audio`, the place to feed speech-to-text.

    voiceprep warm prompts.txt --cache-dir prompts-cache      # beforehand, e.g. in CI
    VOICEPREP_CACHE_DIR=prompts-cache uvicorn twilio_app:app --port 8080

Settings come from the environment: VOICEPREP_BACKEND (default piper), VOICEPREP_VOICE,
VOICEPREP_RATE (the rate the prompts were warmed at, default 24000) and
VOICEPREP_CACHE_DIR. A prompt missing from the cache is synthesized and stored.
"""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

from voiceprep import TTSAudioCache
from voiceprep.backends import get_backend
from voiceprep.integrations.twilio import CallerAudio, media_messages

GREETING = "Thanks for calling. How can I help?"

cache = TTSAudioCache(
    get_backend(
        os.environ.get("VOICEPREP_BACKEND", "piper"), voice=os.environ.get("VOICEPREP_VOICE")
    ),
    directory=os.environ.get("VOICEPREP_CACHE_DIR"),
    rate=int(os.environ.get("VOICEPREP_RATE", "24000")),
)


def on_caller_audio(pcm: bytes) -> None:
    """About 20 ms of the caller's voice, s16le mono 16 kHz: hand it to speech-to-text."""


async def media(websocket: WebSocket) -> None:
    await websocket.accept()
    caller = CallerAudio(16000)  # the caller's voice as one 16 kHz signal
    while True:
        message = await websocket.receive_json()
        event = message.get("event")
        if event == "start":
            sid = message["start"]["streamSid"]
            prompt = message["start"].get("customParameters", {}).get("prompt", GREETING)
            pcm = await cache.fetch(prompt)
            for outbound in media_messages(
                pcm, sample_rate=cache.rate, stream_sid=sid, mark="prompt"
            ):
                await websocket.send_json(outbound)
        elif event == "media":
            on_caller_audio(caller.feed(message))
        elif event in ("mark", "stop"):  # the prompt has played, or the call ended
            break
    await websocket.close()


app = Starlette(routes=[WebSocketRoute("/media", media)])
