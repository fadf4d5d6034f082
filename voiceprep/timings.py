"""Word timings: what was spoken when, in seconds from the start of an entry's audio.

Providers give timings in three shapes, each turned into `Word`s here:

- per word (Cartesia's `word_timestamps`): `from_word_lists`;
- per character (ElevenLabs' `alignment`): `from_characters`, words split on white space;
- per phoneme (Piper's alignments, in samples): `from_phonemes`, the phoneme groups of each
  sentence matched to the words of the text — when they do not match one for one (a number
  spoken as several words, text espeak reads as one), no timings, rather than wrong ones.

Timings travel inside the entry file (`cache.entries`), so they are untrusted on the way
back in: `words_from_json` checks them against the audio's duration.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

#: At most this many words in one entry; a text is at most a few thousand characters.
MAX_WORDS = 10_000
_MAX_WORD_CHARS = 1_000
_SLACK = 0.05  # seconds a provider's last end may pass the audio's end (rounding)


@dataclass(frozen=True)
class Word:
    """One spoken word: its text as written, and when it starts and ends (seconds)."""

    text: str
    start: float
    end: float

    def as_dict(self) -> dict[str, Any]:
        return {"text": self.text, "start": self.start, "end": self.end}


Words = tuple[Word, ...]


def words_to_json(words: Iterable[Word]) -> list[dict[str, Any]]:
    """JSON-ready, times rounded to the microsecond (an entry's metadata has one size)."""
    return [{"text": w.text, "start": round(w.start, 6), "end": round(w.end, 6)} for w in words]


def check_duration(words: Words, duration: float) -> None:
    """ValueError when a word ends past the audio's end (by more than rounding)."""
    if words and max(w.end for w in words) > duration + _SLACK:
        raise ValueError("word timings run past the end of the audio")


def words_from_json(value: object, *, duration: float = math.inf) -> Words:
    """`Word`s from an entry's metadata. Raises ValueError for anything but a list of
    {"text", "start", "end"} with 0 <= start <= end <= duration, starts in order."""
    if not isinstance(value, list):
        raise ValueError("word timings are not a list")
    if len(value) > MAX_WORDS:
        raise ValueError(f"more than {MAX_WORDS} word timings")
    words: list[Word] = []
    for item in value:
        if not isinstance(item, dict):
            raise ValueError("a word timing is not an object")
        text, start, end = item.get("text"), item.get("start"), item.get("end")
        if not isinstance(text, str) or not text or len(text) > _MAX_WORD_CHARS:
            raise ValueError("a word timing has no text")
        if not all(_is_number(t) for t in (start, end)):
            raise ValueError(f"the word timing of {text!r} is not a number")
        start, end = float(start), float(end)  # type: ignore[arg-type]
        if not 0 <= start <= end <= duration + _SLACK:
            raise ValueError(f"the word timing of {text!r} is outside the audio")
        if words and start < words[-1].start:
            raise ValueError("word timings out of order")
        words.append(Word(text, start, min(end, duration)))
    return tuple(words)


def shifted(words: Words, offset: float, duration: float) -> Words:
    """The timings after the audio moved by `offset` seconds (a pad adds, a trim takes
    away) and now lasts `duration`: clamped to the audio; a word wholly cut is dropped."""
    out = []
    for word in words:
        start, end = word.start + offset, word.end + offset
        if end <= 0 or start >= duration:
            continue
        out.append(Word(word.text, max(0.0, start), min(duration, end)))
    return tuple(out)


def from_word_lists(
    texts: Sequence[object], starts: Sequence[object], ends: Sequence[object]
) -> Words:
    """Parallel lists of words, starts and ends (seconds), as Cartesia sends them."""
    timed = _parallel(texts, starts, ends, "word", "word timestamp")
    return tuple(
        Word(text.strip(), start, max(start, end)) for text, start, end in timed if text.strip()
    )


def from_characters(
    characters: Sequence[object], starts: Sequence[object], ends: Sequence[object]
) -> Words:
    """Per-character times (ElevenLabs' `alignment`) grouped into words at white space."""
    words: list[Word] = []
    text, start, end = "", 0.0, 0.0
    timed = _parallel(characters, starts, ends, "character", "character alignment")
    for char, char_start, char_end in timed:
        if char.isspace():
            if text:
                words.append(Word(text, start, end))
            text = ""
            continue
        if not text:
            start = char_start
        text += char
        end = max(start, char_end)
    if text:
        words.append(Word(text, start, end))
    return tuple(words)


def _parallel(
    texts: Sequence[object], starts: Sequence[object], ends: Sequence[object], kind: str, item: str
) -> Iterator[tuple[str, float, float]]:
    """(text, start, end) from parallel lists of texts and times in seconds; ValueError when
    the lists differ in length or an item is not a text and two numbers."""
    if not len(texts) == len(starts) == len(ends):
        raise ValueError(f"{kind}, start and end lists differ in length")
    for text, start, end in zip(texts, starts, ends, strict=True):
        if not isinstance(text, str) or not _is_number(start) or not _is_number(end):
            raise ValueError(f"malformed {item}")
        yield text, float(start), float(end)  # type: ignore[arg-type]  # _is_number: real


#: A sentence as Piper aligns it: its phonemes with the samples each lasts, and the
#: sentence's whole length in samples (its audio may run past the last phoneme).
AlignedSentence = tuple[Sequence[tuple[str, int]], int]


def from_phonemes(
    text: str,
    sentences: Sequence[AlignedSentence],
    rate: int,
    groups_of: Callable[[str], int],
) -> Words | None:
    """Word times from phoneme alignments, sentences played one after another.

    A phoneme group is what lies between two spaces. `groups_of(word)` says how many
    groups the phonemizer makes of one written word (2 for "25": "twenty five"); it is
    asked only when the text's words and the groups do not already pair one for one.
    None when they cannot be paired.
    """
    spans = list(group_spans(sentences))
    tokens = [t for t in text.split() if any(c.isalnum() for c in t)]
    if not tokens or not spans:
        return None
    counts = [1] * len(tokens)
    if len(tokens) != len(spans):
        counts = [groups_of(token) for token in tokens]
        if sum(counts) != len(spans):
            return None
    words, at = [], 0
    for token, count in zip(tokens, counts, strict=True):
        if count:
            first, last = spans[at], spans[at + count - 1]
            words.append(Word(token, first[0] / rate, last[1] / rate))
            at += count
    return tuple(words)


def group_spans(sentences: Sequence[AlignedSentence]) -> Iterable[tuple[int, int]]:
    """(first sample, end sample) of each phoneme group, across the sentences."""
    offset = 0
    for phonemes, length in sentences:
        position, span = offset, None
        for phoneme, samples in phonemes:
            if phoneme == " ":
                if span:
                    yield span
                span = None
            elif _is_sound(phoneme):
                span = (span[0] if span else position, position + int(samples))
            position += int(samples)
        if span:
            yield span
        offset += int(length)


def _is_sound(phoneme: str) -> bool:
    """A phoneme that is heard: not a sentence marker (^ $ _) nor punctuation."""
    return (
        bool(phoneme)
        and phoneme not in "^$_"
        and not all(unicodedata.category(c)[0] in "PZS" for c in phoneme)
    )


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
