"""One remote store: its URL checked, its fsspec filesystem, the names of its entry objects,
one listing, and reads and writes of single objects (see the package docstring)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import os
import queue
import re
import stat
import struct
import threading
import time
import uuid
from collections.abc import Callable, Generator, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any
from urllib.parse import urlsplit

from voiceprep.cache import read_entry
from voiceprep.errors import (
    CacheCorruptError,
    CacheError,
    RemoteAccessError,
    RemoteError,
    RemoteUnavailableError,
    UsageError,
)
from voiceprep.secrets import scrub

LAYOUT = "voiceprep-v1"
MAX_OBJECT_BYTES = 1 << 30  # as large as the cache accepts an entry file
# The first request for an object: a typical entry (seconds of speech) whole. A larger one
# is read up to the size its RIFF header gives, and not a byte past it (plus one, to tell a
# padded object).
_FIRST_READ = 1 << 20
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
# Backends whose pipe_file(mode="create") is the store's own atomic conditional create:
# s3fs If-None-Match: *, gcsfs ifGenerationMatch=0, adlfs If-None-Match: * (each raises
# FileExistsError when the object exists).
_CONDITIONAL_CREATE = ("s3", "s3a", "gs", "gcs", "az", "abfs", "abfss")

_LINGER = 0.1  # s a batch of downloads waits to fill up (one import transaction each)
Outcome = tuple[str, Any]  # (key, what its transfer gave: a result or the error it met)


def reason(exc: BaseException) -> str:
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


def _fail_fast_s3() -> dict[str, Any]:
    """What `fail_fast` gives botocore: a dead endpoint fails in seconds, and a stuck one
    (connected, silent) in tens of seconds, not 60 s per read and attempt."""
    return {
        "connect_timeout": 3,
        "read_timeout": 10,
        "retries": {"max_attempts": 2, "mode": "standard"},
    }


class Remote:
    """One remote store: list its entries, read and write entry objects.

    Thread-safe: transfers call `read` and `write` from worker threads.
    """

    def __init__(
        self, url: str, *, storage_options: dict[str, Any] | None = None, fail_fast: bool = False
    ) -> None:
        """`fail_fast`: for a caller that is waiting (a read-through): on S3, 3 s to connect,
        10 s without a byte, two attempts, instead of botocore's and s3fs's patient retries."""
        self.url = check_url(url)
        options = dict(storage_options or {})
        s3 = scheme(self.url) in ("s3", "s3a")
        if fail_fast and s3:
            options.setdefault("config_kwargs", _fail_fast_s3())
        self._fs, self._root = _filesystem(self.url, options)
        if fail_fast and s3:
            self._fs.retries = 1  # s3fs retries each call 5 times by itself, on top of botocore
        protocol = self._fs.protocol
        protocols = (protocol,) if isinstance(protocol, str) else tuple(protocol)
        self._local = any(p in _LOCAL for p in protocols)
        self._conditional = any(p in _CONDITIONAL_CREATE for p in protocols)
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
                return _read_regular_file(key, path)
            first = self._fs.cat_file(path, start=0, end=_FIRST_READ)
            rest = _rest_of(key, first)
            if rest is None:
                return _whole(key, first)
            start, end = rest
            return _whole(key, first[:start] + self._fs.cat_file(path, start=start, end=end))
        except FileNotFoundError:
            return None
        except (RemoteError, CacheCorruptError):
            raise
        except (IsADirectoryError, NotADirectoryError) as exc:
            raise _bad_object(key, exc) from None
        except Exception as exc:
            raise _transport_error(self, "read", exc) from None

    def read_many(self, keys: Sequence[str], *, jobs: int) -> Generator[list[Outcome], None, None]:
        """The objects of `keys`, `jobs` downloads at a time, in batches of what has arrived
        (in no particular order): per key, its bytes (unchecked), None when the remote lacks
        it, or the RemoteError or CacheCorruptError that stopped it.

        On an asynchronous filesystem (S3, GCS, Azure) the downloads run as coroutines on
        fsspec's own event loop, as fsspec's own bulk `get` does, not one thread per call.
        At most `8 * jobs` objects are downloaded ahead of the caller, and a batch waits up
        to `_LINGER` for `4 * jobs` of them, so the caller's work per batch (one import
        transaction) is spread over many objects.
        """
        if self._local or not getattr(self._fs, "async_impl", False):
            yield from concurrently(keys, self.read, jobs)
            return
        window = 8 * max(1, jobs)
        arrived: queue.SimpleQueue[Outcome | None] = queue.SimpleQueue()
        credit = asyncio.Semaphore(window)  # released as the caller takes batches

        async def fetch(key: str) -> bytes | None | Exception:
            path = self.object_path(key)
            try:
                first = await self._fs._cat_file(path, start=0, end=_FIRST_READ)
                rest = _rest_of(key, first)
                if rest is None:
                    return _whole(key, first)
                start, end = rest
                rest_bytes = await self._fs._cat_file(path, start=start, end=end)
                return _whole(key, first[:start] + rest_bytes)
            except FileNotFoundError:
                return None
            except CacheCorruptError as exc:
                return exc
            except (IsADirectoryError, NotADirectoryError) as exc:
                return _bad_object(key, exc)
            except Exception as exc:
                return _transport_error(self, "read", exc)

        async def download(todo: Iterator[str]) -> None:
            for key in todo:  # shared by the workers; one loop thread takes from it
                await credit.acquire()
                arrived.put((key, await fetch(key)))

        async def produce() -> None:
            try:
                todo = iter(keys)
                await asyncio.gather(*(download(todo) for _ in range(max(1, jobs))))
            finally:
                arrived.put(None)

        def give_back(count: int) -> None:
            for _ in range(count):
                credit.release()

        loop = self._fs.loop
        producer = asyncio.run_coroutine_threadsafe(produce(), loop)
        try:
            while True:
                batch = [arrived.get()]
                deadline = time.monotonic() + _LINGER
                with contextlib.suppress(queue.Empty):
                    while len(batch) < window // 2 and batch[-1] is not None:
                        batch.append(arrived.get(timeout=max(0.0, deadline - time.monotonic())))
                done = [item for item in batch if item is not None]
                loop.call_soon_threadsafe(give_back, len(done))
                if done:
                    yield done
                if batch[-1] is None:
                    producer.result()  # a failure outside any one download
                    return
        finally:
            producer.cancel()

    def write(self, key: str, data: bytes) -> bool:
        """Store `key`'s entry file unless the remote has one: True when written."""
        path = self.object_path(key)
        try:
            if self._local:
                return self._write_local(path, data)
            if self._conditional:  # never replaces an object, even racing another pusher
                self._fs.pipe_file(path, data, mode="create")
            else:  # another fsspec backend: one pusher's object may replace another's
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
    return read_entry(data, where=f"remote object {key[:12]}", key=key)[1]


def _riff_size(key: str, head: bytes) -> int:
    """The size an entry object says it has (its RIFF header: 8 + the RIFF size)."""
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        raise CacheCorruptError(f"{key[:12]}: the object is not a WAV entry")
    size = 8 + struct.unpack_from("<I", head, 4)[0]
    if size > MAX_OBJECT_BYTES:
        raise CacheCorruptError(f"{key[:12]}: object of {size} bytes is too large")
    return size


def _rest_of(key: str, first: bytes) -> tuple[int, int] | None:
    """After a first read of `_FIRST_READ` bytes: the byte range still to read (it starts
    one byte back, inside the object: a store answers a range past the end with an error),
    or None when the first read holds all there is to read."""
    size = _riff_size(key, first)
    if len(first) < _FIRST_READ or size < len(first):
        return None
    return len(first) - 1, size + 1


def _whole(key: str, data: bytes) -> bytes:
    """An object's bytes when they are exactly what its RIFF header says (nothing padded
    after the entry, nothing cut off); CacheCorruptError otherwise."""
    size = _riff_size(key, data)
    if len(data) > size:
        raise CacheCorruptError(f"{key[:12]}: data past the RIFF size (a padded object)")
    if len(data) < size:
        raise CacheCorruptError(f"{key[:12]}: the object is shorter than its RIFF size")
    return bytes(data)


def _bad_object(key: str, exc: OSError) -> CacheCorruptError:
    return CacheCorruptError(f"{key[:12]}: not an entry object ({exc.strerror or exc})")


def concurrently(
    keys: Sequence[str], work: Callable[[str], Any], jobs: int
) -> Generator[list[Outcome], None, None]:
    """`work(key)` for each key on `jobs` threads, in batches of what has finished: per
    key, its result, or the RemoteError, CacheError or OSError it raised (anything else
    propagates). Stopping the iteration cancels what has not started."""
    window = 4 * max(1, jobs)  # bounded: results wait in memory only this deep
    pending: dict[Future[Any], str] = {}
    todo = iter(keys)
    threads = ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="voiceprep-remote")
    with threads as pool:
        try:
            while True:
                for key in itertools.islice(todo, window - len(pending)):
                    pending[pool.submit(work, key)] = key
                if not pending:
                    return
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                batch: list[Outcome] = []
                for future in finished:
                    key = pending.pop(future)
                    try:
                        batch.append((key, future.result()))
                    except (RemoteError, CacheError, OSError) as exc:
                        batch.append((key, exc))
                yield batch
        finally:
            for future in pending:
                future.cancel()


def _key_of(relative: str | None) -> str | None:
    if relative is None:
        return None
    match = _NAME.fullmatch(relative)
    if match is None or match.group(2)[:2] != match.group(1):
        return None
    return match.group(2)


def _read_regular_file(key: str, path: str) -> bytes | None:
    """A local object, only when it is a regular file (no symlink, directory, FIFO, device)
    whose size is the one its RIFF header gives; nothing more than that is read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:  # ELOOP: a symlink where an object should be
        raise CacheCorruptError(f"{path}: not a regular file ({exc.strerror})") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise CacheCorruptError(f"{path}: not a regular file")
        size = _riff_size(key, os.pread(fd, 12, 0))
        if os.fstat(fd).st_size != size:
            raise CacheCorruptError(f"{path}: its size is not the one its RIFF header gives")
        with os.fdopen(os.dup(fd), "rb", closefd=True) as fh:
            return _whole(key, fh.read(size + 1))
    finally:
        os.close(fd)


def _filesystem(url: str, storage_options: dict[str, Any]) -> tuple[Any, str]:
    try:
        import fsspec
    except ImportError:
        raise UsageError("remotes need fsspec: pip install fsspec") from None
    _quiet_store_libraries()
    protocol = scheme(url)
    if not protocol:
        url = os.path.abspath(os.path.expanduser(url))
    try:
        # A fresh instance: credentials are read from the environment as it is now.
        fs, root = fsspec.core.url_to_fs(url, skip_instance_cache=True, **storage_options)
    except ImportError:
        extra = _EXTRAS.get(protocol)
        hint = f"pip install 'voiceprep[{extra}]'" if extra else "install its fsspec backend"
        raise UsageError(f"{protocol}:// remotes need an extra package: {hint}") from None
    except ValueError as exc:
        if "protocol" in str(exc).lower():
            raise UsageError(f"unknown remote URL scheme {protocol!r}") from None
        raise UsageError(f"invalid remote URL: {reason(exc)}") from None
    except Exception as exc:
        raise RemoteUnavailableError(f"cannot open the remote: {reason(exc)}") from None
    return fs, str(root)


@functools.cache
def _quiet_store_libraries() -> None:
    """The stores' libraries log what they retry and give up on (gcsfs: each failed request
    with its traceback, at ERROR), and voiceprep reports the failure itself, once. With no
    logging configured, Python prints such records on stderr (`logging.lastResort`); a
    handler that drops them keeps them off it. An application's own handlers still get
    them (they propagate as before)."""
    for name in ("s3fs", "gcsfs", "adlfs", "azure"):
        logging.getLogger(name).addHandler(logging.NullHandler())


def scheme(url: str) -> str:
    return url.split("::")[-1].partition("://")[0].lower() if "://" in url else ""


def _transport_error(remote: Remote, action: str, exc: BaseException) -> RemoteError:
    why = reason(exc)
    where = remote.url if "://" in remote.url else os.path.abspath(remote.url)
    status = getattr(exc, "status_code", None)  # azure.core's HttpResponseError
    if status is None and type(exc).__module__.startswith("gcsfs"):
        status = getattr(exc, "code", None)  # gcsfs's HttpError (its 403 says Forbidden)
    denied = str(status) in ("401", "403") or "AccessDenied" in why or "Forbidden" in why
    if isinstance(exc, PermissionError) or denied:
        return RemoteAccessError(f"{scrub(where)}: access denied ({action}): {why}")
    return RemoteUnavailableError(f"{scrub(where)}: cannot {action}: {why}")


def open_remote(url: str | Remote) -> Remote:
    return url if isinstance(url, Remote) else Remote(url)
