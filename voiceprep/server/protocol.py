"""uvicorn's h11 protocol, answering what h11 refuses with the status h11 names.

h11 refuses a request whose head exceeds MAX_HEAD_BYTES with `error_status_hint=431`
("Request Header Fields Too Large"); uvicorn answers every refusal 400 and closes at
once, and a client still sending its flood of headers then gets a reset instead of the
answer. Here the answer carries h11's status in OpenAI's error shape, and the connection
lingers (our side shut for writing, the rest of the flood read and dropped, at most
LINGER_SECONDS) so the client can read it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

MAX_HEAD_BYTES = 16 * 1024  # h11's default: request line and headers together
LINGER_SECONDS = 2.0

log = logging.getLogger("voiceprep.server")

_REASONS = {400: "the request is not valid HTTP", 431: "the request's headers are too large"}
_PHRASES = {400: "Bad Request", 431: "Request Header Fields Too Large"}


class Protocol(H11Protocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._refusal = 400
        next_event = self.conn.next_event

        def noted() -> Any:
            try:
                return next_event()
            except h11.RemoteProtocolError as exc:
                self._refusal = exc.error_status_hint
                raise

        self.conn.next_event = noted  # type: ignore[method-assign]
        self._lingering = False

    def send_400_response(self, msg: str) -> None:
        status = self._refusal if self._refusal in _REASONS else 400
        message = _REASONS[status]
        log.warning("refused a request from %s: %d %s", self._peer(), status, message)
        body = json.dumps(
            {
                "error": {
                    "message": message,
                    "type": "invalid_request_error",
                    "param": None,
                    "code": "header_fields_too_large" if status == 431 else "bad_request",
                }
            }
        ).encode()
        head = (
            f"HTTP/1.1 {status} {_PHRASES[status]}"
            f"\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
            "connection: close\r\n\r\n"
        ).encode()
        self.transport.write(head + body)
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self._lingering = True
            asyncio.get_running_loop().call_later(LINGER_SECONDS, self.transport.close)
        else:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            return  # the rest of a refused request: read and dropped
        super().data_received(data)

    def _peer(self) -> str:
        peer = self.transport.get_extra_info("peername")
        return f"{peer[0]}:{peer[1]}" if peer else "a client"
