"""`voiceprep serve` against slow, malformed and hostile clients, a full disk and a damaged
index (issue 26 items 8–11): a real server process on 127.0.0.1, real signals, raw
sockets where a well-behaved HTTP client cannot misbehave."""

from __future__ import annotations

import contextlib
import json
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from fakeproviders import FakeProvider, Fault
from servehelpers import ServerProcess, stored_entry

from voiceprep.cache import AudioCache

SPEECH = "/v1/audio/speech"


def espeak_args(cache: Path, *more: str) -> list[str]:
    return ["-b", "espeak", "-r", "24000", "--cache-dir", str(cache), *more]


def body(text: str, fmt: str = "pcm") -> dict[str, object]:
    return {"model": "tts-1", "input": text, "voice": "alloy", "response_format": fmt}


def connect(server: ServerProcess) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=30)


def head(length: int, path: str = SPEECH) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


def read_status(sock: socket.socket) -> tuple[int, bytes]:
    """The status and whatever else arrives until the server closes (bounded)."""
    data = b""
    while b"\r\n\r\n" not in data or not data.endswith(b"}"):
        part = sock.recv(65536)
        if not part:
            break
        data += part
    match = re.match(rb"HTTP/1\.1 (\d{3})", data)
    assert match is not None, data[:200]
    return int(match.group(1)), data


def tracebacks(server: ServerProcess) -> list[str]:
    return [line for line in server.lines if "Traceback" in line or "Exception in ASGI" in line]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    home = tmp_path_factory.mktemp("hardening")
    with ServerProcess(espeak_args(home / "cache"), cwd=home) as running:
        yield running
        assert running.stop() == 0


# --- 9, 10: malformed bodies are 400s, one line, never the text ---------------------------

SECRET = "my card number is 4111 1111 1111 1111"
MALFORMED = {
    "20,000-deep JSON": b"[" * 20000 + b"]" * 20000,
    "5,000 nested objects in input": json.dumps(
        {"model": "tts-1", "voice": "alloy", "input": 0}
    ).encode()[:-2]
    + b'{"a": ' * 5000
    + b"1"
    + b"}" * 5000
    + b"}",
    "a lone surrogate in input": (
        b'{"model": "tts-1", "voice": "alloy", "input": "'
        + SECRET.encode()
        + b' \\ud800 ends here"}'
    ),
}


@pytest.mark.parametrize("raw", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_body_is_a_400_in_openai_shape_with_one_log_line(
    server: ServerProcess, raw: bytes
) -> None:
    before = len(server.lines)
    response = httpx.post(
        server.url(SPEECH), content=raw, headers={"content-type": "application/json"}, timeout=60
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["message"]
    line = server.wait_for_line(r"POST /v1/audio/speech 400", start=before)
    time.sleep(0.2)  # a traceback would follow its line at once
    new = server.lines[before:]
    assert new == [line], new
    assert SECRET not in server.stderr


# --- 11: a client gone mid-body, header floods -------------------------------------------


def test_a_client_hanging_up_mid_body_is_499_not_a_traceback_nor_a_500(
    server: ServerProcess,
) -> None:
    before = len(server.lines)
    with connect(server) as sock:
        sock.sendall(head(100) + b'{"model": "t')
        time.sleep(0.3)
    line = server.wait_for_line(r"POST /v1/audio/speech \d{3}", start=before)
    assert " 499 " in line
    metrics = httpx.get(server.url("/metrics")).text
    assert 'voiceprep_requests_total{route="/v1/audio/speech",status="500"}' not in metrics
    assert 'voiceprep_requests_total{route="/v1/audio/speech",status="499"} 1.0' in metrics
    assert not tracebacks(server)


@pytest.mark.parametrize(
    "flood",
    [
        b"".join(b"X-Flood-%d: %s\r\n" % (i, b"v" * 40) for i in range(2000)),
        b"Cookie: " + b"c" * 100_000 + b"\r\n",
        b"Cookie: " + b"c" * 4_000_000 + b"\r\n",
    ],
    ids=["2,000 headers", "one 100 kB header", "one 4 MB header"],
)
def test_a_header_flood_is_answered_431(server: ServerProcess, flood: bytes) -> None:
    with connect(server) as sock:
        request = b"POST /v1/audio/speech HTTP/1.1\r\nHost: x\r\n" + flood + b"\r\n"
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(request)  # a reset here: the answer is already waiting
        status, data = read_status(sock)
    assert status == 431
    assert json.loads(data.partition(b"\r\n\r\n")[2])["error"]["message"]
    # and the server is fine after
    assert httpx.get(server.url("/healthz")).status_code == 200
    assert not tracebacks(server)


def test_a_body_that_never_completes_is_408(server: ServerProcess) -> None:
    with connect(server) as sock:
        sock.sendall(head(100) + b'{"model": "tts-1", "in')
        status, data = read_status(sock)  # BODY_TIMEOUT (10 s) later
    assert status == 408
    assert json.loads(data.partition(b"\r\n\r\n")[2])["error"]["code"] == "body_timeout"


# --- 8: SIGTERM with a client stalled mid-body ------------------------------------------


def test_sigterm_with_a_half_sent_body_exits_promptly_and_stores_the_miss_in_flight(
    tmp_path: Path, openai_server: FakeProvider
) -> None:
    cache = tmp_path / "cache"
    args = ["-b", "openai", "-O", f"base_url={openai_server.base_url}", "--cache-dir", str(cache)]
    openai_server.push(Fault(200, delay=2))
    with (
        ServerProcess(args, env={"OPENAI_API_KEY": openai_server.api_key}, cwd=tmp_path) as srv,
        ThreadPoolExecutor(1) as pool,
    ):
        miss = pool.submit(
            httpx.post, srv.url(SPEECH), json=body("Stored on the way out."), timeout=60
        )
        deadline = time.monotonic() + 30
        while openai_server.in_flight < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        stalled = connect(srv)
        stalled.sendall(head(100) + b'{"model": "tts-1", "in')  # 9 of 100 bytes… and no more
        time.sleep(0.3)
        # Well before BODY_TIMEOUT: the stalled client is answered 503 at once.
        assert srv.stop(signal.SIGTERM, timeout=8) == 0
        status, _ = read_status(stalled)
        stalled.close()
        assert status == 503
        assert miss.result().status_code == 200
    with AudioCache(cache) as store:
        assert [e.text for e in store.entries()] == ["Stored on the way out."]


# --- 10, 11: a full disk -------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs (needs root, as CI runs)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill_up(directory: Path) -> Path:
    filler = directory / "filler"
    with filler.open("wb") as out:
        try:
            while True:
                out.write(b"\0" * 65536)
                out.flush()
        except OSError:
            pass
    return filler


def test_a_miss_on_a_full_disk_is_served_never_logs_its_text_and_is_stored_once_space_returns(
    small_disk: Path,
) -> None:
    cache = small_disk / "cache"
    text = "Your appointment with doctor Jones is at nine."
    other = "Never asked for again."
    with ServerProcess(espeak_args(cache), cwd=small_disk.parent) as srv:
        assert httpx.post(srv.url(SPEECH), json=body("Warm-up."), timeout=60).status_code == 200
        assert stored_entry(cache, "Warm-up.") is not None  # its write is over
        filler = fill_up(small_disk)
        before = len(srv.lines)
        first = httpx.post(srv.url(SPEECH), json=body(text), timeout=60)
        assert first.status_code == 200 and len(first.content) > 24000
        # Logged once its write has failed (never racing it), without the text.
        srv.wait_for_line("could not store <input>", start=before)
        srv.wait_for_line("the disk refused a phrase", start=before)
        before = len(srv.lines)
        assert httpx.post(srv.url(SPEECH), json=body(other), timeout=60).status_code == 200
        srv.wait_for_line("the disk refused a phrase", start=before)
        assert text not in srv.stderr and other not in srv.stderr
        filler.unlink()  # space returns
        before = len(srv.lines)
        again = httpx.post(srv.url(SPEECH), json=body(text), timeout=60)
        assert again.content == first.content
        # Written before the second answer: on disk at once, once, and the log says so.
        with AudioCache(cache) as store:
            assert [e.text for e in store.entries()].count(text) == 1
        srv.wait_for_line("stored a phrase the disk had refused", start=before)
        assert srv.stop() == 0  # writes what the disk refused and nobody asked for again
    with AudioCache(cache) as store:
        assert sorted(e.text for e in store.entries()) == sorted([text, other, "Warm-up."])
        assert store.verify().clean


# --- 11: a damaged index under a running server -----------------------------------------


def test_a_damaged_index_is_a_503_naming_the_repair_not_a_traceback(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    with ServerProcess(espeak_args(cache), cwd=tmp_path) as srv:
        assert httpx.post(srv.url(SPEECH), json=body("Before."), timeout=60).status_code == 200
        assert stored_entry(cache, "Before.") is not None
        # A read after that write: the server's connections have the index pages cached.
        assert httpx.post(srv.url(SPEECH), json=body("Before."), timeout=60).status_code == 200
        # The index file itself (its -shm is left alone: SQLite maps it, and truncating a
        # mapped file is a bus error in any process that uses it).
        (cache / "index.sqlite").write_bytes(b"\x00garbage, not sqlite\xff" * 300)
        answers = [
            httpx.post(srv.url(SPEECH), json=body(text), timeout=60)
            for text in ("A new phrase.", "Another one.")
        ]
        review = httpx.get(srv.url("/review"), timeout=60)
        assert srv.stop() == 0
    assert review.status_code == 503 and "cache verify --repair" in review.text, review.text
    # Its connections were opened before the damage (SQLite could answer from its page
    # cache): the changed file is checked before each statement, so every miss is refused.
    assert [r.status_code for r in answers] == [503, 503], [r.text for r in answers]
    for response in answers:
        assert "cache verify --repair" in response.json()["error"]["message"]
    assert not tracebacks(srv)
