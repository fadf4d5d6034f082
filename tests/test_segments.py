"""One long file decoded in pieces across processes (`decode -j N`, one input): the same
output as the serial decode, sample for sample, joined at exact positions."""

from __future__ import annotations

import pickle
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from audiogen import sine, write_audio
from helpers import CLI

from voiceprep import segments
from voiceprep.output import OutputSpec, decode_to_file

SECONDS = 24.0  # long enough for three pieces once MIN_SECONDS is lowered for the tests


@pytest.fixture(autouse=True)
def short_files_count_as_long(monkeypatch: pytest.MonkeyPatch) -> None:
    """Test files of seconds rather than minutes, split as a long file would be; and, for
    the plans made here, the test process taken for a one-thread program. Nothing is
    forked from the test process (earlier tests leave threads behind, and a lock one of
    them holds would hang a forked worker): every decode in pieces runs in a fresh
    process, as the command does (`in_child`)."""
    monkeypatch.setattr(segments, "MIN_SECONDS", 5.0)
    monkeypatch.setattr(segments, "alone", lambda: True)


_CHILD = """
import pickle, sys
from voiceprep import segments
segments.MIN_SECONDS = 5.0
if sys.argv[1] == "pieces":  # no serial fallback: the pieces must join
    def serially(*args, **kwargs):
        raise SystemExit("the pieces did not join: decoded serially")
    segments.decode_to_file = serially
source, dest, spec, jobs = pickle.loads(bytes.fromhex(sys.argv[2]))
if spec is None:  # the command itself
    from voiceprep.cli import main
    main([str(a) for a in source])
else:
    print(segments.decode_file(source, dest, spec, jobs=jobs))
"""


def in_child(
    source: Any, dest: Path | None, spec: OutputSpec | None, *, jobs: int = 3, pieces: bool
) -> subprocess.CompletedProcess[str]:
    """`segments.decode_file` (or, without `spec`, the command `source` lists) in a fresh
    process; with `pieces`, one that fails rather than fall back to the serial decode."""
    argument = pickle.dumps((source, dest, spec, jobs)).hex()
    mode = "pieces" if pieces else "any"
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, mode, argument], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return done


@pytest.fixture(scope="module")
def music(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """make(codec): a stereo file of changing tones and noise (no period that would hide
    a misplaced seam), encoded once per module."""
    directory = tmp_path_factory.mktemp("long")
    made: dict[str, Path] = {}
    suffixes = {"flac": ".flac", "pcm_s16le": ".wav", "mp3": ".mp3", "aac": ".m4a", "opus": ".opus"}

    def make(codec: str) -> Path:
        if codec not in made:
            rate = 48000 if codec == "opus" else 44100
            t = np.arange(int(SECONDS * rate)) / rate
            sweep = 0.3 * np.sin(2 * np.pi * (200 + 30 * t) * t)
            noise = 0.05 * np.random.default_rng(3).standard_normal((2, len(t)))
            signal = (np.stack([sweep, sine(523, SECONDS, rate)[0] * 0.4]) + noise).astype(
                np.float32
            )
            path = directory / f"music{suffixes[codec]}"
            container = "ogg" if codec == "opus" else None
            made[codec] = write_audio(
                path, signal, rate=rate, codec=codec, container_format=container
            )
        return made[codec]

    return make


def serial_and_parallel(
    source: Path, tmp_path: Path, spec: OutputSpec, jobs: int = 3
) -> tuple[bytes, bytes]:
    serial = tmp_path / "serial.out"
    decode_to_file(source, serial, spec)
    parallel = tmp_path / "parallel.out"
    in_child(source, parallel, spec, jobs=jobs, pieces=True)
    return serial.read_bytes(), parallel.read_bytes()


@pytest.mark.parametrize("codec", ["flac", "pcm_s16le"])
@pytest.mark.parametrize(
    "spec",
    [
        OutputSpec(rate=24000, channels=1),
        OutputSpec(rate=8000, channels=2, sample_format="f32", container="wav"),
        OutputSpec(rate=48000, channels=1, start=1.25, duration=20.0),
    ],
    ids=["24k-mono", "8k-stereo-f32-wav", "48k-window"],
)
def test_lossless_pieces_join_byte_for_byte(
    music: Callable[[str], Path],
    tmp_path: Path,
    codec: str,
    spec: OutputSpec,
) -> None:
    serial, parallel = serial_and_parallel(music(codec), tmp_path, spec)
    assert len(serial) > 10 * spec.rate
    assert parallel == serial


# Lossy decoders after a seek: the difference from the serial decode, over every second of
# output, has an RMS below -90 dBFS, and no sample differs by more than 4 LSB. (Measured:
# MP3 and Opus identical; AAC a few samples of ±1 LSB inside a piece, where the decoder's
# noise substitution draws other random numbers after a seek.)
TOLERANCE_DBFS = -90.0
TOLERANCE_LSB = 4


@pytest.mark.parametrize("codec", ["mp3", "aac", "opus"])
def test_lossy_pieces_join_within_the_tolerance(
    music: Callable[[str], Path], tmp_path: Path, codec: str
) -> None:
    spec = OutputSpec(rate=24000, channels=1)
    serial, parallel = serial_and_parallel(music(codec), tmp_path, spec)
    assert len(parallel) == len(serial)
    difference = np.frombuffer(serial, "<i2").astype(np.int64) - np.frombuffer(
        parallel, "<i2"
    ).astype(np.int64)
    assert np.abs(difference).max() <= TOLERANCE_LSB
    seconds = len(difference) // spec.rate
    per_second = difference[: seconds * spec.rate].reshape(seconds, spec.rate) / 32768
    rms = np.sqrt(np.mean(per_second**2, axis=1))
    assert (rms == 0).all() or 20 * np.log10(rms.max()) < TOLERANCE_DBFS
    # The pieces' seams themselves: exact.
    pieces = segments.plan(music(codec), spec, 3)
    assert pieces is not None and len(pieces) == 3
    for piece in pieces[1:]:
        seam = slice(piece.start - 100, piece.start + 100)
        assert not difference[seam].any()


def test_short_files_pipes_and_processing_stay_serial(
    music: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = music("flac")
    spec = OutputSpec(rate=24000, channels=1)
    assert segments.plan(path, spec, 2) is not None
    assert segments.plan(path, spec, 1) is None
    with path.open("rb") as handle:
        assert segments.plan(handle, spec, 2) is None  # a file object, stdin, a pipe
    assert segments.plan(path, OutputSpec(rate=24000, channels=1, duration=3.0), 2) is None
    monkeypatch.setattr(segments, "MIN_SECONDS", 120.0)
    assert segments.plan(path, spec, 2) is None


def test_a_duration_that_overstates_the_audio_falls_back_to_serial(
    music: Callable[[str], Path], tmp_path: Path
) -> None:
    # A FLAC cut in half still says 24 s in its header: the last piece would start past
    # the end and the middle one comes out short. The pieces do not join, so the file is
    # decoded again serially, never with a gap.
    whole = music("flac").read_bytes()
    cut = tmp_path / "cut.flac"
    cut.write_bytes(whole[: len(whole) // 2])
    spec = OutputSpec(rate=24000, channels=1)
    pieces = segments.plan(cut, spec, 3)
    assert pieces is not None and pieces[2].start > 13 * spec.rate  # planned on 24 s
    written = int(in_child(cut, tmp_path / "out.pcm", spec, jobs=3, pieces=False).stdout)
    decode_to_file(cut, tmp_path / "serial.pcm", spec)
    assert (tmp_path / "out.pcm").read_bytes() == (tmp_path / "serial.pcm").read_bytes()
    assert written == (tmp_path / "out.pcm").stat().st_size


def test_a_wav_that_promises_more_than_it_holds_is_decoded_serially_with_its_warning(
    music: Callable[[str], Path], tmp_path: Path
) -> None:
    whole = music("pcm_s16le").read_bytes()
    lying = tmp_path / "lying.wav"
    lying.write_bytes(whole[: 44 + (len(whole) - 44) // 2])
    spec = OutputSpec(rate=24000, channels=1)
    assert segments.plan(lying, spec, 3) is None
    warnings: list[str] = []
    segments.decode_file(lying, tmp_path / "out.pcm", spec, jobs=3, on_warning=warnings.append)
    assert [w for w in warnings if "promises" in w]


def test_the_command_decodes_a_long_file_in_pieces(
    cli: CLI, music: Callable[[str], Path], tmp_path: Path
) -> None:
    source = music("mp3")
    one = cli("decode", source, "-o", tmp_path / "one.pcm", "-j", "1")
    assert one.code == 0, one.err
    in_child(["decode", source, "-o", tmp_path / "two.wav", "-j", "2"], None, None, pieces=True)
    assert (tmp_path / "two.wav").read_bytes()[44:] == (tmp_path / "one.pcm").read_bytes()


def test_a_process_with_other_threads_decodes_serially(
    music: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.undo()  # the real check
    monkeypatch.setattr(segments, "MIN_SECONDS", 5.0)
    spec = OutputSpec(rate=24000, channels=1)
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        assert segments.plan(music("flac"), spec, 2) is None
    finally:
        stop.set()
        other.join()


@pytest.mark.parametrize(("suffix", "pieces"), [(".ulaw", True), (".alaw", True), (".g722", False)])
def test_phone_outputs_of_a_long_file_join_as_the_serial_decode(
    cli: CLI, music: Callable[[str], Path], tmp_path: Path, suffix: str, pieces: bool
) -> None:
    # G.711 codes each sample alone: its pieces are encoded as they are written. G.722's
    # codes depend on every sample before: decoded serially.
    source = music("mp3")
    one = cli("decode", source, "-o", tmp_path / f"one{suffix}", "-j", "1")
    assert one.code == 0, one.err
    command = ["decode", source, "-o", tmp_path / f"two{suffix}", "-j", "2"]
    in_child(command, None, None, pieces=pieces)
    assert (tmp_path / f"two{suffix}").read_bytes() == (tmp_path / f"one{suffix}").read_bytes()
