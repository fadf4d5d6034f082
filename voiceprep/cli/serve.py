"""`voiceprep serve`: parsing, logging setup and exit codes over voiceprep.server.

Output contract: one "serving http://HOST:PORT …" line on stderr once listening, then one
line per request on stderr (`--json-logs`: one JSON object per line). stdout stays empty.
Exit codes: 0 after SIGTERM or Ctrl-C (requests in flight finished first), 2 usage (bad
option, port in use, refusing to listen beyond loopback without a token), 1 otherwise.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
from typing import Annotated, Any

import typer

from voiceprep.cli import _output
from voiceprep.cli._app import app
from voiceprep.cli._common import resolve
from voiceprep.cli._options import Backend, BackendOption, CacheDir, Channels, Rate, Voice
from voiceprep.cli.warm import Jobs, Retries, Timeout
from voiceprep.errors import UsageError

_NOT_INSTALLED = "voiceprep serve needs the server stack: pip install 'voiceprep[serve]'"


@app.command("serve")
def serve_command(
    host: Annotated[
        str | None, typer.Option("--host", help="Address to listen on. \\[default: 127.0.0.1]")
    ] = None,
    port: Annotated[
        int | None, typer.Option("--port", help="TCP port (0: any free port). \\[default: 8000]")
    ] = None,
    backend: Backend = None,
    voice: Voice = None,
    option: BackendOption = None,
    rate: Rate = None,
    channels: Channels = None,
    cache_dir: CacheDir = None,
    max_entries: Annotated[
        int | None, typer.Option("--max-entries", metavar="N", help="Keep at most N entries.")
    ] = None,
    max_size: Annotated[
        str | None,
        typer.Option("--max-size", metavar="SIZE", help="Keep at most SIZE (500MB, 2GiB)."),
    ] = None,
    jobs: Jobs = None,
    retries: Retries = None,
    timeout: Timeout = None,
    read_only: Annotated[
        bool | None,
        typer.Option("--read-only", help="Never synthesize: a phrase not cached is a 404."),
    ] = None,
    queue: Annotated[
        int | None,
        typer.Option(
            "--queue",
            metavar="N",
            help="Misses that may wait for a -j slot before 429. \\[default: 64]",
        ),
    ] = None,
    voice_alias: Annotated[
        list[str] | None,
        typer.Option(
            "--voice-alias",
            metavar="NAME=VOICE",
            help="A voice name clients may send, and the backend voice it means "
            "(repeatable; default: OpenAI's voice names all mean --voice).",
        ),
    ] = None,
    token_env: Annotated[
        str | None,
        typer.Option(
            "--token-env",
            metavar="NAME",
            help="Require 'Authorization: Bearer' with the token in this variable "
            "\\[default: VOICEPREP_SERVE_TOKEN, when set].",
        ),
    ] = None,
    insecure: Annotated[
        bool | None,
        typer.Option("--insecure", help="Allow listening beyond loopback without a token."),
    ] = None,
    json_logs: Annotated[
        bool | None, typer.Option("--json-logs", help="Log one JSON object per request.")
    ] = None,
) -> None:
    """Serve the cache as OpenAI's speech API (POST /v1/audio/speech), synthesizing misses."""
    try:
        from voiceprep.server.options import resolve_serve_options
        from voiceprep.server.run import run_server
    except ImportError as exc:
        if exc.name in ("starlette", "uvicorn", "prometheus_client"):
            raise UsageError(_NOT_INSTALLED) from None
        raise
    from voiceprep.config import read_config_file

    settings = resolve(
        backend=backend,
        voice=voice,
        option=option,
        rate=rate,
        channels=channels,
        cache_dir=cache_dir,
        jobs=jobs,
        retries=retries,
        timeout=timeout,
        max_entries=max_entries,
        max_size=max_size,
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
    _setup_logging(json_lines=options.json_logs)

    def listening(bound_host: str, bound_port: int) -> None:
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        mode = "read-only" if options.read_only else f"{settings.backend}, -j {settings.jobs}"
        auth = "token required" if options.token else "no token"
        _output.info(
            f"serving http://{shown}:{bound_port} ({mode}, cache {settings.cache_dir}, "
            f"{settings.rate} Hz, {auth})"
        )

    stopped_by = run_server(settings, options, on_listening=listening)
    if stopped_by is not None:
        _output.info(f"stopped ({signal.Signals(stopped_by).name}); requests in flight finished")


class _JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] | None = getattr(record, "request", None)
        if entry is None:
            entry = {"level": record.levelname.lower(), "message": record.getMessage()}
        return json.dumps(entry, ensure_ascii=False)


def _setup_logging(*, json_lines: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonLines() if json_lines else logging.Formatter("%(message)s"))
    for name, level in (("voiceprep", logging.INFO), ("uvicorn", logging.WARNING)):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level)
        logger.propagate = False
