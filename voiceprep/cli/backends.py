"""`voiceprep backends`: every backend found through entry points, usable here or not and why.

Each backend is built the way `warm` would build it (options from the config file, the
configured voice for the configured backend), so "usable" means usable with this setup.
The list is data (stdout); a plugin that fails to import is listed with the reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated

import typer

from voiceprep.cli import _output
from voiceprep.cli._output import print_json

if TYPE_CHECKING:
    from voiceprep.backends import BackendStatus


def backends_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array on stdout.")] = False,
) -> None:
    """List the TTS backends installed, whether each is usable here, and why not.

    Examples:
      voiceprep backends
      voiceprep backends --json
    """
    from voiceprep.backends import describe_backends  # deferred: +29 % on --help
    from voiceprep.config import resolve_settings  # deferred: +6.4 % on --help

    selected = resolve_settings({}).backend

    def configure(name: str) -> tuple[str | None, Mapping[str, str]]:
        settings = resolve_settings({"backend": name})
        return (settings.voice if name == selected else None), settings.options

    statuses = describe_backends(configure)
    if as_json:
        rows = [{**asdict(s), "default": s.name == selected} for s in statuses]
        print_json(rows)
    else:
        _print_table(statuses, selected)


def _detail(status: BackendStatus) -> str:
    if status.reason:
        return status.reason
    parts = [f"model {status.model}"] if status.model else []
    if status.voice:
        parts.append(f"voice {status.voice}")
    return ", ".join(parts)


def _source(status: BackendStatus) -> str:
    if status.distribution is None:
        return status.target
    return f"{status.distribution} {status.version or ''}".strip()


_COLUMNS = [_output.Column(name) for name in ("backend", "usable", "from")]
_COLUMNS.append(_output.Column("detail", wide=True))


def _print_table(statuses: list[BackendStatus], selected: str) -> None:
    rows = []
    for s in statuses:
        name = f"{s.name} (default)" if s.name == selected else s.name
        rows.append([name, "yes" if s.usable else "no", _source(s), _detail(s)])
    _output.table(_COLUMNS, rows, dim=[not s.usable for s in statuses])
