"""Remote stores: the cache's entry files on object storage or a shared directory.

A remote is an fsspec URL (`s3://bucket/prefix`, `gs://…`, `az://…`, `file:///…` or a plain
path). It holds self-describing entry files only, no database, one object per key:
`<url>/voiceprep-v1/<key[:2]>/<key>.wav`. What is there is found with one listing, so
`push` of a cache the remote already holds costs a listing, not a request per entry.

Objects are immutable: push never replaces one. On S3 the PUT is conditional
(`If-None-Match: *`) and atomic; on a shared directory a file is written under a temporary
name, fsynced and hard-linked into place (a link never replaces anything), so a reader never
sees a partial object. Two pushers of one key both succeed and one object remains: every
object for a key holds that key's text, voice and format, so either is right.

Everything read from a remote is input: a name that is not `<key>.wav` in its own shard is
ignored, an object larger than `MAX_OBJECT_BYTES` is refused, and every object is checked
with `voiceprep.cache.read_entry` (sha256 of the audio, and the key recomputed from its
text and key parts) and must carry the key its name says, before anything is imported.
A shared directory's symlinks are never followed. Local paths are chosen by the cache.

Credentials come from the environment and each provider's usual configuration, as s3fs,
gcsfs and adlfs read them (`AWS_*`, `AWS_ENDPOINT_URL_S3` for S3-compatible stores, …),
never from the URL; they never appear in a message (`scrub`).

This module never prints; transfers report through callbacks and `TransferReport`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import stat
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from voiceprep.errors import (
    CacheCorruptError,
    CacheError,
    RemoteAccessError,
    RemoteError,
    RemoteUnavailableError,
    UsageError,
)

if TYPE_CHECKING:
    from voiceprep.cache import AudioCache

__all__ = [
    "LAYOUT",
    "MAX_OBJECT_BYTES",
    "Remote",
    "TransferReport",
    "ReadThrough",
    "open_remote",
    "read_through",
    "pull",
    "push",
    "scrub",
]

LAYOUT = "voiceprep-v1"
MAX_OBJECT_BYTES = 1 << 30  # as large as the cache accepts an entry file
DEFAULT_JOBS = 8
_NAME = re.compile(r"([0-9a-f]{2})/([0-9a-f]{64})\.wav")
_KEY = re.compile(r"[0-9a-f]{64}")
_EXTRAS = {
    "s3": "s3",
    "s3a": "s3",
    "gs": "gcs",
    "gcs": "gcs",
    "az": "azure",
    "abfs": "azure",
    "abfss": "azure",
    "adl": "azure",
}
_LOCAL = ("file", "local")
_MIN_SECRET = 6
# A read-through remote is consulted while an agent waits: a dead S3 endpoint must fail in
# seconds, not after two layers of retries (s3fs's and botocore's).
_FAIL_FAST_S3 = {
    "config_kwargs": {"connect_timeout": 3, "retries": {"max_attempts": 2, "mode": "standard"}}
}

# Environment variables holding credentials for the stores fsspec reaches: their values
# are removed from every message this module produces.
CREDENTIAL_ENV_VARS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AZURE_STORAGE_KEY",
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_CONNECTION_STRING",
    "AZURE_STORAGE_SAS_TOKEN",
    "AZURE_CLIENT_SECRET",
    "GOOGLE_OAUTH_ACCESS_TOKEN",
)


def scrub(message: str) -> str:
    """`message` without any credential set in the environment (nor a URL's userinfo)."""
    # A value this short is no real credential, and removing it would mangle the message.
    values = (os.environ.get(name, "").strip() for name in CREDENTIAL_ENV_VARS)
    secrets = [value for value in values if len(value) >= _MIN_SECRET]
    try:
        from voiceprep.secrets import redact  # the project-wide redaction, when present
    except ImportError:
        for secret in sorted(filter(None, secrets), key=len, reverse=True):
            message = message.replace(secret, "[redacted]")
    else:
        message = redact(message, *secrets)
    return re.sub(r"(://)[^/@\s]*@", r"\1[redacted]@", message)


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return scrub(text)


# --- opening a remote --------------------------------------------------------------------


def check_url(url: str) -> str:
    """The remote URL, checked: credentials never travel in it. A plain path stays a path."""
    if not url or not url.strip():
        raise UsageError("the remote is empty: give an fsspec URL or a directory")
    url = url.strip()
    for part in url.split("::"):
        if "://" not in part:
            continue
        split = urlsplit(part)
        if "@" in split.netloc or split.query or split.password:
            # Not echoed: whatever follows the scheme may be a credential.
            raise UsageError(
                f"the {split.scheme}:// remote URL holds credentials or a query string; "
                "credentials come from the environment or the provider's configuration"
            )
    return url


class Remote:
    """One remote store: list its entries, read and write entry objects.

    Thread-safe: transfers call `read` and `write` from worker threads.
    """

    def __init__(self, url: str, *, storage_options: dict[str, Any] | None = None) -> None:
        self.url = check_url(url)
        self._fs, self._root = _filesystem(self.url, storage_options or {})
        protocol = self._fs.protocol
        protocols = (protocol,) if isinstance(protocol, str) else tuple(protocol)
        self._local = any(p in _LOCAL for p in protocols)
        self._s3 = any(p in ("s3", "s3a") for p in protocols)
        self._base = f"{self._root.rstrip('/')}/{LAYOUT}"
        self._made_dirs: set[str] = set()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Remote({self.url!r})"

    @property
    def base(self) -> str:
        return self._base

    def object_path(self, key: str) -> str:
        if not _KEY.fullmatch(key):
            raise ValueError(f"not a cache key: {key!r}")
        return f"{self._base}/{key[:2]}/{key}.wav"

    # --- listing ------------------------------------------------------------------------

    def listing(self) -> dict[str, int]:
        """Every entry the remote holds: key → object size. One recursive listing (paginated
        by the store); names that are not entry objects are ignored."""
        try:
            if self._local:
                return self._local_listing()
            self._fs.invalidate_cache(self._base)
            found = self._fs.find(self._base, detail=True)
        except FileNotFoundError:
            return {}
        except Exception as exc:
            raise _transport_error(self, "list", exc) from None
        prefix = self._base + "/"
        entries: dict[str, int] = {}
        for path, info in found.items():
            relative = path[len(prefix) :] if path.startswith(prefix) else None
            key = _key_of(relative)
            if key is not None and info.get("type", "file") == "file":
                entries[key] = int(info.get("size") or 0)
        return entries

    def _local_listing(self) -> dict[str, int]:
        # scandir with lstat semantics: symlinks and odd files are not entries.
        entries: dict[str, int] = {}
        try:
            shards = list(os.scandir(self._base))
        except (FileNotFoundError, NotADirectoryError):
            return {}
        for shard in shards:
            if not shard.is_dir(follow_symlinks=False):
                continue
            for item in os.scandir(shard.path):
                key = _key_of(f"{shard.name}/{item.name}")
                if key is not None and item.is_file(follow_symlinks=False):
                    entries[key] = item.stat(follow_symlinks=False).st_size
        return entries

    # --- objects --------------------------------------------------------------------------

    def read(self, key: str) -> bytes | None:
        """The raw bytes of `key`'s object (unchecked); None when the remote lacks it."""
        path = self.object_path(key)
        try:
            if self._local:
                return _read_regular_file(path)
            data = self._fs.cat_file(path)
        except FileNotFoundError:
            return None
        except RemoteError:
            raise
        except Exception as exc:
            raise _transport_error(self, "read", exc) from None
        size = len(data)
        if size > MAX_OBJECT_BYTES:
            raise CacheCorruptError(f"{key[:12]}: object of {size} bytes is too large")
        return bytes(data)

    def write(self, key: str, data: bytes) -> bool:
        """Store `key`'s entry file unless the remote has one: True when written."""
        path = self.object_path(key)
        try:
            if self._local:
                return self._write_local(path, data)
            if self._s3:
                self._fs.pipe_file(path, data, mode="create")
            else:
                self._fs.pipe_file(path, data)
            return True
        except FileExistsError:
            return False
        except Exception as exc:
            raise _transport_error(self, "write", exc) from None

    def _write_local(self, path: str, data: bytes) -> bool:
        directory = os.path.dirname(path)
        if directory not in self._made_dirs:
            os.makedirs(directory, exist_ok=True)
            if not stat.S_ISDIR(os.lstat(directory).st_mode):
                raise RemoteError(f"{directory}: not a directory")
            with self._lock:
                self._made_dirs.add(directory)
        temp = os.path.join(directory, f".tmp-{uuid.uuid4().hex}")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            with os.fdopen(fd, "wb", closefd=True) as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            try:
                os.link(temp, path)  # never replaces: immutable, and whole when visible
            except FileExistsError:
                return False
            return True
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)

    def fetch_entry(self, key: str) -> tuple[bytes, bytes] | None:
        """`key`'s object checked (sha256, key from its parts, the key its name says):
        (entry file, PCM); None when the remote lacks it. CacheCorruptError when bad."""
        data = self.read(key)
        if data is None:
            return None
        return data, check_object(key, data)


def check_object(key: str, data: bytes) -> bytes:
    """The PCM of a downloaded entry object after every check; CacheCorruptError otherwise."""
    from voiceprep.cache import read_entry

    meta, pcm = read_entry(data, where=f"remote object {key[:12]}")
    if meta.key != key:
        raise CacheCorruptError(
            f"remote object {key[:12]}: holds the entry of another key ({meta.key[:12]})"
        )
    return pcm


def _key_of(relative: str | None) -> str | None:
    if relative is None:
        return None
    match = _NAME.fullmatch(relative)
    if match is None or match.group(2)[:2] != match.group(1):
        return None
    return match.group(2)


def _read_regular_file(path: str) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:  # ELOOP: a symlink where an object should be
        raise CacheCorruptError(f"{path}: not a regular file ({exc.strerror})") from None
    with os.fdopen(fd, "rb", closefd=True) as fh:
        info = os.fstat(fh.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise CacheCorruptError(f"{path}: not a regular file")
        if info.st_size > MAX_OBJECT_BYTES:
            raise CacheCorruptError(f"{path}: object of {info.st_size} bytes is too large")
        return fh.read(MAX_OBJECT_BYTES + 1)


def _filesystem(url: str, storage_options: dict[str, Any]) -> tuple[Any, str]:
    try:
        import fsspec
    except ImportError:
        raise UsageError("remotes need fsspec: pip install fsspec") from None
    scheme = _scheme(url)
    if not scheme:
        url = os.path.abspath(os.path.expanduser(url))
    try:
        # A fresh instance: credentials are read from the environment as it is now.
        fs, root = fsspec.core.url_to_fs(url, skip_instance_cache=True, **storage_options)
    except ImportError:
        extra = _EXTRAS.get(scheme)
        hint = f"pip install 'voiceprep[{extra}]'" if extra else "install its fsspec backend"
        raise UsageError(f"{scheme}:// remotes need an extra package: {hint}") from None
    except ValueError as exc:
        if "protocol" in str(exc).lower():
            raise UsageError(f"unknown remote URL scheme {scheme!r}") from None
        raise UsageError(f"invalid remote URL: {_reason(exc)}") from None
    except Exception as exc:
        raise RemoteUnavailableError(f"cannot open the remote: {_reason(exc)}") from None
    return fs, str(root)


def _scheme(url: str) -> str:
    return url.split("::")[-1].partition("://")[0].lower() if "://" in url else ""


def _transport_error(remote: Remote, action: str, exc: BaseException) -> RemoteError:
    reason = _reason(exc)
    where = remote.url if "://" in remote.url else os.path.abspath(remote.url)
    if isinstance(exc, PermissionError) or "AccessDenied" in reason or "Forbidden" in reason:
        return RemoteAccessError(f"{scrub(where)}: access denied ({action}): {reason}")
    return RemoteUnavailableError(f"{scrub(where)}: cannot {action}: {reason}")


def open_remote(url: str | Remote) -> Remote:
    return url if isinstance(url, Remote) else Remote(url)


# --- transfers ----------------------------------------------------------------------------


@dataclass
class TransferReport:
    """What a push or pull did (or, with dry_run, would do)."""

    direction: str  # "push" | "pull"
    remote: str
    moved: list[str] = field(default_factory=list)  # keys pushed / pulled (or to move)
    already: int = 0  # entries both sides hold (or a racing pusher stored first)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (key, reason)
    bytes: int = 0
    missing: list[str] = field(default_factory=list)  # pull: wanted keys the remote lacks
    stopped: str | None = None  # the remote failed: the transfer stopped early
    dry_run: bool = False

    @property
    def ok(self) -> bool:
        return not self.failed and self.stopped is None

    def as_dict(self) -> dict[str, Any]:
        moved = "would_push" if self.direction == "push" else "would_pull"
        if not self.dry_run:
            moved = "pushed" if self.direction == "push" else "pulled"
        return {
            "direction": self.direction,
            "remote": scrub(self.remote),
            "dry_run": self.dry_run,
            moved: len(self.moved),
            "already_there": self.already,
            "failed": len(self.failed),
            "bytes": self.bytes,
            "missing_on_remote": len(self.missing),
            "keys": list(self.moved),
            "failures": [{"key": k, "reason": r} for k, r in self.failed],
            "stopped": self.stopped,
        }


Progress = Callable[[int, int], None]  # (entries done, bytes done so far)


def push(
    cache: AudioCache,
    remote: str | Remote,
    *,
    keys: Iterable[str] | None = None,
    jobs: int = DEFAULT_JOBS,
    dry_run: bool = False,
    on_start: Callable[[int, int], None] | None = None,
    on_progress: Progress | None = None,
) -> TransferReport:
    """Upload the entries (of `keys`, default all) the remote lacks."""
    store = open_remote(remote)
    local = cache.keys()
    wanted = local if keys is None else local & set(keys)
    present = store.listing()
    todo = sorted(wanted - present.keys())
    report = TransferReport("push", store.url, already=len(wanted) - len(todo), dry_run=dry_run)
    if dry_run:
        report.moved = todo
        return report
    if on_start:
        on_start(len(todo), 0)

    def upload(key: str) -> tuple[bool, int] | None:
        try:
            data = cache.entry_bytes(key)
        except KeyError:  # evicted since it was listed: nothing to push
            return None
        return store.write(key, data), len(data)

    for key, outcome in _run(todo, upload, jobs, report, on_progress):
        if outcome is None:
            continue
        written, size = outcome
        if written:
            report.moved.append(key)
            report.bytes += size
        else:
            report.already += 1
    return report


def pull(
    cache: AudioCache,
    remote: str | Remote,
    *,
    keys: Iterable[str] | None = None,
    jobs: int = DEFAULT_JOBS,
    dry_run: bool = False,
    on_start: Callable[[int, int], None] | None = None,
    on_progress: Progress | None = None,
) -> TransferReport:
    """Download the entries (of `keys`, default all the remote has) the cache lacks; each
    one is checked before it is imported, and a bad one is reported and skipped."""
    store = open_remote(remote)
    present = store.listing()
    local = cache.keys()
    wanted = set(present) if keys is None else set(keys)
    report = TransferReport("pull", store.url, dry_run=dry_run)
    report.missing = sorted(wanted - local - present.keys())
    todo = sorted((wanted & present.keys()) - local)
    report.already = len(wanted & local)
    if dry_run:
        report.moved = todo
        report.bytes = sum(present[k] for k in todo)
        return report
    if on_start:
        on_start(len(todo), sum(present[k] for k in todo))

    def download(key: str) -> bytes:
        data = store.read(key)
        if data is None:
            raise CacheCorruptError("gone from the remote since it was listed")
        check_object(key, data)
        return data

    for key, data in _run(todo, download, jobs, report, on_progress):
        if cache.import_entry(data) is None:
            report.already += 1
        else:
            report.moved.append(key)
        report.bytes += len(data)
    return report


def _run(
    keys: list[str],
    work: Callable[[str], Any],
    jobs: int,
    report: TransferReport,
    on_progress: Progress | None,
) -> Iterator[tuple[str, Any]]:
    """`work(key)` on `jobs` threads, results yielded in this thread as they finish (so the
    cache is written from one thread). Entry problems fail that key; a remote that fails
    stops the transfer (what is done stays done) and sets `report.stopped`."""
    done = 0
    moved_bytes = 0
    window = max(1, jobs) * 4  # bounded: results wait in memory only this deep
    pending: dict[Future[Any], str] = {}
    queue = iter(keys)
    with ThreadPoolExecutor(
        max_workers=max(1, jobs), thread_name_prefix="voiceprep-remote"
    ) as pool:
        try:
            while True:
                while report.stopped is None and len(pending) < window:
                    key = next(queue, None)
                    if key is None:
                        break
                    pending[pool.submit(work, key)] = key
                if not pending:
                    return
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    key = pending.pop(future)
                    try:
                        result = future.result()
                    except CacheCorruptError as exc:
                        report.failed.append((key, _reason(exc)))
                        continue
                    except RemoteError as exc:
                        report.stopped = report.stopped or str(exc)
                        continue
                    except (CacheError, OSError) as exc:
                        report.failed.append((key, _reason(exc)))
                        continue
                    yield key, result
                    done += 1
                    if isinstance(result, bytes | bytearray):
                        moved_bytes += len(result)
                    elif isinstance(result, tuple):
                        moved_bytes += int(result[1])
                    if on_progress:
                        on_progress(done, moved_bytes)
        finally:
            for future in pending:
                future.cancel()


# --- read-through -----------------------------------------------------------------------


class ReadThrough:
    """A remote consulted on a local miss, that degrades to nothing when it fails.

    The first failure disables it for the life of the object and is reported once through
    `on_warning` (default: the `voiceprep.remote` logger): a remote that is down never fails
    an agent, it only stops helping.
    """

    def __init__(
        self,
        remote: str | Remote,
        *,
        push: bool = False,
        on_warning: Callable[[str], None] | None = None,
    ) -> None:
        self.push_enabled = push
        self._warn = on_warning or _log_warning
        self._remote: Remote | None = None
        self._url = remote.url if isinstance(remote, Remote) else str(remote)
        self.disabled: str | None = None
        try:
            if isinstance(remote, Remote):
                self._remote = remote
            else:
                options = _FAIL_FAST_S3 if _scheme(remote) in ("s3", "s3a") else {}
                self._remote = Remote(remote, storage_options=dict(options))
        except RemoteError as exc:
            self._disable(str(exc))

    def _disable(self, reason: str) -> None:
        if self.disabled is None:
            self.disabled = reason
            self._warn(f"remote cache disabled, continuing with the local cache only: {reason}")

    def get(self, key: str) -> tuple[bytes, bytes] | None:
        """(entry file, PCM) of `key` from the remote, or None (missing, bad, or down)."""
        if self._remote is None or self.disabled is not None:
            return None
        try:
            return self._remote.fetch_entry(key)
        except CacheCorruptError as exc:
            _log_warning(f"ignoring remote entry: {_reason(exc)}")
            return None
        except RemoteError as exc:
            self._disable(str(exc))
            return None

    def put(self, key: str, data: bytes) -> bool:
        if not self.push_enabled or self._remote is None or self.disabled is not None:
            return False
        try:
            return self._remote.write(key, data)
        except RemoteError as exc:
            self._disable(str(exc))
            return False

    async def fetch(self, key: str, disk: AudioCache | None) -> bytes | None:
        """On a local miss: `key`'s PCM from the remote (imported into `disk` when given), or
        None. Off the event loop; never raises for the remote's sake."""
        if self.disabled is not None:
            return None
        found = await asyncio.to_thread(self.get, key)
        if found is None:
            return None
        data, pcm = found
        if disk is not None:
            try:
                await asyncio.to_thread(disk.import_entry, data)
            except (CacheError, OSError) as exc:  # best effort, as the disk tier is
                _log_warning(f"could not store remote entry {key[:12]}: {_reason(exc)}")
        return pcm

    async def publish(self, key: str, disk: AudioCache | None) -> None:
        """After a synthesis stored in `disk`: push its entry, when pushing is on."""
        if not self.push_enabled or disk is None or self.disabled is not None:
            return
        try:
            data = await asyncio.to_thread(disk.entry_bytes, key)
        except (KeyError, CacheError, OSError):
            return  # not stored (read-only or full disk): nothing to push
        await asyncio.to_thread(self.put, key, data)


def read_through(
    remote: str | Remote | ReadThrough | None, *, push: bool = False
) -> ReadThrough | None:
    """What `TTSAudioCache(remote=…, push_remote=…)` holds."""
    if remote is None or isinstance(remote, ReadThrough):
        return remote
    return ReadThrough(remote, push=push)


def _log_warning(message: str) -> None:
    import logging

    logging.getLogger("voiceprep.remote").warning("%s", message)
