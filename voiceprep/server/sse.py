"""OpenAI's `stream_format: "sse"`: the audio as server-sent events.

`data: {"type": "speech.audio.delta", "audio": "<base64>"}` for each chunk, then
`data: {"type": "speech.audio.done", "usage": {...}}`; a stream cut short (the synthesis
failed) ends without the done event.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator


def sse_event(payload: dict[str, object]) -> bytes:
    """One server-sent event as OpenAI frames them: `data: {json}` and a blank line."""
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


def audio_delta(chunk: bytes) -> bytes:
    return sse_event({"type": "speech.audio.delta", "audio": base64.b64encode(chunk).decode()})


# voiceprep bills nothing: no tokens are counted for a hit or a miss.
AUDIO_DONE = sse_event(
    {
        "type": "speech.audio.done",
        "usage": {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0},
    }
)


async def as_sse(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The audio as OpenAI's `stream_format: "sse"`: deltas, then done (never after a
    failure: the stream is cut short instead)."""
    async for chunk in chunks:
        yield audio_delta(chunk)
    yield AUDIO_DONE
