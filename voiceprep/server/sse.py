"""OpenAI's `stream_format: "sse"`: the audio as server-sent events.

`data: {"type": "speech.audio.delta", "audio": "<base64>"}` for each chunk, then, when
word timestamps were asked for and the audio has them,
`data: {"type": "speech.timestamps.delta", "words": [{"word", "start", "end"}, ...]}`
(seconds from the start of the audio), then
`data: {"type": "speech.audio.done", "usage": {...}}`; a stream cut short (the synthesis
failed) ends without the done event.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Callable

from voiceprep.timings import Words, words_to_json


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


def timestamps_delta(words: Words) -> bytes:
    spoken = [
        {"word": w["text"], "start": w["start"], "end": w["end"]} for w in words_to_json(words)
    ]
    return sse_event({"type": "speech.timestamps.delta", "words": spoken})


async def as_sse(
    chunks: AsyncIterator[bytes], words: Callable[[], Words | None] | None = None
) -> AsyncIterator[bytes]:
    """The audio as OpenAI's `stream_format: "sse"`: deltas, the words' timings when
    `words` gives them (asked once the audio is complete: a miss's are known then), then
    done (never after a failure: the stream is cut short instead)."""
    async for chunk in chunks:
        yield audio_delta(chunk)
    timed = words() if words is not None else None
    if timed:
        yield timestamps_delta(timed)
    yield AUDIO_DONE
