"""`voiceprep warm` as real processes: killed with SIGKILL, interrupted with Ctrl-C (SIGINT),
and two at once on one cache directory. The backend is the fake OpenAI server in this
process, slowed down so there is time to interrupt."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakeproviders import OPENAI_KEY, FakeProvider, fake_openai
from helpers import voiceprep_command

from voiceprep.cache import AudioCache

COUNT = 24


@pytest.fixture
def slow_openai() -> Iterator[FakeProvider]:
    with fake_openai(latency=0.25) as fake:
        yield fake


def phrases(tmp_path: Path) -> Path:
    path = tmp_path / "phrases.txt"
    path.write_text("".join(f"Menu option {i}.\n" for i in range(COUNT)))
    return path


def start_warm(tmp_path: Path, fake: FakeProvider, *more: str) -> subprocess.Popen[str]:
    args = [
        "warm",
        str(phrases(tmp_path)),
        "-b",
        "openai",
        "-O",
        f"base_url={fake.base_url}",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--json",
        *more,
    ]
    env = {**os.environ, "OPENAI_API_KEY": OPENAI_KEY}
    return subprocess.Popen(
        voiceprep_command(*args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def cached(tmp_path: Path) -> int:
    directory = tmp_path / "cache"
    if not directory.exists():
        return 0
    with AudioCache(directory) as cache:
        return len(cache)


def wait_for_entries(tmp_path: Path, proc: subprocess.Popen[str], count: int) -> None:
    """Poll until the running warm has committed `count` entries (a deadline, not a timing)."""
    deadline = time.monotonic() + 60
    while cached(tmp_path) < count:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the warm made no progress"
        time.sleep(0.05)


def verify_clean(tmp_path: Path) -> None:
    with AudioCache(tmp_path / "cache") as cache:
        report = cache.verify()
        assert not report.damaged, report.as_dict()
        for entry in cache.entries():
            assert cache.get(entry.key, rate=entry.rate, channels=entry.channels)


def resume(tmp_path: Path, fake: FakeProvider, already: int) -> None:
    """A re-run synthesizes exactly the phrases that are not cached, then all are."""
    fake.reset()
    fake.latency = 0.0
    proc = start_warm(tmp_path, fake, "-j", "4")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    summary = json.loads(out)
    assert summary["already_cached"] == already
    assert summary["synthesized"] == COUNT - already
    assert fake.request_count == COUNT - already
    assert cached(tmp_path) == COUNT
    verify_clean(tmp_path)


def test_sigkill_then_resume_synthesizes_only_the_missing(
    tmp_path: Path, slow_openai: FakeProvider
) -> None:
    proc = start_warm(tmp_path, slow_openai, "-j", "2")
    wait_for_entries(tmp_path, proc, 3)
    proc.kill()
    proc.communicate()
    already = cached(tmp_path)
    assert 3 <= already < COUNT
    resume(tmp_path, slow_openai, already)


def test_ctrl_c_exits_130_and_keeps_the_cache(tmp_path: Path, slow_openai: FakeProvider) -> None:
    proc = start_warm(tmp_path, slow_openai, "-j", "2")
    wait_for_entries(tmp_path, proc, 2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "Traceback" not in err
    assert "voiceprep: error: interrupted:" in err and "to resume" in err
    already = cached(tmp_path)
    assert 2 <= already < COUNT
    verify_clean(tmp_path)
    resume(tmp_path, slow_openai, already)


def test_two_warms_on_one_cache(tmp_path: Path) -> None:
    with fake_openai(latency=0.1) as fake:
        first = start_warm(tmp_path, fake, "-j", "3")
        second = start_warm(tmp_path, fake, "-j", "3")
        results = [proc.communicate(timeout=120) for proc in (first, second)]
        assert [first.returncode, second.returncode] == [0, 0], results
        summaries = [json.loads(out) for out, _ in results]
        assert all(not s["failed"] for s in summaries)
        # Every phrase was done by at least one of them; some may have been done by both.
        assert sum(s["synthesized"] for s in summaries) >= COUNT
        assert fake.request_count == sum(s["synthesized"] for s in summaries)
    with AudioCache(tmp_path / "cache") as cache:
        texts = sorted(e.text for e in cache.entries())
    assert texts == sorted(f"Menu option {i}." for i in range(COUNT))  # each once
    verify_clean(tmp_path)
