"""Backend discovery through the `voiceprep.backends` entry-point group.

Built-in backends are registered in voiceprep's own pyproject.toml exactly as a
third-party package registers its own, so both are found the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib.metadata import EntryPoint, entry_points

from voiceprep.backends.base import Backend, BackendFactory, SynthesizedAudio
from voiceprep.errors import BackendNotFoundError

GROUP = "voiceprep.backends"
DEFAULT_BACKEND = "piper"

__all__ = [
    "DEFAULT_BACKEND",
    "Backend",
    "BackendFactory",
    "SynthesizedAudio",
    "backend_entry_points",
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
