"""`voiceprep serve --remote`: a fresh server finds in the remote what another runner
warmed and pushed (a real server process on 127.0.0.1, a file:// remote)."""

from __future__ import annotations

from pathlib import Path

import httpx
from helpers import CLI
from servehelpers import ServerProcess

from voiceprep.cache import AudioCache

SPEECH = "/v1/audio/speech"


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


def test_push_remote_needs_remote(cli: CLI) -> None:
    result = cli("serve", "--push-remote")
    assert result.code == 2 and "--remote" in result.err
