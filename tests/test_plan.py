"""The warm plan and the phrase list it keeps: what they hold for a long list (issue #26:
a 500,000-phrase dry run needed 530 MiB), read back exactly as the phrases were given."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest

from voiceprep.backends import get_backend
from voiceprep.cache import AudioCache
from voiceprep.keys import cache_key
from voiceprep.phrases import Phrase, PhraseList, read_phrase_lists
from voiceprep.process import ProcessSettings
from voiceprep.warm import plan_warm

PHRASES = [
    Phrase("Hello", origin="a.txt", line=1),
    Phrase("Press 1", voice="en-gb", id="menu", origin="a.txt", line=3, lang="en_GB"),
    Phrase("Press 2", voice="en-gb", origin="a.txt", line=2**40),
    Phrase("Bonjour", id="hello", origin="b.json", line=2, lang="fr"),
    Phrase("Goodbye", origin="a.txt", line=9),  # a.txt again, after b.json
    Phrase("Stdin"),
]


def test_a_phrase_list_reads_back_each_phrase_as_given() -> None:
    phrases = PhraseList(PHRASES)
    assert list(phrases) == PHRASES and len(phrases) == len(PHRASES)
    assert phrases[-1] == PHRASES[-1] and phrases[-2].source == "a.txt:9"
    assert phrases[1:4] == PHRASES[1:4]
    assert phrases[3].source == "b.json:2" and phrases[2].line == 2**40
    with pytest.raises(IndexError):
        phrases[len(PHRASES)]


def test_a_long_list_and_its_plan_hold_no_object_per_phrase(tmp_path: Path) -> None:
    """Read, plan and list what a dry run lists: the peak is the file and about 300 bytes
    a phrase, its text included (it was 1,040: a phrase, a prompt and a plan item each,
    64-character keys, three sets of them)."""
    count = 20_000
    path = tmp_path / "long.txt"
    content = "".join(f"Your reference number is {i}; please hold.\n" for i in range(count))
    path.write_text(content, encoding="utf-8")
    backend = get_backend("espeak")
    with AudioCache(tmp_path / "cache") as cache:
        tracemalloc.start()
        try:
            plan = plan_warm(read_phrase_lists([path]), backend, cache, rate=24000, channels=1)
            listed = sum(1 for _ in plan.missing)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert listed == count and plan.billable_characters == len(content) - count
    assert plan.missing[-1].phrase.source == f"{path}:{count}"
    assert peak < len(content) + count * 400, peak / count  # 1,040 a phrase before


def test_a_phrase_in_the_default_voice_spelled_out_is_planned_once_the_first_wins(
    tmp_path: Path,
) -> None:
    backend = get_backend("espeak", voice="en-us")
    phrases = [
        Phrase("Welcome.", origin="p.txt", line=1),
        Phrase("Welcome.", voice="en-us", origin="p.txt", line=2),
        Phrase(" Welcome. ", voice="en-gb", origin="p.txt", line=3),
        Phrase("Welcome.", voice="en-gb", origin="p.txt", line=4),
    ]
    with AudioCache(tmp_path / "c") as cache:
        plan = plan_warm(phrases, backend, cache, voice="en-us", rate=8000, channels=1)
    assert [(i.phrase.line, i.voice) for i in plan.items] == [(1, "en-us"), (3, "en-gb")]
    assert plan.total == 2 and plan.items[1].text == "Welcome."
    assert plan.identities == {("espeak", "en-us"), ("espeak", "en-gb")}


def test_pulled_entries_count_as_cached_and_no_longer_damaged(tmp_path: Path) -> None:
    backend = get_backend("espeak")
    phrases = [Phrase(f"Prompt {i}.") for i in range(4)]
    with AudioCache(tmp_path / "c") as cache:
        plan = plan_warm(phrases, backend, cache, rate=24000, channels=1)
    before = plan.billable_characters
    pulled = plan.items[1]
    plan.mark_cached([pulled.key])
    assert [i.cached for i in plan.items] == [False, True, False, False]
    assert [i.key for i in plan.cached] == [pulled.key] and len(plan.missing) == 3
    assert plan.billable_characters == before - pulled.characters


def test_with_processing_a_plan_keeps_both_keys_of_every_shard(tmp_path: Path) -> None:
    backend = get_backend("espeak")
    process = ProcessSettings(loudness=-16.0)
    phrases = [Phrase(f"Option {i}.") for i in range(12)]
    with AudioCache(tmp_path / "c") as cache:
        whole = plan_warm(phrases, backend, cache, rate=16000, channels=1, process=process)
        part = plan_warm(
            phrases, backend, cache, rate=16000, channels=1, process=process, shard=(1, 2)
        )
    raw = {
        cache_key(backend.identity(None), p.text, rate=16000, channels=1): p.text for p in phrases
    }
    assert [raw[i.raw_key] for i in whole.items] == [p.text for p in phrases]
    assert all(i.processed and i.key not in raw for i in whole.items)
    assert whole.all_keys == {i.key for i in whole.items} | set(raw)
    assert part.all_keys == whole.all_keys and 0 < len(part.items) < 12
    assert part.total == whole.total == 12
