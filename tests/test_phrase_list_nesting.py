"""A 100,000-deep list in a JSON phrase list is one clear line and exit 2, no traceback."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from helpers import run_voiceprep as voiceprep

from voiceprep.errors import PhraseListError
from voiceprep.phrases import read_phrase_list


def one_error(result: subprocess.CompletedProcess[bytes]) -> str:
    err = result.stderr.decode(errors="replace")
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("voiceprep: error: "), err
    return lines[0]


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_a_100000_deep_json_list(tmp_path: Path, suffix: str) -> None:
    phrases = tmp_path / f"deep{suffix}"
    phrases.write_text("[" * 100_000 + "]" * 100_000)

    with pytest.raises(PhraseListError, match="nested too deeply"):
        read_phrase_list(phrases)
    result = voiceprep("warm", str(phrases), "--dry-run", "--cache-dir", str(tmp_path / "c"),
                       "-b", "espeak")  # fmt: skip
    assert result.returncode == 2
    assert one_error(result) == f"voiceprep: error: {phrases}:1: invalid JSON: nested too deeply"
