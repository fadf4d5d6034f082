"""Run the app with uvicorn on a socket we bind ourselves.

Binding first turns "address in use" into one clear error (uvicorn would log and exit),
and `port=0` gives a free port whose number `on_listening` receives.

SIGTERM and Ctrl-C (SIGINT) stop accepting connections, answer the bodies still arriving
503 (a client stalled mid-body must not hold the shutdown), let the responses in flight
finish for at most SHUTDOWN_SECONDS, store the syntheses still running (the app's
shutdown), then `serve` returns normally: the command exits 0. A second Ctrl-C forces
the exit. (uvicorn re-raises the signal after a graceful stop, which would make the exit
status the signal's; we don't.)
"""

from __future__ import annotations

import contextlib
import signal
import socket
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import uvicorn

from voiceprep.backends import get_backend
from voiceprep.cache import AudioCache
from voiceprep.errors import UsageError
from voiceprep.server import logs
from voiceprep.server.app import create_app
from voiceprep.server.metrics import Metrics
from voiceprep.server.options import check_exposure
from voiceprep.server.protocol import MAX_HEAD_BYTES, Protocol
from voiceprep.server.service import SpeechService
from voiceprep.server.voices import VoiceMap

if TYPE_CHECKING:
    from voiceprep.config import Settings
    from voiceprep.server.options import ServeOptions

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
SHUTDOWN_SECONDS = 30  # responses in flight when a signal came: then they are cut


class _Server(uvicorn.Server):
    stopped_by: int | None = None
    on_shutdown: Callable[[], None] | None = None

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self.on_shutdown is not None:
            self.on_shutdown()
        await super().shutdown(sockets)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        previous = {sig: signal.signal(sig, self._on_signal) for sig in _SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _on_signal(self, sig: int, frame: Any) -> None:
        self.stopped_by = sig
        self.handle_exit(sig, frame)


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (IPv6 when host is an IPv6 address)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        sock = socket.create_server((host.strip("[]"), port), family=family, backlog=2048)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise UsageError(f"cannot listen on {host}:{port}: {reason}") from None
    # create_server leaves proto 0, which accepted sockets inherit, and asyncio sets
    # TCP_NODELAY only when proto is IPPROTO_TCP: without it a response under one
    # segment (an 8 KB mp3) waits ~40 ms for the client's delayed ACK (Nagle).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP, fileno=sock.detach())
    sock.set_inheritable(True)
    return sock


def serve(
    app: Any,
    sock: socket.socket,
    *,
    on_listening: Callable[[str, int], None] | None = None,
) -> int | None:
    """Serve until SIGTERM/SIGINT; returns the signal that stopped it."""
    config = uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        lifespan="on",
        proxy_headers=False,  # nothing reads the client's address
        timeout_keep_alive=30,
        timeout_graceful_shutdown=SHUTDOWN_SECONDS,
        server_header=False,
        http=Protocol,
        h11_max_incomplete_event_size=MAX_HEAD_BYTES,
    )
    server = _Server(config)
    server.on_shutdown = getattr(app, "begin_shutdown", None)
    logs.quiet_uvicorn()
    logs.lighten()
    batched = logs.batch((sys.stderr, sys.__stderr__))
    host, port = sock.getsockname()[:2]
    if on_listening is not None:
        on_listening(host, port)
    try:
        server.run(sockets=[sock])
    finally:
        for stream in batched:
            stream.flush_now()
    return server.stopped_by


def run_server(
    settings: Settings,
    options: ServeOptions,
    *,
    on_listening: Callable[[str, int], None] | None = None,
    cache_options: Mapping[str, Any] | None = None,
) -> int | None:
    """Bind, open the cache and the backend, serve until a signal; returns that signal.

    `settings` is what `warm` resolves (backend, voice, options, rate, channels, cache and
    limits, jobs, retries, timeout); `cache_options` are extra TTSAudioCache arguments.
    """
    check_exposure(options)
    backend = get_backend(settings.backend, voice=settings.voice, options=settings.options)
    sock = bind(options.host, options.port)
    try:
        cache = AudioCache(
            settings.cache_dir, max_entries=settings.max_entries, max_bytes=settings.max_size
        )
        metrics = Metrics()
        service = SpeechService.open(
            backend,
            cache,
            rate=settings.rate,
            channels=settings.channels,
            jobs=settings.jobs,
            queue=options.queue,
            retries=settings.retries,
            timeout=settings.timeout,
            read_only=options.read_only,
            metrics=metrics,
            cache_options=cache_options,
        )
        try:
            voices = VoiceMap(options.voices, default_voice=settings.voice)
            app = create_app(service, voices, token=options.token, metrics=metrics)
            logs.install(service.redactor)
            return serve(app, sock, on_listening=on_listening)
        finally:
            cache.close()  # the app's shutdown closed it already unless startup failed
    finally:
        sock.close()
