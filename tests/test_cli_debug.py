"""`--debug` (or `main(debug=True)`, or VOICEPREP_DEBUG) lets an error raise with its
traceback; it belongs to one run: the next run in the same process is back to one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from voiceprep.cli import main
from voiceprep.errors import InputError


def test_debug_raises_and_does_not_stick_to_the_next_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VOICEPREP_DEBUG", raising=False)
    missing = str(tmp_path / "missing.wav")

    with pytest.raises(InputError):
        main(["--debug", "decode", missing])
    with pytest.raises(SystemExit) as exited:
        main(["decode", missing])

    assert exited.value.code == 2
    assert capsys.readouterr().err.strip().startswith("voiceprep: error: ")


def test_debug_is_injected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOICEPREP_DEBUG", "1")
    missing = str(tmp_path / "missing.wav")

    with pytest.raises(InputError):
        main(["decode", missing])
    with pytest.raises(SystemExit):
        main(["decode", missing], debug=False)  # the caller's word wins over the variable
