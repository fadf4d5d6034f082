"""Helpers and fixtures shared by several test modules.

Fixtures are found by pytest; the plain helpers are imported (`from conftest import
run_cli`), as `audiogen` and `fakeproviders` are: the tests directory is on sys.path.
"""

from __future__ import annotations

import os
import select
from collections.abc import Iterator

import pytest
from fakeproviders import FakeProvider, fake_elevenlabs, fake_openai

from voiceprep.cli import main


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """`voiceprep ARGS` in this process: (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as info:
        main(args)
    captured = capsys.readouterr()
    code = info.value.code
    return (code if isinstance(code, int) else 0), captured.out, captured.err


def read_terminal(primary: int, timeout: float = 60) -> str:
    """Everything a program writes to a pseudo-terminal until it closes it; closes `primary`.

    Each wait is bounded, so a hung child fails the test instead of hanging the suite.
    """
    screen = b""
    while select.select([primary], [], [], timeout)[0]:
        try:
            chunk = os.read(primary, 4096)
        except OSError:  # EIO: the terminal closed, the program ended
            break
        if not chunk:
            break
        screen += chunk
    os.close(primary)
    return screen.decode(errors="replace")


@pytest.fixture
def openai_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeProvider]:
    """A local server speaking OpenAI's TTS API, its key in OPENAI_API_KEY."""
    with fake_openai() as fake:
        monkeypatch.setenv("OPENAI_API_KEY", fake.api_key)
        monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
        yield fake


@pytest.fixture
def eleven_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeProvider]:
    """A local server speaking ElevenLabs' TTS API, its key in ELEVENLABS_API_KEY."""
    with fake_elevenlabs() as fake:
        monkeypatch.setenv("ELEVENLABS_API_KEY", fake.api_key)
        monkeypatch.delenv("ELEVENLABS_BASE_URL", raising=False)
        yield fake
