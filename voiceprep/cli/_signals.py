"""SIGTERM and SIGHUP stop a command as Ctrl-C does: temporary files removed, then exit.

`timeout`, systemd, `docker stop` and CI cancellation send SIGTERM; a closed terminal
sends SIGHUP. Python's default for both is to die at once, leaving every temporary file
(a decode's `.part`, a `say`/`cache get` output, an export's manifest) behind. Here each
raises KeyboardInterrupt in the main thread instead, so every `finally` and
`except BaseException` that removes a temporary file runs, exactly as for Ctrl-C; the
exit status then says which signal it was: 128 + its number (143 for SIGTERM, 129 for
SIGHUP), as a shell reports a command killed by it.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

from voiceprep.errors import ExitStatus

# Signals that end a command the way Ctrl-C (SIGINT) does.
TERMINATING = (signal.SIGTERM, signal.SIGHUP)

_received: list[int] = []


def note(signum: int) -> None:
    """Remember that `signum` is why the command is stopping (the first one counts)."""
    if not _received:
        _received.append(signum)


def _on_signal(signum: int, frame: FrameType | None) -> None:
    note(signum)
    raise KeyboardInterrupt


def install() -> None:
    """SIGTERM and SIGHUP raise KeyboardInterrupt (unless ignored, as under `nohup`)."""
    if threading.current_thread() is not threading.main_thread():
        return  # (main() called from a thread, as a library would: signals are not ours)
    for sig in TERMINATING:
        if signal.getsignal(sig) is not signal.SIG_IGN:
            signal.signal(sig, _on_signal)


def interrupted_status() -> int:
    """The exit status of a command stopped by a signal: 130 for Ctrl-C, 128 + N for N."""
    return 128 + _received[0] if _received else int(ExitStatus.INTERRUPTED)


def was_terminated() -> bool:
    """True when SIGTERM or SIGHUP (not Ctrl-C) stopped the command."""
    return bool(_received) and _received[0] != signal.SIGINT
