"""`voiceprep serve` as a real process on 127.0.0.1 for the tests and the benchmark.

    with ServerProcess(["-b", "espeak", "--cache-dir", str(cache)]) as server:
        httpx.post(server.url("/v1/audio/speech"), json={...})
        server.stop()  # SIGTERM; returns the exit code

The server binds port 0 and the helper reads the port from its "serving http://…" line.
Every wait is bounded, so a server that hangs fails the test instead of the suite.
The child gets the test's environment without VOICEPREP_* and OPENAI_* variables (tests
must not depend on the developer's shell), plus `env`.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from helpers import isolated_environment

from voiceprep.cache import AudioCache, CacheEntry

_LISTENING = re.compile(r"serving http://(\S+):(\d+) ")
START_TIMEOUT = 60.0


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The tests' isolated environment, without provider keys or base URLs either."""
    env = {
        k: v
        for k, v in isolated_environment().items()
        if not k.startswith(("OPENAI_", "ELEVENLABS_"))
    }
    env.update(extra or {})
    return env


class ServerProcess:
    def __init__(
        self,
        args: list[str],
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.args = args
        self.command = [sys.executable, "-m", "voiceprep", "serve", "--port", "0", *args]
        if "--host" not in args:
            self.command += ["--host", host]
        self.env = clean_env(env)
        self.cwd = cwd
        self.lines: list[str] = []
        self.port = 0
        self.host = host
        self._cond = threading.Condition()
        self._eof = False
        self.proc: subprocess.Popen[str] | None = None
        self.returncode: int | None = None

    # --- lifecycle ---------------------------------------------------------------------

    def start(self) -> ServerProcess:
        self.proc = subprocess.Popen(
            self.command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env,
            cwd=self.cwd,
        )
        threading.Thread(target=self._read, daemon=True).start()
        line = self.wait_for_line(_LISTENING.pattern, timeout=START_TIMEOUT)
        match = _LISTENING.search(line)
        assert match is not None
        self.port = int(match.group(2))
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        """Send `sig`, wait for the exit (bounded): the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.returncode = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            raise AssertionError(f"server did not exit within {timeout} s of {sig}") from None
        self._drain()
        return self.returncode

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    # --- output --------------------------------------------------------------------

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def _drain(self) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self._eof, timeout=10)

    def wait_for_line(self, pattern: str, *, timeout: float = 30, start: int = 0) -> str:
        """The first stderr line from index `start` on that matches `pattern` (regex)."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines[start:]:
                    if regex.search(line):
                        return line
                assert self.proc is not None
                left = deadline - time.monotonic()
                if left <= 0 or self._eof:
                    shown = "\n".join(self.lines[-20:])
                    raise AssertionError(f"no stderr line matching {pattern!r}; got:\n{shown}")
                self._cond.wait(min(left, 0.2))

    @property
    def stderr(self) -> str:
        with self._cond:
            return "\n".join(self.lines)

    # --- addresses -----------------------------------------------------------------

    @property
    def root(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """What an OpenAI client takes as base_url."""
        return f"{self.root}/v1"

    def url(self, path: str) -> str:
        return self.root + path


def stored_entry(cache: Path, text: str, *, wait: float = 30) -> CacheEntry | None:
    """The cache's entry of `text`, waiting up to `wait` s for it: a miss is written just
    after its last byte was sent."""
    deadline = time.monotonic() + wait
    while True:
        with AudioCache(cache) as store:
            entries = [e for e in store.entries() if e.text == text]
        if entries or time.monotonic() > deadline:
            return entries[0] if entries else None
        time.sleep(0.02)
