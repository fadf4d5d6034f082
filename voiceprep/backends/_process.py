"""Running a local program the way a backend needs it: argv (never a shell), text on stdin,
audio on stdout, and the child killed if the caller gives up (timeout, Ctrl-C)."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from voiceprep.errors import BackendUnavailableError


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
    try:
        proc = await asyncio.create_subprocess_exec(
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
    try:
        stdout, stderr = await proc.communicate(stdin)
    except BaseException:
        # Cancelled (per-attempt timeout, Ctrl-C): never leave the program running.
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        with contextlib.suppress(Exception):
            await asyncio.shield(proc.wait())
        raise
    returncode = proc.returncode if proc.returncode is not None else 0
    return ProgramResult(returncode, stdout, stderr)
