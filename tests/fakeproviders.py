"""Local HTTP servers on 127.0.0.1 that speak OpenAI's and ElevenLabs' TTS shapes.

They check requests the way the real services do (path, auth header, JSON fields, query),
answer with real audio (a sine tone whose pitch depends on the voice and whose length
grows with the text), and can be told to be slow or to fail:

    with fake_openai(latency=0.1) as fake:                  # every request takes ≥ 0.1 s
        fake.push(500, 500)                                  # next two requests: HTTP 500
        fake.push(Fault(429, retry_after="3"))               # then a 429 with Retry-After
        fake.push(Fault(200, delay=5))                       # then one that hangs 5 s
        backend = OpenAIBackend(options={"base_url": fake.base_url})
        ...
        fake.request_count, fake.chars_received, fake.peak_in_flight, fake.requests[-1].json

Use them from a test or a script (benchmarks): `fake_openai()` / `fake_elevenlabs()` are
context managers; `FakeProvider.start()` / `.stop()` do the same by hand. The server is
threaded (one thread per connection, keep-alive), so concurrent clients really overlap.
Set the API key environment variable to `fake.api_key` (or pass `require_key=False`).
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

OPENAI_KEY = "sk-fake-openai-0123456789abcdef"
ELEVENLABS_KEY = "fake-elevenlabs-key-fedcba9876543210"
OPENAI_FORMATS = ("wav", "pcm", "mp3", "flac")
ELEVENLABS_PCM_RATES = (8000, 16000, 22050, 24000, 44100, 48000)
SECONDS_PER_CHAR = 0.05
MIN_SECONDS = 0.3


@dataclass
class Fault:
    """What one scripted request gets instead of a normal answer.

    `status` 200 with `delay` makes a slow success (a client timeout); `empty` a 200 with
    no audio; `retry_after` sets that header; `body` replaces the JSON error body, and with
    status 200 and `content_type` it is the whole answer (a 200 that is not audio).
    """

    status: int = 500
    retry_after: str | None = None
    delay: float = 0.0
    empty: bool = False
    body: bytes | None = None
    content_type: str | None = None


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    json: Any
    status: int = 0


def voice_frequency(voice: str) -> float:
    """The pitch (Hz) the fake speaks with for `voice`: stable, 200–800 Hz, 10 Hz steps."""
    digest = hashlib.sha256(voice.encode("utf-8")).digest()
    return 200.0 + 10.0 * (int.from_bytes(digest[:4], "big") % 61)


def seconds_for(text: str) -> float:
    """How long the fake's audio for `text` lasts."""
    return max(MIN_SECONDS, SECONDS_PER_CHAR * len(text))


def tone_pcm(freq: float, seconds: float, rate: int) -> bytes:
    """s16le mono sine, amplitude 0.5."""
    return _tone(freq, int(round(seconds * rate)), rate)


@lru_cache(maxsize=256)
def _tone(freq: float, count: int, rate: int) -> bytes:
    # Cached: a benchmark's server should spend its time on latency, not on making tones.
    import numpy as np

    samples = 16383 * np.sin(2 * np.pi * freq * np.arange(count) / rate)
    return samples.astype("<i2").tobytes()


def wav_file(pcm: bytes, rate: int, *, streamed: bool = False) -> bytes:
    """A WAV; `streamed` writes 0xFFFFFFFF sizes as OpenAI's streamed WAVs do."""
    data_size = 0xFFFFFFFF if streamed else len(pcm)
    riff_size = 0xFFFFFFFF if streamed else 36 + len(pcm)
    fmt = struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
    return (
        b"RIFF"
        + struct.pack("<I", riff_size)
        + b"WAVEfmt "
        + fmt
        + b"data"
        + struct.pack("<I", data_size)
        + pcm
    )


def encoded(pcm: bytes, rate: int, codec: str) -> bytes:
    """`pcm` (s16le mono) encoded with PyAV: codec "mp3" or "flac"."""
    import av
    import numpy as np

    container = {"mp3": "mp3", "flac": "flac"}[codec]
    sample_format = {"mp3": "fltp", "flac": "s16"}[codec]
    out_buf = io.BytesIO()
    samples = np.frombuffer(pcm, dtype="<i2").reshape(1, -1)
    with av.open(out_buf, "w", format=container) as out:
        stream = out.add_stream(codec, rate=rate)
        stream.layout = "mono"
        stream.format = sample_format
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.rate = rate
        frame.pts = 0
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return out_buf.getvalue()


@dataclass
class FakeProvider:
    """One fake provider server. Counters are safe to read from the test thread."""

    kind: str  # "openai" or "elevenlabs"
    api_key: str
    latency: float = 0.0
    require_key: bool = True
    echo_key_in_errors: bool = True  # as OpenAI does (masked there; whole here, to test)
    # Hold each request until this many are in flight at once (at most 10 s): proves a
    # client really overlaps its requests, without measuring any time.
    hold_until_in_flight: int = 0
    requests: list[RecordedRequest] = field(default_factory=list)
    chars_received: int = 0
    chars_synthesized: int = 0
    in_flight: int = 0
    peak_in_flight: int = 0
    _script: deque[Fault] = field(default_factory=deque)
    _lock: threading.Condition = field(default_factory=threading.Condition)
    _stopping: threading.Event = field(default_factory=threading.Event)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    # --- control -------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """What to pass as base_url: OpenAI's includes /v1, ElevenLabs' does not."""
        assert self._server is not None, "server not started"
        host, port = self._server.server_address[:2]
        root = f"http://{host}:{port}"
        return f"{root}/v1" if self.kind == "openai" else root

    @property
    def request_count(self) -> int:
        with self._lock:
            return len(self.requests)

    def push(self, *faults: Fault | int) -> None:
        """Script the next requests' answers (an int is a status with no other change)."""
        with self._lock:
            for fault in faults:
                self._script.append(Fault(fault) if isinstance(fault, int) else fault)

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self._script.clear()
            self.chars_received = self.chars_synthesized = self.peak_in_flight = 0

    def start(self) -> FakeProvider:
        provider = self

        class Handler(_Handler):
            fake = provider

        server = _Server(("127.0.0.1", 0), Handler)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes handlers sleeping in a scripted delay
        with self._lock:
            self._lock.notify_all()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # --- serving (handler threads) -------------------------------------------------

    def _next_fault(self) -> Fault | None:
        with self._lock:
            return self._script.popleft() if self._script else None

    def _record(self, request: RecordedRequest, chars: int) -> None:
        with self._lock:
            self.requests.append(request)
            self.chars_received += chars

    def _enter(self) -> None:
        with self._lock:
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            self._lock.notify_all()

    def _hold(self) -> None:
        if self.hold_until_in_flight > 1:
            with self._lock:
                self._lock.wait_for(
                    lambda: (
                        self.peak_in_flight >= self.hold_until_in_flight or self._stopping.is_set()
                    ),
                    timeout=10,
                )

    def _leave(self, chars_synthesized: int) -> None:
        with self._lock:
            self.in_flight -= 1
            self.chars_synthesized += chars_synthesized

    def wait(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)


class _Server(ThreadingHTTPServer):
    # The listen backlog is fixed when the socket is bound: the default 5 drops connection
    # attempts of a burst of concurrent clients (they then wait a 1 s SYN retry).
    request_queue_size = 256
    daemon_threads = True


class _Handler(BaseHTTPRequestHandler):
    fake: FakeProvider
    protocol_version = "HTTP/1.1"  # keep-alive, as the real APIs

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        pass

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (a timeout): fine

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        fake = self.fake
        fake._enter()
        synthesized = 0
        try:
            synthesized = self._serve()
        finally:
            fake._leave(synthesized)

    def _serve(self) -> int:
        fake = self.fake
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            payload = json.loads(raw) if raw else None
        except ValueError:
            payload = None
        headers = {k.lower(): v for k, v in self.headers.items()}
        record = RecordedRequest("POST", parts.path, query, headers, payload)
        text = _text_of(fake.kind, payload)
        fake._record(record, len(text))
        fault = fake._next_fault()
        fake._hold()
        fake.wait(fake.latency + (fault.delay if fault else 0.0))
        if fault is not None and fault.status != 200:
            record.status = fault.status
            self._send_error(
                fault.status,
                fault.body or _error_body(fake.kind, fault.status),
                retry_after=fault.retry_after,
            )
            return 0
        status, body, content_type = _answer(fake, parts.path, query, headers, payload)
        record.status = status
        if status != 200:
            self._send_error(status, body)
            return 0
        if fault is not None and fault.empty:
            body = b""
        if fault is not None and fault.body is not None and fault.content_type:
            body, content_type = fault.body, fault.content_type
        self._send(200, body, content_type)
        return len(text)

    def _send_error(self, status: int, body: bytes, *, retry_after: str | None = None) -> None:
        extra = {"Retry-After": retry_after} if retry_after is not None else {}
        self._send(status, body, "application/json", extra)

    def _send(
        self, status: int, body: bytes, content_type: str, extra: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


def _text_of(kind: str, payload: Any) -> str:
    key = "input" if kind == "openai" else "text"
    value = payload.get(key) if isinstance(payload, dict) else None
    return value if isinstance(value, str) else ""


def _error_body(kind: str, status: int, message: str | None = None) -> bytes:
    message = message or f"fake error {status}"
    if kind == "openai":
        return json.dumps({"error": {"message": message, "type": "server_error"}}).encode()
    return json.dumps({"detail": {"status": "error", "message": message}}).encode()


def _answer(
    fake: FakeProvider, path: str, query: dict[str, str], headers: dict[str, str], payload: Any
) -> tuple[int, bytes, str]:
    if fake.kind == "openai":
        return _openai(fake, path, headers, payload)
    return _elevenlabs(fake, path, query, headers, payload)


def _openai(
    fake: FakeProvider, path: str, headers: dict[str, str], payload: Any
) -> tuple[int, bytes, str]:
    if path != "/v1/audio/speech":
        return 404, _error_body("openai", 404, f"Invalid URL (POST {path})"), ""
    if fake.require_key:
        given = headers.get("authorization", "").removeprefix("Bearer ")
        if given != fake.api_key:
            shown = given if fake.echo_key_in_errors else "***"
            return 401, _error_body("openai", 401, f"Incorrect API key provided: {shown}."), ""
    if not isinstance(payload, dict):
        return 400, _error_body("openai", 400, "We could not parse the JSON body"), ""
    for name in ("model", "input", "voice"):
        if not isinstance(payload.get(name), str) or not payload[name]:
            return 400, _error_body("openai", 400, f"Missing required parameter: '{name}'."), ""
    text = payload["input"]
    if len(text) > 4096:
        return 400, _error_body("openai", 400, "string too long (max 4096)"), ""
    fmt = payload.get("response_format", "mp3")
    if fmt not in OPENAI_FORMATS:
        return 400, _error_body("openai", 400, f"Invalid response_format '{fmt}'"), ""
    speed = payload.get("speed", 1.0)
    if not isinstance(speed, int | float) or not 0.25 <= speed <= 4.0:
        return 400, _error_body("openai", 400, "speed must be 0.25-4.0"), ""
    rate = 24000
    pcm = tone_pcm(voice_frequency(payload["voice"]), seconds_for(text) / speed, rate)
    if fmt == "pcm":
        return 200, pcm, "audio/pcm"
    if fmt == "wav":
        return 200, wav_file(pcm, rate, streamed=True), "audio/wav"
    return 200, encoded(pcm, rate, fmt), f"audio/{fmt}"


def _elevenlabs(
    fake: FakeProvider, path: str, query: dict[str, str], headers: dict[str, str], payload: Any
) -> tuple[int, bytes, str]:
    prefix = "/v1/text-to-speech/"
    voice_id = path[len(prefix) :] if path.startswith(prefix) else ""
    if not voice_id or "/" in voice_id:
        return 404, _error_body("elevenlabs", 404, "Not Found"), ""
    if fake.require_key:
        given = headers.get("xi-api-key", "")
        if given != fake.api_key:
            shown = given if fake.echo_key_in_errors else "***"
            body = {"detail": {"status": "invalid_api_key", "message": f"Invalid API key {shown}"}}
            return 401, json.dumps(body).encode(), ""
    if not isinstance(payload, dict) or not isinstance(payload.get("text"), str):
        body = {"detail": [{"loc": ["body", "text"], "msg": "field required"}]}
        return 422, json.dumps(body).encode(), ""
    fmt = query.get("output_format", "mp3_44100_128")
    kind, _, rest = fmt.partition("_")
    rate = int(rest.split("_")[0]) if rest.split("_")[0].isdigit() else 0
    offered = (kind == "pcm" and rate in ELEVENLABS_PCM_RATES) or (
        kind == "mp3" and rate in (22050, 44100)
    )
    if not offered:
        body = {"detail": {"status": "invalid_output_format", "message": f"bad format {fmt}"}}
        return 400, json.dumps(body).encode(), ""
    settings = payload.get("voice_settings") or {}
    speed = settings.get("speed", 1.0) if isinstance(settings, dict) else 1.0
    pcm = tone_pcm(voice_frequency(voice_id), seconds_for(payload["text"]) / speed, rate)
    if kind == "pcm":
        return 200, pcm, "audio/pcm"
    return 200, encoded(pcm, rate, "mp3"), "audio/mpeg"


@contextmanager
def fake_openai(
    *, latency: float = 0.0, api_key: str = OPENAI_KEY, require_key: bool = True
) -> Iterator[FakeProvider]:
    """A running fake OpenAI-compatible server; `base_url` ends with /v1."""
    fake = FakeProvider("openai", api_key, latency=latency, require_key=require_key).start()
    try:
        yield fake
    finally:
        fake.stop()


@contextmanager
def fake_elevenlabs(
    *, latency: float = 0.0, api_key: str = ELEVENLABS_KEY, require_key: bool = True
) -> Iterator[FakeProvider]:
    """A running fake ElevenLabs server; `base_url` is the root (paths start with /v1)."""
    fake = FakeProvider("elevenlabs", api_key, latency=latency, require_key=require_key).start()
    try:
        yield fake
    finally:
        fake.stop()
