"""Planning a warm: the key of every phrase, and whether it is cached (`voiceprep warm`'s
first step, also `--dry-run`, `--check` and `cache pull PHRASES`).

`plan_warm` keys every phrase (backend identity, voice, rate, channels, processing, text:
the fill path's key pair, voiceprep.fill), drops duplicates by key, keeps only this
shard's keys (`--shard K/N`) and marks each cached or missing. Planning never synthesizes
and never needs an API key, which is what makes `--dry-run` and `--check` cheap CI gates.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, overload

from voiceprep.errors import UsageError
from voiceprep.fill import Prompt, prompt_for
from voiceprep.keys import BackendIdentity, normalize_text
from voiceprep.phrases import Phrase, PhraseList
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


_CACHED, _DAMAGED, _RAW_CACHED = 1, 2, 4  # a plan row's flags
_DIGEST = 32  # bytes of a key's sha256


class WarmPlan:
    """This shard's distinct phrases, in list order, and whether each is cached.

    Held as columns, so a plan of a million phrases holds no object per phrase (issue
    #26): the phrase list (`PhraseList`: the texts, once), and per phrase its row in that
    list, its key's 32-byte digest (and its raw key's, with processing), its length and
    three flags. `items`, `cached`, `missing` and `damaged` are sequences that make each
    `PlanItem` when it is read.
    """

    def __init__(
        self,
        phrases: PhraseList,
        *,
        voice: str | None,
        identities: dict[str | None, BackendIdentity],
        rate: int,
        channels: int,
    ) -> None:
        self.phrases, self.voice, self._identities = phrases, voice, identities
        self.total = 0  # distinct phrases in the lists, all shards
        self.rate, self.channels = rate, channels
        self._rows = array("Q")  # each plan row's row in `phrases`
        self._keys = bytearray()
        self._raw_keys = bytearray()  # with processing only (else a row's key is its raw key)
        self._characters = array("Q")
        self._flags = bytearray()
        self._others = bytearray()  # the keys of the other shards (what --prune keeps)
        self._all_keys: frozenset[str] | None = None

    def add(self, row: int, key: bytes, raw_key: bytes | None, characters: int, flags: int) -> None:
        self._rows.append(row)
        self._keys += key
        if raw_key is not None:
            self._raw_keys += raw_key
        self._characters.append(characters)
        self._flags.append(flags)

    def add_other(self, key: bytes, raw_key: bytes | None) -> None:
        """A phrase of another shard: only its keys are kept."""
        self._others += key
        if raw_key is not None:
            self._others += raw_key

    @cached_property  # read per cache entry by prune_unlisted
    def identities(self) -> frozenset[tuple[str, str | None]]:
        """The (backend, voice) pairs of the lists."""
        return frozenset((i.name, i.voice) for i in self._identities.values())

    @property
    def all_keys(self) -> frozenset[str]:
        """The keys of every shard, raw keys included (what --prune keeps); made when first
        asked for."""
        if self._all_keys is None:
            digests = (self._keys, self._raw_keys, self._others)
            self._all_keys = frozenset(
                blob[start : start + _DIGEST].hex()
                for blob in digests
                for start in range(0, len(blob), _DIGEST)
            )
        return self._all_keys

    @property
    def items(self) -> PlanItems:
        return PlanItems(self, range(len(self._rows)))

    @property
    def cached(self) -> PlanItems:
        return self._where(_CACHED, _CACHED)

    @property
    def missing(self) -> PlanItems:
        return self._where(_CACHED, 0)

    @property
    def damaged(self) -> PlanItems:
        return self._where(_DAMAGED, _DAMAGED)

    @property
    def billable_characters(self) -> int:
        """What the missing phrases cost: those whose raw synthesis is cached cost nothing
        (they are only processed again)."""
        flags, characters = self._flags, self._characters
        return sum(characters[i] for i, f in enumerate(flags) if not f & (_CACHED | _RAW_CACHED))

    def mark_cached(self, keys: Iterable[str]) -> None:
        """Count the entries of `keys` as cached (and intact): pulled from a remote."""
        digests = {bytes.fromhex(key) for key in keys}
        for index in range(len(self._flags)):
            if self._key(self._keys, index) in digests:
                self._flags[index] = (self._flags[index] | _CACHED) & ~_DAMAGED

    def _where(self, mask: int, value: int) -> PlanItems:
        return PlanItems(
            self, array("Q", (i for i, f in enumerate(self._flags) if f & mask == value))
        )

    @staticmethod
    def _key(blob: bytearray, index: int) -> bytes:
        return bytes(blob[index * _DIGEST : (index + 1) * _DIGEST])

    def item(self, index: int) -> PlanItem:
        """The `PlanItem` of plan row `index`."""
        phrase = self.phrases[self._rows[index]]
        voice = phrase.voice or self.voice
        key = self._key(self._keys, index).hex()
        raw_key = self._key(self._raw_keys, index).hex() if self._raw_keys else key
        flags = self._flags[index]
        return PlanItem(
            phrase,
            voice,
            self._identities[voice],
            key,
            bool(flags & _CACHED),
            bool(flags & _DAMAGED),
            raw_key=raw_key,
            raw_cached=bool(flags & _RAW_CACHED),
        )


class PlanItems(Sequence[PlanItem]):
    """Some rows of a plan, each read as a `PlanItem` (made when read)."""

    __slots__ = ("_indices", "_plan")

    def __init__(self, plan: WarmPlan, indices: Sequence[int]) -> None:
        self._plan, self._indices = plan, indices

    def __len__(self) -> int:
        return len(self._indices)

    @overload
    def __getitem__(self, index: int) -> PlanItem: ...
    @overload
    def __getitem__(self, index: slice) -> PlanItems: ...
    def __getitem__(self, index: int | slice) -> PlanItem | PlanItems:
        if isinstance(index, slice):
            return PlanItems(self._plan, self._indices[index])
        return self._plan.item(self._indices[index])

    def __iter__(self) -> Iterator[PlanItem]:
        return map(self._plan.item, self._indices)


class PlanQueue:
    """Plan items taken from the front one at a time, each made when taken: what a warm's
    workers drain, without an item per phrase held up front."""

    __slots__ = ("_items", "_next")

    def __init__(self, items: Sequence[PlanItem]) -> None:
        self._items, self._next = items, 0

    def popleft(self) -> PlanItem:
        if not self:
            raise IndexError("pop from an empty queue")
        self._next += 1
        return self._items[self._next - 1]

    def __len__(self) -> int:
        return len(self._items) - self._next


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
    listing = phrases if isinstance(phrases, PhraseList) else PhraseList(phrases)
    identities: dict[str | None, BackendIdentity] = {}
    # Phrases of one identity (voices can share one) and one normalized text share a key:
    # the texts seen so far, per voice (the same set for voices of one identity).
    seen: dict[str | None, set[str]] = {}
    plan = WarmPlan(listing, voice=voice, identities=identities, rate=rate, channels=channels)
    for row in range(len(listing)):
        text, phrase_voice = listing.text(row), listing.voice(row) or voice
        if phrase_voice not in identities:
            identity = identities[phrase_voice] = backend.identity(phrase_voice)
            same = (seen[v] for v, other in identities.items() if v in seen and other == identity)
            seen[phrase_voice] = next(same, set())
        prompt = prompt_for(
            identities[phrase_voice],
            text,
            voice=phrase_voice,
            rate=rate,
            channels=channels,
            process=process,
        )
        normalized = text if prompt.text == text else prompt.text  # most are one string
        texts = seen[phrase_voice]
        # Two spellings of one phrase (or a voice given explicitly that is the default)
        # share a key: synthesize it once.
        if normalized in texts:
            continue
        texts.add(normalized)
        plan.total += 1
        key, raw_key = prompt.key, prompt.raw_key
        digest = bytes.fromhex(key)
        raw_digest = bytes.fromhex(raw_key) if prompt.processed else None
        if shard is not None and shard_of(key, shard[1]) != shard[0]:
            plan.add_other(digest, raw_digest)
            continue
        present = cache.contains(key)
        damaged = present and verify and not cache.is_intact(key)
        raw_cached = prompt.processed and cache.contains(raw_key)
        if raw_cached and verify:
            raw_cached = cache.is_intact(raw_key)
        flags = _CACHED if present and not damaged else _DAMAGED if damaged else 0
        if raw_cached:
            flags |= _RAW_CACHED
        plan.add(row, digest, raw_digest, len(normalized), flags)
    return plan
