"""Settings with the spec's precedence: flags > VOICEPREP_* env > config file > defaults.

The config file is `voiceprep.toml` in the working directory, else `[tool.voiceprep]` in
`pyproject.toml`. Its keys are the long option names with underscores (`cache_dir`,
`backend`, `voice`, `rate`, `channels`, `jobs`, `retries`, `timeout`, `max_entries`,
`max_size`, `remote`; `cache-dir` spellings are accepted too), plus backend options in
`[options]` (any backend) and `[backends.NAME]` (one backend), the processing chain in
`[process]` (`loudness`, `true_peak`, `trim_silence`, … : see voiceprep.process; its
flags win key by key) with the synthesis gate as the top-level `gate` key, and `[serve]`
for `voiceprep serve` (checked by voiceprep.server.options). An unknown key is an
error, so a typo does not silently do nothing. API keys never live in the file: they
come from the environment only.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from voiceprep import defaults
from voiceprep.errors import ConfigError, InvalidValueError
from voiceprep.precedence import layered
from voiceprep.process import ProcessSettings, settings_from
from voiceprep.units import (
    ACCEPTED,
    check_channels,
    check_rate,
    parse_size,
)

_SECRET_WORDS = ("key", "token", "secret", "password")


def default_cache_dir() -> Path:
    import platformdirs  # deferred: keeps `--help` light

    return Path(platformdirs.user_cache_dir("voiceprep"))


@dataclass
class Settings:
    cache_dir: Path = field(default_factory=default_cache_dir)
    backend: str = defaults.BACKEND
    voice: str | None = None
    options: dict[str, str] = field(default_factory=dict)
    rate: int = defaults.RATE
    channels: int = defaults.CHANNELS
    jobs: int = defaults.JOBS
    retries: int = defaults.RETRIES
    timeout: float = defaults.TIMEOUT
    max_entries: int | None = None
    max_size: int | None = None
    remote: str | None = None  # an fsspec URL or a directory (cache push/pull, --remote)
    gate: str = defaults.GATE
    process: ProcessSettings = field(default_factory=ProcessSettings)


_CONVERTERS: dict[str, Any] = {
    "cache_dir": lambda v: Path(v).expanduser().absolute(),
    "backend": str,
    "voice": str,
    "rate": lambda v: check_rate(_integer(v)),
    "channels": lambda v: check_channels(_integer(v)),
    "jobs": lambda v: _at_least(_integer(v), 1),
    "retries": lambda v: _at_least(_integer(v), 0),
    "timeout": lambda v: _positive_float(v),
    "max_entries": lambda v: _at_least(_integer(v), 1),
    "max_size": lambda v: _at_least(_integer(v) if isinstance(v, int) else parse_size(str(v)), 1),
    "gate": lambda v: _one_of(str(v), defaults.GATE_MODES),
    "remote": lambda v: _nonempty_text(v),
}
_TABLES = ("options", "backends", "process", "serve")  # [serve]: voiceprep.server.options


def _integer(value: Any) -> int:
    # int(2.7) would silently truncate and int(True) is 1: refuse both.
    if isinstance(value, bool | float):
        raise ValueError(value)
    return int(value)


def _at_least(value: int, minimum: int) -> int:
    if value < minimum:
        raise ValueError(value)
    return value


def _nonempty_text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(value)
    return value.strip()


def _one_of(value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(value)
    return value


def _positive_float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(value)
    number = float(value)
    if not number > 0:
        raise ValueError(value)
    return number


def convert_setting(name: str, value: Any) -> Any:
    """`value` (as given: text from argv or the environment, or a TOML value) checked and
    converted for the setting `name`; raises `InvalidValueError` naming `name`."""
    try:
        return _CONVERTERS[name](value)
    except InvalidValueError as exc:
        raise InvalidValueError(name, value, exc.accepted) from None
    except (TypeError, ValueError):
        raise InvalidValueError(name, value, ACCEPTED.get(name, "another value")) from None


def find_config_file(directory: Path | None = None) -> tuple[Path | None, dict[str, Any]]:
    """The config file that applies in `directory` (default: the working directory) and its
    voiceprep table, keys normalized (`cache-dir` → `cache_dir`) and checked."""
    directory = directory or Path.cwd()
    own = directory / "voiceprep.toml"
    if own.is_file():
        return own, _checked_table(_load_toml(own), own)
    pyproject = directory / "pyproject.toml"
    if pyproject.is_file():
        table = _load_toml(pyproject).get("tool", {}).get("voiceprep")
        if table is None:
            return None, {}
        if not isinstance(table, dict):
            raise ConfigError(f"{pyproject}: [tool.voiceprep] must be a table")
        return pyproject, _checked_table(table, pyproject)
    return None, {}


def read_config_file(directory: Path | None = None) -> dict[str, Any]:
    """The config table that applies in `directory` (default: the working directory)."""
    return find_config_file(directory)[1]


def _load_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None


def _checked_table(table: Mapping[str, Any], path: Path) -> dict[str, Any]:
    known = {f.name for f in fields(Settings)} | set(_TABLES)
    checked: dict[str, Any] = {}
    for raw_name, value in table.items():
        name = raw_name.replace("-", "_")
        if any(word in name.lower() for word in _SECRET_WORDS):
            raise ConfigError(
                f"{path}: key {raw_name!r} looks like a secret; "
                "API keys come from the environment only"
            )
        if name not in known:
            raise ConfigError(f"{path}: unknown key {raw_name!r}")
        checked[name] = value
    _check_option_tables(checked, path)
    return checked


def _check_option_tables(table: Mapping[str, Any], path: Path) -> None:
    options = table.get("options", {})
    if not isinstance(options, dict):
        raise ConfigError(f"{path}: 'options' must be a table of backend options")
    _check_options(options, path, "options")
    backends = table.get("backends", {})
    if not isinstance(backends, dict):
        raise ConfigError(f"{path}: 'backends' must hold one table per backend")
    for backend, opts in backends.items():
        if not isinstance(opts, dict):
            raise ConfigError(f"{path}: [backends.{backend}] must be a table of options")
        _check_options(opts, path, f"backends.{backend}")


def _check_options(options: Mapping[str, Any], path: Path, where: str) -> None:
    for name, value in options.items():
        if any(word in name.lower() for word in _SECRET_WORDS):
            raise ConfigError(
                f"{path}: [{where}] option {name!r} looks like a secret; "
                "API keys come from the environment only"
            )
        if isinstance(value, dict | list):
            raise ConfigError(f"{path}: [{where}] option {name!r} must be a single value")


def _file_options(table: Mapping[str, Any], backend: str) -> dict[str, str]:
    merged: dict[str, Any] = {}
    merged.update(table.get("options", {}) or {})
    merged.update((table.get("backends", {}) or {}).get(backend, {}) or {})
    for name in merged:
        if any(word in name.lower() for word in _SECRET_WORDS):
            raise ConfigError(
                f"config file: option {name!r} looks like a secret; "
                "API keys come from the environment only"
            )
    return {k: _option_text(v) for k, v in merged.items()}


def _option_text(value: Any) -> str:
    # Options travel as strings, like `-O key=value`: TOML `true` becomes "true".
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def parse_options(pairs: list[str] | None) -> dict[str, str]:
    """`-O key=value` pairs → dict (the last one wins)."""
    options: dict[str, str] = {}
    for pair in pairs or []:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise InvalidValueError("options", pair, "KEY=VALUE")
        options[name.strip()] = value
    return options


def resolve_settings(
    flags: Mapping[str, Any] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    config: Mapping[str, Any] | None = None,
) -> Settings:
    """Merge flags (None means not given), VOICEPREP_* variables, the config file, defaults.

    `flags["options"]` holds the `-O` pairs already parsed; they are laid over the file's.
    """
    flags = flags or {}
    config_name = "config file"
    if config is None:
        path, config = find_config_file()
        config_name = str(path) if path else config_name
    names = [f.name for f in fields(Settings) if f.name not in ("options", "process")]
    given = layered(
        names,
        flags,
        environ=os.environ if environ is None else environ,
        env_prefix="VOICEPREP_",
        table=config,
        table_origin=lambda name: f"{config_name}: key {name!r}",
    )
    values = {name: _convert(name, value, origin) for name, value, origin in given}
    settings = Settings(**values)
    settings.options = {**_file_options(config, settings.backend), **(flags.get("options") or {})}
    settings.process = _process_settings(config, flags.get("process"), config_name)
    return settings


def _process_settings(
    config: Mapping[str, Any], flags: Mapping[str, Any] | None, config_name: str
) -> ProcessSettings:
    """[process] from the config file with the processing flags laid over it, key by key."""
    table = config.get("process", {}) or {}
    if not isinstance(table, dict):
        raise ConfigError(f"{config_name}: [process] must be a table of processing settings")
    file_settings = settings_from(table, origin=f"{config_name}: [process]")
    given = {k: v for k, v in (flags or {}).items() if v is not None}
    if not given:
        return file_settings
    return settings_from({**file_settings.as_dict(), **given})


def _convert(name: str, value: Any, origin: str | None) -> Any:
    try:
        return convert_setting(name, value)
    except InvalidValueError as exc:
        raise exc.located(origin) if origin else exc from None
