"""cache push / cache pull against Google Cloud Storage and Azure Blob Storage emulators,
each a real server process on 127.0.0.1: gcp-storage-emulator (a Python package, reached
by gcsfs through `STORAGE_EMULATOR_HOST`) and Azurite (an npm package, installed by
.ci/run; reached by adlfs through `AZURE_STORAGE_CONNECTION_STRING`). Round trips, objects
written behind voiceprep's back, immutability, credentials, a killed endpoint.

Every credential comes from the environment, as a user's would. No test reaches past the
loopback interface (`loopback_only`): gcsfs finds no Application Default Credentials (so it
neither uses the developer's gcloud login nor asks a metadata server) and goes anonymous,
as it does with an emulator; Azurite serves one account of this session, its key random.

What the emulators cannot show: gcp-storage-emulator ignores `ifGenerationMatch=0` (it
replaces the object), so on GCS the test checks that every upload asks for it; that real
GCS answers 412 and gcsfs turns that into FileExistsError is GCS's and gcsfs's part. Nor
does it check credentials: GCS's refusals are checked as gcsfs raises them.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from helpers import CLI, isolated_environment
from remote_fixtures import cached_pcm, fill_cache, free_port, key_of

from voiceprep.cache import AudioCache
from voiceprep.remote import LAYOUT, Remote

PREFIX = "team/prompts"
NO_FILE = "/nonexistent/voiceprep-tests/application-default-credentials.json"
ACCOUNT = "voiceprep"  # Azurite's one account for the session (AZURITE_ACCOUNTS)
AZURITE = "azurite-blob"
AZURITE_VERSION = "3.35.0"  # as .ci/run installs it


# --- the emulators ----------------------------------------------------------------------


class Emulator:
    """One emulator process on 127.0.0.1:`port`, its output in `log`."""

    def __init__(self, argv: list[str], port: int, log: Path, env: dict[str, str]) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=log.parent,
                env={**os.environ, **env},
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{argv[0]} exited: {self.log_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"{argv[0]} did not listen on {port}: {self.log_text()[-2000:]}")

    def log_text(self) -> str:
        return self.log.read_bytes().decode(errors="replace")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)


def start_gcs(directory: Path) -> Emulator:
    # Not --quiet: its log has one line per request, query string included.
    port = free_port()
    argv = [sys.executable, "-m", "gcp_storage_emulator", "start", "--host", "127.0.0.1"]
    return Emulator(
        [*argv, "--port", str(port), "--in-memory"], port, directory / "gcs.log", env={}
    )


def start_azurite(directory: Path, key: str) -> Emulator:
    program = shutil.which(AZURITE)
    if program is None:
        pytest.fail(f"{AZURITE} is not installed: npm install --global azurite@{AZURITE_VERSION}")
    port = free_port()
    argv = [
        program,
        *("--blobHost", "127.0.0.1", "--blobPort", str(port)),
        # In memory only (it runs in `directory`, which it leaves empty).
        *("--inMemoryPersistence", "--extentMemoryLimit", "256"),
        # No telemetry (it would leave the machine); any API version the SDK speaks.
        *("--disableTelemetry", "--skipApiVersionCheck", "--loose"),
    ]
    return Emulator(
        argv, port, directory / "azurite.log", env={"AZURITE_ACCOUNTS": f"{ACCOUNT}:{key}"}
    )


def random_account_key() -> str:
    return base64.b64encode(os.urandom(64)).decode()


@pytest.fixture(scope="session")
def gcs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    _plain_gcsfs()
    server = start_gcs(tmp_path_factory.mktemp("gcs"))
    try:
        yield server
    finally:
        server.kill()


@dataclass
class Azurite:
    server: Emulator
    key: str


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    key = random_account_key()
    server = start_azurite(tmp_path_factory.mktemp("azurite"), key)
    try:
        yield Azurite(server, key)
    finally:
        server.kill()


def _plain_gcsfs() -> None:
    """gcsfs's default filesystem class (ExtendedGcsFileSystem) first asks the Storage
    Control API (gRPC) what kind of bucket it has; an emulator serves none of it, and each
    such call waits 60 s before gcsfs falls back to the JSON API. With
    GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false (set by `gcs_env`; gcsfs reads it when it is
    imported) gcsfs exports the JSON API's class itself. This process may have imported
    gcsfs already, so the same class is registered here."""
    import fsspec
    import gcsfs.core

    for protocol in ("gs", "gcs"):
        fsspec.register_implementation(protocol, gcsfs.core.GCSFileSystem, clobber=True)


def gcs_env(monkeypatch: pytest.MonkeyPatch, endpoint: str) -> None:
    """What gcsfs reads: the emulator's endpoint; no Application Default Credentials
    (neither the developer's gcloud login nor a metadata server: gcsfs goes anonymous)."""
    for name in list(os.environ):
        if name.upper().startswith(("FSSPEC_GCS", "FSSPEC_GS", "CLOUDSDK_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", endpoint)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", NO_FILE)
    monkeypatch.setenv("NO_GCE_CHECK", "true")
    monkeypatch.setenv("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")


def azure_env(monkeypatch: pytest.MonkeyPatch, connection_string: str) -> None:
    """What adlfs reads: one connection string, nothing else of the developer's."""
    for name in list(os.environ):
        if name.startswith(("AZURE_STORAGE_", "AZURE_CLIENT_", "AZURE_TENANT_", "FSSPEC_A")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", connection_string)


def key_connection_string(endpoint: str, key: str) -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={key};"
        f"BlobEndpoint={endpoint}/{ACCOUNT};"
    )


# --- one bucket or container, and its provider's own client -----------------------------


@dataclass
class Store:
    """A fresh bucket (GCS) or container (Azure) on an emulator, its environment set, and
    the provider's own client, which reads and writes objects behind voiceprep's back."""

    provider: str  # "gcs" | "azure"
    scheme: str  # "gs" | "az"
    bucket: str
    server: Emulator
    client: Any
    secrets: list[str] = field(default_factory=list)  # must never be output

    def remote(self, scheme: str | None = None) -> str:
        return f"{scheme or self.scheme}://{self.bucket}/{PREFIX}"

    def object_name(self, key: str) -> str:
        return f"{PREFIX}/{LAYOUT}/{key[:2]}/{key}.wav"

    def put(self, name: str, data: bytes) -> None:
        """Store `name` (replacing it) with the provider's own client."""
        if self.provider == "gcs":
            self.client.bucket(self.bucket).blob(name).upload_from_string(data)
        else:
            blob = self.client.get_blob_client(self.bucket, name)
            blob.upload_blob(data, overwrite=True)

    def get(self, name: str) -> bytes:
        if self.provider == "gcs":
            return bytes(self.client.bucket(self.bucket).blob(name).download_as_bytes())
        return bytes(self.client.get_blob_client(self.bucket, name).download_blob().readall())

    def names(self) -> set[str]:
        if self.provider == "gcs":
            return {blob.name for blob in self.client.list_blobs(self.bucket)}
        return set(self.client.get_container_client(self.bucket).list_blob_names())


def gcs_store(server: Emulator, monkeypatch: pytest.MonkeyPatch) -> Store:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    gcs_env(monkeypatch, server.url)
    client = storage.Client(
        project="voiceprep-tests",
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": server.url},
    )
    bucket = f"voiceprep-{uuid.uuid4().hex[:12]}"
    client.create_bucket(bucket)
    return Store("gcs", "gs", bucket, server, client)


def azure_store(service: Azurite, monkeypatch: pytest.MonkeyPatch) -> Store:
    from azure.storage.blob import BlobServiceClient

    connection = key_connection_string(service.server.url, service.key)
    azure_env(monkeypatch, connection)
    client = BlobServiceClient.from_connection_string(connection)
    container = f"voiceprep-{uuid.uuid4().hex[:12]}"
    client.create_container(container)
    return Store("azure", "az", container, service.server, client, [service.key])


@pytest.fixture(params=["gcs", "azure"])
def store(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Store:
    """Each test twice: on the GCS emulator and on Azurite."""
    if request.param == "gcs":
        return gcs_store(request.getfixturevalue("gcs_server"), monkeypatch)
    return azure_store(request.getfixturevalue("azurite"), monkeypatch)


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No connection (nor name lookup) of this process leaves the loopback interface: a
    client that tried one (a metadata server, a token endpoint, telemetry) fails the test."""
    tried: list[str] = []
    connect, lookup = socket.socket.connect, socket.getaddrinfo

    def loopback(host: object) -> bool:
        if host in (None, "localhost"):
            return True
        try:
            return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
        except ValueError:
            return False

    def guarded_connect(self: socket.socket, address: Any) -> None:
        if self.family in (socket.AF_INET, socket.AF_INET6) and not loopback(address[0]):
            tried.append(f"connect {address}")
            raise ConnectionRefusedError(f"test: no network beyond 127.0.0.1 ({address})")
        connect(self, address)

    def guarded_lookup(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if not loopback(name):
            tried.append(f"getaddrinfo {name}")
            raise socket.gaierror(socket.EAI_NONAME, f"test: no name lookups ({name})")
        return lookup(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket, "getaddrinfo", guarded_lookup)
    yield
    assert not tried, tried


# --- running voiceprep ------------------------------------------------------------------


def run(store: Store, cli: CLI, *args: str | Path) -> tuple[int, str, str]:
    """`voiceprep ARGS` in this process; no credential of the store's is ever output."""
    code, out, err = cli(*args)
    output = out + err
    for secret in store.secrets:
        assert secret not in output and secret[:12] not in output and secret[-12:] not in output
    return code, out, err


def push(store: Store, cache: Path, cli: CLI, url: str | None = None) -> tuple[int, dict, str]:
    code, out, err = run(
        store, cli, "cache", "push", url or store.remote(), "--cache-dir", cache, "--json"
    )
    return code, json.loads(out), err


def pull(store: Store, cache: Path, cli: CLI, url: str | None = None) -> tuple[int, dict, str]:
    code, out, err = run(
        store, cli, "cache", "pull", url or store.remote(), "--cache-dir", cache, "--json"
    )
    return code, json.loads(out), err


def verify_clean(directory: Path) -> None:
    with AudioCache(directory) as cache:
        report = cache.verify()
    assert not report.damaged, report.as_dict()


def entry_files(directory: Path) -> dict[str, bytes]:
    with AudioCache(directory) as cache:
        return {key: cache.entry_bytes(key) for key in sorted(cache.keys())}


def flip_audio_byte(entry: bytes) -> bytes:
    """`entry` (a WAV) with one byte in the middle of its audio (the data chunk) changed."""
    offset = 12
    while offset + 8 <= len(entry):
        name, size = (
            entry[offset : offset + 4],
            struct.unpack("<I", entry[offset + 4 : offset + 8])[0],
        )
        if name == b"data":
            changed = bytearray(entry)
            changed[offset + 8 + size // 2] ^= 0x01
            return bytes(changed)
        offset += 8 + size + (size & 1)
    raise AssertionError("no data chunk")


# --- round trips --------------------------------------------------------------------------


def test_push_then_pull_gives_byte_identical_hits(store: Store, tmp_path: Path, cli: CLI) -> None:
    source = fill_cache(tmp_path / "a", range(12))
    code, summary, err = push(store, tmp_path / "a", cli)
    assert code == 0, err
    assert (summary["pushed"], summary["already_there"], summary["failed"]) == (12, 0, 0)
    # Where the provider's own client finds them: one object per key, named by its key.
    assert store.names() == {store.object_name(key) for key in source}
    assert {store.get(store.object_name(k)) for k in source} == set(
        entry_files(tmp_path / "a").values()
    )

    # Names that are no entry objects, beside them: never pulled.
    store.put(f"{PREFIX}/{LAYOUT}/readme.txt", b"hello")
    store.put(f"{PREFIX}/{LAYOUT}/zz/{key_of(99)}.wav", b"in the wrong shard")
    store.put(f"{PREFIX}/{LAYOUT}/{key_of(0)[:2]}/{key_of(0)}.wav.tmp", b"a partial upload")

    code, summary, err = pull(store, tmp_path / "b", cli)
    assert code == 0, err
    assert (summary["pulled"], summary["already_there"], summary["failed"]) == (12, 0, 0)
    assert cached_pcm(tmp_path / "b") == source
    assert entry_files(tmp_path / "b") == entry_files(tmp_path / "a")
    verify_clean(tmp_path / "b")


def test_a_second_push_and_a_second_pull_move_nothing(
    store: Store, tmp_path: Path, cli: CLI
) -> None:
    fill_cache(tmp_path / "a", range(8))
    assert push(store, tmp_path / "a", cli)[1]["pushed"] == 8
    before = {name: store.get(name) for name in store.names()}
    code, summary, _ = push(store, tmp_path / "a", cli)
    assert (code, summary["pushed"], summary["already_there"], summary["bytes"]) == (0, 0, 8, 0)
    assert {name: store.get(name) for name in store.names()} == before

    assert pull(store, tmp_path / "b", cli)[1]["pulled"] == 8
    code, summary, _ = pull(store, tmp_path / "b", cli)
    assert (code, summary["pulled"], summary["already_there"], summary["bytes"]) == (0, 0, 8, 0)


def test_the_other_spelling_of_the_scheme_is_the_same_remote(
    store: Store, tmp_path: Path, cli: CLI
) -> None:
    other = {"gs": "gcs", "az": "abfs"}[store.scheme]
    source = fill_cache(tmp_path / "a", range(3))
    assert push(store, tmp_path / "a", cli)[1]["pushed"] == 3
    code, summary, _ = pull(store, tmp_path / "b", cli, store.remote(other))
    assert (code, summary["pulled"], summary["remote"]) == (0, 3, store.remote(other))
    assert cached_pcm(tmp_path / "b") == source


# --- objects written behind voiceprep's back ------------------------------------------------


def test_a_corrupt_object_is_refused_and_the_others_are_imported(
    store: Store, tmp_path: Path, cli: CLI
) -> None:
    source = fill_cache(tmp_path / "a", range(4))
    push(store, tmp_path / "a", cli)
    name = store.object_name(key_of(0))
    good = store.get(name)
    store.put(name, flip_audio_byte(good))  # one byte of audio, with the provider's client

    code, summary, err = pull(store, tmp_path / "b", cli)
    assert code == 1
    assert (summary["pulled"], summary["failed"]) == (3, 1)
    assert [f["key"] for f in summary["failures"]] == [key_of(0)]
    assert "sha256" in summary["failures"][0]["reason"]
    assert err.count("voiceprep: error:") == 1 and key_of(0)[:12] in err
    assert "Traceback" not in err
    pulled = cached_pcm(tmp_path / "b")
    assert pulled == {key: pcm for key, pcm in source.items() if key != key_of(0)}
    verify_clean(tmp_path / "b")

    # Repaired on the remote, the same command takes only that one.
    store.put(name, good)
    code, summary, _ = pull(store, tmp_path / "b", cli)
    assert (code, summary["pulled"], summary["already_there"]) == (0, 1, 3)
    assert cached_pcm(tmp_path / "b") == source


def test_an_existing_object_is_never_replaced_on_azure(
    azurite: Azurite, tmp_path: Path, cli: CLI, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A pusher that listed before another one stored the same key (the race of two CI
    # jobs): its upload is refused by Azure itself (If-None-Match: *) and counted as there.
    store = azure_store(azurite, monkeypatch)
    fill_cache(tmp_path / "a", range(2))
    fill_cache(tmp_path / "b", range(2), variant=1)  # another synthesis of the same phrases
    push(store, tmp_path / "a", cli)
    name = store.object_name(key_of(0))
    stored = store.get(name)
    other = entry_files(tmp_path / "b")[key_of(0)]
    assert other != stored
    assert Remote(store.remote()).write(key_of(0), other) is False
    assert store.get(name) == stored
    assert Remote(store.remote()).write(key_of(5), other) is True  # a new name is written


def test_every_upload_to_gcs_is_a_conditional_create(
    gcs_server: Emulator, tmp_path: Path, cli: CLI, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GCS refuses `ifGenerationMatch=0` with 412 when the object exists (gcsfs raises
    # FileExistsError, as s3fs and adlfs do). The emulator ignores the condition, so what
    # is checked is that voiceprep asks for it on every upload: its request log.
    store = gcs_store(gcs_server, monkeypatch)
    fill_cache(tmp_path / "a", range(5))
    assert push(store, tmp_path / "a", cli)[1]["pushed"] == 5
    uploads = [
        line
        for line in gcs_server.log_text().splitlines()
        if f"/upload/storage/v1/b/{store.bucket}/o?" in line
    ]
    assert len(uploads) == 5, uploads
    assert all("ifGenerationMatch=0" in line for line in uploads), uploads


# --- credentials ----------------------------------------------------------------------------


def test_azure_wrong_and_read_only_credentials_fail_clearly_and_never_appear(
    azurite: Azurite, tmp_path: Path, cli: CLI, monkeypatch: pytest.MonkeyPatch
) -> None:
    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    store = azure_store(azurite, monkeypatch)
    fill_cache(tmp_path / "a", range(3))
    push(store, tmp_path / "a", cli)

    # A key the account does not have.
    wrong = random_account_key()
    store.secrets.append(wrong)
    azure_env(monkeypatch, key_connection_string(azurite.server.url, wrong))
    for args in (
        ["cache", "push", store.remote(), "--cache-dir", str(tmp_path / "a")],
        ["cache", "pull", store.remote(), "--cache-dir", str(tmp_path / "b"), "--json"],
    ):
        code, out, err = run(store, cli, *args)
        assert code == 1 and "access denied (list)" in err, err
        assert err.count("\n") == 1 and "Traceback" not in err
    try:  # --debug re-raises: the exception's text is output too
        run(store, cli, "--debug", "cache", "pull", store.remote(), "--cache-dir", tmp_path / "b")
    except Exception as exc:
        text = f"{exc!r} {exc}"
        assert not any(s in text for s in (wrong, wrong[:12], azurite.key, azurite.key[:12]))

    # A read-only SAS (read + list on the container): pulls, cannot push.
    expiry = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
    permission = ContainerSasPermissions(read=True, list=True)
    sas = generate_container_sas(
        ACCOUNT, store.bucket, account_key=azurite.key, permission=permission, expiry=expiry
    )
    signature = dict(part.split("=", 1) for part in sas.split("&"))["sig"]
    store.secrets += [sas, signature]
    endpoint = f"{azurite.server.url}/{ACCOUNT}"
    azure_env(monkeypatch, f"BlobEndpoint={endpoint};SharedAccessSignature={sas}")
    code, summary, _ = pull(store, tmp_path / "b", cli)
    assert (code, summary["pulled"]) == (0, 3)
    fill_cache(tmp_path / "b", range(3, 5))
    code, out, err = run(store, cli, "cache", "push", store.remote(), "--cache-dir", tmp_path / "b")
    assert code == 1 and "access denied (write)" in err, err
    assert "Traceback" not in err
    assert len(store.names()) == 3  # nothing was written


def test_a_gcs_token_from_the_environment_is_used_and_never_appears(
    gcs_server: Emulator, tmp_path: Path, cli: CLI, monkeypatch: pytest.MonkeyPatch
) -> None:
    # gcsfs takes no token from an environment variable of its own: fsspec's configuration
    # does (FSSPEC_GCS_TOKEN), read when fsspec is imported, so this runs voiceprep in a
    # process of its own. A raw access token, sent as is (no look-up of its expiry).
    store = gcs_store(gcs_server, monkeypatch)
    token = "ya29." + base64.urlsafe_b64encode(os.urandom(48)).decode().rstrip("=")
    env = {"FSSPEC_GCS_TOKEN": token, "FETCH_RAW_TOKEN_EXPIRY": "false"}
    source = fill_cache(tmp_path / "a", range(3))
    for args in (
        ["cache", "push", store.remote(), "--cache-dir", tmp_path / "a"],
        ["cache", "pull", store.remote(), "--cache-dir", tmp_path / "b", "--json"],
    ):
        result = cli.process(*args, env=env)
        assert result.code == 0, result.err
        assert token not in result.text + result.err and token[5:17] not in result.text + result.err
    assert cached_pcm(tmp_path / "b") == source


# --- a killed endpoint ----------------------------------------------------------------------

# The child's retries wait less: gcsfs sleeps 1, 2, 4, 8 and 16 s (and up to 1 s more
# each) between its 6 attempts, 35 s a request; the Azure SDK 18, 24 and 42 s between its
# 4, 84 s a request, and an adlfs listing makes two (measured: 174 s before the error).
# Only the waits change: the same attempts, the same errors, the same output.
_QUICK_RETRIES = """
import asyncio, types
import gcsfs.retry
from azure.storage.blob.aio import ExponentialRetry
gcsfs.retry.asyncio = types.SimpleNamespace(sleep=lambda s: asyncio.sleep(min(s, 0.05)))
_init = ExponentialRetry.__init__
def _quick(self, **kwargs):
    kwargs.update(initial_backoff=0.05, increment_base=0, random_jitter_range=0)
    _init(self, **kwargs)
ExponentialRetry.__init__ = _quick
"""
_MAIN = "import sys; sys.argv[0] = 'voiceprep'; from voiceprep.cli import main; main(sys.argv[1:])"


def in_a_process(
    *args: str | Path, cwd: Path, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """`voiceprep ARGS` as a user runs it (its own stderr, no logging configured)."""
    return subprocess.run(
        [sys.executable, "-c", _QUICK_RETRIES + _MAIN, *map(str, args)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**isolated_environment(), **env},
        timeout=300,
    )


@pytest.mark.parametrize("provider", ["gcs", "azure"])
def test_a_killed_endpoint_fails_in_one_line_without_credentials(
    provider: str, tmp_path: Path, cli: CLI, monkeypatch: pytest.MonkeyPatch
) -> None:
    env: dict[str, str] = {}
    if provider == "gcs":
        _plain_gcsfs()
        server = start_gcs(tmp_path)
        store = gcs_store(server, monkeypatch)
        token = "ya29." + base64.urlsafe_b64encode(os.urandom(48)).decode().rstrip("=")
        env = {"FSSPEC_GCS_TOKEN": token, "FETCH_RAW_TOKEN_EXPIRY": "false"}
        secrets = [token, token[5:17]]
    else:
        key = random_account_key()
        server = start_azurite(tmp_path, key)
        store = azure_store(Azurite(server, key), monkeypatch)
        secrets = [key, key[:12], key[-12:]]
    try:
        fill_cache(tmp_path / "a", range(3))
        done = in_a_process(
            "cache", "push", store.remote(), "--cache-dir", tmp_path / "a", cwd=cli.cwd, env=env
        )
        assert done.returncode == 0, done.stderr
        assert len(store.names()) == 3
    finally:
        server.kill()

    fill_cache(tmp_path / "a", range(3, 5))
    for command in ("push", "pull"):
        done = in_a_process(
            "cache",
            command,
            store.remote(),
            "--cache-dir",
            tmp_path / command,
            cwd=cli.cwd,
            env=env,
        )
        assert done.returncode == 1, done.stderr
        assert done.stdout == ""
        lines = done.stderr.splitlines()
        assert len(lines) == 1, done.stderr  # no traceback, no library's log record
        assert lines[0].startswith(f"voiceprep: error: {store.remote()}: cannot list: ")
        assert f"127.0.0.1:{server.port}" in lines[0]  # which endpoint failed
        assert not any(secret in done.stdout + done.stderr for secret in secrets)
    assert not (tmp_path / "pull").exists() or not cached_pcm(tmp_path / "pull")


# --- messages -------------------------------------------------------------------------------


def test_an_azure_connection_string_is_scrubbed_to_its_credentials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from voiceprep.remote import scrub

    key = random_account_key()
    connection = key_connection_string("http://127.0.0.1:10000", key)
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", connection)
    message = scrub(f"cannot connect to 127.0.0.1:10000/{ACCOUNT} with {connection}")
    assert key not in message and key[:12] not in message and key[-12:] not in message
    assert message.startswith(f"cannot connect to 127.0.0.1:10000/{ACCOUNT} with ")
    # A string that is no `Name=value;…` list is a credential as a whole.
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", "Zq8r7ConnectionSecret0123")
    assert "Zq8r7ConnectionSecret0123" not in scrub("echoed: Zq8r7ConnectionSecret0123")


def test_gcs_refused_credentials_are_access_denied(monkeypatch: pytest.MonkeyPatch) -> None:
    # gcsfs raises HttpError(401) when GCS refuses a token, OSError("Forbidden: …") on 403.
    from gcsfs.retry import HttpError

    from voiceprep.errors import RemoteAccessError
    from voiceprep.remote.store import _transport_error

    _plain_gcsfs()
    gcs_env(monkeypatch, f"http://127.0.0.1:{free_port()}")  # nothing is asked of it
    remote = Remote("gs://bucket/prefix")
    error = _transport_error(
        remote, "list", HttpError({"code": 401, "message": "Invalid Credentials"})
    )
    assert isinstance(error, RemoteAccessError) and "access denied (list)" in str(error)
    error = _transport_error(remote, "write", OSError("Forbidden: bucket/prefix/x.wav"))
    assert isinstance(error, RemoteAccessError)
