"""A real S3 endpoint on 127.0.0.1 (moto's server mode, as s3fs's own tests use) and helpers
for remote tests: caches with real entries, the environment a provider SDK reads.

Imported by the test_remote_* modules (`from remote_fixtures import …`); the fixtures are
re-exported there so pytest finds them.
"""

from __future__ import annotations

import logging
import math
import socket
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from voiceprep.cache import AudioCache
from voiceprep.keys import BackendIdentity, cache_key

REGION = "us-east-1"
WRITER_KEY_ID = "AKIAVOICEPREPTESTKEY"  # moto's default (auth off) accepts any pair
WRITER_SECRET = "writer-secret-9f2c61d0a7b34e58"
NO_AWS_FILE = "/nonexistent/voiceprep-tests/aws-config"


@dataclass
class S3Endpoint:
    url: str  # http://127.0.0.1:PORT
    bucket: str

    def remote(self, prefix: str = "team/prompts") -> str:
        return f"s3://{self.bucket}/{prefix}"

    def client(self, key_id: str = WRITER_KEY_ID, secret: str = WRITER_SECRET):  # noqa: ANN201
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id=key_id,
            aws_secret_access_key=secret,
        )


def provider_env(monkeypatch: pytest.MonkeyPatch, endpoint: str, key_id: str, secret: str) -> None:
    """The environment botocore reads: credentials, region, and the S3-compatible endpoint
    (`AWS_ENDPOINT_URL_S3`), and nothing from the developer's own AWS configuration."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    # A path that does not exist: botocore skips it (parsing /dev/null can fail).
    monkeypatch.setenv("AWS_CONFIG_FILE", NO_AWS_FILE)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", NO_AWS_FILE)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", endpoint)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")  # a dead endpoint fails fast


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """One in-process moto S3 server for the session: its http://127.0.0.1:PORT."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> S3Endpoint:
    """A fresh bucket on the moto server, the writer's credentials in the environment."""
    endpoint = S3Endpoint(moto_server, f"voiceprep-{uuid.uuid4().hex[:12]}")
    endpoint.client().create_bucket(Bucket=endpoint.bucket)
    provider_env(monkeypatch, moto_server, WRITER_KEY_ID, WRITER_SECRET)
    return endpoint


@pytest.fixture(params=["s3", "file"])
def remote_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test twice: against a bucket on the moto server, and a file:// directory."""
    if request.param == "s3":
        endpoint: S3Endpoint = request.getfixturevalue("s3")
        return endpoint.remote()
    return (tmp_path / "shared" / "remote").as_uri()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class MotoProcess:
    """`python -m moto.server` in its own process, so a test can kill -9 the endpoint."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> MotoProcess:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("moto server did not start")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)


# --- caches with real entries -----------------------------------------------------------

IDENTITY = BackendIdentity("espeak", voice="en")
RATE = 16000


def tone(index: int, seconds: float = 0.25, rate: int = RATE) -> bytes:
    """Distinct s16 PCM for entry `index` (a tone of its own pitch)."""
    frequency = 200 + 7 * index
    count = int(seconds * rate)
    samples = (int(8000 * math.sin(2 * math.pi * frequency * i / rate)) for i in range(count))
    return struct.pack(f"<{count}h", *samples)


def phrase(index: int) -> str:
    return f"Prompt number {index}, please hold."


def key_of(index: int) -> str:
    return cache_key(IDENTITY, phrase(index), rate=RATE, channels=1)


def fill_cache(
    directory: Path, indexes: range | list[int], *, seconds: float = 0.25, variant: int = 0
) -> dict[str, bytes]:
    """Real entries (AudioCache.put) for phrases `indexes`: key → PCM. `variant` shifts the
    audio, as another runner's synthesis of the same phrases might."""
    stored: dict[str, bytes] = {}
    with AudioCache(directory) as cache:
        for index in indexes:
            pcm = tone(index + variant, seconds)
            key = key_of(index)
            cache.put(key, pcm, rate=RATE, channels=1, text=phrase(index), identity=IDENTITY)
            stored[key] = pcm
    return stored


def cached_pcm(directory: Path) -> dict[str, bytes]:
    """key → PCM of every entry of the cache in `directory`."""
    with AudioCache(directory) as cache:
        return {
            e.key: cache.get(e.key, rate=e.rate, channels=e.channels) or b""
            for e in cache.entries()
        }
