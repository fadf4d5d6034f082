"""Word timings from Piper: the voice model's phoneme durations, turned into word times.

A Piper model computes how many samples each phoneme lasts but does not output it. piper-tts
exposes it by adding that tensor to the model's outputs (`piper.patch_voice_with_alignment`,
which needs the `onnx` package). Importing onnx and patching costs about a second and a half,
so the patched model is written once to the user cache folder `voiceprep-piper`, named by the source
model's size and modification time, and later runs load it as they would the original. The
audio is the same sample for sample; only the extra output differs. Without `onnx`, or when
the model has no such tensor, Piper entries simply carry no timings.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import platformdirs

from voiceprep.timings import AlignedSentence, Words, from_phonemes, group_spans

_log = logging.getLogger(__name__)


def model_source(model: Path) -> str | bytes:
    """What onnxruntime should load for `model`: the alignment-enabled copy when it can be
    had (a path in the user cache folder, or the bytes when that folder is not writable),
    else the model itself."""
    if importlib.util.find_spec("onnx") is None:
        return str(model)
    stat = model.stat()
    copy = _copies() / f"{model.stem}-{stat.st_size}-{stat.st_mtime_ns}.aligned.onnx"
    if copy.is_file():
        return str(copy)
    try:
        patched = _patched(model)
    except Exception as exc:  # onnx raises many types for a model it cannot patch
        _log.debug("piper: no word timings for %s (%s)", model, exc)
        return str(model)
    try:
        copy.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=copy.parent, suffix=".part", delete=False) as fh:
            fh.write(patched)
        os.replace(fh.name, copy)
    except OSError:
        return patched
    return str(copy)


def words(voice: Any, text: str, chunks: Sequence[Any]) -> Words | None:
    """The word times of `text` from Piper's audio chunks (one a sentence), or None when
    the chunks carry no alignments or the words cannot be paired with them."""
    sentences = [_aligned(chunk) for chunk in chunks]
    if any(sentence is None for sentence in sentences):
        return None
    rate = int(voice.config.sample_rate)
    return from_phonemes(text, sentences, rate, lambda word: _groups(voice, word))  # type: ignore[arg-type]


class SentenceWords:
    """Word times sentence by sentence, as a stream yields Piper's chunks: each sentence's
    words are the next words of the text whose phoneme groups fill it. Once a sentence
    cannot be paired, no later one is (None)."""

    def __init__(self, voice: Any, text: str) -> None:
        self.voice, self.rate = voice, int(voice.config.sample_rate)
        self.tokens = [t for t in text.split() if any(c.isalnum() for c in t)]
        self.lost = False

    def next(self, chunk: Any) -> Words | None:
        sentence = None if self.lost else _aligned(chunk)
        groups = 0 if sentence is None else len(_spans(sentence))
        taken, count = [], 0
        while groups and count < groups and self.tokens:
            token = self.tokens.pop(0)
            taken.append(token)
            count += _groups(self.voice, token)
        found = None
        if sentence is not None and count == groups:
            found = from_phonemes(" ".join(taken), [sentence], self.rate, self._groups)
        self.lost = found is None
        return found

    def _groups(self, word: str) -> int:
        return _groups(self.voice, word)


def _aligned(chunk: Any) -> AlignedSentence | None:
    if not chunk.phoneme_alignments:
        return None
    phonemes = [(a.phoneme, int(a.num_samples)) for a in chunk.phoneme_alignments]
    return phonemes, len(chunk.audio_int16_bytes) // 2


def _spans(sentence: AlignedSentence) -> list[tuple[int, int]]:
    return list(group_spans([sentence]))


def _groups(voice: Any, word: str) -> int:
    """How many phoneme groups (spoken words) the voice makes of one written word."""
    return sum(1 for sentence in voice.phonemize(word) for g in "".join(sentence).split(" ") if g)


def _copies() -> Path:
    # Beside the prompt cache's default folder, not in it: that one is a cache directory.
    return Path(platformdirs.user_cache_dir("voiceprep-piper"))


def _patched(model: Path) -> bytes:
    import onnx
    from piper.patch_voice_with_alignment import add_alignment_output

    proto = onnx.load(str(model))
    add_alignment_output(proto)
    data: bytes = proto.SerializeToString()
    return data
