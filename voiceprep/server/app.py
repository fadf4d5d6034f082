"""The ASGI app: OpenAI's speech routes over a SpeechService.

Routes: `POST /v1/audio/speech`, `GET /v1/models`, `GET /healthz`, `GET /metrics`, and
the review page of the cache, `GET /review` (review.py) with its players' audio,
`GET /review/audio/<key>.wav`. Every error, 404 and 405 included, is OpenAI's
`{"error": {...}}` shape; nothing a client sends yields a traceback. A thin ASGI layer in
front checks the token (`Authorization: Bearer <token>`, or HTTP Basic with the token as
the password, which a browser can send), counts and logs each request (one line: method,
path, status, hit/miss, ms) and answers the speech route itself (the hot path: no routing,
no Request object); Starlette has the others.

The speech route:
- reads the body within BODY_TIMEOUT seconds (else 408) and at most MAX_BODY_BYTES (413);
  a client hanging up mid-body is logged as 499 (nginx's "client closed request"), never
  a traceback; a body still arriving when the server begins to stop is answered 503;
- answers a hit with the whole body (Content-Length), a miss as it is produced (chunked),
  and `stream_format: "sse"` as OpenAI's events;
- when the synthesis fails mid-stream, ends the response without its terminating chunk
  (uvicorn closes the connection): no client can take the cut audio for a whole phrase.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from voiceprep.cache.entries import is_key
from voiceprep.errors import CacheError
from voiceprep.review import CachePage
from voiceprep.server.errors import SERVER_ERROR, ApiError
from voiceprep.server.metrics import Metrics
from voiceprep.server.protocol import MAX_HEAD_BYTES
from voiceprep.server.request import SpeechRequest, parse_speech_request
from voiceprep.server.service import SpeechService, cache_failure
from voiceprep.server.sse import as_sse
from voiceprep.server.voices import VoiceMap

MAX_BODY_BYTES = 64 * 1024  # 4096 characters of UTF-8 and the JSON around them fit easily
BODY_TIMEOUT = 10.0  # seconds to receive a whole body (64 KiB at most) once headers are in
SSE_EVENT_BYTES = 32 * 1024  # audio per `speech.audio.delta` event of a hit
MODELS = ("gpt-4o-mini-tts", "tts-1", "tts-1-hd")
_BASIC_CHALLENGE = 'Basic realm="voiceprep", charset="UTF-8"'
SPEECH = "/v1/audio/speech"
CLIENT_GONE = 499  # nginx's status for a client that closed the connection first
REMEMBERED_BODIES = 4096  # parsed request bodies kept (cleared when full)
REMEMBERED_BODY_BYTES = 2048

access_log = logging.getLogger("voiceprep.server.access")
log = logging.getLogger("voiceprep.server")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class _ClientGone(Exception):
    pass


def create_app(
    service: SpeechService,
    voices: VoiceMap,
    *,
    token: str | None = None,
    metrics: Metrics | None = None,
) -> ASGIApp:
    """The ASGI app. `metrics` should be the one the service counts into."""
    metrics = metrics or Metrics()

    async def models(request: Request) -> Response:
        data = [
            {"id": name, "object": "model", "created": 0, "owned_by": "voiceprep"}
            for name in MODELS
        ]
        return JSONResponse({"object": "list", "data": data})

    async def healthz(request: Request) -> Response:
        reason = service.unavailable_reason()
        if reason is None:
            return JSONResponse({"status": "ok"})
        return JSONResponse({"status": "unavailable", "reason": reason}, status_code=503)

    async def metrics_route(request: Request) -> Response:
        return Response(metrics.render(), media_type=metrics.content_type)

    disk = service.cache.disk
    review = CachePage(disk) if disk is not None else None

    async def review_page(request: Request) -> Response:
        if review is None:
            raise ApiError(404, "this server has no cache directory to review", code="not_found")
        try:
            html = await asyncio.to_thread(review.html)  # measuring new entries takes a while
        except CacheError as exc:  # a damaged index: 503 naming the repair, as for speech
            raise cache_failure(service.cache, exc) from None
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    async def review_audio(request: Request) -> Response:
        key = request.path_params["key"]
        blob = None
        if review is not None and is_key(key):
            blob = await asyncio.to_thread(review.audio, key)
        if blob is None:
            raise ApiError(404, f"not cached: {key[:64]}", code="not_cached")
        return Response(blob, media_type="audio/wav", headers={"Cache-Control": "no-store"})

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        service.prepare()
        try:
            yield
        finally:
            await service.drain()
            await service.aclose_backend()
            service.close()

    def api_errors(route: Callable[[Request], Awaitable[Response]]) -> Any:
        async def wrapped(request: Request) -> Response:
            try:
                return await route(request)
            except ApiError as exc:
                return _error_response(exc)
            except Exception:
                log.exception("internal error answering %s %s", request.method, request.url.path)
                return _error_response(
                    ApiError(500, "internal server error", type=SERVER_ERROR, code="internal")
                )

        return wrapped

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        message = {404: "no such route", 405: "method not allowed"}.get(
            exc.status_code, str(exc.detail)
        )
        return _error_response(
            ApiError(exc.status_code, f"{message}: {request.method} {request.url.path}")
        )

    starlette = Starlette(
        routes=[
            Route("/v1/models", api_errors(models), methods=["GET"]),
            Route("/healthz", api_errors(healthz), methods=["GET"]),
            Route("/metrics", api_errors(metrics_route), methods=["GET"]),
            Route("/review", api_errors(review_page), methods=["GET"]),
            Route("/review/audio/{key}.wav", api_errors(review_audio), methods=["GET"]),
        ],
        exception_handlers={HTTPException: http_error},
        lifespan=lifespan,
    )
    return App(starlette, service, voices, token=token, metrics=metrics)


def _too_large() -> ApiError:
    return ApiError(413, f"the body is over {MAX_BODY_BYTES} bytes", code="body_too_large")


def _error_response(exc: ApiError) -> Response:
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers())


async def _send_error(exc: ApiError, send: Send) -> None:
    body = json.dumps(exc.body()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    headers += [(k.lower().encode(), v.encode()) for k, v in exc.headers().items()]
    await send({"type": "http.response.start", "status": exc.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _head_bytes(scope: Scope) -> int:
    """The request's headers, counted as h11 counts an incomplete head (which it refuses
    past MAX_HEAD_BYTES; a head that arrived in one read is only counted here)."""
    return sum(len(name) + len(value) + 4 for name, value in scope["headers"])


async def _pieces(body: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


class App:
    """Bearer token, request counting and the access log around the routes; the speech
    route itself. `begin_shutdown()` answers the bodies still arriving with 503."""

    def __init__(
        self,
        app: ASGIApp,
        service: SpeechService,
        voices: VoiceMap,
        *,
        token: str | None,
        metrics: Metrics,
    ) -> None:
        self.app = app
        self.service = service
        self.voices = voices
        self._token = token.encode() if token else None
        self.metrics = metrics
        self._counters: dict[tuple[str, int], Any] = {}  # the labelled children, bound once
        self._latencies: dict[str, Any] = {}
        self._reading: set[asyncio.Task[Any]] = set()  # requests still receiving a body
        self._requests: dict[bytes, SpeechRequest] = {}  # recent bodies, parsed
        self._id_prefix = secrets.token_hex(6).encode()  # per process; then a counter
        self._served = 0
        self._stopping = False

    def _parsed(self, body: bytes) -> SpeechRequest:
        """The request a body means. An agent sends the same bodies again and again (its
        prompts): the ones seen recently are not parsed and validated again."""
        request = self._requests.get(body)
        if request is None:
            request = parse_speech_request(body, self.voices)  # ApiError: never remembered
            if len(body) <= REMEMBERED_BODY_BYTES:
                if len(self._requests) >= REMEMBERED_BODIES:
                    self._requests.clear()
                self._requests[body] = request
        return request

    def _request_id(self) -> bytes:
        self._served += 1
        return b"%s%x" % (self._id_prefix, self._served)

    def begin_shutdown(self) -> None:
        """Called on the event loop when the server starts to stop."""
        self._stopping = True
        for task in self._reading:
            task.cancel()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}

        async def send_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            if _head_bytes(scope) > MAX_HEAD_BYTES:
                error = ApiError(
                    431, "the request's headers are too large", code="header_fields_too_large"
                )
                await _send_error(error, send_status)
            elif self._token is not None and not self._authorized(scope):
                error = ApiError(
                    401,
                    "missing or wrong bearer token (Authorization: Bearer ...)",
                    code="invalid_api_key",
                )
                if scope["path"].startswith("/review"):  # a browser asks for the token
                    response = _error_response(error)
                    response.headers["WWW-Authenticate"] = _BASIC_CHALLENGE
                    await response(scope, receive, send_status)
                else:
                    await _send_error(error, send_status)
            elif scope["path"] == SPEECH and scope["method"] == "POST":
                await self._speech(scope, receive, send_status)
            elif scope["path"] == SPEECH:
                error = ApiError(405, f"method not allowed: {scope['method']} {SPEECH}")
                await _send_error(error, send_status)
            else:
                await self.app(scope, receive, send_status)
        finally:
            self._record(scope, scope.get("voiceprep.status", status["code"]), started)

    async def _speech(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            body = await self._body(scope, receive)
            request = self._parsed(body)
            speech = await self.service.speak(request)
        except _ClientGone:
            scope["voiceprep.status"] = CLIENT_GONE
            return
        except ApiError as exc:
            await _send_error(exc, send)
            return
        except Exception as exc:  # one line, never the request's text
            log.error("internal error answering POST %s: %s", SPEECH, type(exc).__name__)
            error = ApiError(500, "internal server error", type=SERVER_ERROR, code="internal")
            await _send_error(error, send)
            return
        scope["voiceprep.cache"] = "hit" if speech.cached else "miss"
        headers = [(b"x-request-id", self._request_id())]  # OpenAI's clients show it
        chunks = speech.chunks
        if request.stream_format == "sse":
            headers += [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
            if chunks is None:
                assert speech.body is not None
                chunks = _pieces(speech.body, SSE_EVENT_BYTES)
            chunks = as_sse(chunks, self.service.words_of(request))
        else:
            headers.append((b"content-type", speech.content_type.encode()))
            if chunks is None:
                assert speech.body is not None
                headers.append((b"content-length", b"%d" % len(speech.body)))
                await send({"type": "http.response.start", "status": 200, "headers": headers})
                await send({"type": "http.response.body", "body": speech.body})
                return
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        try:
            async for chunk in chunks:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except ApiError as exc:
            # Returning without the last message: uvicorn closes the connection, and the
            # chunked body lacks its terminating chunk (what no client takes as complete).
            log.warning("POST %s: the stream was cut short: %s", SPEECH, exc.message)
            scope["voiceprep.cache"] = "cut"
            return
        await send({"type": "http.response.body", "body": b""})

    async def _body(self, scope: Scope, receive: Receive) -> bytes:
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > MAX_BODY_BYTES:
                raise _too_large()
        task = asyncio.current_task()
        assert task is not None
        if self._stopping:
            raise _shutting_down()
        self._reading.add(task)
        body = b""
        try:
            async with asyncio.timeout(BODY_TIMEOUT):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        raise _ClientGone
                    body += message.get("body", b"")
                    if len(body) > MAX_BODY_BYTES:
                        raise _too_large()
                    if not message.get("more_body"):
                        return body
        except TimeoutError:
            raise ApiError(
                408, f"the body did not arrive within {BODY_TIMEOUT:g} s", code="body_timeout"
            ) from None
        except asyncio.CancelledError:
            if not self._stopping:
                raise
            task.uncancel()
            raise _shutting_down() from None
        finally:
            self._reading.discard(task)

    def _authorized(self, scope: Scope) -> bool:
        """Bearer <token>, or Basic with the token as the password (any user name)."""
        assert self._token is not None
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, given = value.partition(b" ")
                scheme, given = scheme.lower(), given.strip()
                if scheme == b"basic":
                    try:
                        given = base64.b64decode(given, validate=True).partition(b":")[2]
                    except (binascii.Error, ValueError):
                        return False
                elif scheme != b"bearer":
                    return False
                return hmac.compare_digest(given, self._token)
        return False

    def _record(self, scope: Scope, status: int, started: float) -> None:
        seconds = time.perf_counter() - started
        path = scope["path"]
        route = path if path in _ROUTES else "other"
        if route == "other":  # what a client typed: printable and short in the log
            path = "".join(c if c.isprintable() else "?" for c in path[:200])
        cache = scope.get("voiceprep.cache", "-")
        counter = self._counters.get((route, status))
        if counter is None:
            counter = self._counters[(route, status)] = self.metrics.requests.labels(
                route, str(status)
            )
        counter.inc()
        if route == SPEECH and status == 200:
            latency = self._latencies.get(cache)
            if latency is None:
                latency = self._latencies[cache] = self.metrics.latency.labels(cache)
            latency.observe(seconds)
        entry = {
            "method": scope["method"],
            "path": path,
            "status": status,
            "cache": cache,
            "ms": round(seconds * 1000, 2),
        }
        access_log.info(
            "%s %s %d %s %.1f ms",
            entry["method"],
            path,
            status,
            cache,
            seconds * 1000,
            extra={"request": entry},
        )


def _shutting_down() -> ApiError:
    return ApiError(503, "the server is shutting down", type=SERVER_ERROR, code="shutting_down")


_ROUTES = frozenset({SPEECH, "/v1/models", "/healthz", "/metrics", "/review"})
