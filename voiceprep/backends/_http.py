"""What the HTTP backends share: one pooled httpx client per event loop, the mapping of
HTTP outcomes onto voiceprep's errors, Retry-After parsing, and secret-free messages.

Status mapping (the retry policy in retry.py acts on the classes):
- 401, 403 → AuthenticationError (the key is wrong, or the account may not do this at all:
  every other request of the run would fail the same way, so the run stops);
- 408, 409, 425, 429, 5xx → TransientBackendError, with Retry-After when sent;
- any other 4xx → PermanentBackendError (a bad request stays bad);
- timeouts and connection errors → TransientBackendError.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from voiceprep import secrets as _secrets
from voiceprep.errors import (
    AuthenticationError,
    BackendError,
    BackendUnavailableError,
    EmptyAudioError,
    PermanentBackendError,
    TransientBackendError,
    UsageError,
)

if TYPE_CHECKING:
    import httpx

TRANSIENT_STATUSES = frozenset({408, 409, 425, 429})
AUTH_STATUSES = frozenset({401, 403})
CONNECT_TIMEOUT = 15.0
READ_TIMEOUT = 300.0  # the per-attempt --timeout (retry.py) is the real bound
_MAX_DETAIL = 300
# A 200 answer of these types is an error page, not audio (a proxy's, or a provider that
# reports quota problems with a 200).
_NOT_AUDIO_TYPES = ("application/json", "text/", "application/xml", "application/problem")


def clean_base_url(url: str, *, source: str) -> str:
    """A base URL without a trailing slash; UsageError when it is not http(s)://host…."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"{source}: invalid base URL {display_url(url)!r} (expected http(s)://…)")
    return url.strip().rstrip("/")


def display_url(url: str) -> str:
    """The URL with any user:password@ removed, for messages."""
    parts = urlsplit(url)
    if parts.hostname is None:
        return "<invalid URL>"
    host = parts.hostname + (f":{parts.port}" if parts.port else "")
    return f"{parts.scheme}://{host}{parts.path}"


def redact(message: str, *secrets: str | None) -> str:
    """`message` on one line, short, without any secret (see voiceprep.secrets)."""
    message = " ".join(_secrets.redact(message, *secrets).split())
    return message if len(message) <= _MAX_DETAIL else message[: _MAX_DETAIL - 1] + "…"


def check_headers(backend: str, headers: Mapping[str, str]) -> None:
    """BackendUnavailableError when a header value cannot be sent (a control character
    or non-ASCII in a key): said without the value, which httpx would print whole."""
    for name, value in headers.items():
        if any(not 32 <= ord(char) < 127 for char in value):
            raise BackendUnavailableError(
                f"{backend}: the {name} header would hold a character HTTP does not allow "
                "(a control character or non-ASCII): check the API key's environment variable"
            )


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


# Optional imports httpx (and httpcore) make when the package is there, which voiceprep never
# uses: httpx's own command line (click, pygments, rich), trio support and HTTP/2 (h2, which
# httpcore imports twice over, sync and async, though no client of ours enables http2).
# Blocked while httpx is first imported, they cost a warm that synthesizes about half of
# httpx's import time, and h2 a fifth of its first request's CPU (tests/bench/bench_warm.py,
# docs/performance.md); anything imported before is kept.
_UNUSED_BY_HTTPX = ("httpx._main", "trio", "h2")


def _import_httpx() -> None:
    """Import httpx (deferred: the CLI's start-up must not pay for it) without the optional
    modules above; then they import normally again for whoever wants them."""
    if "httpx" in sys.modules:
        return
    blocked = [name for name in _UNUSED_BY_HTTPX if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]  # None: "cannot be imported"
    try:
        import httpcore  # noqa: F401  # httpx imports it when its first client is built
        import httpx  # noqa: F401
    finally:
        for name in blocked:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]


class ClientPool:
    """One httpx.AsyncClient per running event loop (a client cannot cross loops), and per
    kind of URL: a plain-HTTP URL without a proxy configured (a self-hosted server, a local
    gateway) gets a client without TLS settings, since building them (loading the CA
    bundle) costs more of the start-up than the whole rest of httpx's set-up."""

    def __init__(self) -> None:
        self._clients: dict[tuple[int, bool], tuple[asyncio.AbstractEventLoop, httpx.AsyncClient]]
        self._clients = {}

    def get(self, url: str = "https://") -> httpx.AsyncClient:
        _import_httpx()
        import httpx

        loop = asyncio.get_running_loop()
        tls = not url.startswith("http://") or _proxies_configured()
        entry = self._clients.get((id(loop), tls))
        if entry is not None and entry[0] is loop and not entry[1].is_closed:
            return entry[1]
        # Drop clients of loops that have gone away.
        for key, (old_loop, _client) in list(self._clients.items()):
            if old_loop.is_closed():
                del self._clients[key]
        client = httpx.AsyncClient(
            timeout=httpx.Timeout(READ_TIMEOUT, connect=CONNECT_TIMEOUT),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
            follow_redirects=False,  # an http:// URL never leads to a TLS connection
            trust_env=True,
            verify=tls,
        )
        self._clients[(id(loop), tls)] = (loop, client)
        return client

    async def aclose(self) -> None:
        """Close this loop's clients (other loops' clients are dropped with their loop)."""
        loop = asyncio.get_running_loop()
        for tls in (False, True):
            entry = self._clients.pop((id(loop), tls), None)
            if entry is not None:
                await entry[1].aclose()


def _proxies_configured() -> bool:
    """Whether the environment names a proxy (httpx reads these with trust_env): a proxy
    may be reached over TLS, so the client keeps its TLS settings."""
    return any(
        os.environ.get(name) or os.environ.get(name.upper())
        for name in ("http_proxy", "https_proxy", "all_proxy")
    )


async def post_for_audio(
    pool: ClientPool,
    *,
    backend: str,
    url: str,
    headers: Mapping[str, str],
    body: Mapping[str, Any] | None = None,
    params: Mapping[str, str] | None = None,
    secret: str | None = None,
    content: bytes | None = None,
    json_answer: bool = False,
) -> bytes:
    """POST JSON `body` (or raw `content`, e.g. SSML: set its Content-Type in `headers`),
    return the response body, or raise the error class the outcome deserves.

    A 200 whose body is JSON, text or HTML is an error page, not audio (PermanentBackendError
    naming the backend and the type), unless `json_answer` (the provider wraps its audio in
    JSON, as Google does)."""
    _import_httpx()
    import httpx

    check_headers(backend, headers)
    client = pool.get(url)
    payload: dict[str, Any] = (
        {"content": content} if content is not None else {"json": dict(body or {})}
    )
    try:
        response = await client.post(url, headers=dict(headers), params=params, **payload)
    except httpx.HTTPError as exc:
        raise request_error(exc, backend=backend, url=url, secret=secret) from None
    if not 200 <= response.status_code < 300:
        raise status_error(response, backend=backend, secret=secret)
    if not response.content:
        raise EmptyAudioError(f"{backend}: the provider returned no audio")
    if not json_answer:
        _check_is_audio(backend, response, response.content, secret)
    return response.content


async def stream_audio(
    pool: ClientPool,
    *,
    backend: str,
    url: str,
    headers: Mapping[str, str],
    body: Mapping[str, Any],
    params: Mapping[str, str] | None = None,
    secret: str | None = None,
    events: bool = False,
) -> AsyncIterator[bytes]:
    """POST JSON `body` and yield the answer's bytes as they arrive (chunked transfer), with
    the errors of `post_for_audio`. A body that breaks off (the connection drops before a
    chunked body's end) raises TransientBackendError after the bytes that came. `events`:
    the answer is server-sent events (`text/event-stream`, audio inside them), not audio."""
    _import_httpx()
    import httpx

    check_headers(backend, headers)
    client = pool.get(url)
    received = 0
    try:
        async with client.stream(
            "POST", url, headers=dict(headers), params=params, json=dict(body)
        ) as response:
            if not 200 <= response.status_code < 300:
                await response.aread()
                raise status_error(response, backend=backend, secret=secret)
            pieces = response.aiter_bytes()
            async for piece in pieces:
                if not received:
                    check = _check_is_events if events else _check_is_audio
                    check(backend, response, piece, secret)
                received += len(piece)
                yield piece
    except httpx.HTTPError as exc:
        if received:
            reason = redact(str(exc) or type(exc).__name__, secret)
            raise TransientBackendError(
                f"{backend}: {display_url(url)}: the audio broke off after {received} bytes "
                f"({reason})"
            ) from None
        raise request_error(exc, backend=backend, url=url, secret=secret) from None
    if not received:
        raise EmptyAudioError(f"{backend}: the provider returned no audio")


def request_error(
    exc: httpx.HTTPError, *, backend: str, url: str, secret: str | None
) -> BackendError:
    """The voiceprep error for a request that got no answer (timeout, connection…)."""
    _import_httpx()
    import httpx

    where = display_url(url)
    if isinstance(exc, httpx.TimeoutException):
        return TransientBackendError(f"{backend}: {where}: timed out")
    if isinstance(exc, httpx.LocalProtocolError):
        # h11's message quotes the offending header value (a key): never show it.
        return PermanentBackendError(
            f"{backend}: {where}: the request could not be sent (invalid header or body)"
        )
    reason = redact(str(exc) or type(exc).__name__, secret)
    if isinstance(exc, httpx.TransportError):
        return TransientBackendError(f"{backend}: {where}: connection failed ({reason})")
    # e.g. a body that fails to decode: not worth retrying
    return PermanentBackendError(f"{backend}: {where}: {reason}")


def status_error(response: httpx.Response, *, backend: str, secret: str | None) -> BackendError:
    """The voiceprep error for an answer whose status is not 2xx (its body read)."""
    status = response.status_code
    detail = redact(provider_message(response), secret)
    message = f"{backend}: HTTP {status} {response.reason_phrase}".rstrip()
    if detail:
        message += f": {detail}"
    retry_after = parse_retry_after(response.headers.get("retry-after"))
    return error_for_status(status, message, retry_after=retry_after)


def error_for_status(
    status: int, message: str, *, retry_after: float | None = None
) -> BackendError:
    """The voiceprep error class an HTTP status deserves (the module's mapping), also for
    a status a provider reports inside its answer (an error event mid-stream)."""
    if status in AUTH_STATUSES:
        return AuthenticationError(message)
    if status in TRANSIENT_STATUSES or status >= 500:
        return TransientBackendError(message, retry_after=retry_after)
    return PermanentBackendError(message)


def _check_is_audio(
    backend: str, response: httpx.Response, head: bytes, secret: str | None
) -> None:
    """A 200 whose body (starting with `head`) is an error document is not audio."""
    content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if not content_type.startswith(_NOT_AUDIO_TYPES):
        return
    body = redact(head[:_MAX_DETAIL].decode("utf-8", "replace"), secret)
    raise PermanentBackendError(
        f"{backend}: the server answered {content_type}, not audio: {body}".rstrip(": ")
    )


def _check_is_events(
    backend: str, response: httpx.Response, head: bytes, secret: str | None
) -> None:
    """A 200 that should be server-sent events but is something else (an error page)."""
    content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "text/event-stream":
        return
    body = redact(head[:_MAX_DETAIL].decode("utf-8", "replace"), secret)
    raise PermanentBackendError(
        f"{backend}: the server answered {content_type or 'no content type'}, "
        f"not audio events (text/event-stream): {body}".rstrip(": ")
    )


def whole_samples(pcm: bytes, channels: int = 1) -> bytes:
    """Raw s16le PCM cut to whole frames (a truncated body may end mid-sample)."""
    frame = 2 * channels
    return pcm[: len(pcm) - len(pcm) % frame]


def provider_message(response: httpx.Response) -> str:
    """The human part of an error body (OpenAI, ElevenLabs, Google, Deepgram…), or its text."""
    text = response.text
    try:
        payload = json.loads(text)
    except ValueError:
        return text.strip() if "json" not in response.headers.get("content-type", "") else ""
    return _message_from(payload)


def _message_from(payload: Any) -> str:
    if isinstance(payload, str):
        return payload
    if isinstance(payload, list):  # FastAPI-style validation errors
        return "; ".join(_message_from(item) for item in payload[:3])
    if isinstance(payload, dict):
        for key in ("error", "detail", "message", "msg", "err_msg"):  # err_msg: Deepgram
            if key in payload:
                return _message_from(payload[key])
    return ""
