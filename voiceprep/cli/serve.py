"""`voiceprep serve`: parsing, logging setup and exit codes over voiceprep.server.

Output contract: one "serving http://HOST:PORT …" line on stderr once listening, then one
line per request on stderr (`--json-logs`: one JSON object per line). stdout stays empty.
Exit codes: 0 after SIGTERM or Ctrl-C (requests in flight finished first), 2 usage (bad
option, port in use, refusing to listen beyond loopback without a token), 1 otherwise.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
from collections.abc import Iterator
from typing import Annotated, Any

import typer

from voiceprep import defaults
from voiceprep.cli import _output
from voiceprep.cli._common import resolve
from voiceprep.cli._options import (
    Flags,
    MaxEntries,
    MaxSize,
    Retries,
    Timeout,
    jobs_option,
    selection_options,
)
from voiceprep.cli._processing import Gate, gate_flag, processing_options
from voiceprep.errors import UsageError
from voiceprep.secrets import scrub

# The defaults' one home is ServeOptions; it imports nothing heavy (no server stack).
from voiceprep.server.options import DEFAULT_TOKEN_ENV, resolve_serve_options
from voiceprep.server.options import ServeOptions as DEFAULTS

_NOT_INSTALLED = "voiceprep serve needs the server stack: pip install 'voiceprep[serve]'"


@selection_options
@processing_options
def serve_command(
    host: Annotated[
        str | None,
        typer.Option(
            "--host", metavar="HOST", help="Listen on address HOST.", show_default=DEFAULTS.host
        ),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(
            "--port",
            metavar="PORT",
            help="Listen on TCP PORT (0: any free port).",
            show_default=str(DEFAULTS.port),
        ),
    ] = None,
    *,
    selection: Flags,
    max_entries: MaxEntries = None,
    max_size: MaxSize = None,
    jobs: Annotated[
        int | None, jobs_option("Run at most N syntheses at once.", str(defaults.JOBS))
    ] = None,
    retries: Retries = None,
    timeout: Timeout = None,
    read_only: Annotated[
        bool | None,
        typer.Option(
            "--read-only",
            help="Never synthesize: a phrase not cached (nor on --remote) is a 404.",
        ),
    ] = None,
    queue: Annotated[
        int | None,
        typer.Option(
            "--queue",
            metavar="N",
            help="Let N more misses wait for a -j slot; past that a miss gets 429.",
            show_default=str(DEFAULTS.queue),
        ),
    ] = None,
    voice_alias: Annotated[
        list[str] | None,
        typer.Option(
            "--voice-alias",
            metavar="NAME=VOICE",
            help="Alias NAME=VOICE: clients ask for NAME, the backend speaks VOICE (repeatable).",
            show_default="OpenAI's voice names all mean --voice",
        ),
    ] = None,
    token_env: Annotated[
        str | None,
        typer.Option(
            "--token-env",
            metavar="NAME",
            help="Require 'Authorization: Bearer TOKEN', the TOKEN being in variable NAME.",
            show_default=DEFAULT_TOKEN_ENV + ", when set",
        ),
    ] = None,
    insecure: Annotated[
        bool | None,
        typer.Option("--insecure", help="Allow listening beyond loopback without a token."),
    ] = None,
    json_logs: Annotated[
        bool | None, typer.Option("--json-logs", help="Log one JSON object per request.")
    ] = None,
    remote: Annotated[
        str | None,
        typer.Option(
            "--remote",
            metavar="URL",
            help="On a miss, look in the remote URL (fsspec) before synthesizing "
            "(with --read-only: instead of answering 404).",
        ),
    ] = None,
    push_remote: Annotated[
        bool, typer.Option("--push-remote", help="Also push what is synthesized to --remote.")
    ] = False,
    process: Flags,
    gate: Gate = None,
) -> None:
    """Serve the cache as OpenAI's speech API, synthesizing what is not cached.

    Agents' OpenAI TTS clients (the openai SDK, LiveKit, Pipecat, VideoSDK) pointed at
    http://HOST:PORT/v1 get cached prompts from disk; a miss is synthesized once and
    stored. The backend and cache flags are warm's, so what warm stored is a hit. One
    line per request on stderr; SIGTERM or Ctrl-C finishes the requests in flight and
    exits 0. See docs/serve.md for the voice mapping and the API.

    Examples:
      voiceprep serve
      voiceprep serve --port 8080 -b openai --voice nova -j 8
      voiceprep serve --read-only --cache-dir /cache --host 0.0.0.0 --token-env TTS_TOKEN
      voiceprep serve --loudness -16 --trim-silence     # the same flags warm used
      voiceprep serve --read-only --remote s3://team-prompts/voiceprep
    """

    try:
        from voiceprep.server.run import run_server  # deferred: +115 % on --help
    except ImportError as exc:
        if exc.name in ("starlette", "uvicorn", "prometheus_client"):
            raise UsageError(_NOT_INSTALLED) from None
        raise
    from voiceprep.config import read_config_file  # deferred: +6.4 % on --help

    settings = resolve(
        **selection,
        jobs=jobs,
        retries=retries,
        timeout=timeout,
        max_entries=max_entries,
        max_size=max_size,
        gate=gate_flag(gate),
        process=process,
    )
    options = resolve_serve_options(
        {
            "host": host,
            "port": port,
            "read_only": read_only,
            "queue": queue,
            "voice_alias": voice_alias,
            "token_env": token_env,
            "insecure": insecure,
            "json_logs": json_logs,
        },
        table=read_config_file().get("serve"),
    )

    def listening(bound_host: str, bound_port: int) -> None:
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        mode = "read-only" if options.read_only else f"{settings.backend}, -j {settings.jobs}"
        if remote:
            mode += f", remote {scrub(remote)}"
        auth = "token required" if options.token else "no token"
        _output.info(
            f"serving http://{shown}:{bound_port} ({mode}, cache {settings.cache_dir}, "
            f"{settings.rate} Hz, {auth})"
        )

    if push_remote and remote is None:
        raise UsageError("--push-remote needs --remote URL")
    if push_remote and options.read_only:
        raise UsageError("--push-remote cannot be combined with --read-only (it never pushes)")
    # The same processing and gate as warm's, so a phrase warmed with --loudness -16 is a
    # hit here with the same flags (or the same [process] table).
    cache_options: dict[str, Any] = {"process": settings.process, "gate": settings.gate}
    if remote:
        cache_options |= {"remote": remote, "push_remote": push_remote}
    with _logging_to_stderr(json_lines=options.json_logs):
        stopped_by = run_server(
            settings, options, on_listening=listening, cache_options=cache_options
        )
    if stopped_by is not None:
        _output.info(f"stopped ({signal.Signals(stopped_by).name}); requests in flight finished")


@contextlib.contextmanager
def _logging_to_stderr(*, json_lines: bool) -> Iterator[None]:
    """The server's log lines on stderr while it runs; the loggers as they were after
    (main() may run again in the same process: a test, a program embedding the CLI)."""
    import logging  # deferred: every command's start-up would pay for it

    class JsonLines(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            entry: dict[str, Any] | None = getattr(record, "request", None)
            if entry is None:
                entry = {"level": record.levelname.lower(), "message": record.getMessage()}
            return json.dumps(entry, ensure_ascii=False)

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLines() if json_lines else logging.Formatter("%(message)s"))
    loggers = [
        (logging.getLogger(name), level)
        for name, level in (("voiceprep", logging.INFO), ("uvicorn", logging.WARNING))
    ]
    saved = [(lg, lg.handlers[:], lg.level, lg.propagate) for lg, _ in loggers]
    for logger, level in loggers:
        logger.handlers[:] = [handler]
        logger.setLevel(level)
        logger.propagate = False
    try:
        yield
    finally:
        for logger, handlers, level, propagate in saved:
            logger.handlers[:] = handlers
            logger.setLevel(level)
            logger.propagate = propagate
