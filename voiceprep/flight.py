"""A fill in flight, and the memory tier: what the fill path (voiceprep.fill) hands out.

`Flight`: one synthesis of one key in this process, its chunks as they arrive, then its
audio. Any number of consumers follow it, each from the first chunk of the current
attempt (a consumer that joins late hears the phrase from its first sample, then the rest
live); whoever produces it finishes or fails it, and consumers leaving never cancel it.

`Memory`: the LRU of handed-out audio by key (the seed's in-memory cache).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator

from voiceprep.errors import BackendError
from voiceprep.timings import Words


class Flight:
    """One fill of one key in this process: its chunks as they arrive, then its audio.

    Consumers `follow()` it (each from the first chunk of the current attempt) or await
    `audio()`. Whoever starts the flight finishes or fails it; consumers leaving never
    cancel it.
    """

    def __init__(self) -> None:
        self.tag: str | None = None
        self.attempt = 0
        self.chunks: list[bytes] = []
        self.words: Words | None = None  # the current attempt's word timings, if given
        self.pcm: bytes | None = None  # the audio handed out, once complete
        self.error: BaseException | None = None
        self.live = False  # a chunk reached a streaming consumer: no retry after that
        self.task: asyncio.Task[bytes] | None = None
        self.loop = asyncio.get_running_loop()  # consumers on another loop start their own
        self._wake = asyncio.Event()

    @property
    def settled(self) -> bool:
        return self.pcm is not None or self.error is not None

    def begin(self, tag: str | None = None) -> None:
        """A new attempt: what was published before is stale."""
        self.attempt += 1
        self.tag = tag
        self.chunks = []
        self.words = None
        self._notify()

    def add(self, chunk: bytes) -> None:
        self.chunks.append(chunk)
        self._notify()

    def finish(self, pcm: bytes) -> None:
        if not self.chunks:  # audio from elsewhere (disk, remote, another process)
            self.chunks.append(pcm)
        self.pcm = pcm
        self._notify()

    def fail(self, error: BaseException) -> None:
        self.error = error
        self._notify()

    def _notify(self) -> None:
        self._wake.set()
        self._wake = asyncio.Event()

    async def audio(self) -> bytes:
        """The whole audio once complete (raises the flight's error)."""
        while True:
            if self.error is not None:
                raise self.error
            if self.pcm is not None:
                return self.pcm
            await self._wake.wait()

    async def follow(self, *, restarts: bool = False) -> AsyncIterator[tuple[str | None, bytes]]:
        """(attempt tag, chunk) from the current attempt's first chunk, live until the end.

        With `restarts`, a new attempt is followed from its start (the consumer tells the
        attempts apart by tag); without, a new attempt after some chunks raises.
        """
        attempt, index, handed = self.attempt, 0, False
        while True:
            if self.attempt != attempt:
                if handed and not restarts:
                    raise BackendError("the synthesis restarted after audio was handed out")
                attempt, index = self.attempt, 0
            if index < len(self.chunks):
                chunk = self.chunks[index]
                index += 1
                handed = self.live = True
                yield self.tag, chunk
                continue
            if self.error is not None:
                raise self.error
            if self.pcm is not None:
                return
            await self._wake.wait()


class Memory:
    """An LRU of handed-out audio by key (the seed's in-memory cache)."""

    def __init__(self, max_entries: int) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self._items: OrderedDict[str, bytes] = OrderedDict()

    def get(self, key: str) -> bytes | None:
        pcm = self._items.get(key)
        if pcm is not None:
            self._items.move_to_end(key)
        return pcm

    def put(self, key: str, pcm: bytes) -> None:
        self._items[key] = pcm
        self._items.move_to_end(key)
        while len(self._items) > self.max_entries:
            self._items.popitem(last=False)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        self._items.clear()
