"""`voiceprep serve --remote`: a fresh server finds in the remote what another runner
warmed and pushed (a real server process on 127.0.0.1; moto's S3 server and file://
remotes). With `--read-only` it never synthesizes nor pushes: a local miss is looked up in
the remote, and only a phrase the remote lacks (or a remote that is down) is a 404."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import threading
import wave
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from fakeproviders import FakeProvider
from helpers import CLI
from remote_fixtures import (
    RATE,
    cached_pcm,
    fill_cache,
    free_port,
    key_of,
    moto_server,
    phrase,
    provider_env,
    remote_url,
    s3,
    tone,
)
from servehelpers import ServerProcess

from voiceprep.cache import AudioCache
from voiceprep.remote import Remote, pull, push

__all__ = ["moto_server", "remote_url", "s3"]  # fixtures, found by pytest through this module

SPEECH = "/v1/audio/speech"
ESPEAK_EN = ["-b", "espeak", "--voice", "en", "-r", str(RATE)]  # how remote_fixtures keys


def speech(text: str, fmt: str = "pcm") -> dict[str, str]:
    return {"model": "tts-1", "voice": "alloy", "input": text, "response_format": fmt}


def wav_pcm(body: bytes) -> tuple[int, bytes]:
    with wave.open(io.BytesIO(body)) as reader:
        return reader.getframerate(), reader.readframes(reader.getnframes())


def test_serve_answers_a_local_miss_from_the_remote(cli: CLI, tmp_path: Path) -> None:
    remote = (tmp_path / "shared").as_uri()
    phrases = tmp_path / "phrases.txt"
    phrases.write_text("Stored on the remote.\n")
    espeak = ["-b", "espeak", "-r", "24000"]
    warmed = cli("warm", phrases, *espeak, "--cache-dir", tmp_path / "a", "--remote", remote)
    assert warmed.code == 0, warmed.err
    args = [*espeak, "--cache-dir", str(tmp_path / "b"), "--remote", remote]
    with ServerProcess(args, cwd=tmp_path) as server:
        request = {"model": "tts-1", "voice": "alloy", "response_format": "pcm"}
        hit = httpx.post(server.url(SPEECH), json={**request, "input": "Stored on the remote."},
                         timeout=60)  # fmt: skip
        assert server.stop() == 0
    assert hit.status_code == 200 and len(hit.content) > 24000
    with AudioCache(tmp_path / "a") as a, AudioCache(tmp_path / "b") as b:
        (ours,) = b.entries()
        (theirs,) = a.entries()
        # Imported, not synthesized again: the entry is the pushed one, creation time and all.
        assert (ours.key, ours.sha256, ours.created) == (theirs.key, theirs.sha256, theirs.created)
        assert hit.content == b.get(ours.key, rate=24000, channels=1)


# --- --read-only --remote -------------------------------------------------------------


def test_read_only_serve_answers_a_local_miss_from_the_remote_without_the_upstream(
    remote_url: str, openai_server: FakeProvider, cli: CLI, tmp_path: Path
) -> None:
    """Runner A warms and pushes through the provider; server B starts on an empty cache,
    read-only: every phrase A warmed is served byte for byte, the provider is never asked,
    and what B fetched is kept in its cache (a restart finds it locally)."""
    texts = ["Welcome back.", "Your order has shipped."]
    phrases = tmp_path / "phrases.txt"
    phrases.write_text("".join(f"{text}\n" for text in texts))
    upstream = ["-b", "openai", "-O", f"base_url={openai_server.base_url}", "-r", "24000"]
    warmed = cli("warm", phrases, *upstream, "--cache-dir", tmp_path / "a", "--remote",
                 remote_url)  # fmt: skip
    assert warmed.code == 0, warmed.err
    assert openai_server.request_count == 2
    expected = cached_pcm(tmp_path / "a")

    cache_b = tmp_path / "b"
    args = [*upstream, "--cache-dir", str(cache_b), "--read-only", "--remote", remote_url]
    env = {"OPENAI_API_KEY": openai_server.api_key}
    with ServerProcess(args, env=env, cwd=tmp_path) as server:
        assert "read-only, remote " in server.stderr
        # Eight clients at once for one phrase only the remote has: one lookup, eight answers.
        with ThreadPoolExecutor(max_workers=8) as pool:
            first = list(pool.map(lambda _: httpx.post(server.url(SPEECH),
                         json=speech(texts[0]), timeout=60), range(8)))  # fmt: skip
        second = httpx.post(server.url(SPEECH), json=speech(texts[1]), timeout=60)
        again = httpx.post(server.url(SPEECH), json=speech(texts[1]), timeout=60)
        absent = httpx.post(server.url(SPEECH), json=speech("Never warmed."), timeout=60)
        health = httpx.get(server.url("/healthz"), timeout=10)
        assert server.stop() == 0
    assert [r.status_code for r in first] == [200] * 8
    assert {r.content for r in first} == {expected[cached_key(cache_b, texts[0])]}
    assert second.status_code == again.status_code == 200
    assert second.content == again.content == expected[cached_key(cache_b, texts[1])]
    assert absent.status_code == 404 and absent.json()["error"]["code"] == "not_cached"
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    assert openai_server.request_count == 2  # B never asked the provider
    assert "warning" not in server.stderr.lower() and "disabled" not in server.stderr
    # Kept in B's own cache, byte-identical to A's (and nothing was pushed by B).
    assert cached_pcm(cache_b) == expected
    assert set(Remote(remote_url).listing()) == set(expected)


def cached_key(directory: Path, text: str) -> str:
    with AudioCache(directory) as cache:
        (key,) = [entry.key for entry in cache.entries() if entry.text == text]
        return key


def test_read_only_serve_with_a_remote_that_is_down_answers_404_and_warns_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Local behaviour: hits are served, misses are 404s (never 5xx), /healthz is ok, and
    the log has one warning, without the credential."""
    provider_env(monkeypatch, f"http://127.0.0.1:{free_port()}", "AKIADEAD", "dead-secret-123")
    fill_cache(tmp_path / "cache", [0])
    args = [*ESPEAK_EN, "--cache-dir", str(tmp_path / "cache"), "--read-only",
            "--remote", "s3://voiceprep-down/prompts"]  # fmt: skip
    with ServerProcess(args, cwd=tmp_path) as server:
        misses = [
            httpx.post(server.url(SPEECH), json=speech(phrase(i), "wav"), timeout=60)
            for i in (1, 2, 1)
        ]
        hit = httpx.post(server.url(SPEECH), json=speech(phrase(0), "wav"), timeout=60)
        health = httpx.get(server.url("/healthz"), timeout=10)
        assert server.stop() == 0
    assert [r.status_code for r in misses] == [404, 404, 404]
    assert {r.json()["error"]["code"] for r in misses} == {"not_cached"}
    assert hit.status_code == 200 and wav_pcm(hit.content) == (RATE, tone(0))
    assert health.status_code == 200
    warnings = [line for line in server.lines if "remote cache disabled" in line]
    assert len(warnings) == 1, server.stderr
    assert "dead-secret-123" not in server.stderr
    assert "Traceback" not in server.stderr


class StalledEndpoint:
    """An S3 endpoint that accepts connections and answers nothing until `release()`, then
    hangs up on every connection: a remote lookup that is stuck, then fails."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        self.accepted = threading.Event()
        self.released = threading.Event()
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            if self.released.is_set():
                conn.close()
                continue
            self.held.append(conn)
            self.accepted.set()

    def release(self) -> None:
        self.released.set()
        for conn in self.held:
            conn.close()

    def close(self) -> None:
        self.release()
        self.server.close()


def test_read_only_serve_answers_hits_while_a_remote_lookup_is_stuck(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hit never waits behind a miss's remote lookup; the stuck lookup, once it fails,
    is a 404 with one warning."""
    endpoint = StalledEndpoint()
    provider_env(monkeypatch, endpoint.url, "AKIASTALLED", "stalled-secret-456")
    fill_cache(tmp_path / "cache", [0])
    args = [*ESPEAK_EN, "--cache-dir", str(tmp_path / "cache"), "--read-only",
            "--remote", "s3://voiceprep-stalled/prompts"]  # fmt: skip
    try:
        with ServerProcess(args, cwd=tmp_path) as server, ThreadPoolExecutor(2) as pool:
            miss = pool.submit(httpx.post, server.url(SPEECH), json=speech(phrase(1), "wav"),
                               timeout=120)  # fmt: skip
            assert endpoint.accepted.wait(60), server.stderr  # the lookup is in progress
            hit = httpx.post(server.url(SPEECH), json=speech(phrase(0), "wav"), timeout=60)
            assert not miss.done()  # the endpoint still holds the lookup
            endpoint.release()
            missed = miss.result(timeout=120)
            assert server.stop() == 0
    finally:
        endpoint.close()
    assert hit.status_code == 200 and wav_pcm(hit.content) == (RATE, tone(0))
    assert missed.status_code == 404 and missed.json()["error"]["code"] == "not_cached"
    warnings = [line for line in server.lines if "remote cache disabled" in line]
    assert len(warnings) == 1, server.stderr
    assert "stalled-secret-456" not in server.stderr


def test_read_only_serve_over_an_unwritable_cache_serves_remote_entries_from_memory(
    tmp_path: Path,
) -> None:
    """A cache baked into an image layer (a read-only mount): what the remote holds is
    served, twice, with no warning; the layer is left exactly as it was."""
    layer, mount = tmp_path / "layer", tmp_path / "mounted"
    fill_cache(layer, [0])
    remote = (tmp_path / "shared").as_uri()
    fill_cache(tmp_path / "pusher", [1])
    with AudioCache(tmp_path / "pusher") as pusher:
        assert push(pusher, remote).moved == [key_of(1)]
    mount.mkdir()
    mounted = subprocess.run(["mount", "--bind", "-o", "ro", str(layer), str(mount)],
                             capture_output=True, check=False)  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"cannot bind-mount read-only here: {mounted.stderr.decode().strip()}")
    try:
        before = sorted(p.relative_to(layer) for p in layer.rglob("*"))
        args = [*ESPEAK_EN, "--cache-dir", str(mount), "--read-only", "--remote", remote]
        with ServerProcess(args, cwd=tmp_path) as server:
            answers = [
                httpx.post(server.url(SPEECH), json=speech(phrase(i), "wav"), timeout=60)
                for i in (1, 1, 0)
            ]
            assert server.stop() == 0
    finally:
        subprocess.run(["umount", str(mount)], check=False)
    assert [r.status_code for r in answers] == [200, 200, 200]
    assert [wav_pcm(r.content) for r in answers] == [(RATE, tone(1)), (RATE, tone(1)),
                                                      (RATE, tone(0))]  # fmt: skip
    assert "warning" not in server.stderr.lower() and "could not" not in server.stderr
    assert sorted(p.relative_to(layer) for p in layer.rglob("*")) == before
    assert set(cached_pcm(layer)) == {key_of(0)}


def test_push_remote_needs_remote(cli: CLI) -> None:
    result = cli("serve", "--push-remote")
    assert result.code == 2 and "--remote" in result.err


def test_push_remote_is_refused_on_a_read_only_server(cli: CLI, tmp_path: Path) -> None:
    result = cli("serve", "--read-only", "--remote", (tmp_path / "r").as_uri(), "--push-remote")
    assert result.code == 2 and "--read-only" in result.err and "\n" not in result.err.strip()


def spoil(path: Path, how: str, valid_other: Path) -> None:
    """Replace the object at `path` by something no writer of entries makes."""
    data = path.read_bytes()
    path.unlink()
    if how == "symlink to another object":
        path.symlink_to(valid_other)
    elif how == "symlink to /dev/zero":
        path.symlink_to("/dev/zero")
    elif how == "directory":
        path.mkdir()
    elif how == "fifo":
        os.mkfifo(path)
    elif how == "padded":
        path.write_bytes(data + bytes(1 << 20))  # a MiB of zeros past the RIFF
    else:  # "wrong content": another entry's bytes
        path.write_bytes(valid_other.read_bytes())


@pytest.mark.parametrize(
    "how",
    ["symlink to another object", "symlink to /dev/zero", "directory", "fifo", "padded",
     "wrong content"],
)  # fmt: skip
def test_a_bad_remote_object_is_a_miss_for_its_phrase_only(
    how: str, cli: CLI, tmp_path: Path
) -> None:
    """One spoiled object in a file:// remote: a read-only server answers that phrase 404
    (a miss), keeps nothing of it, and still serves every other phrase from the remote."""
    remote = (tmp_path / "shared").as_uri()
    texts = ["The spoiled one.", "A good one.", "Another good one."]
    phrases = tmp_path / "phrases.txt"
    phrases.write_text("".join(f"{text}\n" for text in texts))
    warmed = cli("warm", phrases, *ESPEAK_EN, "--cache-dir", tmp_path / "a", "--remote", remote)
    assert warmed.code == 0, warmed.err
    expected = cached_pcm(tmp_path / "a")
    keys = {text: cached_key(tmp_path / "a", text) for text in texts}
    store = Remote(remote)
    spoiled = Path(store.object_path(keys[texts[0]]))
    spoil(spoiled, how, Path(store.object_path(keys[texts[2]])))

    cache_b = tmp_path / "b"
    args = [*ESPEAK_EN, "--cache-dir", str(cache_b), "--read-only", "--remote", remote]
    with ServerProcess(args, cwd=tmp_path) as server:
        bad = httpx.post(server.url(SPEECH), json=speech(texts[0]), timeout=60)
        good = [httpx.post(server.url(SPEECH), json=speech(t), timeout=60) for t in texts[1:]]
        assert server.stop() == 0
    assert bad.status_code == 404 and bad.json()["error"]["code"] == "not_cached"
    assert [r.status_code for r in good] == [200, 200]
    assert "disabled" not in server.stderr
    # What it served came from the remote, byte for byte, and only the good objects were kept.
    assert cached_pcm(cache_b) == {keys[t]: expected[keys[t]] for t in texts[1:]}


def test_sigterm_right_after_misses_still_stores_and_pushes_them(tmp_path: Path) -> None:
    """A miss is answered before its entry is written and pushed: a SIGTERM right after
    the answers still finds every entry stored whole, locally and on the remote."""
    remote = (tmp_path / "shared").as_uri()
    texts = [f"Pushed before the server stops, number {n}." for n in range(4)]
    args = [*ESPEAK_EN, "--cache-dir", str(tmp_path / "c"), "--remote", remote, "--push-remote"]
    with ServerProcess(args, cwd=tmp_path) as server:
        with ThreadPoolExecutor(4) as pool:
            answers = list(
                pool.map(
                    lambda t: httpx.post(server.url(SPEECH), json=speech(t, "wav"), timeout=60),
                    texts,
                )
            )
        assert server.stop() == 0, server.stderr
    assert [answer.status_code for answer in answers] == [200] * 4
    local = cached_pcm(tmp_path / "c")
    assert sorted(local.values()) == sorted(wav_pcm(answer.content)[1] for answer in answers)
    assert set(Remote(remote).listing()) == set(local)
    with AudioCache(tmp_path / "fresh") as fresh:
        assert pull(fresh, remote).ok
    assert cached_pcm(tmp_path / "fresh") == local
