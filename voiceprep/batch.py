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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voiceprep.errors import UsageError, VoiceprepError
from voiceprep.output import OutputSpec, decode_to_file, temp_path

STDIN = "-"


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
    exit_code: int = 0
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
        stem_path = Path("stdin") if source == STDIN else Path(source)
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
    import multiprocessing

    # fork shares the already-imported modules with every worker (start-up of a few ms);
    # elsewhere (macOS, Windows) fork is unsafe or missing, so spawn.
    method = "fork" if sys.platform.startswith("linux") else "spawn"
    if method == "fork":
        import voiceprep.decoding  # noqa: F401  imported once here, shared by the workers

    # Temporary names known to this process, so it can remove them if it must kill a worker.
    tag = f"voiceprep-{os.getpid()}-{secrets.token_hex(3)}"
    context = multiprocessing.get_context(method)
    pool = context.Pool(workers, initializer=_init_worker, initargs=(spec, force, tag))
    finished: set[int] = set()
    try:
        # chunksize 1: a task costs far less than decoding a file, and it balances best.
        for result in pool.imap_unordered(_decode_in_worker, enumerate(items), chunksize=1):
            finished.add(result.index)
            yield result
        pool.close()
        pool.join()
    except BaseException:
        _stop_pool(pool)
        for index, item in enumerate(items):
            if index not in finished:
                with contextlib.suppress(OSError):
                    os.unlink(temp_path(item.dest, tag))
        raise


def _stop_pool(pool: Any, grace: float = 3.0) -> None:
    """Stop the workers: SIGTERM (they unwind and remove their temporary files), then
    SIGKILL for any still alive after `grace` seconds (one blocked in a read from a pipe
    or a stalled network filesystem never returns to Python to handle SIGTERM)."""
    import multiprocessing
    import threading

    stopper = threading.Thread(target=pool.terminate, daemon=True)
    stopper.start()
    stopper.join(grace)
    if stopper.is_alive():
        for child in multiprocessing.active_children():
            child.kill()
        stopper.join(grace)


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
        error, exit_code = f"{item.source}: unexpected {type(exc).__name__}: {exc}", 1
    else:
        return ItemResult(index, item.source, item.dest, pcm_bytes=pcm_bytes, warnings=(*warnings,))
    return ItemResult(index, item.source, item.dest, error, exit_code, warnings=(*warnings,))


# --- inside a worker process --------------------------------------------------------

_worker_state: dict[str, Any] = {}


def _init_worker(spec: OutputSpec, force: bool, tag: str) -> None:
    _worker_state.update(spec=spec, force=force, tag=tag)
    # Ctrl-C reaches the whole process group: the parent decides and stops the pool.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Pool.terminate() sends SIGTERM: unwind (removing the temporary file) instead of dying.
    signal.signal(signal.SIGTERM, _exit_on_term)


def _exit_on_term(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _decode_in_worker(task: tuple[int, BatchItem]) -> ItemResult:
    index, item = task
    state = _worker_state
    return _decode_item(index, item, state["spec"], state["force"], state["tag"])
