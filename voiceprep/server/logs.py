"""The server's log promises: a request's text never appears, and a cut stream is one line.

- `Redactor` is a logging filter for the handlers `serve` writes to. The library names
  the phrase in its messages (`could not store '<phrase>'`: right for `warm`, whose user
  typed it); prompts sent to a server can be personal, so any warning mentioning one of
  the last REMEMBERED phrases the server synthesized (or tried to) has it replaced by
  `<input>` (the cache writes after the audio was sent: the phrase is no longer in
  flight when its write fails).
- `batch` makes the lines written during one turn of the event loop one write.
- `quiet_uvicorn` drops uvicorn's own line for a response we end on purpose without its
  terminating chunk (an upstream that died mid-stream) and for a request h11 refused:
  the server logs its own line for each.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from typing import TextIO

HIDDEN = "<input>"
REMEMBERED = 4096
# uvicorn's lines for what the server logs itself, better: a stream cut on purpose, and a
# request h11 refused (voiceprep.server.protocol names the status and the peer).
_OURS = frozenset(
    {"ASGI callable returned without completing response.", "Invalid HTTP request received."}
)


class Redactor(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self._texts: OrderedDict[str, None] = OrderedDict()

    def hide(self, text: str) -> None:
        self._texts[text] = None
        self._texts.move_to_end(text)
        if len(self._texts) > REMEMBERED:
            self._texts.popitem(last=False)

    def scrub(self, message: str, *texts: str) -> str:
        for text in (*texts, *reversed(self._texts)):
            if text and (text in message or repr(text) in message):
                message = message.replace(repr(text), HIDDEN).replace(text, HIDDEN)
        return message

    def filter(self, record: logging.LogRecord) -> bool:
        if self._texts and record.levelno >= logging.WARNING:
            message = record.getMessage()
            scrubbed = self.scrub(message)
            if scrubbed != message:
                record.msg, record.args = scrubbed, ()
            if record.exc_info and not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            if record.exc_text:
                record.exc_text = self.scrub(record.exc_text)
        return True


def _not_ours(record: logging.LogRecord) -> bool:
    return record.msg not in _OURS


def quiet_uvicorn() -> None:
    logger = logging.getLogger("uvicorn.error")
    if _not_ours not in logger.filters:
        logger.addFilter(_not_ours)


def install(redactor: Redactor) -> None:
    """Put `redactor` on every handler the server's records can reach."""
    for name in ("voiceprep", "uvicorn", ""):
        for handler in logging.getLogger(name).handlers:
            if redactor not in handler.filters:
                handler.addFilter(redactor)


def lighten() -> None:
    """Skip what no server line shows, on every record: the caller's file and line (a
    stack walk per record), the thread, process and multiprocessing names. The logging
    HOWTO's "Optimization" section names these switches; with one access line per
    request they were a third of a hit's cost."""
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


class BatchedStream:
    """A text stream whose writes made during one turn of the event loop leave in one
    write: under load, many access lines per system call instead of one each. Outside a
    running loop (start-up, shutdown) it writes through."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._lines: list[str] = []

    def write(self, text: str) -> int:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush_now()
            self.stream.write(text)
            self.stream.flush()
            return len(text)
        if not self._lines:
            loop.call_soon(self.flush_now)
        self._lines.append(text)
        return len(text)

    def flush(self) -> None:
        """Called by the handler after every record: the batch leaves at the loop's turn."""

    def flush_now(self) -> None:
        if self._lines:
            text = "".join(self._lines)
            self._lines.clear()
            self.stream.write(text)
            self.stream.flush()


def batch(streams: tuple[object, ...]) -> list[BatchedStream]:
    """Put a BatchedStream between the server's log handlers and `streams` (stderr)."""
    batched = []
    for name in ("voiceprep", "uvicorn", ""):
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream in streams:
                wrapper = BatchedStream(handler.stream)
                handler.setStream(wrapper)
                batched.append(wrapper)
    return batched
