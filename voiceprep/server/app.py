"""The Starlette app: OpenAI's speech routes over a SpeechService.

Routes: `POST /v1/audio/speech`, `GET /v1/models`, `GET /healthz`, `GET /metrics`. Every
error, 404 and 405 included, is OpenAI's `{"error": {...}}` shape; nothing a client sends
yields a traceback. A thin ASGI layer in front of the routes checks the bearer token,
counts and logs each request (one line: method, path, status, hit/miss, ms).
"""

from __future__ import annotations

import hmac
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from voiceprep.server.errors import SERVER_ERROR, ApiError
from voiceprep.server.metrics import Metrics
from voiceprep.server.request import parse_speech_request
from voiceprep.server.service import SpeechService
from voiceprep.server.voices import VoiceMap

MAX_BODY_BYTES = 64 * 1024  # 4096 characters of UTF-8 and the JSON around them fit easily
MODELS = ("gpt-4o-mini-tts", "tts-1", "tts-1-hd")

access_log = logging.getLogger("voiceprep.server.access")
log = logging.getLogger("voiceprep.server")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def create_app(
    service: SpeechService,
    voices: VoiceMap,
    *,
    token: str | None = None,
    metrics: Metrics | None = None,
) -> ASGIApp:
    """The ASGI app. `metrics` should be the one the service counts into."""
    metrics = metrics or Metrics()

    async def speech(request: Request) -> Response:
        body = await _read_body(request)
        speech_request = parse_speech_request(body, voices)
        result = await service.speak(speech_request)
        request.scope["voiceprep.cache"] = "hit" if result.cached else "miss"
        headers = {"x-request-id": secrets.token_hex(8)}  # OpenAI's clients report it
        return Response(result.body, media_type=result.content_type, headers=headers)

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

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
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
            Route("/v1/audio/speech", api_errors(speech), methods=["POST"]),
            Route("/v1/models", api_errors(models), methods=["GET"]),
            Route("/healthz", api_errors(healthz), methods=["GET"]),
            Route("/metrics", api_errors(metrics_route), methods=["GET"]),
        ],
        exception_handlers={HTTPException: http_error},
        lifespan=lifespan,
    )
    return _AuthAndMetrics(starlette, token=token, metrics=metrics)


async def _read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _too_large()
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise _too_large()
    return bytes(body)


def _too_large() -> ApiError:
    return ApiError(413, f"the body is over {MAX_BODY_BYTES} bytes", code="body_too_large")


def _error_response(exc: ApiError) -> Response:
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers())


class _AuthAndMetrics:
    """Bearer token, request counting and the access log, around the routes."""

    def __init__(self, app: ASGIApp, *, token: str | None, metrics: Metrics) -> None:
        self.app = app
        self._token = token.encode() if token else None
        self.metrics = metrics
        self._counters: dict[tuple[str, int], Any] = {}  # the labelled children, bound once

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
            if self._token is not None and not self._authorized(scope):
                error = ApiError(
                    401,
                    "missing or wrong bearer token (Authorization: Bearer ...)",
                    code="invalid_api_key",
                )
                await _error_response(error)(scope, receive, send_status)
            else:
                await self.app(scope, receive, send_status)
        finally:
            self._record(scope, status["code"], time.perf_counter() - started)

    def _authorized(self, scope: Scope) -> bool:
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, given = value.partition(b" ")
                assert self._token is not None
                return scheme.lower() == b"bearer" and hmac.compare_digest(
                    given.strip(), self._token
                )
        return False

    def _record(self, scope: Scope, status: int, seconds: float) -> None:
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
        if route == "/v1/audio/speech" and status == 200:
            self.metrics.latency.labels(cache).observe(seconds)
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


_ROUTES = frozenset({"/v1/audio/speech", "/v1/models", "/healthz", "/metrics"})
