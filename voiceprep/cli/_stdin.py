"""stdin that Ctrl-C can interrupt, for the decoder (`decode -`, `info -`).

PyAV swallows a KeyboardInterrupt raised inside its read callback (it forwards only
Exceptions, and prints the rest as "Exception ignored") and libav then reads again: the
decode would hang until the writer closed the pipe, then finish "successfully" with
whatever had arrived. So Ctrl-C during a read raises an Exception, which PyAV forwards out
of the decode, and so does any read after Ctrl-C; the caller turns it back into
KeyboardInterrupt.

A blocking read is not enough on its own: the kernel may deliver SIGINT to another thread
of the process (libav starts some), and then the main thread's read is not interrupted and
Python's handler never runs: the decode waits for input for ever. A pipe's reads therefore
first wait with select() on stdin and on a wake-up pipe that Python's C-level signal
handler writes to, from whichever thread the signal reached.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
from collections.abc import Iterator
from types import FrameType
from typing import Any

from voiceprep.cli import _signals

STDIO = "-"


class StdinInterrupted(Exception):
    """Raised from a read after Ctrl-C; an Exception, so that PyAV passes it on."""


class _InterruptibleStdin:
    name = "<stdin>"

    def __init__(self, wakeup: int | None) -> None:
        self._stream = sys.stdin.buffer
        self._wakeup = wakeup
        self.interrupted = False
        self.reading = False

    def read(self, size: int = -1) -> bytes:
        if self.interrupted:
            raise StdinInterrupted("interrupted")
        self.reading = True
        try:
            if self._wakeup is None:
                return self._stream.read(size)
            return self._read_pipe(size, self._wakeup)
        finally:
            self.reading = False

    def _read_pipe(self, size: int, wakeup: int) -> bytes:
        fd = self._stream.fileno()
        while True:
            ready, _, _ = select.select([fd, wakeup], [], [])
            if wakeup in ready:
                with contextlib.suppress(OSError):
                    os.read(wakeup, 512)  # drained; Python's handler runs next
            if self.interrupted:
                raise StdinInterrupted("interrupted")
            if fd in ready:
                # One read of what is there (a short read is fine for libav): never a
                # second, blocking one.
                return os.read(fd, size if size >= 0 else 1 << 16)

    # stdin redirected from a file (`< clip.m4a`) can seek, as PyAV sees it for `-`:
    # an MP4 with its index at the end stays readable.
    def seekable(self) -> bool:
        return self._stream.seekable()

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._stream.seek(offset, whence)

    def tell(self) -> int:
        return self._stream.tell()


_CALLBACK_CODES = frozenset(
    method.__code__
    for method in (
        _InterruptibleStdin.read,
        _InterruptibleStdin._read_pipe,
        _InterruptibleStdin.seekable,
        _InterruptibleStdin.seek,
        _InterruptibleStdin.tell,
    )
)


@contextlib.contextmanager
def interruptible(source: str) -> Iterator[Any]:
    """`source` itself, or for `-` a stdin that Ctrl-C can interrupt (KeyboardInterrupt)."""
    if source != STDIO:
        yield source
        return
    with _wakeup_pipe() as wakeup:
        stdin = _InterruptibleStdin(wakeup)

        def on_interrupt(signum: int, frame: FrameType | None) -> None:
            _signals.note(signum)
            stdin.interrupted = True
            # Inside one of PyAV's callbacks (even at its very first line, before `reading`
            # is set) only an Exception gets through; PyAV would print a KeyboardInterrupt.
            in_callback = frame is not None and frame.f_code in _CALLBACK_CODES
            if stdin.reading or in_callback:
                raise StdinInterrupted("interrupted")
            raise KeyboardInterrupt

        # SIGTERM and SIGHUP stop a read as Ctrl-C does (voiceprep.cli._signals).
        stopping = [signal.SIGINT] + [
            sig for sig in _signals.TERMINATING if signal.getsignal(sig) is not signal.SIG_IGN
        ]
        previous = {sig: signal.signal(sig, on_interrupt) for sig in stopping}
        try:
            yield stdin
        except BaseException:
            if stdin.interrupted:  # whatever the decoder made of it, it was Ctrl-C
                raise KeyboardInterrupt from None
            raise
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


@contextlib.contextmanager
def _wakeup_pipe() -> Iterator[int | None]:
    """The read end of a pipe signals are reported on, while stdin is a pipe or terminal;
    None where a read cannot block for ever (a regular file) or there is no select()."""
    try:
        sys.stdin.buffer.fileno()
        waitable = os.name == "posix" and not sys.stdin.buffer.seekable()
    except (AttributeError, OSError, ValueError):  # no real descriptor (tests)
        waitable = False
    if not waitable:
        yield None
        return
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    previous = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    try:
        yield read_end
    finally:
        signal.set_wakeup_fd(previous)
        os.close(read_end)
        os.close(write_end)
