"""Fuzz tests (issue 12 item 8): whatever bytes a phrase list or a WAV header holds, the
readers raise nothing but their documented errors (PhraseListError — a VoiceprepError — for
phrase lists; ValueError for `parse_wav_header`, whose callers turn it into theirs).

The budget is bounded (a few hundred examples per test), so the suite stays fast in CI.
"""

from __future__ import annotations

import io
import json
import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from voiceprep.errors import VoiceprepError
from voiceprep.keys import normalize_text
from voiceprep.phrases import FORMATS, parse_phrases, read_phrase_list
from voiceprep.wav import parse_wav_header, wav_bytes

BUDGET = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# JSON values as a phrase list may hold them, including lone surrogates and deep nesting.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=20,
)
phrase_objects = st.dictionaries(
    st.sampled_from(["text", "voice", "id", "other"]),
    st.none() | st.text() | st.integers() | st.booleans() | st.lists(st.text(), max_size=2),
)


def check_phrases(text: str, fmt: str) -> None:
    try:
        phrases = list(parse_phrases(text, fmt, "fuzz"))
    except VoiceprepError:
        return
    for phrase in phrases:  # what is accepted is usable: text, encodable, normalized
        assert isinstance(phrase.text, str) and normalize_text(phrase.text)
        phrase.text.encode("utf-8")


@BUDGET
@given(st.text(), st.sampled_from(FORMATS))
def test_any_text_in_any_format(text: str, fmt: str) -> None:
    check_phrases(text, fmt)


@BUDGET
@given(st.lists(json_values | phrase_objects, max_size=6), st.sampled_from(["json", "jsonl"]))
def test_json_documents(items: list[object], fmt: str) -> None:
    if fmt == "json":
        text = json.dumps(items, indent=1)
    else:
        text = "\n".join(json.dumps(item) for item in items)
    check_phrases(text, fmt)


@BUDGET
@given(st.binary(max_size=400))
def test_any_bytes_on_stdin(data: bytes) -> None:
    try:
        phrases = read_phrase_list("-", stdin=io.BytesIO(data))
    except VoiceprepError:
        return
    assert all(normalize_text(p.text) for p in phrases)


@BUDGET
@given(st.binary(max_size=200))
def test_any_bytes_as_a_wav_header(blob: bytes) -> None:
    try:
        fmt = parse_wav_header(blob)
    except ValueError:
        return
    assert 0 <= fmt.data_offset <= len(blob)
    assert 0 <= fmt.data_bytes <= len(blob) - fmt.data_offset


@BUDGET
@given(
    st.binary(min_size=0, max_size=64),
    st.integers(min_value=0, max_value=80),
    st.integers(min_value=0, max_value=0xFFFFFFFF),
)
def test_damaged_real_headers(pcm: bytes, cut: int, size: int) -> None:
    # A real header, with one size field overwritten and the file cut short.
    blob = bytearray(wav_bytes(pcm, rate=16000, channels=1))
    struct.pack_into("<I", blob, 16 if size % 2 else 40, size)
    try:
        fmt = parse_wav_header(bytes(blob[: max(0, len(blob) - cut)]))
    except ValueError:
        return
    assert fmt.data_bytes <= len(blob)
