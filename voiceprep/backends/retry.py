"""One synthesis with the retry policy every caller shares (warm, say, TTSAudioCache).

- Each attempt runs under its own timeout (`asyncio.timeout`); a timeout is transient.
- `TransientBackendError` (timeouts, connection errors, HTTP 429/5xx) is retried up to
  `retries` more times, waiting a full-jitter exponential backoff
  (uniform(0, min(MAX_BACKOFF, BASE_BACKOFF * 2**attempt))), or what the provider asked for
  with `Retry-After` when it did (capped at MAX_RETRY_AFTER, and at the per-attempt
  `timeout`, so a bogus header cannot stall a CI job for hours).
- `PermanentBackendError` / `AuthenticationError` / `EmptyAudioError` and every other
  `VoiceprepError` fail at once.
- An exception that is not a VoiceprepError (a bug in a third-party plugin) becomes a
  `BackendError` naming the backend, so the CLI still prints one line; the original stays
  chained for `--debug`.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable

from voiceprep.backends.base import Backend, SynthesizedAudio
from voiceprep.errors import (
    BackendError,
    EmptyAudioError,
    TransientBackendError,
    VoiceprepError,
)
from voiceprep.secrets import redact

BASE_BACKOFF = 0.5  # seconds before the first retry (upper bound of its jitter)
MAX_BACKOFF = 30.0  # upper bound of any computed backoff
MAX_RETRY_AFTER = 120.0  # the longest Retry-After honoured as given

Sleep = Callable[[float], Awaitable[object]]
RetryHook = Callable[[int, float, TransientBackendError], object]


def backoff_delay(attempt: int, *, rng: random.Random | None = None) -> float:
    """Full-jitter exponential backoff before retry number `attempt` (0-based)."""
    ceiling = min(MAX_BACKOFF, BASE_BACKOFF * (2**attempt))
    return (rng or random).uniform(0.0, ceiling)


def retry_delay(
    error: TransientBackendError,
    attempt: int,
    *,
    rng: random.Random | None = None,
    timeout: float | None = None,
) -> float:
    """The provider's Retry-After when given, else the jittered backoff; never more than
    MAX_RETRY_AFTER, nor than `timeout` (what --timeout allows one attempt)."""
    if error.retry_after is not None and error.retry_after >= 0:
        delay = min(error.retry_after, MAX_RETRY_AFTER)
    else:
        delay = backoff_delay(attempt, rng=rng)
    return delay if timeout is None else min(delay, timeout)


async def synthesize_with_retries(
    backend: Backend,
    text: str,
    *,
    voice: str | None = None,
    rate: int,
    channels: int,
    retries: int = 3,
    timeout: float | None = 60.0,
    sleep: Sleep = asyncio.sleep,
    on_retry: RetryHook | None = None,
    rng: random.Random | None = None,
) -> SynthesizedAudio:
    """Synthesize `text`, retrying transient failures; raise the last error when out of tries.

    `sleep` is injectable so tests observe the requested delays without waiting them;
    `on_retry(attempt, delay, error)` is called before each wait (e.g. to log it).
    """
    if retries < 0:
        raise ValueError("retries must be >= 0")
    name = getattr(backend, "name", type(backend).__name__)
    attempt = 0
    while True:
        try:
            audio = await _one_attempt(backend, text, voice, rate, channels, timeout, name)
        except TransientBackendError as exc:
            if attempt >= retries:
                tries = "1 attempt" if attempt == 0 else f"{attempt + 1} attempts"
                raise TransientBackendError(
                    redact(f"{exc} (gave up after {tries})"), retry_after=exc.retry_after
                ) from exc
            delay = retry_delay(exc, attempt, rng=rng, timeout=timeout)
            if on_retry is not None:
                on_retry(attempt + 1, delay, exc)
            await sleep(delay)
            attempt += 1
            continue
        if not audio.data:
            raise EmptyAudioError(f"{name}: the backend returned no audio")
        return audio


async def _one_attempt(
    backend: Backend,
    text: str,
    voice: str | None,
    rate: int,
    channels: int,
    timeout: float | None,
    name: str,
) -> SynthesizedAudio:
    try:
        async with asyncio.timeout(timeout):
            return await backend.synthesize(text, voice=voice, rate=rate, channels=channels)
    except TimeoutError:
        within = f" within {timeout:g} s" if timeout is not None else ""
        raise TransientBackendError(f"{name}: no answer{within}") from None
    except VoiceprepError:
        raise
    except Exception as exc:
        raise BackendError(redact(f"{name}: {type(exc).__name__}: {exc}")) from exc
