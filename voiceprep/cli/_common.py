"""What several commands do the same way: resolve settings from the shared options, build
the selected backend, open the cache, write PCM to a file or stdout.

Everything heavy is imported inside the functions, so `voiceprep --help` stays light.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from voiceprep.cli._options import flag_for, selection_flags
from voiceprep.errors import InvalidValueError

if TYPE_CHECKING:
    from voiceprep.backends.base import Backend
    from voiceprep.cache import AudioCache
    from voiceprep.config import Settings


def resolve(**flags: Any) -> Settings:
    """Settings from the shared options' values (see `_options.selection_flags`): flags >
    VOICEPREP_* env > config file > defaults."""
    from voiceprep.config import resolve_settings  # deferred: +6.4 % on --help

    try:
        return resolve_settings(selection_flags(**flags))
    except InvalidValueError as exc:
        if exc.origin is not None:  # from VOICEPREP_* or the config file: named as such
            raise
        raise exc.renamed(flag_for(exc.name)) from None


def build_backend(settings: Settings) -> Backend:
    """The backend the settings select, with their voice and options."""
    from voiceprep.backends import get_backend  # deferred: +29 % on --help

    return get_backend(settings.backend, voice=settings.voice, options=settings.options)


def open_cache(directory: Path, limits: Settings | None = None) -> AudioCache:
    """The cache in `directory` (use it with `with`); with `limits`, the configured
    --max-entries/--max-size apply to what is stored through it."""
    from voiceprep.cache import AudioCache  # deferred: +13 % on --help

    if limits is None:
        return AudioCache(directory)
    return AudioCache(directory, max_entries=limits.max_entries, max_bytes=limits.max_size)


def plural(count: int, one: str, many: str) -> str:
    return one if count == 1 else many
