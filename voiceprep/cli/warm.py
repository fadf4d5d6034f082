"""`voiceprep warm` and `voiceprep say`: parsing, output and exit codes over voiceprep.warm.

Output contract:
- warm's summary is the command's result: stdout (a table on a terminal, `name: value`
  lines when piped, JSON with `--json`). Progress bar, retries and failures: stderr.
- `--dry-run` prints on stdout one `would synthesize: TEXT` line per missing phrase and a
  total line with the billable characters (`--json`: one object).
- `--check` prints nothing on stdout unless `--json`; each missing phrase is one error
  line on stderr and the exit code is 1.
- `say` writes audio to `-o OUT` (WAV when OUT ends in .wav, else raw s16le PCM), or to
  stdout when OUT is `-` or absent and stdout is not a terminal.
Exit codes: 0 done, 1 a phrase failed / missing (--check), 2 usage, 130 Ctrl-C.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from voiceprep import defaults
from voiceprep.audio_format import STDIO
from voiceprep.cli import _output
from voiceprep.cli._common import build_backend, open_cache, resolve
from voiceprep.cli._export import check_export_dir, export_options, export_settings
from voiceprep.cli._options import (
    Flags,
    MaxEntries,
    MaxSize,
    NoReview,
    OutputFormat,
    Retries,
    SampleFormat,
    Timeout,
    jobs_option,
    selection_options,
)
from voiceprep.cli._output import print_json
from voiceprep.cli._processing import Gate, gate_flag, processing_options
from voiceprep.cli._safe import printable
from voiceprep.cli._write import checked_output, write_audio
from voiceprep.cli.remote import remote_pull, remote_push
from voiceprep.errors import BackendUnavailableError, ExitStatus, UsageError
from voiceprep.export import ExportOptions
from voiceprep.phrases import read_phrase_lists

if TYPE_CHECKING:
    from voiceprep.backends.base import Backend as BackendObject
    from voiceprep.cache import AudioCache
    from voiceprep.config import Settings
    from voiceprep.warm import (
        PlanItem,
        ProgressEvent,
        RetryEvent,
        WarmPlan,
        WarmSummary,
    )

T = TypeVar("T")

Jobs = Annotated[int | None, jobs_option("Keep N requests in flight at once.", str(defaults.JOBS))]


# --- warm -----------------------------------------------------------------------------


@selection_options
@processing_options
@export_options
def warm_command(
    phrases: Annotated[
        list[str],
        typer.Argument(
            metavar="PHRASES",
            help="Phrase lists: .txt .csv .tsv .json .jsonl, or - for stdin.",
            show_default=False,
        ),
    ],
    *,
    selection: Flags,
    layout: Flags,
    jobs: Jobs = None,
    retries: Retries = None,
    timeout: Timeout = None,
    max_entries: MaxEntries = None,
    max_size: MaxSize = None,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Synthesize nothing: list what would be, and its cost."),
    ] = False,
    check: Annotated[
        bool,
        typer.Option("--check", help="Synthesize nothing: exit 1 if any phrase is not cached."),
    ] = False,
    prune: Annotated[
        bool,
        typer.Option(
            "--prune", help="Afterwards remove entries of this backend and voice not listed."
        ),
    ] = False,
    export: Annotated[
        Path | None,
        typer.Option(
            "--export", metavar="DIR", help="Afterwards write WAVs and manifest.json into DIR."
        ),
    ] = None,
    no_review: NoReview = False,
    shard: Annotated[
        str | None,
        typer.Option(
            "--shard", metavar="K/N", help="Only the phrases of shard K/N (the K-th of N shares)."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    remote: Annotated[
        str | None,
        typer.Option(
            "--remote",
            metavar="URL",
            help="Pull what is missing from the remote URL first, then push what it lacks.",
        ),
    ] = None,
    process: Flags,
    gate: Gate = None,
) -> None:
    """Prebuild the audio of phrase lists into the cache.

    Phrases already cached are skipped, so a second run (or a run after Ctrl-C) only
    synthesizes what is missing. The summary goes to stdout; progress and failures to
    stderr.

    Examples:
      voiceprep warm prompts.txt
      voiceprep warm prompts.csv --backend openai --voice alloy -j 8
      voiceprep warm prompts.txt --check                # exit 1 if a phrase is missing
      voiceprep warm prompts.jsonl --dry-run --json     # what would be billed
      voiceprep warm prompts.txt --remote s3://team-prompts/voiceprep
    """
    started = time.monotonic()
    from voiceprep.warm import parse_shard, plan_warm, record_remote  # deferred: +56 % on --help

    _check_modes(dry_run=dry_run, check=check, prune=prune, export=export, remote=remote)
    if export is None and any(value is not None for value in layout.values()):
        raise UsageError("--layout, --codecs, --sample-format and --lang go with --export DIR")
    if export is not None:
        check_export_dir(export, "--export")
    settings = resolve(
        **selection,
        jobs=jobs,
        retries=retries,
        timeout=timeout,
        max_entries=max_entries,
        max_size=max_size,
        gate=gate_flag(gate),
        process=process,
    )
    export_layout = export_settings(layout, telephony=settings.process.telephony)  # before work
    shard_spec = parse_shard(shard) if shard else None
    phrase_list = read_phrase_lists(phrases)
    if not phrase_list:
        _output.warning(f"no phrases in {', '.join(phrases)}")
    _check_cache_dir(settings.cache_dir)  # before any request is paid for
    tts = build_backend(settings)
    with open_cache(settings.cache_dir, limits=settings) as cache:
        plan = plan_warm(
            phrase_list,
            tts,
            cache,
            voice=settings.voice,
            rate=settings.rate,
            channels=settings.channels,
            shard=shard_spec,
            verify=not (dry_run or check),
            process=settings.process,
        )
        if dry_run:
            _print_dry_run(plan, as_json=as_json)
            return
        if check:
            _report_check(plan, as_json=as_json)
            return
        pulled = None
        if remote is not None:  # warm --remote: pull first, push afterwards
            pulled = remote_pull(cache, remote, plan=plan, jobs=settings.jobs)
        summary, exported_ok = _warm(
            plan,
            tts,
            cache,
            settings,
            prune=prune,
            export=export,
            layout=export_layout,
            review=not no_review,
        )
        if remote is not None and pulled is not None:
            pushed = None
            if pulled.usable and summary.stopped is None:
                pushed = remote_push(cache, remote, plan=plan, jobs=settings.jobs)
            record_remote(summary, pulled, pushed)
    summary.elapsed = time.monotonic() - started  # the whole command, not just synthesis
    _print_summary(summary, as_json=as_json)
    for failure in summary.failed:
        _output.error(
            f"{_output.phrase(failure.phrase.text, failure.phrase.source)}: {failure.reason}"
        )
    if summary.stopped is not None:
        _output.error(f"stopped: {summary.skipped} phrases not attempted")
    if not summary.ok or not exported_ok:
        raise typer.Exit(ExitStatus.FAILURE)


def _warm(
    plan: WarmPlan,
    tts: BackendObject,
    cache: AudioCache,
    settings: Settings,
    *,
    prune: bool,
    export: Path | None,
    layout: ExportOptions,
    review: bool,
) -> tuple[WarmSummary, bool]:
    """Synthesize what is missing, then prune and export: (summary, export went fine)."""
    _warn_limits(plan, settings)
    for item in plan.damaged:
        _output.warning(f"damaged cache entry, synthesizing again: {_output.phrase(item.text)}")
    if plan.missing and (reason := tts.unavailable_reason()):
        raise BackendUnavailableError(f"backend {tts.name!r} cannot run here: {reason}")
    summary = _run_with_progress(plan, tts, cache, settings)
    summary.cached_audio_seconds = _seconds_held(cache, plan.cached)
    if prune and summary.stopped is None:
        from voiceprep.warm import prune_unlisted  # deferred: +56 % on --help

        removed = prune_unlisted(cache, plan)
        _output.info(f"pruned {len(removed)} entries not in the phrase lists")
    exported_ok = _export(cache, plan, export, layout, review) if export is not None else True
    return summary, exported_ok


def _check_cache_dir(directory: Path) -> None:
    """UsageError when the cache directory (or the nearest part of it that exists) is not
    a directory: nothing synthesized could be stored."""
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise UsageError(
            f"{directory}: cannot be a cache directory ({existing} is not a directory)"
        )


def _seconds_held(cache: AudioCache, items: Iterable[PlanItem]) -> float:
    """Seconds of audio the cache holds for `items` (a warm with nothing to do says so)."""
    entries = (cache.entry(item.key) for item in items)
    return sum(entry.duration for entry in entries if entry is not None)


def _check_modes(
    *, dry_run: bool, check: bool, prune: bool, export: Path | None, remote: str | None
) -> None:
    if (dry_run or check) and remote is not None:
        raise UsageError(
            f"{'--dry-run' if dry_run else '--check'} cannot be combined with --remote"
        )
    if dry_run and check:
        raise UsageError("--dry-run and --check cannot be combined")
    if (dry_run or check) and (prune or export is not None):
        mode = "--dry-run" if dry_run else "--check"
        other = "--prune" if prune else "--export"
        raise UsageError(f"{mode} changes nothing; it cannot be combined with {other}")


def _warn_limits(plan: WarmPlan, settings: Settings) -> None:
    if settings.max_entries is not None and settings.max_entries < len(plan.items):
        _output.warning(
            f"--max-entries {settings.max_entries} is less than the {len(plan.items)} "
            "phrases: the cache will evict some of them"
        )


def _print_dry_run(plan: WarmPlan, *, as_json: bool) -> None:
    missing = plan.missing
    if as_json:
        document = {
            "phrases": len(plan.items),
            "already_cached": len(plan.cached),
            "to_synthesize": [_item_dict(item) for item in missing],
            "billable_characters": plan.billable_characters,
        }
        print_json(document)
        return
    for item in missing:
        print(f"would synthesize: {printable(item.text)}")
    print(
        f"{len(missing)} of {len(plan.items)} phrases to synthesize, "
        f"{plan.billable_characters} billable characters ({len(plan.cached)} already cached)"
    )


def _item_dict(item: PlanItem) -> dict[str, Any]:
    return {
        "text": item.text,
        "id": item.phrase.id,
        "voice": item.voice,
        "source": item.phrase.source,
        "key": item.key,
        "characters": item.characters,
    }


def _report_check(plan: WarmPlan, *, as_json: bool) -> None:
    missing = plan.missing
    if as_json:
        document = {
            "phrases": len(plan.items),
            "cached": len(plan.cached),
            "missing": [_item_dict(item) for item in missing],
        }
        print_json(document)
    for item in missing:
        _output.error(f"not cached: {_output.phrase(item.text, item.phrase.source)}")
    if missing:
        _output.error(f"{len(missing)} of {len(plan.items)} phrases are not cached")
        raise typer.Exit(ExitStatus.FAILURE)
    if not as_json:
        _output.info(f"all {len(plan.items)} phrases are cached")


def _run_with_progress(
    plan: WarmPlan, tts: BackendObject, cache: AudioCache, settings: Settings
) -> WarmSummary:
    """Run the warm; on a terminal with a Rich progress bar on stderr. Ctrl-C → exit 130."""
    import asyncio

    from voiceprep.warm import WarmSummary, run_warm  # deferred: +56 % on --help

    summary = WarmSummary()
    missing = len(plan.missing)
    if missing:
        _output.info(
            f"warming {missing} of {len(plan.items)} phrases with {tts.name} "
            f"({len(plan.cached)} already cached, -j {settings.jobs})"
        )
    try:
        with _output.progress(missing, "synthesizing", elapsed=True, plain_tenths="phrases") as bar:
            reporter = _Reporter(bar)
            asyncio.run(
                _closing(
                    tts,
                    run_warm(
                        plan,
                        tts,
                        cache,
                        jobs=settings.jobs,
                        retries=settings.retries,
                        timeout=settings.timeout,
                        on_progress=reporter.progress,
                        on_retry=reporter.retry,
                        summary=summary,
                        process=settings.process,
                        gate=settings.gate,
                    ),
                )
            )
    except KeyboardInterrupt:
        _output.error(
            f"interrupted: {summary.synthesized} phrases synthesized and cached; "
            "run the same command again to resume"
        )
        raise typer.Exit(ExitStatus.INTERRUPTED) from None
    return summary


async def _closing(tts: BackendObject, work: Awaitable[T]) -> T:
    """Await `work`, then close the backend's connections (HTTP backends have `aclose`)
    while the event loop they belong to still runs."""
    try:
        return await work
    finally:
        aclose = getattr(tts, "aclose", None)
        if aclose is not None:
            await aclose()


class _Reporter:
    """Warm's events onto the terminal layer's progress: a bar on a terminal, a line at
    each tenth of a long run when piped; retries as warnings."""

    def __init__(self, bar: _output.Progress) -> None:
        self.bar = bar

    def progress(self, event: ProgressEvent) -> None:
        self.bar.done(event.done)

    def retry(self, event: RetryEvent) -> None:
        self.bar.line(
            "warning",
            f"{_output.phrase(event.item.text)}: {event.error}; "
            f"retry {event.attempt} in {event.delay:.1f} s",
        )


def _export(
    cache: AudioCache, plan: WarmPlan, directory: Path, layout: ExportOptions, review: bool
) -> bool:
    from voiceprep.warm import export_plan  # deferred: +56 % on --help

    report = export_plan(cache, plan, directory, layout, review=review)
    for item in report.missing:
        _output.error(f"not exported (not cached): {_output.phrase(item.text)}")
    for item, reason in report.failed:
        _output.error(f"not exported: {_output.phrase(item.text)}: {reason}")
    page = " and index.html" if review else ""
    _output.info(f"exported {len(report.written)} files, manifest.json{page} to {directory}")
    return report.ok


_SUMMARY_LABELS = (
    ("phrases", "phrases"),
    ("already_cached", "already cached"),
    ("synthesized", "synthesized"),
    ("failed", "failed"),
    ("characters_sent", "characters sent"),
    ("audio_seconds", "seconds of audio"),  # held for the phrases: cached + synthesized
    ("loudness", "loudness"),
    ("elapsed", "elapsed"),
)


def _print_summary(summary: WarmSummary, *, as_json: bool) -> None:
    document = summary.as_dict()
    if as_json:
        print_json(document)
        return
    values = {**document, "failed": len(summary.failed)}
    values["audio_seconds"] = f"{summary.audio_seconds + summary.cached_audio_seconds:.1f}"
    values["elapsed"] = f"{summary.elapsed:.1f} s"
    spread = summary.loudness_range
    values["loudness"] = f"{spread[0]:.1f} to {spread[1]:.1f} LUFS" if spread else "-"
    rows = [(label, str(values[name])) for name, label in _SUMMARY_LABELS]
    if summary.remote is not None:  # warm --remote: what moved, next to what it replaced
        rows.insert(2, ("pulled", str(summary.pulled)))
        rows.insert(4, ("pushed", str(summary.pushed)))
        if summary.remote_failures:
            rows.insert(5, ("remote failed", str(len(summary.remote_failures))))
    _output.fields(rows)


# --- say ------------------------------------------------------------------------------


@selection_options
@processing_options
def say_command(
    text: Annotated[
        str, typer.Argument(metavar="TEXT", help="The phrase to speak.", show_default=False)
    ],
    output: Annotated[
        str | None,
        typer.Option(
            "-o",
            "--output",
            metavar="OUT",
            help="Write to the file OUT (.wav: WAV, .ulaw/.alaw/.sln16/.g722...: "
            "as Asterisk names them, else raw PCM), or - for stdout.",
            show_default="stdout, when it is not a terminal",
        ),
    ] = None,
    output_format: OutputFormat = None,
    sample_format: SampleFormat = None,
    *,
    selection: Flags,
    retries: Retries = None,
    timeout: Timeout = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing OUT.")] = False,
    process: Flags,
    gate: Gate = None,
) -> None:
    """Speak one phrase through the cache into a file or stdout.

    A cached phrase is read from the cache; a missing one is synthesized and stored.

    Examples:
      voiceprep say "Thanks for calling." -o thanks.wav
      voiceprep say "One moment please." -r 16000 | aplay -f S16_LE -r 16000
    """
    import asyncio

    from voiceprep.warm import say  # deferred: +56 % on --help

    destination = output or STDIO
    settings = resolve(
        **selection,
        retries=retries,
        timeout=timeout,
        gate=gate_flag(gate),
        process=process,
    )
    spec = checked_output(
        destination, settings, container=output_format, sample_format=sample_format, force=force
    )
    _check_cache_dir(settings.cache_dir)  # before any request is paid for
    tts = build_backend(settings)
    with open_cache(settings.cache_dir, limits=settings) as cache:
        try:
            result = asyncio.run(
                _closing(
                    tts,
                    say(
                        text,
                        tts,
                        cache,
                        voice=settings.voice,
                        rate=settings.rate,
                        channels=settings.channels,
                        retries=settings.retries,
                        timeout=settings.timeout,
                        process=settings.process,
                        gate=settings.gate,
                    ),
                )
            )
        except KeyboardInterrupt:
            raise typer.Exit(ExitStatus.INTERRUPTED) from None
    origin = "from the cache" if result.cached else f"synthesized with {tts.name}"
    seconds = write_audio(
        result.pcm,
        destination,
        spec,
        rate=settings.rate,
        channels=settings.channels,
        force=force,
    )
    # say reports where its audio came from even when piped: that is its result.
    if destination == STDIO:
        _output.info(f"{seconds:.2f} s of audio {origin}")
    else:
        _output.info(f"wrote {output} ({seconds:.2f} s of audio, {origin})")
