"""Option values are read as Typer's own (pydantic) conversion reads them: the same words
accepted as the same values, the same words refused (voiceprep.cli._values skips
pydantic for start-up, not to change what a user may type)."""

from __future__ import annotations

import math
from enum import Enum
from pathlib import Path
from typing import Any

import pytest
import typer
from typer._adapters import try_build_adapter
from typer.models import OptionInfo

from voiceprep.cli._values import PlainValue, Unparsed

WORDS = ["5", " 5 ", "+5", "-5", "5.0", "5.5", "1_000", "007", "0x10", "１２", "1e3", ".5"]
WORDS += ["5.00", "1__0", "_1", "٣", "\t7\n", "5e0", "-0"]
WORDS += ["1.", "inf", "-inf", "nan", "infinity", "", " ", "true", "no", "Off", "maybe"]


class Shape(Enum):
    RAW = "raw"
    WAV = "wav"


def _typer_reads(annotation: Any, word: str) -> Any:
    adapter = try_build_adapter(annotation, OptionInfo())
    assert adapter is not None
    try:
        return adapter.validate_python(word)
    except ValueError:  # pydantic's ValidationError is one
        return "refused"


def _we_read(annotation: Any, word: str) -> Any:
    convert = PlainValue(OptionInfo(), annotation, annotation)
    try:
        return convert._coerce_value(word, param=None, ctx=None)
    except typer.BadParameter as exc:
        assert isinstance(exc.__cause__, Unparsed) and exc.__cause__.value == word
        return "refused"


@pytest.mark.parametrize("annotation", [int, float, bool, str])
@pytest.mark.parametrize("word", WORDS)
def test_a_word_reads_as_typer_would_read_it(annotation: Any, word: str) -> None:
    ours, theirs = _we_read(annotation, word), _typer_reads(annotation, word)
    if isinstance(theirs, float) and math.isnan(theirs):
        assert isinstance(ours, float) and math.isnan(ours)
    else:
        assert (ours, type(ours)) == (theirs, type(theirs))


@pytest.mark.parametrize("word", ["raw", "wav", "WAV", "mp3", ""])
def test_a_choice_reads_as_typer_would_read_it(word: str) -> None:
    assert _we_read(Shape, word) == _typer_reads(Shape, word)


def test_lists_and_paths_read_as_typer_would_read_them() -> None:
    words = ("a.mp3", "b c.wav", "-")
    convert = PlainValue(OptionInfo(), list[Path], Path)
    assert convert._coerce_value(words, param=None, ctx=None) == _typer_reads(list[Path], words)
    assert _we_read(Path, "x/y.pcm") == _typer_reads(Path, "x/y.pcm") == Path("x/y.pcm")
