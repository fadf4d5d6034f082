"""Running a local program the way a backend needs it: argv (never a shell), text on stdin,
audio on stdout, and the child killed if the caller gives up (timeout, Ctrl-C, a consumer
that stops reading a stream)."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass

from voiceprep.errors import BackendUnavailableError

READ_SIZE = 64 * 1024


@dataclass(frozen=True)
class ProgramResult:
    returncode: int
    stdout: bytes
    stderr: bytes

    def stderr_last_line(self) -> str:
        """The last non-blank line of stderr, decoded leniently ('' when there is none)."""
        lines = self.stderr.decode("utf-8", "replace").strip().splitlines()
        return lines[-1].strip() if lines else ""


async def run_program(
    argv: Sequence[str], stdin: bytes, *, env: Mapping[str, str] | None = None
) -> ProgramResult:
    """Run `argv` with `stdin` as its input; the child is killed if this task is cancelled."""
    proc = await _start(argv, env)
    try:
        stdout, stderr = await proc.communicate(stdin)
    except BaseException:
        await _kill(proc)  # cancelled (per-attempt timeout, Ctrl-C): never leave it running
        raise
    returncode = proc.returncode if proc.returncode is not None else 0
    return ProgramResult(returncode, stdout, stderr)


async def stream_program(
    argv: Sequence[str],
    stdin: bytes,
    *,
    check: Callable[[ProgramResult], None],
    env: Mapping[str, str] | None = None,
) -> AsyncIterator[bytes]:
    """Run `argv` and yield its stdout as it arrives; when stdout ends, wait for the exit
    and call `check` with the result (`stdout` holds what was yielded), which raises what
    a failure deserves. The child is killed if the consumer stops reading."""
    proc = await _start(argv, env)
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    feeding = asyncio.create_task(_feed(proc.stdin, stdin))
    stderr = asyncio.create_task(proc.stderr.read())
    seen = bytearray()
    try:
        while piece := await proc.stdout.read(READ_SIZE):
            seen += piece
            yield piece
        await proc.wait()
        result = ProgramResult(proc.returncode or 0, bytes(seen), await stderr)
    finally:
        await _kill(proc)
        feeding.cancel()
        stderr.cancel()
    check(result)


async def _feed(pipe: asyncio.StreamWriter, data: bytes) -> None:
    """Write all of `data` to the child's stdin and close it (a child that exits without
    reading it all is fine: its exit status and stderr say what happened)."""
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        pipe.write(data)
        await pipe.drain()
        pipe.close()


async def _start(argv: Sequence[str], env: Mapping[str, str] | None) -> asyncio.subprocess.Process:
    try:
        return await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=None if env is None else {**os.environ, **env},
        )
    except FileNotFoundError:
        raise BackendUnavailableError(f"{argv[0]}: program not found") from None
    except PermissionError:
        raise BackendUnavailableError(f"{argv[0]}: permission denied") from None


async def _kill(proc: asyncio.subprocess.Process) -> None:
    """Kill the child unless it has exited, and reap it."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    with contextlib.suppress(Exception):
        await asyncio.shield(proc.wait())
