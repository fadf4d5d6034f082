"""Checking the `-O key=value` options a backend receives (all strings) without any I/O,
and the constructor the built-in backends share (`ConfiguredBackend`).

Unknown option names are refused: a typo such as `-O lenght_scale=1.2` silently ignored
would warm a whole cache with the wrong sound.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from voiceprep.errors import UsageError

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def check_known(backend: str, options: Mapping[str, str], known: Mapping[str, str]) -> None:
    """Refuse option names the backend does not take; `known` maps name → description."""
    unknown = sorted(set(options) - set(known))
    if unknown:
        names = ", ".join(sorted(known)) or "none"
        raise UsageError(f"{backend}: unknown option {unknown[0]!r} (options: {names})")


class ConfiguredBackend:
    """The constructor the built-in backends share: the `-O` options checked against
    `known_options` (name → description), `default_voice` set (the voice given, else
    `fallback_voice`), then `configure` reads the backend's own options into attributes."""

    name: ClassVar[str]
    known_options: ClassVar[Mapping[str, str]]
    fallback_voice: ClassVar[str]

    def __init__(
        self, *, voice: str | None = None, options: Mapping[str, str] | None = None
    ) -> None:
        options = dict(options or {})
        check_known(self.name, options, self.known_options)
        self.default_voice = voice or self.fallback_voice
        self.configure(options)

    def configure(self, options: Mapping[str, str]) -> None:
        """Read the options given (every name known) into attributes."""


def _convert(backend: str, name: str, value: str, kind: str, parse: Callable[[str], Any]) -> Any:
    try:
        return parse(value.strip())
    except (TypeError, ValueError):
        raise UsageError(f"{backend}: option {name}={value!r}: expected {kind}") from None


def as_float(
    backend: str, name: str, value: str, *, low: float | None = None, high: float | None = None
) -> float:
    number = float(_convert(backend, name, value, "a number", float))
    too_low = low is not None and number < low
    too_high = high is not None and number > high
    if too_low or too_high or number != number:  # number != number: NaN
        if low is not None and high is not None:
            bounds = f"{low:g}–{high:g}"
        elif low is not None:
            bounds = f"at least {low:g}"
        else:
            bounds = f"at most {high:g}"
        raise UsageError(f"{backend}: option {name}={value!r}: must be {bounds}")
    return number


def as_int(backend: str, name: str, value: str, *, low: int | None = None) -> int:
    number = int(_convert(backend, name, value, "an integer", int))
    if low is not None and number < low:
        raise UsageError(f"{backend}: option {name}={value!r}: must be at least {low}")
    return number


def as_bool(backend: str, name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise UsageError(f"{backend}: option {name}={value!r}: expected true or false")
