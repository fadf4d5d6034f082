"""The one precedence of every setting, for every command (`serve` too): a flag beats an
environment variable, which beats the config file, which beats the default.

Kept apart from `voiceprep.config` (and free of imports) so that `voiceprep.server.options`
uses the same engine without loading the library at `voiceprep --help`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any


def layered(
    names: Iterable[str],
    flags: Mapping[str, Any],
    *,
    environ: Mapping[str, str],
    env_prefix: str,
    table: Mapping[str, Any],
    table_origin: Callable[[str], str],
) -> Iterator[tuple[str, Any, str | None]]:
    """The precedence of every command (`serve` too): for each name given somewhere, the
    winning `(name, value, origin)` — a flag (None: not given; origin None), else the
    variable `{env_prefix}{NAME}` (non-empty), else the config table (origin from
    `table_origin(name)`). Names given nowhere are left out: the caller's default holds."""
    for name in names:
        value: Any = flags.get(name)
        origin: str | None = None  # the command line
        env_name = f"{env_prefix}{name.upper()}"
        if value is None and environ.get(env_name):
            value, origin = environ[env_name], env_name
        if value is None and table.get(name) is not None:
            value, origin = table[name], table_origin(name)
        if value is not None:
            yield name, value, origin
