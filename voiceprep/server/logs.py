"""The server's log promises: a request's text never appears, and a cut stream is one line.

- `Redactor` is a logging filter for the handlers `serve` writes to. The library names
  the phrase in its messages (`could not store '<phrase>'`: right for `warm`, whose user
  typed it); prompts sent to a server can be personal, so any warning mentioning one of
  the last REMEMBERED phrases the server synthesized (or tried to) has it replaced by
  `<input>` (the cache writes after the audio was sent: the phrase is no longer in
  flight when its write fails).
- `quiet_uvicorn` drops uvicorn's own line for a response we end on purpose without its
  terminating chunk (an upstream that died mid-stream) and for a request h11 refused:
  the server logs its own line for each.
"""

from __future__ import annotations

import logging
from collections import OrderedDict

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
