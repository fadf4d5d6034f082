"""`warm --cache-dir FILE` is refused before any request; `say` takes --retries and
--timeout as warm does."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fakeproviders import FakeProvider, Fault, fake_openai
from helpers import run_voiceprep as voiceprep


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeProvider]:
    with fake_openai() as server:
        yield server


def openai_args(fake: FakeProvider) -> list[str]:
    return ["-b", "openai", "-O", f"base_url={fake.base_url}"]


def test_warm_into_a_file_as_cache_dir_is_refused_before_any_request(
    fake: FakeProvider, tmp_path: Path
) -> None:
    not_a_dir = tmp_path / "cache"
    not_a_dir.write_text("a file")
    phrases = tmp_path / "p.txt"
    phrases.write_text("Hello.\nGoodbye.\n")

    result = voiceprep("warm", phrases, *openai_args(fake), "--cache-dir", not_a_dir,
                       env={"OPENAI_API_KEY": fake.api_key})  # fmt: skip

    assert result.returncode == 2 and fake.request_count == 0
    assert result.stderr.decode().splitlines() == [
        f"voiceprep: error: {not_a_dir}: cannot be a cache directory "
        f"({not_a_dir} is not a directory)"
    ]


def test_say_takes_retries(fake: FakeProvider, tmp_path: Path) -> None:
    env = {"OPENAI_API_KEY": fake.api_key}
    args = ["say", "Hello.", "-o", tmp_path / "x.wav", *openai_args(fake), "--cache-dir", tmp_path]
    fake.push(500)
    assert voiceprep(*args, "--retries", "0", env=env).returncode == 1
    fake.push(500)
    assert voiceprep(*args, "--retries", "1", env=env).returncode == 0
    assert fake.request_count == 3


def test_say_takes_timeout(fake: FakeProvider, tmp_path: Path) -> None:
    fake.push(Fault(200, delay=5))
    result = voiceprep("say", "Hello.", "-o", tmp_path / "x.wav", *openai_args(fake),
                       "--cache-dir", tmp_path, "--timeout", "0.5", "--retries", "0",
                       env={"OPENAI_API_KEY": fake.api_key})  # fmt: skip

    assert result.returncode == 1
    assert "no answer within 0.5 s" in result.stderr.decode()
