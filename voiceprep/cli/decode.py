"""`voiceprep decode` and `voiceprep info`: parsing, output and exit codes.

The work is done by voiceprep.output (one file or a stream), voiceprep.batch (many files,
a process pool) and voiceprep.decoding.probe; they are imported inside the commands so
that `voiceprep --help` never loads PyAV.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from voiceprep.audio_format import STDIO
from voiceprep.cli import _output
from voiceprep.cli._common import resolve
from voiceprep.cli._options import Channels, Flags, OutputFormat, Rate, SampleFormat, jobs_option
from voiceprep.cli._output import print_json
from voiceprep.cli._processing import processing_options
from voiceprep.cli._stdin import interruptible
from voiceprep.cli._write import audio_stdout, report_written
from voiceprep.decoding import AudioInfo, probe
from voiceprep.errors import UsageError, VoiceprepError
from voiceprep.loudness import measure_source
from voiceprep.output import OutputSpec, decode_to_stream, make_output_dir, output_spec

if TYPE_CHECKING:
    from voiceprep.batch import BatchItem

# A single file gets a progress bar (on a terminal) only when it takes a while to decode.
_LONG_FILE_SECONDS = 120.0


@processing_options
def decode_command(
    inputs: Annotated[
        list[str],
        typer.Argument(
            metavar="INPUT",
            help="Audio or video files (any format libav reads); - is stdin.",
            show_default=False,
        ),
    ],
    output: Annotated[
        str | None,
        typer.Option(
            "-o",
            "--output",
            metavar="OUT",
            help="Write to the file OUT, or - for stdout (one INPUT only).",
            show_default="beside each INPUT, ending in .pcm or .wav",
        ),
    ] = None,
    out_dir: Annotated[
        Path | None,
        typer.Option("--out-dir", metavar="DIR", help="Write each output into DIR (created)."),
    ] = None,
    rate: Rate = None,
    channels: Channels = None,
    container: OutputFormat = None,
    sample_format: SampleFormat = None,
    start: Annotated[
        float | None, typer.Option("--start", metavar="SEC", help="Skip the first SEC seconds.")
    ] = None,
    duration: Annotated[
        float | None,
        typer.Option("--duration", metavar="SEC", help="Decode at most SEC seconds."),
    ] = None,
    jobs: Annotated[
        int | None,
        jobs_option("Decode N files in parallel (a long file: in N pieces).", "the number of CPUs"),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing outputs.")] = False,
    *,
    process: Flags,
) -> None:
    """Decode audio to raw PCM (or WAV) in the shape an agent plays.

    Each INPUT becomes s16le (or f32le) PCM at RATE Hz with N channels: beside it (clip.mp3
    → clip.pcm), in DIR (--out-dir), in OUT (-o) or on stdout (-o -).

    Examples:
      voiceprep decode greeting.mp3                  # greeting.pcm, 24000 Hz mono s16le
      voiceprep decode -r 16000 -o hold.wav hold.m4a
      voiceprep decode --out-dir pcm/ prompts/*.mp3 -j 4
      voiceprep decode -o - -r 48000 -c 2 call.ogg | my-agent --pcm-stdin
      voiceprep decode --loudness -16 --trim-silence -o hold.wav hold.mp3
    """
    _check_decode_usage(inputs, output, out_dir)
    # Flags, then VOICEPREP_RATE/VOICEPREP_CHANNELS, then the config file, then 24000/1;
    # the processing chain: flags over the config file's [process].
    settings = resolve(rate=rate, channels=channels, process=process)
    chosen = container.value if container else None
    to_stdout = output == STDIO or (inputs == [STDIO] and output is None and out_dir is None)
    target = STDIO if to_stdout else output
    # A phone suffix (-o clip.ulaw, .sln16, .g722) fixes the shape; -r/-c as given
    # must agree with it (voiceprep.output.output_spec).
    spec = output_spec(
        None if target == STDIO else target,
        rate=rate,
        channels=channels,
        sample_format=sample_format,
        container=chosen,
        default_rate=settings.rate,
        default_channels=settings.channels,
        telephony=settings.process.telephony,
        start=start,
        duration=duration,
        process=None if settings.process.is_empty else settings.process,
    )
    if to_stdout:
        _decode_to_stdout(inputs[0], spec)
    else:
        _decode_to_files(inputs, output, out_dir, spec, jobs=jobs, force=force)


def _check_decode_usage(inputs: list[str], output: str | None, out_dir: Path | None) -> None:
    if output is not None and len(inputs) > 1:
        raise UsageError("-o/--output takes one input; use --out-dir DIR for several")
    if output is not None and out_dir is not None:
        raise UsageError("use -o/--output or --out-dir, not both")
    if STDIO in inputs and len(inputs) > 1:
        raise UsageError("- (stdin) must be the only input")


def _decode_to_stdout(source: str, spec: OutputSpec) -> None:
    out = audio_stdout()
    with _byte_progress(source, spec) as report, interruptible(source) as readable:
        written = decode_to_stream(
            readable, out, spec, progress=report.progress, on_warning=report.warning
        )
        report.finish_warnings(source)
        _warn_if_empty(report, source, written)


def _decode_to_files(
    inputs: list[str],
    output: str | None,
    out_dir: Path | None,
    spec: OutputSpec,
    *,
    jobs: int | None,
    force: bool,
) -> None:
    from voiceprep.batch import BatchItem, default_jobs, plan_outputs  # deferred: +2.3 % on --help

    if output is not None:
        items = [BatchItem(inputs[0], Path(output))]
    else:
        items = plan_outputs(inputs, suffix=spec.suffix, out_dir=out_dir)
        if out_dir is not None:
            make_output_dir(out_dir)
    if len(items) == 1:
        _decode_one_file(items[0], spec, jobs=jobs or default_jobs(), force=force)
    else:
        _decode_many(items, spec, jobs=jobs or default_jobs(), force=force)


def _decode_many(items: list[BatchItem], spec: OutputSpec, *, jobs: int, force: bool) -> None:
    """A batch in worker processes: one line per failure, the others still decoded."""
    from voiceprep.batch import decode_batch  # deferred: +2.3 % on --help

    failures = []
    with _file_progress(len(items)) as report:
        for result in decode_batch(items, spec, jobs=jobs, force=force):
            report.advance_file(result.source)
            for message in result.warnings:
                report.warning(message)
            report.finish_warnings(result.source)
            if result.error is not None:
                report.error(result.error)
                failures.append(result.exit_code)
            else:
                _warn_if_empty(report, result.source, result.pcm_bytes)
    if _output.stderr_is_terminal():  # the bar vanished: say what it did
        done = len(items) - len(failures)
        failed = f", {len(failures)} failed" if failures else ""
        _output.info(f"decoded {done} of {len(items)} files{failed}")
    if failures:
        # Usage-type failures (missing input, existing output) outrank decode failures.
        raise typer.Exit(max(failures))


def _decode_one_file(item: BatchItem, spec: OutputSpec, *, jobs: int, force: bool) -> None:
    """One file: a long one in `jobs` pieces across processes, else in this process;
    errors go up to main() as one line."""
    from voiceprep.segments import decode_file  # deferred: +3.3 % on --help

    with _byte_progress(item.source, spec) as report, interruptible(item.source) as readable:
        try:
            written = decode_file(
                readable,
                item.dest,
                spec,
                jobs=jobs,
                force=force,
                progress=report.progress,
                on_warning=report.warning,
            )
        finally:
            report.finish_warnings(item.source)
        _warn_if_empty(report, item.source, written)
    report_written(str(item.dest), spec.seconds(written))


def _warn_if_empty(report: _Reporter, source: str, pcm_bytes: int) -> None:
    # The decoder fails on a file with no audio at all; an empty result therefore means
    # --start/--duration selected nothing (ffmpeg, too, warns and succeeds here).
    if pcm_bytes == 0:
        report.warning(f"{source}: no audio in the selected range (is --start past the end?)")


# --- progress and messages (Rich only on a terminal) --------------------------------

# A damaged file can produce a warning per packet: show the first few, then a count.
_MAX_WARNINGS_PER_FILE = 5


class _Reporter:
    """Progress and message lines for decoding, over the terminal layer's `Progress`; a
    damaged file's warnings are capped per file."""

    def __init__(self, bar: _output.Progress) -> None:
        self._bar = bar
        self._warnings = 0
        self.progress = bar.advance if bar.live else None

    def advance_file(self, name: str) -> None:
        self._bar.advance(description=_short(name))

    def warning(self, message: str) -> None:
        self._warnings += 1
        if self._warnings <= _MAX_WARNINGS_PER_FILE:
            self._bar.line("warning", message)

    def finish_warnings(self, name: str) -> None:
        """End of one file: say how many warnings were not shown, then start counting anew."""
        hidden = self._warnings - _MAX_WARNINGS_PER_FILE
        if hidden > 0:
            self._bar.line("warning", f"{name}: {hidden} more warnings not shown")
        self._warnings = 0

    def error(self, message: str) -> None:
        self._bar.line("error", message)


def _short(name: str, width: int = 30) -> str:
    name = os.path.basename(name) or name
    return name if len(name) <= width else "…" + name[-(width - 1) :]


@contextmanager
def _file_progress(count: int) -> Iterator[_Reporter]:
    """A bar counting finished files, on a terminal only."""
    with _output.progress(count, "decoding") as bar:
        yield _Reporter(bar)


@contextmanager
def _byte_progress(source: str, spec: OutputSpec) -> Iterator[_Reporter]:
    """For one long file on a terminal, a bar following the bytes written."""
    expected = _expected_bytes(source, spec) if _output.stderr_is_terminal() else None
    with _output.progress(expected, _short(source), counter="percent") as bar:
        yield _Reporter(bar)


def _expected_bytes(source: str, spec: OutputSpec) -> int | None:
    """PCM bytes a long file will produce, from its probed duration; None if short/unknown."""
    if source == STDIO:
        return None  # stdin cannot be read twice
    try:
        seconds = probe(source).duration
    except VoiceprepError:
        return None  # the decode itself reports the problem
    if seconds is None:
        return None
    if spec.start:
        seconds = max(0.0, seconds - spec.start)
    if spec.duration is not None:
        seconds = min(seconds, spec.duration)
    if seconds < _LONG_FILE_SECONDS:
        return None
    return spec.bytes_for(seconds)


# --- info ----------------------------------------------------------------------------


def info_command(
    inputs: Annotated[
        list[str],
        typer.Argument(
            metavar="INPUT", help="Audio or video files; - is stdin.", show_default=False
        ),
    ],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print a JSON array on stdout, one object per INPUT.")
    ] = False,
    loudness: Annotated[
        bool,
        typer.Option(
            "--loudness",
            help="Also measure integrated loudness, loudness range, true and sample peak, "
            "and the silence at each end (decodes each file).",
        ),
    ] = False,
) -> None:
    """Show container, codec, sample rate, channels, duration and bitrate.

    With --loudness: integrated loudness (LUFS, EBU R128 / BS.1770), loudness range (LU),
    true peak (dBTP), sample peak (dBFS) and the leading and trailing silence (under
    -50 dBFS) instead.

    Examples:
      voiceprep info greeting.mp3 hold.wav
      voiceprep info --json prompts/*.ogg
      voiceprep info --loudness prompts/*.wav
    """
    if inputs.count(STDIO) > 1:
        raise UsageError("- (stdin) can be given only once")
    rows: list[dict[str, Any]] = []
    failures: list[int] = []
    for source in inputs:
        try:
            with interruptible(source) as readable:
                if loudness:
                    rows.append(_loudness_row(source, readable))
                else:
                    rows.append(_info_row(source, probe(readable)))
        except VoiceprepError as exc:
            _output.error(str(exc))
            failures.append(exc.exit_code)
            rows.append({"file": source, "error": exc.reason})
    if as_json:
        # File names come from argv and may hold undecodable bytes: keep the JSON ASCII.
        print_json(rows, ascii_only=True)
    elif loudness:
        cells = [_loudness_cells(r) for r in rows if "error" not in r]
        if cells:
            _output.table(_LOUDNESS_COLUMNS, cells)
    else:
        _print_info_table([row for row in rows if "error" not in row])
    if failures:
        raise typer.Exit(max(failures))


def _loudness_row(source: str, readable: Any) -> dict[str, Any]:
    if source == STDIO:
        readable = readable.read()  # measured in memory: stdin cannot be read twice
    return {"file": source, **measure_source(readable).as_dict()}


_LOUDNESS_COLUMNS = [_output.Column("file", style="cyan")] + [
    _output.Column(name, right=True)
    for name in ("loudness", "range", "true peak", "peak", "lead", "trail", "duration")
]


def _loudness_cells(row: dict[str, Any]) -> list[str]:
    def level(value: float | None, unit: str) -> str:
        return "-inf" if value is None else f"{value:.1f} {unit}"

    return [
        row["file"],
        level(row["integrated"], "LUFS"),
        f"{row['range']:.1f} LU",
        level(row["true_peak"], "dBTP"),
        level(row["sample_peak"], "dBFS"),
        f"{row['leading_silence']:.3f} s",
        f"{row['trailing_silence']:.3f} s",
        _format_duration(row["duration"]),
    ]


def _info_row(source: str, info: AudioInfo) -> dict[str, Any]:
    return {
        "file": source,
        "container": info.container,
        "codec": info.codec,
        "rate": info.rate,
        "channels": info.channels,
        "layout": info.layout,
        "duration": info.duration,
        "bitrate": info.bitrate,
    }


_INFO_COLUMNS = [_output.Column("file", style="cyan")] + [
    _output.Column(name)
    for name in ("container", "codec", "rate", "channels", "duration", "bitrate")
]


def _info_cells(row: dict[str, Any]) -> list[str]:
    channels = str(row["channels"])
    if row["layout"] and row["layout"] != channels + " channels":
        channels += f" ({row['layout']})"
    return [
        row["file"],
        row["container"],
        row["codec"],
        f"{row['rate']} Hz",
        channels,
        _format_duration(row["duration"]),
        f"{round(row['bitrate'] / 1000)} kb/s" if row["bitrate"] else "-",
    ]


def _format_duration(seconds: float | None) -> str:
    """4.5 → `0:04.500`, 5400 → `1:30:00.000`; None (unknown, e.g. a pipe) → `-`."""
    if seconds is None:
        return "-"
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(int(minutes), 60)
    if hours:
        return f"{hours}:{minutes:02d}:{secs:06.3f}"
    return f"{minutes}:{secs:06.3f}"


def _print_info_table(rows: list[dict[str, Any]]) -> None:
    if rows:
        _output.table(_INFO_COLUMNS, [_info_cells(row) for row in rows])
