"""Writing audio: decoded from a source, or PCM already in memory (a cached or synthesized
phrase), to a file atomically or to a stream (stdout), as raw PCM or WAV, or in the
shapes phones play: G.711 (raw, or WAV with its format tag) and the raw files Asterisk
names by suffix (`.ulaw`, `.sln16`, `.g722`, ...: voiceprep.telephony; `output_spec`).

A regular file is written to a temporary name in its own directory and renamed into place
only when complete, so a failure, a full disk or Ctrl-C never leaves a half-written output
behind, and an existing file is never replaced unless asked (`force=True`). What is not a
regular file is never replaced: a character device (`/dev/null`), a FIFO or `/dev/stdout`
is opened and written in place; a symlink is followed to the file it names, which is then
replaced (the link stays), as ffmpeg writes through it. WAV output to a file gets
its sizes patched at the end; to a stream it carries the "unknown length" sizes ffmpeg
uses for pipes.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from voiceprep.audio_format import SAMPLE_FORMATS, AudioFormat
from voiceprep.decoding import decode
from voiceprep.errors import (
    OutputError,
    OutputExistsError,
    UsageError,
    WriteError,
)
from voiceprep.phonecodec import g711_chunks, g722_chunks
from voiceprep.telephony import (
    G711,
    G711_RATE,
    G711_SUFFIX,
    G722_RATE,
    TELEPHONY_SAMPLE_FORMAT,
    PhoneFile,
    phone_file,
)
from voiceprep.units import check_seconds
from voiceprep.wav import patch_wav_sizes, wav_bytes, wav_header

if TYPE_CHECKING:
    from voiceprep.process import ProcessSettings

CONTAINERS = ("raw", "wav")
# Large enough that a 4-second clip is one write, small enough to stay flat in memory.
_WRITE_BUFFER = 1 << 20

Progress = Callable[[int], None]
WarningHandler = Callable[[str], None]


@dataclass(frozen=True)
class OutputSpec(AudioFormat):
    """How decoded audio is shaped (its `AudioFormat`: rate, channels, sample format, all
    checked there) and stored (everything but where it comes from)."""

    container: str = "raw"
    start: float | None = None
    duration: float | None = None
    process: ProcessSettings | None = None  # the processing chain (voiceprep.process)
    codec: str | None = None  # "g722": the s16 audio coded as raw G.722

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.container not in CONTAINERS:
            raise UsageError(f"invalid format {self.container!r}: use raw or wav")
        if self.codec is not None and (
            self.codec != "g722"
            or (self.rate, self.channels, self.sample_format, self.container)
            != (G722_RATE, 1, "s16", "raw")
        ):
            raise UsageError("G.722 output is raw, 16000 Hz mono, from s16 audio")
        if self.start is not None:
            check_seconds(self.start, "start")
        if self.duration is not None:
            check_seconds(self.duration, "duration", zero=False)

    @property
    def suffix(self) -> str:
        """The name an output of this shape gets when none is given."""
        if self.container == "wav":
            return ".wav"
        if self.codec == "g722":
            return ".g722"
        if self.sample_format in G711 and (self.rate, self.channels) == (G711_RATE, 1):
            return G711_SUFFIX[self.sample_format]
        return ".pcm"

    @property
    def pcm_format(self) -> str:
        """The sample format decoded and processed before any coding (G.711, G.722)."""
        return "s16" if self.sample_format in G711 else self.sample_format

    def seconds(self, pcm_bytes: int) -> float:
        if self.codec == "g722":  # 64 kbit/s: one byte per two samples
            return pcm_bytes * 2 / self.rate
        return super().seconds(pcm_bytes)

    def bytes_for(self, seconds: float) -> int:
        if self.codec == "g722":
            return int(seconds * self.rate) // 2
        return super().bytes_for(seconds)

    def encoded(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        """Chunks of `pcm_format` audio as this output holds them (coded, or as they are)."""
        if self.codec == "g722":
            return g722_chunks(chunks)
        if self.sample_format in G711:
            return g711_chunks(chunks, self.sample_format)
        return iter(chunks)


def phone_spec(phone: PhoneFile, **more: Any) -> OutputSpec:
    """The OutputSpec of a phone file (`voiceprep.telephony.PHONE_FILES`): raw, mono."""
    return OutputSpec(
        rate=phone.rate,
        channels=1,
        sample_format=phone.sample_format,
        container="raw",
        codec=phone.codec,
        **more,
    )


def output_spec(
    path: str | os.PathLike[str] | None,
    *,
    rate: int | None,
    channels: int | None,
    sample_format: str | None,
    container: str | None,
    default_rate: int,
    default_channels: int,
    telephony: bool = False,
    **more: Any,
) -> OutputSpec:
    """The OutputSpec for an output named `path` (None: stdout, or a name of voiceprep's
    choosing), from what was asked for (None: not given) and the defaults.

    A phone suffix (`.ulaw`, `.sln16`, `.g722`, ...) fixes the shape: what was not given
    follows it, and a contradiction (`-r 16000` for a `.ulaw`, `-c 2`, another sample
    format, `--format wav`) is a UsageError naming what the suffix needs. Otherwise G.711
    defaults to 8000 Hz (the rate it is defined at), everything else to the defaults, and
    the container to wav for a `.wav` name. `telephony` (the preset) makes the sample
    format μ-law when nothing else names one. `more`: the other OutputSpec fields.
    """
    phone = phone_file(path)
    if phone is not None:
        suffix = Path(str(path)).suffix
        asked = {
            f"-r {rate}": rate not in (None, phone.rate),
            f"-c {channels}": channels not in (None, 1),
            f"--sample-format {sample_format}": sample_format not in (None, phone.sample_format),
            f"--format {container}": container not in (None, "raw"),
        }
        for option, contradicts in asked.items():
            if contradicts:
                raise UsageError(f"{path}: {phone.describe(suffix)}; {option} contradicts it")
        return phone_spec(phone, **more)
    chosen = sample_format or (TELEPHONY_SAMPLE_FORMAT if telephony else SAMPLE_FORMATS[0])
    fallback_rate = G711_RATE if chosen in G711 else default_rate
    return OutputSpec(
        rate=rate or fallback_rate,
        channels=channels or default_channels,
        sample_format=chosen,
        container=container_for(path or "", container),
        **more,
    )


def container_for(path: str | os.PathLike[str], requested: str | None) -> str:
    """The output container: the one asked for, else `.wav` → wav, anything else → raw."""
    if requested is not None:
        return requested
    return "wav" if Path(path).suffix.lower() == ".wav" else "raw"


def _chunks(
    source: Any, spec: OutputSpec, on_warning: WarningHandler | None
) -> Generator[bytes, None, None]:
    # A generator of our own, so closing it also closes (and releases) the decoder.
    yield from spec.encoded(_pcm_chunks(source, spec, on_warning))


def _pcm_chunks(
    source: Any, spec: OutputSpec, on_warning: WarningHandler | None
) -> Generator[bytes, None, None]:
    warn = [on_warning]

    def open_chunks() -> Iterator[bytes]:
        # A second pass (processing a long file) reports nothing new: warn once.
        handler, warn[0] = warn[0], None
        return decode(
            source,
            rate=spec.rate,
            channels=spec.channels,
            sample_format=spec.pcm_format,
            start=spec.start,
            duration=spec.duration,
            on_warning=handler,
        )

    if spec.process is None or spec.process.is_empty:
        yield from open_chunks()
        return
    from voiceprep.process_stream import process_stream  # deferred: +3.6 % on --help

    yield from process_stream(
        open_chunks,
        rate=spec.rate,
        channels=spec.channels,
        settings=spec.process,
        sample_format=spec.pcm_format,
        replayable=_replayable(source),
    )


def _replayable(source: Any) -> bool:
    """True when `source` can be decoded a second time: bytes, or a regular file."""
    if isinstance(source, bytes | bytearray | memoryview):
        return True
    return isinstance(source, str | os.PathLike) and str(source) != "-" and Path(source).is_file()


def _write_all(
    chunks: Iterable[bytes],
    out: BinaryIO,
    spec: OutputSpec,
    progress: Progress | None,
    *,
    data_bytes: int | None = None,
) -> int:
    """Write the header (if any) and every chunk; return the PCM byte count.

    `data_bytes` is the PCM size when known in advance; None writes the sizes a stream of
    unknown length carries (a file's are patched afterwards).
    """
    if spec.container == "wav":
        out.write(
            wav_header(
                rate=spec.rate,
                channels=spec.channels,
                sample_format=spec.sample_format,
                data_bytes=data_bytes,
            )
        )
    total = 0
    for chunk in chunks:
        out.write(chunk)
        total += len(chunk)
        if progress is not None:
            progress(len(chunk))
    return total


def decode_to_stream(
    source: Any,
    out: BinaryIO,
    spec: OutputSpec,
    *,
    progress: Progress | None = None,
    on_warning: WarningHandler | None = None,
) -> int:
    """Decode `source` into an open binary stream (stdout); return the PCM byte count.

    A stream may be a pipe, so a WAV header carries unknown sizes (as ffmpeg writes them).
    `progress(n)` is called with each chunk's byte count; `on_warning(message)` for each
    recoverable decoding problem (a corrupt packet skipped).
    """
    with contextlib.closing(_chunks(source, spec, on_warning)) as chunks:
        total = _write_all(chunks, out, spec, progress)
    out.flush()
    return total


def decode_to_file(
    source: Any,
    dest: str | os.PathLike[str],
    spec: OutputSpec,
    *,
    force: bool = False,
    progress: Progress | None = None,
    on_warning: WarningHandler | None = None,
    temp_tag: str | None = None,
) -> int:
    """Decode `source` into the file `dest`; return the PCM byte count.

    A regular file (or a new one) is written atomically; a character device, a FIFO or
    `/dev/stdout` is written in place, as a stream (see `output_target`). Input errors come
    first (the input is opened before the output is created); then `OutputExistsError` if
    `dest` exists and `force` is false, `OutputError` if it cannot be created or would
    overwrite the input. `progress` and `on_warning` as for `decode_to_stream`;
    `temp_tag` as for `atomic_file`.
    """
    dest = Path(dest)
    with contextlib.closing(_chunks(source, spec, on_warning)) as chunks:
        first = next(chunks, b"")  # opens the input: its errors win over the output's
        target = output_target(dest, force=force, source=source)
        if target.in_place:
            with _in_place(target.path) as out:
                return _write_all(_prepend(first, chunks), out, spec, progress)
        with atomic_file(target.path, force=force, temp_tag=temp_tag) as out:
            total = _write_all(_prepend(first, chunks), out, spec, progress)
            if spec.container == "wav":
                patch_wav_sizes(out, total)
    return total


def write_pcm(
    pcm: bytes, dest: str | os.PathLike[str] | BinaryIO, spec: OutputSpec, *, force: bool = False
) -> None:
    """Write PCM already in memory (laid out as `spec` says) as raw PCM or a WAV file.

    `dest` is a path, written as `decode_to_file` writes (`OutputExistsError` if a regular
    file is there and `force` is false, `OutputError` if it is a directory or cannot be
    created), or an open binary stream such as stdout. The size is known, so a WAV header
    is complete either way.
    """
    if not isinstance(dest, str | os.PathLike):
        _write_all([pcm], dest, spec, None, data_bytes=len(pcm))
        dest.flush()
        return
    target = output_target(Path(dest), force=force)
    opened = _in_place(target.path) if target.in_place else atomic_file(target.path, force=force)
    with opened as out:
        _write_all([pcm], out, spec, None, data_bytes=len(pcm))


def convert_pcm(pcm: bytes, *, rate: int, channels: int, spec: OutputSpec) -> bytes:
    """s16le PCM at `rate`/`channels` (a cached or synthesized phrase) reshaped as `spec`
    says: resampled (libswresample, as `decode` does) and coded when it asks for that."""
    if (rate, channels, spec.pcm_format) != (spec.rate, spec.channels, "s16"):
        source = wav_bytes(pcm, rate=rate, channels=channels)
        pcm = b"".join(
            decode(source, rate=spec.rate, channels=spec.channels, sample_format=spec.pcm_format)
        )
    return b"".join(spec.encoded([pcm]))


def _prepend(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    if first:
        yield first
    yield from rest


# Paths that name an open descriptor rather than a file: written in place, always.
_DESCRIPTOR_PATHS = ("/dev/stdin", "/dev/stdout", "/dev/stderr", "/dev/fd/", "/proc/self/fd/")


@dataclass(frozen=True)
class OutputTarget:
    """Where an output's bytes go. `path` is the file a symlink leads to (written there,
    as ffmpeg does, leaving the link in place); `in_place` is True for a character device
    (`/dev/null`), a FIFO or a descriptor path (`/dev/stdout`): those are opened and
    written as streams, never replaced, and never count as "already exists"."""

    path: Path
    in_place: bool


def output_target(dest: Path, *, force: bool, source: Any = None) -> OutputTarget:
    """Check `dest` as an output and say how to write it.

    Raises `OutputError` for a directory, a block device or a socket, and for the input
    file itself; `OutputExistsError` for an existing regular file without `force`.
    """
    name = str(dest)
    if name.startswith(_DESCRIPTOR_PATHS):
        return OutputTarget(dest, in_place=True)
    try:
        info: os.stat_result | None = os.stat(dest)  # follows symlinks
    except FileNotFoundError:
        info = None
    except OSError as exc:
        raise OutputError(f"{dest}: cannot write: {_reason(exc)}") from None
    if info is not None:
        if stat.S_ISCHR(info.st_mode) or stat.S_ISFIFO(info.st_mode):
            return OutputTarget(dest, in_place=True)
        if stat.S_ISDIR(info.st_mode):
            raise OutputError(f"{dest}: is a directory")
        if not stat.S_ISREG(info.st_mode):
            raise OutputError(f"{dest}: not a regular file, character device or FIFO")
        if isinstance(source, str | os.PathLike) and str(source) != "-":
            with contextlib.suppress(OSError):
                if os.path.samefile(source, dest):
                    raise OutputError(f"{dest}: is the input file; choose another output")
        if not force:
            raise OutputExistsError(f"{dest}: already exists (use --force to overwrite)")
    return OutputTarget(_followed(dest), in_place=False)


def _followed(dest: Path) -> Path:
    """The file a symlink (or a chain of them) leads to; `dest` itself otherwise."""
    return Path(os.path.realpath(dest)) if os.path.islink(dest) else dest


@contextlib.contextmanager
def _in_place(dest: Path) -> Iterator[BinaryIO]:
    """A device, FIFO or descriptor path opened for writing (never created, truncated or
    replaced). A terminal is refused: binary audio would garble it."""
    try:
        fd = os.open(dest, os.O_WRONLY | os.O_NOCTTY)
    except OSError as exc:
        raise OutputError(f"{dest}: cannot write: {_reason(exc)}") from None
    if os.isatty(fd):
        os.close(fd)
        raise UsageError(f"{dest}: {TERMINAL_REFUSAL}")
    out = open(fd, "wb", buffering=_WRITE_BUFFER)  # noqa: SIM115  closed below, or discarded
    try:
        yield out
        out.flush()
    except OSError as exc:
        _discard(out)
        raise WriteError(f"{dest}: write failed: {_reason(exc)}") from None
    except BaseException:
        _discard(out)
        raise
    _close(out, dest)


TERMINAL_REFUSAL = "refusing to write binary audio to a terminal; redirect stdout or use -o FILE"


@contextlib.contextmanager
def atomic_file(
    dest: str | os.PathLike[str], *, force: bool = False, temp_tag: str | None = None
) -> Iterator[BinaryIO]:
    """A binary file that appears at `dest` only if the block completes.

    The data goes to a hidden temporary file beside `dest` (same filesystem, so the final
    rename is atomic), removed on any exception including KeyboardInterrupt. Without
    `force`, the final step refuses to replace a file that appeared meanwhile.
    `temp_tag` makes the temporary name predictable (`temp_path(dest, tag)`), so that a
    supervisor can remove it if this process is killed; by default it is random.
    A write error (a full disk) is one `WriteError` naming `dest`, and nothing remains.
    """
    dest = Path(dest)
    temp = temp_path(dest, temp_tag or secrets.token_hex(4))
    try:
        # 0o666 and the umask give the permissions a plain `open()` would.
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as exc:
        raise OutputError(f"{dest}: cannot write: {_reason(exc)}") from None
    out = None
    try:  # (from the file's creation on: a signal's KeyboardInterrupt may come anywhere)
        out = open(fd, "wb", buffering=_WRITE_BUFFER)  # noqa: SIM115  closed below, or discarded
        try:
            yield out
            out.flush()
        except OSError as exc:
            raise WriteError(f"{dest}: write failed: {_reason(exc)}") from None
        _close(out, dest)
        _commit(temp, dest, force=force)
    except BaseException:
        if out is None:
            os.close(fd)
        else:
            _discard(out)
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def _close(out: BinaryIO, dest: Path) -> None:
    try:
        out.close()
    except OSError as exc:
        _discard(out)
        raise WriteError(f"{dest}: write failed: {_reason(exc)}") from None


def _discard(out: BinaryIO) -> None:
    """Close without flushing what is buffered: after a write error, flushing again would
    only raise the same error again (over the clean one)."""
    raw = getattr(out, "raw", None)
    with contextlib.suppress(OSError, ValueError):
        if raw is not None:
            raw.close()  # the buffered writer then closes without a flush
        out.close()


def temp_path(dest: Path, tag: str) -> Path:
    """Where `atomic_file(dest, temp_tag=tag)` writes before the rename (beside the file a
    symlink at `dest` leads to, as that is the file replaced)."""
    dest = _followed(dest)
    return dest.with_name(f".{dest.name}.{tag}.part")


def _commit(temp: Path, dest: Path, *, force: bool) -> None:
    if force:
        os.replace(temp, dest)
        return
    try:
        # A hard link fails if `dest` exists: no window in which another process's file
        # could be replaced (os.replace would silently clobber it).
        os.link(temp, dest)
    except FileExistsError:
        raise OutputExistsError(f"{dest}: already exists (use --force to overwrite)") from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
            raise OutputError(f"{dest}: cannot write: {_reason(exc)}") from None
        # Filesystems without hard links (FAT, some network mounts): check, then rename.
        if os.path.lexists(dest):
            raise OutputExistsError(f"{dest}: already exists (use --force to overwrite)") from None
        os.replace(temp, dest)
        return
    os.unlink(temp)


def make_output_dir(directory: str | os.PathLike[str]) -> None:
    """Create an output directory (and its parents) unless it exists; `OutputError` if it
    cannot be created or a file is in the way."""
    try:
        Path(directory).mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise OutputError(f"{directory}: exists and is not a directory") from None
    except OSError as exc:
        raise OutputError(f"{directory}: cannot create directory: {_reason(exc)}") from None


def _reason(exc: OSError) -> str:
    return exc.strerror.lower() if exc.strerror else str(exc)


__all__ = [
    "CONTAINERS",
    "SAMPLE_FORMATS",
    "TERMINAL_REFUSAL",
    "WriteError",
    "OutputSpec",
    "OutputTarget",
    "atomic_file",
    "container_for",
    "convert_pcm",
    "decode_to_file",
    "decode_to_stream",
    "make_output_dir",
    "output_spec",
    "phone_spec",
    "output_target",
    "temp_path",
    "write_pcm",
]
