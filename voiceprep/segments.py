"""One long file decoded across processes (`decode -j N` with a single input).

The output is cut into N pieces at sample positions; this process decodes the first while
forked workers decode the others, each writing its PCM straight into the output's
temporary file at its own offset (`os.pwrite`): no PCM passes between processes and
memory stays flat. Every piece, the first too, is decoded the same way, by one decoding
thread (voiceprep.graph.segment).

A worker demuxes from a second before its piece (`amovie`'s seek point), lets the decoder
settle there, and starts its resampler `RESAMPLER_PREROLL` before the piece on the serial
decode's own sample grid: output sample j of the serial decode is input sample
F + j × in/out (F the first decoded timestamp), so a piece starts at a multiple of
out/gcd(in, out), where that input position is a whole sample (voiceprep.graph.segment).
Its first output samples are then dropped (the first piece's resampler starts where the
serial decode's does, or at most `RESAMPLER_PREROLL` before `--start`). After the preroll
the resampler's filter holds the same input as the serial one's and computes the same
samples: measured on PyAV 18.1 (FFmpeg 8.1), the pieces are byte for byte the serial
decode for FLAC, WAV, MP3, AAC and Opus (the tests compare them; lossy codecs are held to
-90 dBFS at the seams should a codec ever settle less exactly).

Short files, pipes, stdin, chained Ogg, a processing chain, and outputs that are not
regular files stay serial. If a piece comes out shorter than planned (a duration in the
header longer than the audio) or a worker fails (a corrupt packet, which the serial path
decodes around), the whole file is decoded again serially: never a gap.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import os
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voiceprep import graph
from voiceprep.batch import stopping_held, worker_signals
from voiceprep.decoding import probe_start, window
from voiceprep.errors import VoiceprepError
from voiceprep.graph import Target
from voiceprep.ogg import chain_offsets
from voiceprep.output import OutputSpec, atomic_file, decode_to_file, output_target
from voiceprep.phonecodec import g711_chunks
from voiceprep.telephony import G711
from voiceprep.wav import WAV_HEAD_BYTES, patch_wav_sizes, wav_header, wav_promise

# Files shorter than this are decoded in one process: a piece costs a fork, a seek and
# a preroll (~50 ms), which a short file does not win back.
MIN_SECONDS = 120.0
# Demuxed and decoded before a piece's resampler starts: the decoder's state (MP3's bit
# reservoir, AAC's overlap, Opus's pre-roll of 80 ms) settles well within it.
CODEC_PREROLL = 1.0
# Resampled and dropped before a piece: libswresample's default filter is 32 taps long.
RESAMPLER_PREROLL = 0.1

Progress = Callable[[int], None]
WarningHandler = Callable[[str], None]


@dataclass(frozen=True)
class Piece:
    """Output samples `start` … `end` (None: to the end), as the serial decode counts them;
    decoded from `seek` seconds with the resampler started at input sample `first_sample`,
    `preroll` output samples before `start` (dropped)."""

    start: int
    end: int | None
    seek: float
    first_sample: int
    preroll: int


class _Serially(Exception):
    """The pieces did not join up: decode the file serially instead."""


def decode_file(
    source: Any,
    dest: str | os.PathLike[str],
    spec: OutputSpec,
    *,
    jobs: int,
    force: bool = False,
    progress: Progress | None = None,
    on_warning: WarningHandler | None = None,
) -> int:
    """`voiceprep.output.decode_to_file`, across up to `jobs` processes when `source` is a
    long regular file; the same bytes either way. Returns the PCM byte count."""
    pieces = plan(source, spec, jobs)
    if pieces is not None:
        target = output_target(Path(dest), force=force, source=source)
        if not target.in_place:
            with contextlib.suppress(_Serially):
                return _decode_pieces(Path(source), target.path, spec, pieces, force, progress)
    return decode_to_file(source, dest, spec, force=force, progress=progress, on_warning=on_warning)


def plan(source: Any, spec: OutputSpec, jobs: int) -> list[Piece] | None:
    """The pieces of a decode worth splitting, else None (decode serially)."""
    if jobs < 2 or (spec.process is not None and not spec.process.is_empty):
        return None
    if spec.codec is not None:
        return None  # G.722 is ADPCM: each sample's code depends on all before it
    if not isinstance(source, str | os.PathLike) or not Path(source).is_file():
        return None  # stdin, pipes, file objects
    if not alone():
        return None  # forking beside other threads (a library caller's) is not safe
    path = Path(source)
    try:
        if chain_offsets(path) or _lying_wav(path):
            return None
        info, first, in_rate = probe_start(path)
        seconds = info.duration
        if seconds is None:
            return None
    except (VoiceprepError, OSError, ValueError):
        return None  # the serial decode reports what is wrong
    except Exception as exc:  # an av.error.FFmpegError: likewise
        if type(exc).__module__.startswith("av"):
            return None
        raise
    rate = spec.rate
    skip = round(spec.start * rate) if spec.start else 0
    end = round(seconds * rate) if spec.duration is None else skip + round(spec.duration * rate)
    end = min(end, round(seconds * rate))
    if end - skip < MIN_SECONDS * rate:
        return None
    # Output sample j is input sample first + j * in_rate / rate: whole where j is a
    # multiple of `step`.
    step = rate // math.gcd(in_rate, rate)
    preroll = math.ceil(RESAMPLER_PREROLL * rate / step) * step
    starts = [skip] + [(skip + k * (end - skip) // jobs) // step * step for k in range(1, jobs)]
    ends: list[int | None] = [*starts[1:], end if spec.duration is not None else None]
    pieces = []
    for start, stop in zip(starts, ends, strict=True):
        grid = max(0, start - preroll) // step * step  # where the resampler starts
        first_sample = first + grid // step * (in_rate * step // rate)
        seek = max(0.0, first_sample / in_rate - CODEC_PREROLL)
        pieces.append(Piece(start, stop, seek, first_sample, start - grid))
    return pieces


def alone() -> bool:
    """Whether this process runs one thread: only then are workers forked (another thread,
    a library caller's, may hold a lock the forked workers would wait on forever)."""
    return threading.active_count() == 1


def _lying_wav(path: Path) -> bool:
    """A WAV whose header promises more than the file holds: decoded serially, which
    says so."""
    with open(path, "rb") as handle:
        head = handle.read(WAV_HEAD_BYTES)
    return wav_promise(head, path.stat().st_size) is not None


def _decode_pieces(
    source: Path,
    dest: Path,
    spec: OutputSpec,
    pieces: list[Piece],
    force: bool,
    progress: Progress | None,
) -> int:
    # G.711 codes each sample alone: the pieces are decoded to s16 and encoded as written.
    law = spec.sample_format if spec.sample_format in G711 else None
    target = Target.of(dataclasses.replace(spec, sample_format="s16") if law else spec)
    frame = spec.frame_bytes  # of the output
    header = b""
    if spec.container == "wav":
        header = wav_header(
            rate=spec.rate,
            channels=spec.channels,
            sample_format=spec.sample_format,
            data_bytes=None,
        )
    with atomic_file(dest, force=force) as out:
        out.write(header)
        out.flush()
        base = pieces[0].start
        workers: list[tuple[int, int]] = []  # (pid, the pipe on which it says what it wrote)
        ended: set[int] = set()
        try:
            for piece in pieces[1:]:
                offset = len(header) + (piece.start - base) * frame
                write = functools.partial(
                    _write_piece, source, target, piece, out.fileno(), offset, law
                )
                _fork(write, workers)
            try:
                total = _write_piece(
                    source, target, pieces[0], out.fileno(), len(header), law, progress
                )
            except Exception:  # an FFmpegError (a corrupt packet), a write error
                raise _Serially from None
            if total != (pieces[1].start - base) * frame:
                raise _Serially
            for (pid, answer), piece in zip(workers, pieces[1:], strict=True):
                count = _outcome(pid, answer)
                ended.add(pid)
                expected = None if piece.end is None else (piece.end - piece.start) * frame
                if count is None or (expected is not None and count != expected):
                    raise _Serially
                total += count
                if progress is not None:
                    progress(count)
        finally:
            for pid, answer in workers:
                if pid not in ended:  # (a failure or Ctrl-C: stop it)
                    with contextlib.suppress(ProcessLookupError, ChildProcessError):
                        os.kill(pid, signal.SIGTERM)
                        os.waitpid(pid, 0)
                os.close(answer)
        if spec.container == "wav":
            patch_wav_sizes(out, total)
    return total


def _fork(write: Callable[[], int], workers: list[tuple[int, int]]) -> None:
    """Fork a worker running `write` (a piece's `_write_piece`); add to `workers` its pid and the
    pipe on which it says how many bytes it wrote. No multiprocessing: its import costs
    2.4 MiB and 14 ms. The stopping signals are held until the worker is in `workers`:
    a signal at any point of this leaves no worker the caller does not know to stop."""
    with stopping_held():
        answer, say = os.pipe()
        pid = os.fork()
        if pid == 0:  # the worker: any failure (a corrupt packet, SIGTERM) exits 1, silently
            status = 1
            try:
                os.close(answer)
                worker_signals()
                os.write(say, b"%d" % write())
                status = 0
            finally:
                os._exit(status)
        workers.append((pid, answer))
        os.close(say)


def _outcome(pid: int, answer: int) -> int | None:
    """The bytes a worker wrote, once it has ended; None if it failed."""
    said = b""
    while part := os.read(answer, 64):
        said += part
    _, status = os.waitpid(pid, 0)
    return int(said) if status == 0 and said else None


def _write_piece(
    path: Path,
    target: Target,
    piece: Piece,
    fd: int,
    offset: int,
    law: str | None,
    progress: Progress | None = None,
) -> int:
    """One piece decoded from its seek point (G.711-encoded with `law`), written at
    `offset` of `fd`; the bytes written."""
    frame = target.frame_bytes
    size = None if piece.end is None else (piece.end - piece.start) * frame
    chunks = graph.segment(path, target, seek=piece.seek, first_sample=piece.first_sample)
    written = 0
    pcm = window(chunks, piece.preroll * frame, size)
    for chunk in g711_chunks(pcm, law) if law else pcm:
        os.pwrite(fd, chunk, offset + written)
        written += len(chunk)
        if progress is not None:
            progress(len(chunk))
    return written
