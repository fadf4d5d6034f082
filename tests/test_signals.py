"""SIGTERM and SIGHUP stop a command as Ctrl-C does: real signals sent to a real process.

What `timeout`, systemd, `docker stop` and CI cancellation send (SIGTERM), and what a closed
terminal sends (SIGHUP), must leave no temporary file behind: exit 128 + the signal's
number (143, 129), no traceback, nothing half-written.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from audiogen import sine, sine_pcm, write_sine
from helpers import voiceprep_command

from voiceprep import segments
from voiceprep.cache import AudioCache
from voiceprep.keys import BackendIdentity, cache_key
from voiceprep.output import OutputSpec
from voiceprep.wav import wav_bytes

SIGNALS = [signal.SIGTERM, signal.SIGHUP]


def parts(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".part"))


def wait_for(predicate: Callable[[], object], what: str, limit: float = 60.0) -> None:
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.005)


def stopped_by(proc: subprocess.Popen[bytes], sig: int) -> None:
    """Send `sig` to `proc` (stopped by SIGSTOP: it is delivered on SIGCONT, where the
    process stood); it exits as that signal says, without a traceback."""
    assert proc.stderr is not None
    proc.send_signal(sig)
    proc.send_signal(signal.SIGCONT)
    proc.wait(timeout=60)
    errors = proc.stderr.read()
    assert proc.returncode == 128 + sig, errors
    assert b"Traceback" not in errors


@pytest.fixture(scope="module")
def long_flac(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three minutes of 8 kHz mono: at 192 kHz stereo f32, 276 MB to write (about 2 s)."""
    return write_sine(
        tmp_path_factory.mktemp("long") / "long.flac", seconds=180, rate=8000, codec="flac"
    )


@pytest.mark.parametrize("jobs", ["1", "2"], ids=["serial", "in-pieces"])
@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: signal.Signals(s).name)
def test_a_signal_while_decoding_a_file_removes_the_temporary_output(
    tmp_path: Path, long_flac: Path, sig: int, jobs: str
) -> None:
    # -j 2: the three minutes are decoded in two pieces, the second by a worker process.
    proc = subprocess.Popen(
        voiceprep_command(
            "decode",
            long_flac,
            "-o",
            tmp_path / "o.pcm",
            "-r",
            "192000",
            "-c",
            "2",
            "--sample-format",
            "f32",
            "-j",
            jobs,
        ),
        stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    wait_for(lambda: parts(tmp_path), "the temporary output")
    # Stopped while the .part is there, the signal is delivered on SIGCONT: mid-decode.
    proc.send_signal(signal.SIGSTOP)
    assert parts(tmp_path), "the decode finished before it could be signalled"
    stopped_by(proc, sig)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: signal.Signals(s).name)
def test_a_signal_while_reading_stdin_removes_the_temporary_output(
    tmp_path: Path, sig: int
) -> None:
    data = wav_bytes(
        (sine(440, 12.0, 48000)[0] * 32767).astype("<i2").tobytes(), rate=48000, channels=1
    )
    proc = subprocess.Popen(
        voiceprep_command("decode", "-", "-o", "out.pcm"),
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
    )
    assert proc.stdin is not None and proc.stderr is not None
    proc.stdin.write(data[: len(data) * 3 // 4])  # the decoder then waits for the rest
    proc.stdin.flush()
    wait_for(lambda: parts(tmp_path), "the temporary output")

    proc.send_signal(sig)
    proc.wait(timeout=60)
    proc.stdin.close()

    assert proc.returncode == 128 + sig
    assert b"Traceback" not in proc.stderr.read()
    assert os.listdir(tmp_path) == []


def test_sigterm_during_a_parallel_batch_stops_the_workers_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    # Named pipes as inputs: each worker blocks reading one, mid-file.
    fifos = [tmp_path / "one.wav", tmp_path / "two.wav"]
    for fifo in fifos:
        os.mkfifo(fifo)
    out_dir = tmp_path / "out"
    proc = subprocess.Popen(
        voiceprep_command("decode", *fifos, "--out-dir", out_dir, "-j", "2"),
        stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    data = wav_bytes(
        (sine(440, 12.0, 48000)[0] * 32767).astype("<i2").tobytes(), rate=48000, channels=1
    )
    writers: list[object] = []

    def feed(fifo: Path) -> None:
        handle = fifo.open("wb")
        writers.append(handle)
        with contextlib.suppress(BrokenPipeError):
            handle.write(data[: len(data) * 3 // 4])
            handle.flush()

    threads = [threading.Thread(target=feed, args=(f,), daemon=True) for f in fifos]
    for thread in threads:
        thread.start()
    wait_for(lambda: out_dir.exists() and len(parts(out_dir)) == 2, "two temporary outputs")

    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    for handle in writers:
        with contextlib.suppress(BrokenPipeError):
            handle.close()  # type: ignore[attr-defined]

    assert proc.returncode == 143
    assert b"Traceback" not in proc.stderr.read()
    assert os.listdir(out_dir) == []


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: signal.Signals(s).name)
def test_a_signal_mid_export_leaves_no_manifest_claiming_a_finished_export(
    tmp_path: Path, sig: int
) -> None:
    """Exporting again into an export directory, stopped midway: its old manifest.json
    (and review page) must not remain beside files it no longer describes, nor a
    temporary file; a directory with a manifest holds a finished export."""
    identity = BackendIdentity("espeak", voice="en")
    with AudioCache(tmp_path / "cache") as cache:
        for n in range(120):
            text = f"Phrase number {n}."
            pcm = sine_pcm(200 + n, 0.5, 16000, 1)
            key = cache_key(identity, text, rate=16000, channels=1)
            cache.put(key, pcm, rate=16000, channels=1, text=text, identity=identity)
    out = tmp_path / "out"
    command = ["cache", "export", "--cache-dir", tmp_path / "cache", "--layout", "freeswitch"]
    done = subprocess.run(voiceprep_command(*command, out), capture_output=True, check=False)
    assert done.returncode == 0, done.stderr
    assert (out / "manifest.json").exists() and (out / "index.html").exists()
    before = {p: p.stat().st_ino for p in out.rglob("*.wav")}

    proc = subprocess.Popen(voiceprep_command(*command, out), stderr=subprocess.PIPE)
    assert proc.stderr is not None
    wait_for(lambda: any(p.stat().st_ino != ino for p, ino in before.items()), "a file rewritten")
    proc.send_signal(signal.SIGSTOP)
    stopped_by(proc, sig)
    left = sorted(p.name for p in out.rglob("*") if p.is_file() and not p.name.endswith(".wav"))
    assert left == [], left  # no manifest.json, index.html nor temporary file


def _interrupt_at(event_number: int) -> Callable[[], int]:
    """A profiler raising KeyboardInterrupt at the `event_number`-th point where a signal's
    handler would raise it (as a function starts or resumes, as a call to a builtin
    returns: where CPython checks for signals) in the decode's own steps (voiceprep's
    segments, batch and output modules and the context managers they use; not the
    decoding loop's), in this process, while the signals are not blocked. Returns the
    count of such points so far."""
    ours = ("segments.py", "batch.py", "output.py", "contextlib.py")
    parent = os.getpid()
    seen = 0

    def profile(frame: Any, event: str, arg: object) -> None:
        nonlocal seen
        code = frame.f_code
        if (
            event not in ("call", "c_return")
            or os.getpid() != parent
            or not code.co_filename.endswith(ours)
            or code.co_name == "_write_piece"
            or signal.SIGHUP in signal.pthread_sigmask(signal.SIG_BLOCK, [])
        ):
            return
        seen += 1
        if seen == event_number:
            raise KeyboardInterrupt  # (the profiler is then unset: one signal per run)

    sys.setprofile(profile)
    return lambda: seen


def _pipes() -> list[str]:
    """This process's open pipes."""
    links = {}
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(FileNotFoundError):  # (the listing's own)
            links[fd] = os.readlink(f"/proc/self/fd/{fd}")
    return sorted(fd for fd, link in links.items() if link.startswith("pipe:"))


def test_a_signal_at_any_step_of_a_decode_in_pieces_leaves_no_file_and_no_worker(
    tmp_path: Path,
) -> None:
    # In a process of its own: a decode forks its workers only from a process running one
    # thread, and "no worker left" is read from the process's children (pytest's process
    # may hold other threads and children, left by other tests' servers and pools).
    done = subprocess.run(
        [sys.executable, "-c", f"import test_signals; test_signals.every_step({str(tmp_path)!r})"],
        cwd=Path(__file__).parent,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def every_step(directory: str) -> None:
    """Every step before, during and after the fork of the worker and while waiting on it:
    interrupted there, the decode stops its worker and removes its temporary output."""
    tmp_path = Path(directory)
    segments.MIN_SECONDS = 1.0
    source = write_sine(tmp_path / "in.flac", seconds=3, rate=8000, codec="flac")
    spec = OutputSpec(rate=8000, channels=1, sample_format="s16")
    assert segments.plan(source, spec, 2) is not None, "decoded in one piece"
    segments.decode_file(source, tmp_path / "whole.pcm", spec, jobs=2)
    whole = (tmp_path / "whole.pcm").read_bytes()
    out = tmp_path / "out"
    out.mkdir()
    pipes = _pipes()
    interrupted = 0
    for step in itertools.count(1):
        seen = _interrupt_at(step)
        try:
            segments.decode_file(source, out / "o.pcm", spec, jobs=2)
        except KeyboardInterrupt:
            interrupted += 1
        else:
            assert seen() < step  # every step done: nothing left to interrupt
            break
        finally:
            sys.setprofile(None)
        # Once the interrupt is handled (as the CLI does before it exits): nothing, or
        # (interrupted after the final rename) the whole output.
        if os.listdir(out) == ["o.pcm"]:
            assert (out / "o.pcm").read_bytes() == whole, f"interrupted at step {step}"
            (out / "o.pcm").unlink()
        assert os.listdir(out) == [], f"interrupted at step {step}"
        with pytest.raises(ChildProcessError):  # every worker stopped and waited for
            os.waitpid(-1, os.WNOHANG)
        assert _pipes() == pipes, f"a worker's pipe left open at step {step}"
    assert interrupted > 20
    assert (out / "o.pcm").read_bytes() == whole
