"""What the framework integrations share: their key identities and their cache.

Key identity: an integration keys a prompt exactly as `voiceprep warm` with the matching
backend does, so CI can warm what an agent plays. `plugin_identity(...)` maps the
settings a framework's TTS plugin synthesizes with onto the identity of voiceprep's own
backend for that provider (it builds that backend and asks it, so the rules live in one
place: `voiceprep/backends/`). Settings a voiceprep backend cannot express (a language,
say) go into the options as they are: the cache still works, only `warm` cannot fill it.
A provider voiceprep has no backend for gets a fallback identity from the plugin's
class, provider, model and voice.

Cache: `open_prompt_cache(...)` is the one place the adapters build their cache (a
`TTSAudioCache` over an `AudioCache`), so options that change what is stored (processing)
reach every integration from here. Adapters of one identity, format and directory in one
process share one cache (reference-counted; `close_prompt_cache` releases it), so two
sessions asking for one new sentence cause one synthesis and follow it together
(voiceprep.fill). The gate is off: what the framework's TTS produced has been played
already, and the framework judges its own TTS (as the seed's cache did).
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from voiceprep.backends import get_backend
from voiceprep.cache import AudioCache
from voiceprep.config import resolve_settings
from voiceprep.errors import BackendNotFoundError, UsageError
from voiceprep.keys import BackendIdentity
from voiceprep.tts_cache import TTSAudioCache

if TYPE_CHECKING:
    from voiceprep.process import ProcessSettings

__all__ = ["close_prompt_cache", "fallback_identity", "open_prompt_cache", "plugin_identity"]


def plugin_identity(
    provider: str,
    *,
    model: str | None,
    voice: str | None,
    options: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> BackendIdentity:
    """The identity voiceprep's `provider` backend gives `voice` with these `-O` options.

    `options` are what `voiceprep warm -b provider -O k=v` would be given (values as
    text); `extra` holds settings the backend has no option for, added to the identity's
    options verbatim.
    """
    given = {k: str(v) for k, v in (options or {}).items() if v is not None}
    if model:
        given["model"] = model
    try:
        backend = get_backend(provider, voice=voice, options=given)
    except (BackendNotFoundError, UsageError):  # keyed the same way; warm cannot fill it
        given.pop("model", None)
        backend = None
    identity: BackendIdentity = (
        backend.identity(voice)
        if backend is not None
        else BackendIdentity(provider, model, voice, given)
    )
    if extra:
        merged = {**identity.options, **{k: v for k, v in extra.items() if v is not None}}
        identity = BackendIdentity(identity.name, identity.model, identity.voice, merged)
    return identity


def fallback_identity(
    obj: object, *, provider: str | None, model: str | None, voice: str | None
) -> BackendIdentity:
    """The identity of a TTS no voiceprep backend matches: its class, provider, model, voice."""
    cls = type(obj)
    options: dict[str, Any] = {}
    if provider and provider != "unknown":
        options["provider"] = provider
    return BackendIdentity(
        name=f"{cls.__module__}.{cls.__qualname__}",
        model=model if model and model != "unknown" else None,
        voice=voice,
        options=options,
    )


@dataclass
class _Shared:
    cache: TTSAudioCache
    slot: tuple[Any, ...]
    owns_disk: bool
    users: int = 1


_SHARED: dict[tuple[Any, ...], _Shared] = {}
_BY_CACHE: dict[int, _Shared] = {}


def open_prompt_cache(
    source: Any | None,
    *,
    identity: BackendIdentity,
    rate: int,
    channels: int,
    cache_dir: str | os.PathLike[str] | AudioCache | None,
    max_entries: int | None,
    max_bytes: int | None,
    process: ProcessSettings | None = None,
) -> TTSAudioCache:
    """The cache of one adapter: memory LRU over the shared on-disk cache.

    `source` has `stream_synthesize` (what `fetch` synthesizes with on a miss), or is a
    `voiceprep.sources.Source`; None for an adapter that only uses `lookup`/`store`.
    `cache_dir` None is the directory `voiceprep warm` uses ($VOICEPREP_CACHE_DIR, the
    config file, the default); an open `AudioCache` is used as it is (the limits then are
    its own). `process` None is the config file's `[process]` (the house level, as `warm`
    applies it). Give it back with `close_prompt_cache`.
    """
    if cache_dir is None:
        cache_dir = resolve_settings().cache_dir
    if process is None:
        process = resolve_settings().process
    where = cache_dir if isinstance(cache_dir, AudioCache) else str(Path(cache_dir).resolve())
    slot = (
        where,
        max_entries,
        max_bytes,
        json.dumps(identity.as_dict(), sort_keys=True, default=str),
        rate,
        channels,
        json.dumps(process.key_options(), sort_keys=True),
    )
    shared = _SHARED.get(slot)
    if shared is not None:
        shared.users += 1
        return shared.cache
    disk = (
        cache_dir
        if isinstance(cache_dir, AudioCache)
        else AudioCache(cache_dir, max_entries=max_entries, max_bytes=max_bytes)
    )
    cache = TTSAudioCache(
        source if source is not None else _StoreOnly(rate, channels),
        directory=disk,
        rate=rate,
        channels=channels,
        identity=identity,
        timeout=None,
        process=process,
        gate="off",
    )
    shared = _SHARED[slot] = _BY_CACHE[id(cache)] = _Shared(
        cache, slot, owns_disk=not isinstance(cache_dir, AudioCache)
    )
    return cache


async def close_prompt_cache(cache: TTSAudioCache) -> None:
    """Give back a cache from `open_prompt_cache`; the last user closes it: syntheses in
    flight are cancelled (nothing of them is stored), writes already begun complete,
    then the directory is closed (never under a write)."""
    shared = _BY_CACHE.get(id(cache))
    if shared is None or shared.cache is not cache:
        await cache.aclose()
        return
    shared.users -= 1
    if shared.users > 0:
        return
    del _SHARED[shared.slot], _BY_CACHE[id(cache)]
    await cache.aclose()
    if shared.owns_disk and cache.disk is not None:
        cache.disk.close()


class _StoreOnly:
    """The source of a cache filled by the framework itself (`store`), never by `fetch`."""

    def __init__(self, rate: int, channels: int) -> None:
        self.sample_rate = rate
        self.num_channels = channels

    async def stream_synthesize(
        self, text_iter: AsyncIterator[str], voice_id: str | None = None
    ) -> AsyncIterator[bytes]:
        raise RuntimeError("this cache is filled by the framework's TTS, not by fetch()")
        yield b""  # pragma: no cover - makes this an async generator
