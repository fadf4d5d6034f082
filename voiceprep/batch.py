"""Decoding many files: where each output goes, and a process pool that decodes them.

Decoding is CPU-bound Python work per frame, so threads would share one core (the GIL);
a pool of processes is started once and each worker decodes many files, which keeps the
per-file cost at a few milliseconds instead of the ~100 ms of starting a program per file.
With one job, or one file, everything runs in this process.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import sys
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voiceprep.audio_format import STDIO
from voiceprep.errors import ExitStatus, UsageError, VoiceprepError
from voiceprep.output import OutputSpec, decode_to_file, temp_path


@dataclass(frozen=True)
class BatchItem:
    """One input and the file its audio goes to."""

    source: str
    dest: Path


@dataclass(frozen=True)
class ItemResult:
    """What became of one item: `error` is None on success."""

    index: int
    source: str
    dest: Path
    error: str | None = None
    exit_code: int = ExitStatus.OK
    pcm_bytes: int = 0
    warnings: tuple[str, ...] = ()


def default_jobs() -> int:
    """The CPUs this process may run on (the affinity mask in containers), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def plan_outputs(
    inputs: Sequence[str], *, suffix: str, out_dir: Path | None = None
) -> list[BatchItem]:
    """Each input's output: `out_dir/<stem><suffix>`, else beside the input.

    Raises UsageError when two inputs would write the same file (`a/x.mp3`, `b/x.ogg`
    into one directory), since the second would silently replace the first.
    """
    items = []
    claimed: dict[Path, str] = {}
    for source in inputs:
        stem_path = Path("stdin") if source == STDIO else Path(source)
        directory = out_dir if out_dir is not None else stem_path.parent
        dest = directory / (stem_path.stem + suffix)
        key = Path(os.path.normpath(os.path.abspath(dest)))
        if key in claimed:
            raise UsageError(f"{claimed[key]} and {source} would both write {dest}")
        claimed[key] = source
        items.append(BatchItem(source, dest))
    return items


def decode_batch(
    items: Sequence[BatchItem], spec: OutputSpec, *, jobs: int = 1, force: bool = False
) -> Iterator[ItemResult]:
    """Decode every item; yield one result per item as each finishes (any order).

    A failing item does not stop the others. Closing the iterator early (or Ctrl-C)
    stops the workers; each removes its temporary file, so nothing half-written remains.
    """
    workers = min(jobs, len(items))
    if workers <= 1:
        for index, item in enumerate(items):
            yield _decode_item(index, item, spec, force)
        return
    yield from _decode_in_pool(items, spec, force, workers)


def _decode_in_pool(
    items: Sequence[BatchItem], spec: OutputSpec, force: bool, workers: int
) -> Iterator[ItemResult]:
    """A small pool of our own rather than multiprocessing.Pool: Pool hangs for ever when
    a worker dies mid-task (a decoder crash on a hostile file), while here the parent
    knows which file each worker holds, reports that one and starts a new worker."""
    from multiprocessing.connection import wait

    context = _context()
    # Temporary names known to this process, so it can remove them if it must kill a worker.
    tag = f"voiceprep-{os.getpid()}-{secrets.token_hex(3)}"
    queue = deque(enumerate(items))
    finished: set[int] = set()
    pool = [_Worker.start(context, spec, force, tag) for _ in range(workers)]
    try:
        for worker in pool:
            worker.take(queue)
        while any(worker.index is not None for worker in pool):
            busy = [worker for worker in pool if worker.index is not None]
            wait([w.conn for w in busy] + [w.process.sentinel for w in busy])
            for worker in busy:
                result = worker.collect(items)
                if result is None:
                    continue
                if worker.crashed:  # its temporary file is left behind: remove it
                    with contextlib.suppress(OSError):
                        os.unlink(temp_path(result.dest, tag))
                    pool.remove(worker)
                    worker = _Worker.start(context, spec, force, tag)
                    pool.append(worker)
                finished.add(result.index)
                yield result
                worker.take(queue)
        for worker in pool:
            worker.stop()
    except BaseException:
        _stop_workers(pool)
        for index, item in enumerate(items):
            if index not in finished:
                with contextlib.suppress(OSError):
                    os.unlink(temp_path(item.dest, tag))
        raise


def _context() -> Any:
    import multiprocessing
    import threading

    # fork shares the already-imported modules with every worker (ready in a few ms), but
    # is unsafe in a process running other threads (a library caller's) and unavailable
    # or unsafe off Linux: there, forkserver / spawn.
    if sys.platform.startswith("linux"):
        if threading.active_count() == 1:
            return multiprocessing.get_context("fork")
        return multiprocessing.get_context("forkserver")
    return multiprocessing.get_context("spawn")


@dataclass
class _Worker:
    """One worker process, its end of a pipe, and the index of the item it holds."""

    process: Any
    conn: Any
    index: int | None = None
    crashed: bool = False

    @classmethod
    def start(cls, context: Any, spec: OutputSpec, force: bool, tag: str) -> _Worker:
        parent_end, child_end = context.Pipe()
        process = context.Process(
            target=_worker_main, args=(child_end, spec, force, tag), daemon=True
        )
        start_worker(process)  # (Ctrl-C at a terminal reaches the whole process group)
        child_end.close()  # so a dead worker shows as EOF here
        return cls(process, parent_end)

    def take(self, queue: deque[tuple[int, BatchItem]]) -> None:
        if queue:
            self.index, item = queue.popleft()
            self.conn.send((self.index, item))

    def collect(self, items: Sequence[BatchItem]) -> ItemResult | None:
        """The result if one arrived, a failure if the process died, else None."""
        index = self.index
        if index is None:
            return None
        if self.conn.poll():
            try:
                result: ItemResult = self.conn.recv()
            except EOFError:
                pass
            else:
                self.index = None
                return result
        if self.process.is_alive():
            return None
        self.index, self.crashed = None, True
        self.conn.close()
        item = items[index]
        how = _death(self.process.exitcode)
        error = f"{item.source}: decoder {how}"
        return ItemResult(index, item.source, item.dest, error, ExitStatus.FAILURE)

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.send(None)
        self.process.join()


def _death(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"process killed by {name}"
    return f"process exited unexpectedly (status {exitcode})"


def _stop_workers(pool: list[_Worker], grace: float = 3.0) -> None:
    """SIGTERM (a worker unwinds and removes its temporary file), then SIGKILL for any
    still alive after `grace` seconds: one blocked in a read from a pipe or a stalled
    network filesystem never returns to Python to handle SIGTERM."""
    for worker in pool:
        worker.process.terminate()
    deadline = time.monotonic() + grace
    for worker in pool:
        worker.process.join(max(0.0, deadline - time.monotonic()))
    for worker in pool:
        if worker.process.is_alive():
            worker.process.kill()
            worker.process.join()


def _decode_item(
    index: int, item: BatchItem, spec: OutputSpec, force: bool, tag: str | None = None
) -> ItemResult:
    source: Any = item.source
    warnings: list[str] = []
    try:
        pcm_bytes = decode_to_file(
            source, item.dest, spec, force=force, on_warning=warnings.append, temp_tag=tag
        )
    except VoiceprepError as exc:
        error, exit_code = str(exc), exc.exit_code
    except Exception as exc:  # a bug or an unwrapped library error: report it, go on
        error = f"{item.source}: unexpected {type(exc).__name__}: {exc}"
        exit_code = ExitStatus.FAILURE
    else:
        return ItemResult(index, item.source, item.dest, pcm_bytes=pcm_bytes, warnings=(*warnings,))
    return ItemResult(index, item.source, item.dest, error, exit_code, warnings=(*warnings,))


# --- inside a worker process --------------------------------------------------------


# Blocked across a fork: delivered after it, in the parent, where Python handles them.
_STOPPING = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}


def _block_sigint() -> Any:
    """Block SIGINT, SIGTERM and SIGHUP in this thread; the previous mask (None where
    there is no sigmask)."""
    if not hasattr(signal, "pthread_sigmask"):
        return None
    return signal.pthread_sigmask(signal.SIG_BLOCK, _STOPPING)


def _restore_sigmask(previous: Any) -> None:
    if previous is not None:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def worker_signals() -> None:
    """In a worker process: Ctrl-C (and a terminal's hang-up) reaches the whole process
    group, and the parent decides and stops the workers; the parent's terminate() sends
    SIGTERM: unwind (removing any temporary file). (Forked by `start_worker`, a worker
    starts with SIGINT blocked: ignore it, then unblock it.)"""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _exit_on_term)
    if hasattr(signal, "pthread_sigmask"):  # (the handlers first: one may be pending)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOPPING)


def start_worker(process: Any) -> None:
    """Start `process` with SIGINT blocked across the fork: a worker forked with SIGINT
    handled would turn a Ctrl-C arriving before it ignores SIGINT into a traceback; here
    one that came meanwhile is delivered right after."""
    blocked = _block_sigint()
    try:
        process.start()
    finally:
        _restore_sigmask(blocked)


def fork_worker() -> int:
    """`os.fork()` with SIGINT blocked across the fork, as `start_worker` does: 0 in the
    worker (which calls `worker_signals()` first), the worker's pid in the parent."""
    blocked = _block_sigint()
    pid = 1
    try:
        pid = os.fork()
        return pid
    finally:
        if pid:  # (the worker keeps SIGINT blocked until worker_signals())
            _restore_sigmask(blocked)


def _worker_main(conn: Any, spec: OutputSpec, force: bool, tag: str) -> None:
    worker_signals()
    while True:
        try:
            task = conn.recv()
        except EOFError:  # the parent is gone
            return
        if task is None:
            return
        index, item = task
        conn.send(_decode_item(index, item, spec, force, tag))


def _exit_on_term(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)
