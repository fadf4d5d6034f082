"""Local HTTP servers on 127.0.0.1 that speak the TTS shapes of OpenAI, ElevenLabs,
Cartesia, Deepgram Aura, Azure Speech (SSML in, RIFF/raw PCM out) and Google Cloud
Text-to-Speech (JSON with base64 audio out).

They check requests the way the real services do (path, auth header, JSON fields, query),
answer with real audio (a sine tone whose pitch depends on the voice and whose length
grows with the text), and can be told to be slow or to fail:

    with fake_openai(latency=0.1) as fake:                  # every request takes ≥ 0.1 s
        fake.push(500, 500)                                  # next two requests: HTTP 500
        fake.push(Fault(429, retry_after="3"))               # then a 429 with Retry-After
        fake.push(Fault(200, delay=5))                       # then one that hangs 5 s
        fake.push(Fault(200, cut_after=0.3))                 # then 0.3 s of audio, then the
                                                             # connection drops mid-body
        backend = OpenAIBackend(options={"base_url": fake.base_url})
        ...
        fake.request_count, fake.chars_received, fake.peak_in_flight, fake.requests[-1].json

Streaming, as the real services do: OpenAI (`/v1/audio/speech`, every format), ElevenLabs
(`/v1/text-to-speech/{voice}/stream`), Cartesia (`/tts/bytes`; `/tts/sse`: server-sent
events, each chunk of audio base64 in a `chunk` event, the words' timings in `timestamps`
events once their audio has been sent, then `done`) and Deepgram (`/v1/speak`)
send their audio with chunked transfer: the first chunk after `latency`, then one chunk of
`chunk_seconds` of audio every `chunk_interval` seconds (0, the default: all chunks at
once, so the whole answer still takes `latency`). Chunks are cut at odd byte counts, as a
network may cut them, so a client has to re-align samples itself. The live path of a voice
agent is `fake_openai(latency=0.25, chunk_interval=0.025)`: first audio after 250 ms, then
100 ms of audio every 25 ms. ElevenLabs' plain endpoint, Azure and Google answer whole,
with a Content-Length.

Use them from a test or a script (benchmarks): `fake_openai()`, `fake_elevenlabs()`,
`fake_cartesia()`, `fake_deepgram()`, `fake_azure()`, `fake_google()` are context managers;
`FakeProvider.start()` / `.stop()` do the same by hand. The server is
threaded (one thread per connection, keep-alive), so concurrent clients really overlap.
Set the API key environment variable to `fake.api_key` (or pass `require_key=False`).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
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
    no audio; `retry_after` sets that header; `body` replaces the JSON error body (with
    status 200: the audio answer itself, e.g. a WAV header with no samples, sent with
    `content_type` when given: a 200 that is not audio). `cut_after` (seconds of audio, a
    streamed answer) drops the connection after that much audio, mid-body: the chunked body
    never ends, as when a provider dies mid-synthesis. `error_event_after` (Cartesia's
    /tts/sse) sends an `error` event of status `status_in_event` after that much audio and
    ends the answer, as Cartesia reports a failure once its events have begun.
    """

    status: int = 500
    retry_after: str | None = None
    delay: float = 0.0
    empty: bool = False
    body: bytes | None = None
    content_type: str | None = None
    cut_after: float | None = None
    error_event_after: float | None = None
    status_in_event: int = 500


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    json: Any
    status: int = 0
    body: bytes = b""  # the raw request body (Azure's SSML)
    text: str = ""  # what the fake understood it was asked to say
    received: float = field(default_factory=time.monotonic)  # system-wide clock (Linux)
    answered: float = 0.0  # when its answer's last byte was written (same clock)
    connection: int = 0  # which keep-alive connection it came on (a client's slot)


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


class AudioBody(bytes):
    """An audio answer and how many seconds of audio it holds (to pace a stream)."""

    seconds: float

    def __new__(cls, data: bytes, seconds: float) -> AudioBody:
        body = super().__new__(cls, data)
        body.seconds = seconds
        return body

    def pieces(self, chunk_seconds: float, fault: Fault | None) -> list[bytes]:
        """What a streamed answer sends, piece by piece (one piece per `chunk_seconds`)."""
        return stream_pieces(self, chunk_seconds)


class CartesiaEvents(AudioBody):
    """A Cartesia `/tts/sse` answer: the PCM as `chunk` events, the words of `text` (timed
    evenly by character across the audio) as `timestamps` events sent once their audio
    has been (as Cartesia times a word after generating it), then `done`."""

    rate: int
    text: str
    timestamps: bool
    version: str

    @classmethod
    def of(
        cls, pcm: bytes, rate: int, text: str, *, timestamps: bool, version: str = "2025-04-16"
    ) -> CartesiaEvents:
        body = cls.__new__(cls, pcm, pcm_seconds(pcm, rate))
        body.rate, body.text, body.timestamps, body.version = rate, text, timestamps, version
        return body

    def words(self) -> list[tuple[str, float, float]]:
        step = self.seconds / max(1, len(self.text))
        words, at = [], 0
        for word in self.text.split():
            at = self.text.index(word, at)
            words.append((word, round(at * step, 4), round((at + len(word)) * step, 4)))
            at += len(word)
        return words

    def pieces(self, chunk_seconds: float, fault: Fault | None) -> list[bytes]:
        frame = max(2, int(self.rate * chunk_seconds) * 2)
        pending = self.words() if self.timestamps else []
        groups: list[bytes] = []
        fail_at = fault.error_event_after if fault is not None else None
        sent = 0.0
        for start in range(0, len(self), frame):
            if fail_at is not None and sent >= fail_at:
                assert fault is not None
                groups.append(_cartesia_error_event(fault.status_in_event, self.version))
                return _cut_across(groups)
            data = base64.b64encode(self[start : start + frame]).decode()
            group = sse_event("chunk", {"data": data, "step_time": 12.5})
            sent = min(self.seconds, (start + frame) / (2 * self.rate))
            said = [w for w in pending if w[2] <= sent]
            pending = pending[len(said) :]
            if said:
                group += _timestamps_event(said)
            groups.append(group)
        tail = _timestamps_event(pending) if pending else b""
        groups.append(tail + sse_event("done", {"done": True}))
        return _cut_across(groups)


def sse_event(kind: str, fields: dict[str, Any]) -> bytes:
    """One server-sent event as Cartesia writes it (`event:` name, JSON `data:` with a type,
    the request's context id and status 206, `done` included, as Cartesia's reference
    shows)."""
    document = {"type": kind, "done": False, "status_code": 206, "context_id": "fake-ctx"}
    document.update(fields)
    return f"event: {kind}\ndata: {json.dumps(document)}\n\n".encode()


def _timestamps_event(words: list[tuple[str, float, float]]) -> bytes:
    timestamps = {"words": [w[0] for w in words], "start": [w[1] for w in words]}
    timestamps["end"] = [w[2] for w in words]
    return sse_event("timestamps", {"word_timestamps": timestamps})


def _cartesia_error_event(status: int, version: str) -> bytes:
    """An error event as the API version asked for writes it: from 2026-03-01 with a
    title, a message and codes; before, one `error` string."""
    if version >= "2026-03-01":
        fields = {"title": "Generation failed", "message": "fake failure mid-stream"}
        fields |= {"error_code": "generation_failed", "request_id": "fake-request"}
    else:
        fields = {"error": "Generation failed: fake failure mid-stream"}
    return sse_event("error", {"done": True, "status_code": status, **fields})


def _cut_across(groups: list[bytes]) -> list[bytes]:
    """The events as the network may deliver them: piece k ends an odd number of bytes
    into group k+1, and so still completes group k (the first piece holds all of the
    first audio event)."""
    cuts = [0] + [len(group) // 2 | 1 for group in groups[1:]] + [0]
    return [
        group[cuts[k] :] + (groups[k + 1][: cuts[k + 1]] if k + 1 < len(groups) else b"")
        for k, group in enumerate(groups)
    ]


def pcm_seconds(pcm: bytes, rate: int) -> float:
    return len(pcm) / (2 * rate)


def stream_pieces(body: AudioBody, chunk_seconds: float) -> list[bytes]:
    """`body` cut into pieces of about `chunk_seconds` of audio each, at odd byte counts."""
    size = max(1, int(len(body) * chunk_seconds / max(body.seconds, 1e-9))) | 1
    return [bytes(body[i : i + size]) for i in range(0, len(body), size)]


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
    latency: float = 0.0  # until the first byte of the answer
    chunk_seconds: float = 0.1  # audio per chunk of a streamed answer
    chunk_interval: float = 0.0  # between chunks of a streamed answer (0: no pause)
    require_key: bool = True
    echo_key_in_errors: bool = True  # as OpenAI does (masked there; whole here, to test)
    # Hold each request until this many are in flight at once (at most 10 s): proves a
    # client really overlaps its requests, without measuring any time.
    hold_until_in_flight: int = 0
    # Set: a streamed answer waits after its first chunk until the test sets it (at most
    # 10 s): proves a client passes audio on before the answer ends, without timing it.
    after_first_chunk: threading.Event | None = None
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
        """What to pass as base_url: OpenAI's and Google's include /v1, the others do not."""
        assert self._server is not None, "server not started"
        host, port = self._server.server_address[:2]
        root = f"http://{host}:{port}"
        return f"{root}/v1" if self.kind in ("openai", "google") else root

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
        import numpy  # noqa: F401 - imported now, not during the first answer's latency

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
        if self.after_first_chunk is not None:
            self.after_first_chunk.set()
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
    # Headers and body leave in separate writes: with Nagle on, the body waits for the
    # client's delayed ACK (up to 40 ms on loopback), a latency no real API adds.
    disable_nagle_algorithm = True

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
        self.record: RecordedRequest | None = None
        try:
            synthesized = self._serve()
        finally:
            fake._leave(synthesized)
            if self.record is not None:
                self.record.answered = time.monotonic()

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
        text = _text_of(fake.kind, payload, raw)
        record = RecordedRequest("POST", parts.path, query, headers, payload, body=raw, text=text)
        record.connection, self.record = id(self), record  # a handler per connection
        fake._record(record, len(text))
        fault = fake._next_fault()
        fake._hold()
        # The latency is fixed: the answer is made while it runs, so its first byte leaves
        # `latency` after the request (not later by the time this thread took to make it).
        due = time.monotonic() + fake.latency + (fault.delay if fault else 0.0)
        if fault is not None and fault.status != 200:
            fake.wait(due - time.monotonic())
            record.status = fault.status
            self._send_error(
                fault.status,
                fault.body or _error_body(fake.kind, fault.status),
                retry_after=fault.retry_after,
            )
            return 0
        status, body, content_type = _answer(fake, parts.path, query, headers, payload, raw)
        fake.wait(due - time.monotonic())
        record.status = status
        if status != 200:
            self._send_error(status, body)
            return 0
        if fault is not None and fault.empty:
            body = _empty_answer(fake.kind, parts.path)
        elif fault is not None and fault.body is not None:
            body = fault.body
        if fault is not None and fault.content_type:
            content_type = fault.content_type
        if isinstance(body, AudioBody) and _streams(fake.kind, parts.path):
            return len(text) if self._send_streamed(body, content_type, fault) else 0
        self._send(200, body, content_type)
        return len(text)

    def _send_streamed(self, body: AudioBody, content_type: str, fault: Fault | None) -> bool:
        """Chunked transfer, paced; False when the body was cut (a fault) or abandoned."""
        fake = self.fake
        cut = fault.cut_after if fault is not None else None
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        sent = 0.0
        for index, piece in enumerate(body.pieces(fake.chunk_seconds, fault)):
            if index and fake.chunk_interval > 0:
                fake.wait(fake.chunk_interval)
            if fake._stopping.is_set() or (cut is not None and sent >= cut):
                self._drop()
                return False
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            sent += fake.chunk_seconds
            if index == 0 and fake.after_first_chunk is not None:
                fake.after_first_chunk.wait(10)
        self.wfile.write(b"0\r\n\r\n")
        return True

    def _drop(self) -> None:
        """End the connection without ending the chunked body: the client sees a cut."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

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


def _streams(kind: str, path: str) -> bool:
    """Whether the real endpoint sends its audio as it is synthesized (chunked)."""
    if kind == "elevenlabs":
        return path.endswith("/stream")
    return kind in ("openai", "cartesia", "deepgram")


def _text_of(kind: str, payload: Any, raw: bytes = b"") -> str:
    if kind == "azure":
        parsed = parse_ssml(raw)
        return parsed.text if parsed is not None else ""
    if kind == "google":
        value = payload.get("input") if isinstance(payload, dict) else None
        payload = value
    key = {"openai": "input", "cartesia": "transcript"}.get(kind, "text")
    value = payload.get(key) if isinstance(payload, dict) else None
    return value if isinstance(value, str) else ""


def _error_body(kind: str, status: int, message: str | None = None) -> bytes:
    message = message or f"fake error {status}"
    if kind == "openai":
        return json.dumps({"error": {"message": message, "type": "server_error"}}).encode()
    if kind == "deepgram":
        body = {"err_code": f"E{status}", "err_msg": message, "request_id": "fake"}
        return json.dumps(body).encode()
    if kind == "cartesia":
        return json.dumps({"error": message}).encode()
    if kind in ("google", "azure"):
        reason = GOOGLE_STATUS.get(status, "UNKNOWN")
        error = {"code": status, "message": message, "status": reason}
        return json.dumps({"error": error}).encode()
    return json.dumps({"detail": {"status": "error", "message": message}}).encode()


def _empty_answer(kind: str, path: str) -> bytes:
    """A 200 with no audio, in the provider's own shape."""
    if kind == "cartesia" and path == "/tts/sse":
        return sse_event("done", {"done": True})
    return json.dumps({"audioContent": ""}).encode() if kind == "google" else b""


def _answer(
    fake: FakeProvider,
    path: str,
    query: dict[str, str],
    headers: dict[str, str],
    payload: Any,
    raw: bytes = b"",
) -> tuple[int, bytes, str]:
    if fake.kind == "openai":
        return _openai(fake, path, headers, payload)
    if fake.kind == "elevenlabs":
        return _elevenlabs(fake, path, query, headers, payload)
    handler = {
        "cartesia": _cartesia,
        "deepgram": _deepgram,
        "azure": _azure,
        "google": _google,
    }[fake.kind]
    return handler(fake, path, query, headers, payload, raw)


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
    seconds = pcm_seconds(pcm, rate)
    if fmt == "pcm":
        return 200, AudioBody(pcm, seconds), "audio/pcm"
    if fmt == "wav":
        return 200, AudioBody(wav_file(pcm, rate, streamed=True), seconds), "audio/wav"
    return 200, AudioBody(encoded(pcm, rate, fmt), seconds), f"audio/{fmt}"


def _elevenlabs(
    fake: FakeProvider, path: str, query: dict[str, str], headers: dict[str, str], payload: Any
) -> tuple[int, bytes, str]:
    prefix = "/v1/text-to-speech/"
    voice_id = path[len(prefix) :] if path.startswith(prefix) else ""
    timestamps = voice_id.endswith("/with-timestamps")
    voice_id = voice_id.removesuffix("/stream").removesuffix("/with-timestamps")
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
    seconds = pcm_seconds(pcm, rate)
    audio = pcm if kind == "pcm" else encoded(pcm, rate, "mp3")
    if timestamps:  # the audio in JSON, with when each character is spoken (evenly here)
        text = payload["text"]
        step = seconds / max(1, len(text))
        alignment = {
            "characters": list(text),
            "character_start_times_seconds": [round(i * step, 3) for i in range(len(text))],
            "character_end_times_seconds": [round((i + 1) * step, 3) for i in range(len(text))],
        }
        answer = {"audio_base64": base64.b64encode(audio).decode(), "alignment": alignment}
        return 200, json.dumps(answer).encode(), "application/json"
    if kind == "pcm":
        return 200, AudioBody(pcm, seconds), "audio/pcm"
    return 200, AudioBody(audio, seconds), "audio/mpeg"


def fake_openai(**kwargs: Any) -> AbstractContextManager[FakeProvider]:
    """A running fake OpenAI-compatible server; `base_url` ends with /v1."""
    return fake_provider("openai", **kwargs)


def fake_elevenlabs(**kwargs: Any) -> AbstractContextManager[FakeProvider]:
    """A running fake ElevenLabs server; `base_url` is the root (paths start with /v1)."""
    return fake_provider("elevenlabs", **kwargs)


# --- Cartesia, Deepgram, Azure, Google ----------------------------------------------------

CARTESIA_KEY = "fake-cartesia-key-a1b2c3d4e5f60718"
DEEPGRAM_KEY = "fake-deepgram-key-0f1e2d3c4b5a6978"
AZURE_KEY = "fakeazurekey0123456789abcdef0123"
GOOGLE_KEY = "AIzaFakeGoogleKey_0123456789abcdefgh"
CARTESIA_VERSIONS = ("2024-06-10", "2024-11-13", "2025-04-16", "2026-03-01")
CARTESIA_RATES = (8000, 16000, 22050, 24000, 44100, 48000)
DEEPGRAM_RATES = (8000, 16000, 24000, 32000, 48000)
AZURE_RATES = {
    "8khz": 8000,
    "16khz": 16000,
    "22050hz": 22050,
    "24khz": 24000,
    "44100hz": 44100,
    "48khz": 48000,
}
SSML_NS = "http://www.w3.org/2001/10/synthesis"
MSTTS_NS = "https://www.w3.org/2001/mstts"
GOOGLE_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}


@dataclass
class ParsedSSML:
    """What Azure would read from an SSML body."""

    language: str
    voices: list[str]  # the name of every <voice> element
    text: str  # all character data inside the voice element(s)
    elements: list[str]  # every element's tag (namespace-qualified), document order
    attributes: dict[str, dict[str, str]]  # tag → attributes, for the inner elements


def parse_ssml(raw: bytes) -> ParsedSSML | None:
    """The SSML document Azure received, or None when it is not well-formed SSML."""
    import xml.etree.ElementTree as ET

    try:
        root = ET.fromstring(raw)
    except ET.ParseError:
        return None
    if root.tag != f"{{{SSML_NS}}}speak" or root.get("version") != "1.0":
        return None
    language = root.get("{http://www.w3.org/XML/1998/namespace}lang") or ""
    voices = [v for v in root.iter(f"{{{SSML_NS}}}voice")]
    return ParsedSSML(
        language=language,
        voices=[v.get("name", "") for v in voices],
        text="".join("".join(v.itertext()) for v in voices),
        elements=[element.tag for element in root.iter()],
        attributes={element.tag: dict(element.attrib) for element in root.iter()},
    )


def _pcm_answer(pcm: bytes, rate: int, container: str) -> tuple[int, bytes, str]:
    seconds = pcm_seconds(pcm, rate)
    if container == "wav":
        return 200, AudioBody(wav_file(pcm, rate), seconds), "audio/wav"
    return 200, AudioBody(pcm, seconds), "application/octet-stream"


def _denied(fake: FakeProvider, kind: str, given: str, what: str) -> tuple[int, bytes, str]:
    shown = given if fake.echo_key_in_errors else "***"
    return 401, _error_body(kind, 401, f"{what}: {shown}"), "application/json"


def _cartesia(
    fake: FakeProvider,
    path: str,
    query: dict[str, str],
    headers: dict[str, str],
    payload: Any,
    raw: bytes,
) -> tuple[int, bytes, str]:
    def bad(message: str) -> tuple[int, bytes, str]:
        return 400, _error_body("cartesia", 400, message), "application/json"

    if path not in ("/tts/bytes", "/tts/sse"):
        return 404, _error_body("cartesia", 404, "Not Found"), "application/json"
    if headers.get("cartesia-version") not in CARTESIA_VERSIONS:
        return bad("Cartesia-Version header is missing or invalid")
    if fake.require_key:
        given = headers.get("authorization", "").removeprefix("Bearer ")
        given = given or headers.get("x-api-key", "")
        if given != fake.api_key:
            return _denied(fake, "cartesia", given, "Invalid API key")
    if not isinstance(payload, dict):
        return bad("invalid JSON body")
    for name in ("model_id", "transcript"):
        if not isinstance(payload.get(name), str) or not payload[name]:
            return bad(f"{name} is required")
    voice = payload.get("voice")
    if not isinstance(voice, dict) or voice.get("mode") != "id" or not voice.get("id"):
        return bad("voice must be {mode: id, id: ...}")
    fmt = payload.get("output_format")
    if not isinstance(fmt, dict):
        return bad("output_format is required")
    container, encoding, rate = fmt.get("container"), fmt.get("encoding"), fmt.get("sample_rate")
    if container not in ("raw", "wav") or encoding != "pcm_s16le" or rate not in CARTESIA_RATES:
        return bad(f"unsupported output_format {fmt}")
    config = payload.get("generation_config") or {}
    speed = config.get("speed", 1.0) if isinstance(config, dict) else 1.0
    if not isinstance(speed, int | float) or not 0.6 <= speed <= 1.5:
        return bad("generation_config.speed must be 0.6-1.5")
    timestamps = payload.get("add_timestamps", False)
    if not isinstance(timestamps, bool):
        return bad("add_timestamps must be a boolean")
    text = payload["transcript"]
    pcm = tone_pcm(voice_frequency(voice["id"]), seconds_for(text) / speed, rate)
    if path == "/tts/sse":
        if container != "raw":
            return bad("the SSE endpoint sends raw audio only")
        version = headers["cartesia-version"]
        body = CartesiaEvents.of(pcm, rate, text, timestamps=timestamps, version=version)
        return 200, body, "text/event-stream"
    return _pcm_answer(pcm, rate, container)


def _deepgram(
    fake: FakeProvider,
    path: str,
    query: dict[str, str],
    headers: dict[str, str],
    payload: Any,
    raw: bytes,
) -> tuple[int, bytes, str]:
    def bad(message: str) -> tuple[int, bytes, str]:
        return 400, _error_body("deepgram", 400, message), "application/json"

    if path != "/v1/speak":
        return 404, _error_body("deepgram", 404, "Not Found"), "application/json"
    if fake.require_key:
        given = headers.get("authorization", "")
        if not given.startswith("Token ") or given.removeprefix("Token ") != fake.api_key:
            return _denied(fake, "deepgram", given.removeprefix("Token "), "Invalid credentials")
    if not isinstance(payload, dict) or not isinstance(payload.get("text"), str):
        return bad("Request body must be JSON with a text field")
    if not payload["text"].strip():
        return bad("text is empty")
    if len(payload["text"]) > 2000:
        return bad("text is over 2000 characters")
    model = query.get("model", "aura-asteria-en")
    if not model.startswith("aura-"):
        return bad(f"No such model: {model}")
    if query.get("encoding") != "linear16":
        return bad("this fake speaks linear16 only")
    container = query.get("container", "wav")
    rate = int(query.get("sample_rate", "24000"))
    if container not in ("wav", "none") or rate not in DEEPGRAM_RATES:
        return bad(f"unsupported container {container} / sample_rate {rate}")
    speed = float(query.get("speed", "1"))
    if not 0.7 <= speed <= 1.5:
        return bad("speed must be 0.7-1.5")
    pcm = tone_pcm(voice_frequency(model), seconds_for(payload["text"]) / speed, rate)
    return _pcm_answer(pcm, rate, "wav" if container == "wav" else "raw")


def _azure(
    fake: FakeProvider,
    path: str,
    query: dict[str, str],
    headers: dict[str, str],
    payload: Any,
    raw: bytes,
) -> tuple[int, bytes, str]:
    def bad(message: str) -> tuple[int, bytes, str]:
        return 400, _error_body("azure", 400, message), "application/json"

    if path != "/cognitiveservices/v1":
        return 404, _error_body("azure", 404, "Resource not found"), "application/json"
    if fake.require_key:
        given = headers.get("ocp-apim-subscription-key", "")
        if given != fake.api_key:
            return _denied(fake, "azure", given, "Access denied due to invalid subscription key")
    if not headers.get("content-type", "").startswith("application/ssml+xml"):
        return 415, _error_body("azure", 415, "Content-Type must be application/ssml+xml"), ""
    if not headers.get("user-agent"):
        return bad("User-Agent is required")
    kind, _, rest = headers.get("x-microsoft-outputformat", "").partition("-")
    rate_name, _, shape = rest.partition("-")
    if kind not in ("riff", "raw") or shape != "16bit-mono-pcm" or rate_name not in AZURE_RATES:
        return bad("unsupported X-Microsoft-OutputFormat")
    ssml = parse_ssml(raw)
    if ssml is None or not ssml.language or len(ssml.voices) != 1 or not ssml.voices[0]:
        return bad("invalid SSML")
    rate = AZURE_RATES[rate_name]
    pcm = tone_pcm(voice_frequency(ssml.voices[0]), seconds_for(ssml.text), rate)
    return _pcm_answer(pcm, rate, "wav" if kind == "riff" else "raw")


def _google(
    fake: FakeProvider,
    path: str,
    query: dict[str, str],
    headers: dict[str, str],
    payload: Any,
    raw: bytes,
) -> tuple[int, bytes, str]:
    def bad(message: str) -> tuple[int, bytes, str]:
        return 400, _error_body("google", 400, message), "application/json"

    if path != "/v1/text:synthesize":
        return 404, _error_body("google", 404, "Not Found"), "application/json"
    if fake.require_key:
        key = headers.get("x-goog-api-key") or query.get("key", "")
        token = headers.get("authorization", "").removeprefix("Bearer ")
        if fake.api_key not in (key, token):
            return _denied(fake, "google", key or token, "API key not valid")
    if not isinstance(payload, dict):
        return bad("Invalid JSON payload")
    text = (payload.get("input") or {}).get("text")
    voice = payload.get("voice") or {}
    config = payload.get("audioConfig") or {}
    if not isinstance(text, str) or not text:
        return bad("input.text is required")
    if len(text.encode("utf-8")) > 5000:
        return bad("input.text is longer than 5000 bytes")
    language, name = voice.get("languageCode"), voice.get("name", "")
    if not isinstance(language, str) or not language:
        return bad("voice.languageCode is required")
    if name and not name.lower().startswith(language.lower()):
        return bad(f"Voice '{name}' does not exist for language '{language}'")
    if config.get("audioEncoding") != "LINEAR16":
        return bad("this fake speaks LINEAR16 only")
    rate = config.get("sampleRateHertz", 24000)
    speed = config.get("speakingRate", 1.0)
    if not isinstance(rate, int) or not 8000 <= rate <= 48000:
        return bad("sampleRateHertz is out of range")
    if not isinstance(speed, int | float) or not 0.25 <= speed <= 4.0:
        return bad("speakingRate must be 0.25-4.0")
    pcm = tone_pcm(voice_frequency(name or language), seconds_for(text) / speed, rate)
    audio = base64.b64encode(wav_file(pcm, rate)).decode("ascii")
    return 200, json.dumps({"audioContent": audio}).encode(), "application/json; charset=UTF-8"


@contextmanager
def fake_provider(
    kind: str,
    *,
    latency: float = 0.0,
    chunk_seconds: float = 0.1,
    chunk_interval: float = 0.0,
    api_key: str | None = None,
    require_key: bool = True,
) -> Iterator[FakeProvider]:
    """A running fake of `kind` (cartesia, deepgram, azure, google, openai, elevenlabs):
    first byte after `latency`; a streamed answer then sends `chunk_seconds` of audio
    every `chunk_interval` seconds."""
    keys = {
        "cartesia": CARTESIA_KEY,
        "deepgram": DEEPGRAM_KEY,
        "azure": AZURE_KEY,
        "google": GOOGLE_KEY,
        "openai": OPENAI_KEY,
        "elevenlabs": ELEVENLABS_KEY,
    }
    fake = FakeProvider(
        kind,
        api_key or keys[kind],
        latency=latency,
        chunk_seconds=chunk_seconds,
        chunk_interval=chunk_interval,
        require_key=require_key,
    ).start()
    try:
        yield fake
    finally:
        fake.stop()


def fake_cartesia(**kwargs: Any) -> AbstractContextManager[FakeProvider]:
    """A running fake Cartesia server; `base_url` is the root (POST /tts/bytes, /tts/sse)."""
    return fake_provider("cartesia", **kwargs)


def fake_deepgram(**kwargs: Any) -> AbstractContextManager[FakeProvider]:
    """A running fake Deepgram server; `base_url` is the root (POST /v1/speak)."""
    return fake_provider("deepgram", **kwargs)


def fake_azure(**kwargs: Any) -> AbstractContextManager[FakeProvider]:
    """A running fake Azure Speech endpoint; `base_url` is the root."""
    return fake_provider("azure", **kwargs)


def fake_google(**kwargs: Any) -> AbstractContextManager[FakeProvider]:
    """A running fake Google TTS server; `base_url` ends with /v1."""
    return fake_provider("google", **kwargs)
