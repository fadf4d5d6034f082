"""Backend discovery through the `voiceprep.backends` entry-point group.

Built-in backends are registered in voiceprep's own pyproject.toml exactly as a
third-party package registers its own, so both are found the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from importlib.metadata import EntryPoint, entry_points

from voiceprep.backends.base import Backend, BackendFactory, SynthesizedAudio
from voiceprep.errors import BackendNotFoundError, VoiceprepError

GROUP = "voiceprep.backends"
DEFAULT_BACKEND = "piper"

__all__ = [
    "DEFAULT_BACKEND",
    "Backend",
    "BackendFactory",
    "SynthesizedAudio",
    "BackendStatus",
    "backend_entry_points",
    "describe_backends",
    "get_backend",
]


def backend_entry_points() -> dict[str, EntryPoint]:
    """Every installed backend entry point by name (the first one wins on a clash)."""
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=GROUP):
        found.setdefault(ep.name, ep)
    return found


def get_backend(
    name: str = DEFAULT_BACKEND,
    *,
    voice: str | None = None,
    options: Mapping[str, str] | None = None,
) -> Backend:
    """Load the backend called `name` and build it with a default voice and options."""
    eps = backend_entry_points()
    if name not in eps:
        known = ", ".join(sorted(eps)) or "none"
        raise BackendNotFoundError(f"unknown backend {name!r} (installed: {known})")
    factory: BackendFactory = eps[name].load()
    return factory(voice=voice, options=dict(options or {}))


@dataclass(frozen=True)
class BackendStatus:
    """What `voiceprep backends` reports about one entry point."""

    name: str
    usable: bool
    reason: str | None  # why not usable (None when usable)
    target: str  # "module:attr" the entry point names
    distribution: str | None  # the installed package that declares it
    version: str | None
    model: str | None = None  # defaults, when the backend could be built
    voice: str | None = None


# (voice, options) to build the backend called NAME with, e.g. from the config file.
Configure = Callable[[str], tuple[str | None, Mapping[str, str]]]


def describe_backends(configure: Configure | None = None) -> list[BackendStatus]:
    """Every installed backend, whether it is usable here and why not, sorted by name.

    A backend whose module fails to import, or whose factory or checks raise, is reported
    with the reason; it never stops the others from being listed.
    """
    return [_describe(ep, configure) for _, ep in sorted(backend_entry_points().items())]


def _describe(ep: EntryPoint, configure: Configure | None) -> BackendStatus:
    dist = getattr(ep, "dist", None)
    status = BackendStatus(
        name=ep.name,
        usable=False,
        reason=None,
        target=ep.value,
        distribution=dist.name if dist is not None else None,
        version=dist.version if dist is not None else None,
    )
    try:
        factory = ep.load()
    except Exception as exc:  # a broken plugin is reported, not fatal
        return replace(status, reason=f"cannot load: {_explain(exc)}")
    try:
        voice, options = configure(ep.name) if configure else (None, {})
        backend = factory(voice=voice, options=dict(options))
        reason = backend.unavailable_reason()
    except Exception as exc:
        return replace(status, reason=_explain(exc))
    status = replace(status, usable=reason is None, reason=reason)
    try:
        identity = backend.identity(voice)
    except Exception:  # e.g. `command` without -O cmd: the reason already says so
        return status
    return replace(status, model=identity.model, voice=identity.voice)


def _explain(exc: Exception) -> str:

    if isinstance(exc, VoiceprepError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"
