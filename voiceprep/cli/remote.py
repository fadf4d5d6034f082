"""`voiceprep cache push` and `voiceprep cache pull`: the cache and a remote store.

Output contract (as `warm`): the summary is the result, on stdout (a table on a terminal,
`name: value` lines when piped, one JSON object with `--json`); the progress bar, failures
and warnings go to stderr. `--dry-run` prints one `would push: …` / `would pull: …` line per
entry and the summary. Exit codes: 0 done, 1 an entry failed or the remote failed
(what was transferred stays), 2 usage, 130 Ctrl-C.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from voiceprep import defaults
from voiceprep.cli import _output
from voiceprep.cli._common import build_backend, open_cache, plural, resolve
from voiceprep.cli._options import CacheDir, Flags, Json, jobs_option, selection_options
from voiceprep.cli._output import print_json
from voiceprep.cli._processing import processing_options
from voiceprep.cli.cache import human_size
from voiceprep.errors import ExitStatus, UsageError
from voiceprep.phrases import read_phrase_lists
from voiceprep.secrets import scrub

if TYPE_CHECKING:
    from voiceprep.cache import AudioCache
    from voiceprep.config import Settings
    from voiceprep.remote import TransferReport
    from voiceprep.warm import RemotePull, RemotePush, WarmPlan

RemoteArg = Annotated[
    str | None,
    typer.Argument(
        metavar="REMOTE",
        help="The remote REMOTE: an fsspec URL (s3://bucket/prefix, gs://..., az://..., "
        "file:///...) or a directory.",
        show_default="remote in voiceprep.toml, or VOICEPREP_REMOTE",
    ),
]
Jobs = Annotated[int | None, jobs_option("N transfers at once.", str(defaults.REMOTE_JOBS))]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Transfer nothing: list what would.")]


def remote_url(given: str | None, settings: Settings) -> str:
    url = given or settings.remote
    if not url:
        raise UsageError(
            "no remote: give REMOTE, or set remote in voiceprep.toml or VOICEPREP_REMOTE"
        )
    return url


def push_command(
    remote: RemoteArg = None,
    cache_dir: CacheDir = None,
    jobs: Jobs = None,
    dry_run: DryRun = False,
    as_json: Json = False,
) -> None:
    """Upload the cached entries the remote lacks.

    One listing finds what the remote holds; objects are never replaced, so many jobs
    pushing at once is safe. Credentials come from the environment or the provider's
    configuration (AWS_*, AWS_ENDPOINT_URL_S3, GOOGLE_APPLICATION_CREDENTIALS, AZURE_*).

    Examples:
      voiceprep cache push s3://team-prompts/voiceprep
      voiceprep cache push /mnt/shared/prompts --dry-run
      VOICEPREP_REMOTE=gs://prompts/cache voiceprep cache push -j 16 --json
    """
    from voiceprep.remote import push  # deferred: +32 % on --help

    started = time.monotonic()
    settings = resolve(cache_dir=cache_dir)
    url = remote_url(remote, settings)
    with open_cache(settings.cache_dir) as cache:
        report = _transfer(push, cache, url, jobs=jobs, dry_run=dry_run)
        texts = _local_texts(cache, report.moved) if dry_run and not as_json else {}
    _finish(report, started, as_json=as_json, texts=texts)


@selection_options
@processing_options
def pull_command(
    args: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="REMOTE PHRASES",
            help="The remote REMOTE, then optional phrase lists PHRASES: pull only what they "
            "need. REMOTE may be left out when it is configured and the first argument is "
            "a phrase list file or -.",
            show_default=False,
        ),
    ] = None,
    *,
    selection: Flags,
    process: Flags,
    jobs: Jobs = None,
    dry_run: DryRun = False,
    as_json: Json = False,
) -> None:
    """Download the entries the cache lacks: all the remote holds, or what PHRASES need.

    Phrases are keyed as warm keys them (-b, --voice, -O, -r, -c, processing). Every
    object is checked (sha256 of its audio, its key recomputed from its text and voice)
    before it is imported; a bad one is reported and skipped. Read-only credentials are enough.

    Examples:
      voiceprep cache pull s3://team-prompts/voiceprep
      voiceprep cache pull s3://team-prompts/voiceprep prompts.txt -r 16000
      voiceprep cache pull /mnt/shared/prompts --dry-run --json
    """
    from voiceprep.remote import pull  # deferred: +32 % on --help

    started = time.monotonic()
    settings = resolve(**selection, process=process)
    given = list(args or [])
    first_is_list = bool(given) and (given[0] == "-" or Path(given[0]).is_file())
    remote = None if (first_is_list and settings.remote) or not given else given.pop(0)
    url = remote_url(remote, settings)
    texts: dict[str, str] = {}
    keys: set[str] | None = None
    with open_cache(settings.cache_dir) as cache:
        if given:
            texts = _phrase_keys(given, settings, cache)
            keys = set(texts)
        report = _transfer(pull, cache, url, jobs=jobs, dry_run=dry_run, keys=keys)
    for key in report.missing:
        _output.warning(f"not on the remote: {_describe_key(key, texts)}")
    _finish(report, started, as_json=as_json, texts=texts)


def _phrase_keys(lists: list[str], settings: Settings, cache: AudioCache) -> dict[str, str]:
    """key → text of every phrase in the lists, keyed exactly as warm keys them."""
    from voiceprep.warm import plan_warm  # deferred: +56 % on --help

    plan = plan_warm(
        read_phrase_lists(lists),
        build_backend(settings),
        cache,
        voice=settings.voice,
        rate=settings.rate,
        channels=settings.channels,
        process=settings.process,
    )
    return {item.key: item.text for item in plan.items}


def _local_texts(cache: AudioCache, keys: list[str]) -> dict[str, str]:
    wanted = set(keys)
    return {e.key: e.text for e in cache.entries() if e.key in wanted}


def _describe_key(key: str, texts: dict[str, str]) -> str:
    import json

    text = texts.get(key)
    return f"{key[:12]} {json.dumps(text, ensure_ascii=False)}" if text else key


def _transfer(action: Any, cache: AudioCache, url: str, **kwargs: Any) -> Any:
    """`action(cache, url, ...)` (push, pull, or warm's remote steps) under the progress
    bar; Ctrl-C is one line and exit 130."""
    jobs = kwargs.pop("jobs") or defaults.REMOTE_JOBS
    verb = kwargs.pop("verb", None) or ("pushing" if action.__name__ == "push" else "pulling")
    with contextlib.ExitStack() as stack:
        bars: list[_output.Progress] = []

        def start(entries: int, size: int) -> None:  # the total is known once listed
            bars.append(stack.enter_context(_output.progress(entries, verb, elapsed=True)))

        def progress(done: int, size: int) -> None:
            if bars:
                bars[0].done(done)

        try:
            report = action(cache, url, jobs=jobs, on_start=start, on_progress=progress, **kwargs)
        except KeyboardInterrupt:
            stack.close()
            _output.error(
                "interrupted: what was transferred stays; run the command again to resume"
            )
            raise typer.Exit(ExitStatus.INTERRUPTED) from None
    return report


_LABELS = {
    "push": (("pushed", "pushed"), ("would_push", "to push")),
    "pull": (("pulled", "pulled"), ("would_pull", "to pull")),
}


def _finish(
    report: TransferReport, started: float, *, as_json: bool, texts: dict[str, str]
) -> None:
    document = report.as_dict()
    document["elapsed"] = round(time.monotonic() - started, 3)
    if as_json:
        print_json(document)
    else:
        moved_name, moved_label = _LABELS[report.direction][1 if report.dry_run else 0]
        if report.dry_run:
            for key in report.moved:
                print(f"would {report.direction}: {_describe_key(key, texts)}")
        rows = [
            (moved_label, str(document[moved_name])),
            ("already there", str(report.already)),
            ("failed", str(len(report.failed))),
            ("bytes", human_size(report.bytes)),
            ("elapsed", f"{document['elapsed']:.1f} s"),
        ]
        if report.direction == "pull" and report.missing:
            rows.insert(3, ("not on remote", str(len(report.missing))))
        _output.fields(rows)
    for key, reason in report.failed:
        _output.error(f"{report.direction} {key[:12]}: {reason}")
    if report.stopped is not None:
        _output.error(f"{report.direction} stopped: {report.stopped}; run it again to resume")
    if not report.ok:
        raise typer.Exit(ExitStatus.FAILURE)


# --- warm --remote ------------------------------------------------------------------------


def remote_pull(cache: AudioCache, url: str, *, plan: WarmPlan, jobs: int) -> RemotePull:
    """warm --remote, before: the library's pull of the missing entries, with the progress
    bar and its one-line reports. An unusable remote: the warm goes on locally."""
    from voiceprep.warm import pull_missing  # deferred: +56 % on --help

    pulled: RemotePull = _transfer(pull_missing, cache, url, jobs=jobs, plan=plan, verb="pulling")
    for failure in pulled.refused:
        _output.warning(
            f"remote entry {(failure.key or '')[:12]} refused, synthesizing it: {failure.reason}"
        )
    if pulled.pulled:
        count = len(pulled.pulled)
        _output.info(f"pulled {count} {plural(count, 'entry', 'entries')} from {scrub(url)}")
    if pulled.failure is not None:
        _output.warning(f"remote unusable, warming locally: {pulled.failure.reason}")
    return pulled


def remote_push(cache: AudioCache, url: str, *, plan: WarmPlan, jobs: int) -> RemotePush:
    """warm --remote, after: the library's push of what the remote lacks, reported. A
    failure is a warning: the warm itself succeeded."""
    from voiceprep.warm import push_listed  # deferred: +56 % on --help

    pushed: RemotePush = _transfer(push_listed, cache, url, jobs=jobs, plan=plan, verb="pushing")
    if pushed.pushed:
        count = pushed.pushed
        _output.info(f"pushed {count} {plural(count, 'entry', 'entries')} to {scrub(url)}")
    if pushed.failures:
        whole = pushed.failures[-1]
        prefix = (
            "could not push to the remote"
            if whole.key is None and len(pushed.failures) == 1
            else "could not push every entry to the remote"
        )
        _output.warning(f"{prefix}: {whole.reason}")
    return pushed
