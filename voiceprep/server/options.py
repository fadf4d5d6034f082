"""ServeOptions: every setting of `voiceprep serve` that `warm` does not share, in one place.

Precedence as everywhere in voiceprep (`voiceprep.precedence.layered`): flags >
VOICEPREP_SERVE_* environment > the config file's `[serve]` table > defaults. The backend,
voice, options, rate, channels, cache and its limits, -j, retries and timeout are the shared
`voiceprep.config.Settings`, so the server keys exactly as `warm` does.

To add a serve setting: a field here, a converter in `_CONVERTERS`, and the flag in
`voiceprep/cli/serve.py` (which passes every flag through `resolve_serve_options`).
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from voiceprep.errors import ConfigError, UsageError
from voiceprep.precedence import layered
from voiceprep.secrets import remember

DEFAULT_TOKEN_ENV = "VOICEPREP_SERVE_TOKEN"
DEFAULT_QUEUE = 64
ENV_PREFIX = "VOICEPREP_SERVE_"


@dataclass(frozen=True)
class ServeOptions:
    """How the server listens and admits requests.

    `voices` maps the names clients send as `voice` to the backend's voices (None: the
    backend's default); empty means OpenAI's own voice names all stand for `--voice`.
    `queue` is how many distinct misses may wait for one of the -j synthesis slots before
    the server answers 429. `token` is the bearer token (never shown: repr=False).
    """

    host: str = "127.0.0.1"
    port: int = 8000
    read_only: bool = False
    token: str | None = field(default=None, repr=False)
    insecure: bool = False
    json_logs: bool = False
    queue: int = DEFAULT_QUEUE
    voices: Mapping[str, str | None] = field(default_factory=dict)

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(value)


def _port(value: Any) -> int:
    if isinstance(value, bool | float):
        raise ValueError(value)
    port = int(value)
    if not 0 <= port <= 65535:
        raise UsageError(f"invalid port {port}: must be 0–65535")
    return port


def _queue(value: Any) -> int:
    if isinstance(value, bool | float):
        raise ValueError(value)
    queue = int(value)
    if queue < 0:
        raise UsageError(f"invalid queue {queue}: must be at least 0")
    return queue


_CONVERTERS: dict[str, Any] = {
    "host": str,
    "port": _port,
    "read_only": _flag,
    "insecure": _flag,
    "json_logs": _flag,
    "queue": _queue,
}
# [serve] keys: the settings above, the name of the token's variable, the alias table.
_TABLE_KEYS = set(_CONVERTERS) | {"token_env", "voices"}


def parse_voice_aliases(pairs: list[str] | None) -> dict[str, str | None]:
    """`--voice-alias NAME=VOICE` pairs → dict; an empty VOICE means the backend's default."""
    aliases: dict[str, str | None] = {}
    for pair in pairs or []:
        name, sep, voice = pair.partition("=")
        if not sep or not name.strip():
            raise UsageError(f"invalid voice alias {pair!r}: expected NAME=VOICE")
        aliases[name.strip()] = voice.strip() or None
    return aliases


def resolve_serve_options(
    flags: Mapping[str, Any],
    *,
    table: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> ServeOptions:
    """ServeOptions from flags (None: not given), VOICEPREP_SERVE_*, the [serve] table.

    `flags` holds ServeOptions field names plus `token_env` (the name of the variable that
    holds the token) and `voice_alias` (the `--voice-alias` pairs).
    """
    environ = os.environ if environ is None else environ
    table = check_table(table or {})
    values: dict[str, Any] = {}
    given = layered(
        [f.name for f in fields(ServeOptions) if f.name in _CONVERTERS],
        flags,
        environ=environ,
        env_prefix=ENV_PREFIX,
        table=table,
        table_origin=lambda name: f"config [serve] {name}",
    )
    for name, value, origin in given:
        origin = origin or f"--{name.replace('_', '-')}"
        try:
            values[name] = _CONVERTERS[name](value)
        except UsageError as exc:
            raise UsageError(f"{origin}: {exc}") from None
        except (TypeError, ValueError):
            raise UsageError(f"{origin}: invalid value {value!r}") from None
    voices: dict[str, str | None] = {
        str(k): (str(v) or None) for k, v in (table.get("voices") or {}).items()
    }
    voices.update(parse_voice_aliases(flags.get("voice_alias")))
    token = _token(flags.get("token_env") or table.get("token_env"), environ)
    return ServeOptions(**values, token=token, voices=voices)


def _token(token_env: str | None, environ: Mapping[str, str]) -> str | None:
    remember(token_env or DEFAULT_TOKEN_ENV)  # never in a message, like the backends' keys
    if token_env:
        token = environ.get(token_env, "").strip()
        if not token:
            raise UsageError(f"--token-env {token_env}: that environment variable is not set")
        return token
    return environ.get(DEFAULT_TOKEN_ENV, "").strip() or None


def check_table(table: Mapping[str, Any]) -> dict[str, Any]:
    """The config file's [serve] table, keys normalized and checked."""
    if not isinstance(table, Mapping):
        raise ConfigError("config [serve]: must be a table")
    checked: dict[str, Any] = {}
    for raw, value in table.items():
        name = raw.replace("-", "_")
        if name == "token":
            raise ConfigError(
                "config [serve]: 'token' looks like a secret; put it in the environment "
                "and name the variable with token_env"
            )
        if name not in _TABLE_KEYS:
            raise ConfigError(f"config [serve]: unknown key {raw!r}")
        checked[name] = value
    voices = checked.get("voices", {})
    if not isinstance(voices, dict) or not all(isinstance(v, str) for v in voices.values()):
        raise ConfigError('config [serve.voices]: expected NAME = "VOICE" lines')
    return checked


def check_exposure(options: ServeOptions) -> None:
    """Refuse to listen beyond loopback without a token, unless --insecure."""
    if not options.loopback and options.token is None and not options.insecure:
        raise UsageError(
            f"refusing to listen on {options.host} without a token: set {DEFAULT_TOKEN_ENV} "
            "(or --token-env NAME), or pass --insecure"
        )
