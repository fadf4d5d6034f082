"""Broadcast: one producer's chunks, read by any number of readers, each from the start.

A miss is synthesized once however many requests ask for it: the producer (a task of the
SpeechService, never a request) appends chunks as they come; every reader gets all of
them from the first, then the rest live, then either the end or the producer's error.
A reader that stops early (its client hung up) changes nothing for the producer.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator


class Broadcast:
    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.done = False
        self.error: BaseException | None = None
        self._changed = asyncio.Event()

    def append(self, chunk: bytes) -> None:
        if chunk:
            self.chunks.append(chunk)
            self._wake()

    def finish(self, error: BaseException | None = None) -> None:
        self.done = True
        self.error = error
        self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def started(self) -> None:
        """Wait for the first chunk or the end; raises the producer's error if it failed
        before producing anything (so the request can still answer with an error status)."""
        while not self.chunks and not self.done:
            await self._changed.wait()
        if not self.chunks and self.error is not None:
            raise self.error

    async def read(self) -> AsyncIterator[bytes]:
        """Every chunk from the first; raises the producer's error where it stopped."""
        index = 0
        while True:
            while index < len(self.chunks):
                yield self.chunks[index]
                index += 1
            if self.done:
                if self.error is not None:
                    raise self.error
                return
            await self._changed.wait()

    def body(self) -> bytes:
        return b"".join(self.chunks)


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
