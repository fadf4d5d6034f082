"""Planning a warm: the key of every phrase, and whether it is cached (`voiceprep warm`'s
first step, also `--dry-run`, `--check` and `cache pull PHRASES`).

`plan_warm` keys every phrase (backend identity, voice, rate, channels, processing, text:
the fill path's key pair, voiceprep.fill), drops duplicates by key, keeps only this
shard's keys (`--shard K/N`) and marks each cached or missing. Planning never synthesizes
and never needs an API key, which is what makes `--dry-run` and `--check` cheap CI gates.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from voiceprep.errors import UsageError
from voiceprep.fill import Prompt, prompt_for
from voiceprep.keys import BackendIdentity, normalize_text
from voiceprep.phrases import Phrase
from voiceprep.process import NO_PROCESSING, ProcessSettings

if TYPE_CHECKING:
    from voiceprep.backends.base import Backend
    from voiceprep.cache import AudioCache

Shard = tuple[int, int]


@dataclass(frozen=True, slots=True)
class PlanItem:
    """One distinct phrase to have in the cache, and whether it already is."""

    phrase: Phrase
    voice: str | None  # what the backend is asked for: the phrase's voice or the default
    identity: BackendIdentity
    key: str
    cached: bool
    damaged: bool = False  # an entry exists but its audio failed the check: redo it
    # With processing, `key` names the processed audio and `raw_key` the synthesis it was
    # made from (kept too, so new processing settings never pay for a synthesis again).
    raw_key: str = ""
    raw_cached: bool = False

    @property
    def text(self) -> str:
        """The text sent to the backend: normalized, exactly what the key covers."""
        return normalize_text(self.phrase.text)

    @property
    def characters(self) -> int:
        return len(self.text)

    @property
    def processed(self) -> bool:
        return bool(self.raw_key) and self.raw_key != self.key

    @property
    def prompt(self) -> Prompt:
        """What the fill path (voiceprep.fill) is asked for."""
        return Prompt(self.text, self.voice, self.identity, self.key, self.raw_key or self.key)


@dataclass(frozen=True)
class WarmPlan:
    items: list[PlanItem]  # this shard's distinct phrases, in list order
    all_keys: frozenset[str]  # the keys of every shard (what --prune keeps)
    identities: frozenset[tuple[str, str | None]]  # (backend, voice) pairs of the lists
    total: int  # distinct phrases in the lists, all shards
    rate: int
    channels: int

    @property
    def cached(self) -> list[PlanItem]:
        return [item for item in self.items if item.cached]

    @property
    def missing(self) -> list[PlanItem]:
        return [item for item in self.items if not item.cached]

    @property
    def damaged(self) -> list[PlanItem]:
        return [item for item in self.items if item.damaged]

    @property
    def billable_characters(self) -> int:
        """What the missing phrases cost: those whose raw synthesis is cached cost nothing
        (they are only processed again)."""
        return sum(item.characters for item in self.missing if not item.raw_cached)


def parse_shard(text: str) -> Shard:
    """`"2/4"` → (2, 4); shards are 1-based."""
    k_text, sep, n_text = text.partition("/")
    try:
        k, n = int(k_text), int(n_text)
    except ValueError:
        k = n = 0
    if not sep or n < 1 or not 1 <= k <= n:
        raise UsageError(f"invalid shard {text!r}: expected K/N with 1 <= K <= N (e.g. 1/4)")
    return k, n


def shard_of(key: str, count: int) -> int:
    """The 1-based shard a key falls in: keys are uniform hashes, so shards are even."""
    return int(key[:16], 16) % count + 1


def plan_warm(
    phrases: Iterable[Phrase],
    backend: Backend,
    cache: AudioCache,
    *,
    voice: str | None = None,
    rate: int,
    channels: int,
    shard: Shard | None = None,
    verify: bool = False,
    process: ProcessSettings = NO_PROCESSING,
) -> WarmPlan:
    """Key every phrase and look it up. `voice` is the default for phrases without one.

    With `verify`, a cached entry also has to pass its sha256 check to count as cached
    (a damaged one is planned again, and its put replaces it). Without, presence is enough:
    what `--check` and `--dry-run` use, so they stay fast over large caches.

    With `process`, keys name the processed audio (the settings are part of the identity);
    a phrase whose raw synthesis is cached is marked `raw_cached`: it needs no request.
    """
    identities: dict[str | None, BackendIdentity] = {}
    keyed: dict[str, tuple[Phrase, Prompt]] = {}
    for phrase in phrases:
        phrase_voice = phrase.voice or voice
        identity = identities.get(phrase_voice)
        if identity is None:
            identity = identities[phrase_voice] = backend.identity(phrase_voice)
        prompt = prompt_for(
            identity, phrase.text, voice=phrase_voice, rate=rate, channels=channels, process=process
        )
        # Two spellings of one phrase (or a voice given explicitly that is the default)
        # share a key: synthesize it once.
        keyed.setdefault(prompt.key, (phrase, prompt))
    items = []
    raw_keys = set()
    for key, (phrase, prompt) in keyed.items():
        phrase_voice, identity, raw_key = prompt.voice, prompt.identity, prompt.raw_key
        raw_keys.add(raw_key)
        if shard is not None and shard_of(key, shard[1]) != shard[0]:
            continue
        present = cache.contains(key)
        damaged = present and verify and not cache.is_intact(key)
        raw_cached = raw_key != key and cache.contains(raw_key)
        if raw_cached and verify:
            raw_cached = cache.is_intact(raw_key)
        items.append(
            PlanItem(
                phrase,
                phrase_voice,
                identity,
                key,
                present and not damaged,
                damaged,
                raw_key=raw_key,
                raw_cached=raw_cached,
            )
        )
    return WarmPlan(
        items=items,
        all_keys=frozenset(keyed) | frozenset(raw_keys),
        identities=frozenset((i.name, i.voice) for i in identities.values()),
        total=len(keyed),
        rate=rate,
        channels=channels,
    )
