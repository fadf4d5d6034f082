"""Keys never printed (issue 12 item 3): stripped when read, redacted from every message
(whole, or any 8-character run of them, whatever their shape), never inside a raw header
value in an error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakeproviders import OPENAI_KEY, FakeProvider, Fault, fake_openai

from voiceprep.backends.openai import OpenAIBackend
from voiceprep.backends.retry import retry_delay, synthesize_with_retries
from voiceprep.errors import BackendError, TransientBackendError
from voiceprep.secrets import MIN_RUN, env_secret, redact

# Not shaped like sk-…: only its configured value can find it.
ODD_KEY = "Zq7pW2xLm9Rt4Vb8Nc3Hd6Jf"


def runs_of(secret: str, length: int = MIN_RUN) -> list[str]:
    return [secret[i : i + length] for i in range(len(secret) - length + 1)]


def assert_no_run(text: str, secret: str) -> None:
    leaked = [run for run in runs_of(secret) if run in text]
    assert not leaked, f"key fragments in {text!r}: {leaked}"


# --- the library ---------------------------------------------------------------------


def test_env_secret_strips_newlines_from_files_and_kubernetes(monkeypatch: pytest.MonkeyPatch):
    for raw in (ODD_KEY + "\n", ODD_KEY + "\r\n", f"  {ODD_KEY}\t"):
        monkeypatch.setenv("SOME_API_KEY", raw)
        assert env_secret("SOME_API_KEY") == ODD_KEY
    monkeypatch.setenv("SOME_API_KEY", " \n")
    assert env_secret("SOME_API_KEY") is None


def test_redact_removes_configured_values_and_their_runs(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("OPENAI_API_KEY", ODD_KEY + "\n")
    echoed = (
        f"Incorrect API key provided: ...{ODD_KEY[-10:]}; whole: {ODD_KEY}; part {ODD_KEY[3:12]}"
    )

    cleaned = redact(echoed)

    assert_no_run(cleaned, ODD_KEY)
    assert cleaned.startswith("Incorrect API key provided: ...[redacted]")
    assert redact("a short word like voiceprep stays") == "a short word like voiceprep stays"


def test_redact_of_a_message_without_secrets_is_the_message(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("OPENAI_API_KEY", ODD_KEY)
    assert redact("openai: HTTP 500: fake error 500") == "openai: HTTP 500: fake error 500"


async def test_a_plugin_error_quoting_the_key_is_redacted(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ELEVENLABS_API_KEY", ODD_KEY)

    class Leaky:
        name = "leaky"

        async def synthesize(self, text: str, **_: object) -> object:
            raise RuntimeError(f"auth failed for key {ODD_KEY[:-2]}")

    with pytest.raises(BackendError) as info:
        await synthesize_with_retries(Leaky(), "Hi.", rate=16000, channels=1)  # type: ignore[arg-type]
    assert_no_run(str(info.value), ODD_KEY)


def test_retry_after_never_exceeds_the_timeout() -> None:
    error = TransientBackendError("HTTP 429", retry_after=3600.0)
    assert retry_delay(error, 0, timeout=20.0) == 20.0
    assert retry_delay(error, 0, timeout=None) == 120.0  # MAX_RETRY_AFTER still bounds it
    assert retry_delay(TransientBackendError("x", retry_after=2.0), 0, timeout=20.0) == 2.0


async def test_retry_after_wait_is_capped_by_the_timeout_end_to_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    with fake_openai() as fake:
        monkeypatch.setenv("OPENAI_API_KEY", fake.api_key)
        fake.push(Fault(429, retry_after="600"))
        backend = OpenAIBackend(options={"base_url": fake.base_url})
        audio = await synthesize_with_retries(
            backend, "Hi.", rate=24000, channels=1, timeout=5.0, sleep=sleep
        )
        await backend.aclose()
    assert audio.data and waits == [5.0]


# --- the command line ----------------------------------------------------------------


@pytest.fixture
def fake() -> Iterator[FakeProvider]:
    with fake_openai() as server:
        yield server


def say(fake: FakeProvider, tmp_path: Path, key: str, *more: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOICEPREP_")}
    env["OPENAI_API_KEY"] = key
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "voiceprep",
            "say",
            "Hello there.",
            "-o",
            str(tmp_path / "o.wav"),
            "-b",
            "openai",
            "-O",
            f"base_url={fake.base_url}",
            "--cache-dir",
            str(tmp_path / "c"),
            "--retries",
            "2",
            *more,
        ],  # fmt: skip
        capture_output=True,
        env=env,
        timeout=120,
    )


@pytest.mark.parametrize("ending", ["\n", "\r\n"])
def test_a_key_with_a_trailing_newline_works(
    fake: FakeProvider, tmp_path: Path, ending: str
) -> None:
    result = say(fake, tmp_path, OPENAI_KEY + ending)

    assert result.returncode == 0, result.stderr
    assert fake.requests[-1].headers["authorization"] == f"Bearer {OPENAI_KEY}"


def test_a_key_holding_a_control_character_is_refused_without_printing_it(
    fake: FakeProvider, tmp_path: Path
) -> None:
    result = say(fake, tmp_path, OPENAI_KEY[:10] + "\x07" + OPENAI_KEY[10:])
    err = result.stderr.decode()

    assert result.returncode == 1 and fake.request_count == 0
    assert "Traceback" not in err and "Illegal header value" not in err
    assert "character HTTP does not allow" in err
    assert_no_run(err, OPENAI_KEY)


def test_a_provider_echoing_part_of_the_key_leaks_nothing(
    fake: FakeProvider, tmp_path: Path
) -> None:
    # OpenAI shows "sk-ab*****…" plus the key's last characters; a retried 500 that echoes
    # the key's tail appears in every retry warning and in the final error.
    key = "Zq7pW2xLm9Rt4Vb8Nc3Hd6Jf"  # not shaped like sk-…
    fake.api_key = key
    tail = json.dumps({"error": {"message": f"key ...{key[-12:]} over quota"}}).encode()
    fake.push(Fault(500, body=tail), Fault(500, body=tail), Fault(500, body=tail))

    env = {k: v for k, v in os.environ.items() if not k.startswith("VOICEPREP_")}
    result = subprocess.run(
        [sys.executable, "-m", "voiceprep", "warm", "-", "-b", "openai", "-O",
         f"base_url={fake.base_url}", "--cache-dir", str(tmp_path / "c"), "--retries", "2"],
        input=b"Hello there.\n", capture_output=True, env={**env, "OPENAI_API_KEY": key},
        timeout=120,
    )  # fmt: skip
    err = result.stderr.decode()

    assert result.returncode == 1
    assert err.count("; retry ") == 2 and "[redacted]" in err
    assert_no_run(err, key)


def test_a_wrong_key_echoed_by_the_provider_is_redacted(fake: FakeProvider, tmp_path: Path):
    wrong = "Wrong9Key8Not7Shaped6Like5Any"
    result = say(fake, tmp_path, wrong + "\n")
    err = result.stderr.decode()

    assert result.returncode == 1 and "HTTP 401" in err
    assert_no_run(err, wrong)


def test_a_200_that_is_not_audio_names_the_backend_and_the_type(
    fake: FakeProvider, tmp_path: Path
) -> None:
    fake.push(Fault(200, body=b'{"error": "quota"}', content_type="application/json"))

    result = say(fake, tmp_path, OPENAI_KEY)

    assert result.returncode == 1
    assert result.stderr.decode().splitlines() == [
        "voiceprep: error: openai: the server answered application/json, not audio: "
        '{"error": "quota"}'
    ]
    assert not (tmp_path / "o.wav").exists()
