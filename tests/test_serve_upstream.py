"""`voiceprep serve` in front of a slow or failing provider (tests/fakeproviders.py): the
openai backend behind the server, the server as a real process on 127.0.0.1."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from fakeproviders import FakeProvider, Fault
from helpers import CLI
from servehelpers import ServerProcess

from voiceprep.cache import AudioCache

SPEECH = "/v1/audio/speech"


def body(text: str, fmt: str = "pcm") -> dict[str, object]:
    return {"model": "tts-1", "input": text, "voice": "alloy", "response_format": fmt}


def upstream_args(fake: FakeProvider, cache: Path, *more: str) -> list[str]:
    return ["-b", "openai", "-O", f"base_url={fake.base_url}", "--cache-dir", str(cache), *more]


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


@pytest.fixture
def start(tmp_path: Path, openai_server: FakeProvider) -> Iterator[Callable[..., ServerProcess]]:
    """Start `voiceprep serve` over the fake provider; every server is stopped afterwards."""
    started: list[ServerProcess] = []

    def _start(*more: str, cache: Path | None = None, key: str | None = None) -> ServerProcess:
        env = {"OPENAI_API_KEY": key or openai_server.api_key}
        args = upstream_args(openai_server, cache or tmp_path / "cache", *more)
        server = ServerProcess(args, env=env, cwd=tmp_path).start()
        started.append(server)
        return server

    yield _start
    for server in started:
        server.__exit__(None, None, None)


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=40) as executor:
        yield executor


def post(server: ServerProcess, text: str, fmt: str = "pcm", timeout: float = 60) -> httpx.Response:
    return httpx.post(server.url(SPEECH), json=body(text, fmt), timeout=timeout)


def test_a_warmed_phrase_never_reaches_the_provider(
    tmp_path: Path,
    openai_server: FakeProvider,
    start: Callable[..., ServerProcess],
    cli: CLI,
) -> None:
    phrases = tmp_path / "phrases.txt"
    phrases.write_text("Your call matters to us.\n")
    cache = tmp_path / "cache"
    code, _, err = cli("warm", phrases, *upstream_args(openai_server, cache))
    assert code == 0, err
    assert openai_server.request_count == 1

    server = start()
    for fmt in ("pcm", "mp3", "wav"):
        assert post(server, "Your call matters to us.", fmt).status_code == 200
    assert openai_server.request_count == 1  # all three were hits
    assert post(server, "Something new.").status_code == 200
    assert openai_server.request_count == 2
    assert server.stop() == 0


def test_concurrent_requests_for_one_new_phrase_share_one_synthesis(
    openai_server: FakeProvider, start: Callable[..., ServerProcess], pool: ThreadPoolExecutor
) -> None:
    openai_server.latency = 0.5
    server = start("-j", "8")
    fmts = ["pcm", "wav", "mp3", "opus"] * 8
    futures = [pool.submit(post, server, "One phrase, many callers.", fmt) for fmt in fmts]
    responses = [f.result() for f in futures]
    assert [r.status_code for r in responses] == [200] * 32
    assert openai_server.request_count == 1
    by_format = {
        f: {r.content for r, g in zip(responses, fmts, strict=True) if g == f} for f in fmts
    }
    assert all(len(bodies) == 1 for bodies in by_format.values())  # everyone got the same
    assert server.stop() == 0


def test_a_hit_never_waits_behind_a_miss(
    openai_server: FakeProvider, start: Callable[..., ServerProcess], pool: ThreadPoolExecutor
) -> None:
    server = start("-j", "1")
    assert post(server, "Already here.").status_code == 200
    openai_server.push(Fault(200, delay=8))
    slow = pool.submit(post, server, "Slow to make.")
    wait_until(lambda: openai_server.in_flight == 1, "the miss to reach the provider")
    for fmt in ("pcm", "mp3"):  # mp3: encoded now, while the only synthesis slot is busy
        assert post(server, "Already here.", fmt).status_code == 200
    assert openai_server.in_flight == 1 and not slow.done()  # the miss is still upstream
    assert slow.result().status_code == 200
    assert server.stop() == 0


def test_syntheses_in_flight_are_bounded_by_jobs(
    openai_server: FakeProvider, start: Callable[..., ServerProcess], pool: ThreadPoolExecutor
) -> None:
    openai_server.latency = 0.3
    server = start("-j", "3")
    futures = [pool.submit(post, server, f"Distinct phrase {i}.") for i in range(9)]
    assert [f.result().status_code for f in futures] == [200] * 9
    assert openai_server.request_count == 9
    assert openai_server.peak_in_flight == 3
    assert server.stop() == 0


def test_a_full_queue_is_429_with_retry_after(
    openai_server: FakeProvider, start: Callable[..., ServerProcess], pool: ThreadPoolExecutor
) -> None:
    server = start("-j", "1", "--queue", "1")
    openai_server.push(Fault(200, delay=3))
    first = pool.submit(post, server, "First in line.")
    wait_until(lambda: openai_server.in_flight == 1, "the first miss upstream")
    second = pool.submit(post, server, "Second in line.")

    def misses() -> float:
        for line in httpx.get(server.url("/metrics")).text.splitlines():
            if line.startswith("voiceprep_cache_misses_total "):
                return float(line.split()[1])
        return 0.0

    wait_until(lambda: misses() == 2, "the second miss to be queued")
    third = post(server, "No room for me.")
    assert third.status_code == 429
    assert third.headers["retry-after"] == "1"
    assert third.json()["error"]["code"] == "queue_full"
    # A request for a phrase already on its way joins it: no queue place needed.
    joined = pool.submit(post, server, "Second in line.")
    assert first.result().status_code == 200
    assert second.result().content == joined.result().content
    assert openai_server.request_count == 2
    assert server.stop() == 0


@pytest.mark.parametrize("retries", [0, 2])
def test_provider_500s(
    openai_server: FakeProvider, start: Callable[..., ServerProcess], retries: int
) -> None:
    server = start("--retries", str(retries))
    openai_server.push(500, 500)
    response = post(server, "Through a flaky provider.")
    if retries == 0:
        assert response.status_code == 502
        error = response.json()["error"]
        assert error["type"] == "server_error" and error["code"] == "backend_error"
        assert "500" not in error["message"] and "127.0.0.1" not in error["message"]
        # A failure is not cached: the next request synthesizes again.
        openai_server.reset()
        assert post(server, "Through a flaky provider.").status_code == 200
        assert openai_server.request_count == 1
    else:
        assert response.status_code == 200
        assert openai_server.request_count == 3
    assert server.stop() == 0


def test_a_provider_429_is_a_502_with_its_retry_after(
    openai_server: FakeProvider, start: Callable[..., ServerProcess]
) -> None:
    server = start("--retries", "0")
    openai_server.push(Fault(429, retry_after="7"))
    response = post(server, "Rate limited upstream.")
    assert response.status_code == 502
    assert response.headers["retry-after"] == "7"
    metrics = httpx.get(server.url("/metrics")).text
    assert "voiceprep_synthesis_failures_total 1.0" in metrics
    assert server.stop() == 0


def test_a_provider_401_never_shows_the_key(
    openai_server: FakeProvider, start: Callable[..., ServerProcess]
) -> None:
    wrong = "sk-wrong-key-that-must-stay-secret-42"
    server = start(key=wrong)
    response = post(server, "Who am I?")
    assert response.status_code == 502
    assert response.json()["error"]["message"] == "the TTS backend refused the server's credentials"
    assert server.stop() == 0
    assert openai_server.requests[0].status == 401
    for text in (response.text, server.stderr):
        assert wrong not in text and wrong[8:20] not in text


def test_a_hanging_provider_times_out_into_a_502(
    openai_server: FakeProvider, start: Callable[..., ServerProcess]
) -> None:
    server = start("--timeout", "2", "--retries", "0")
    openai_server.push(Fault(200, delay=30))
    response = post(server, "Nobody answers.")
    assert response.status_code == 502
    assert response.json()["error"]["message"].startswith("the TTS backend did not answer")
    retried = post(server, "Nobody answers.")  # the server is fine after
    assert retried.status_code == 200, server.stderr
    assert server.stop() == 0


def test_a_client_hanging_up_does_not_waste_the_synthesis(
    openai_server: FakeProvider, start: Callable[..., ServerProcess]
) -> None:
    server = start()
    openai_server.push(Fault(200, delay=1.5))
    with pytest.raises(httpx.ReadTimeout):
        post(server, "Impatient caller.", timeout=0.3)
    server.wait_for_line(r"POST /v1/audio/speech 200 miss")  # answered to nobody, stored
    assert post(server, "Impatient caller.").status_code == 200
    assert openai_server.request_count == 1
    assert server.stop() == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_a_miss_finishes_it_stores_it_and_exits_0(
    tmp_path: Path,
    openai_server: FakeProvider,
    start: Callable[..., ServerProcess],
    pool: ThreadPoolExecutor,
    sig: signal.Signals,
) -> None:
    server = start()
    openai_server.push(Fault(200, delay=2))
    pending: Future[httpx.Response] = pool.submit(post, server, "Interrupted, not lost.", "mp3")
    wait_until(lambda: openai_server.in_flight == 1, "the miss upstream")
    stopper = threading.Thread(target=server.stop, args=(sig,))
    stopper.start()
    response = pending.result()
    stopper.join(timeout=60)
    assert response.status_code == 200 and len(response.content) > 1000
    assert server.returncode == 0
    assert f"stopped ({sig.name})" in server.stderr
    with AudioCache(tmp_path / "cache") as cache:
        assert [e.text for e in cache.entries()] == ["Interrupted, not lost."]
        assert not cache.verify().damaged


def test_two_servers_share_one_cache_directory(
    openai_server: FakeProvider, start: Callable[..., ServerProcess]
) -> None:
    first, second = start(), start()
    made = post(first, "Made by the first server.")
    assert made.status_code == 200
    again = post(second, "Made by the second server.")
    assert again.status_code == 200
    assert post(second, "Made by the first server.").content == made.content
    assert post(first, "Made by the second server.").content == again.content
    assert openai_server.request_count == 2
    assert first.stop() == 0 and second.stop() == 0
