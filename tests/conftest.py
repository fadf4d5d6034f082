"""Fixtures shared by the test modules. Plain helpers live in `helpers` and `audiogen`
(imported by name: the tests directory is on sys.path), never in this file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakeproviders import FakeProvider, fake_elevenlabs, fake_openai
from helpers import CLI


@pytest.fixture(autouse=True)
def no_voiceprep_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test starts without the developer's VOICEPREP_* variables (their shell's
    VOICEPREP_RATE must not decide what a test sees, nor what a process it starts sees);
    a test that wants one sets it. tests/test_isolation.py checks that this holds."""
    for name in list(os.environ):
        if name.startswith("VOICEPREP_"):
            monkeypatch.delenv(name)


@pytest.fixture
def cli(
    capsysbinary: pytest.CaptureFixture[bytes], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> CLI:
    """The one way to run voiceprep in a test (see tests/helpers.py): no VOICEPREP_*
    variable of the developer's (`no_voiceprep_settings`), and an empty working directory
    (no voiceprep.toml)."""
    workdir = tmp_path / "work"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    return CLI(capsysbinary, monkeypatch, workdir)


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
