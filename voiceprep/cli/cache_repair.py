"""`voiceprep cache verify` and `voiceprep cache merge`: check and repair a cache directory,
and combine several into one (the command line over `voiceprep.cache.maintenance`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from voiceprep.cli import _output
from voiceprep.cli._common import open_cache, plural
from voiceprep.cli._options import CacheDir, Json
from voiceprep.cli._output import print_json
from voiceprep.cli.cache import cache_dir_of, exists
from voiceprep.errors import CacheIndexError, ExitStatus, UsageError

if TYPE_CHECKING:
    from voiceprep.cache import VerifyReport


def verify_command(
    repair: Annotated[
        bool, typer.Option("--repair", help="Drop damaged entries; remove orphans and temporaries.")
    ] = False,
    cache_dir: CacheDir = None,
    as_json: Json = False,
) -> None:
    """Check every entry against its sha256; find orphans and stale temporaries.

    Exit 1 when an entry is damaged (file missing, altered, index damaged) unless --repair
    fixed it. Orphan files and stale temporaries are reported (and removed by --repair)
    but are not damage: no reader ever sees them.

    Examples:
      voiceprep cache verify
      voiceprep cache verify --repair --json
    """
    directory = cache_dir_of(cache_dir)
    if not exists(directory):
        if as_json:
            print_json({"checked": 0, "damaged": False, "repaired": False})
        _output.info(f"{directory}: no cache here (nothing to verify)")
        return

    with open_cache(directory) as cache:
        try:
            texts = {e.key: e.text for e in cache.entries()}
        except CacheIndexError:
            if not repair:
                raise
            texts = {}  # a damaged index: --repair rebuilds it from the entry files
        report = cache.verify(repair=repair)
    if as_json:
        print_json(report.as_dict())
    prefix = "repaired: " if repair else ""
    for line in _damage_lines(report, texts):
        (_output.info if repair else _output.error)(prefix + line)
    for line in _leftover_lines(report):
        (_output.info if repair else _output.warning)(prefix + line)
    _output.info(_verify_summary(directory, report, repair))
    if report.damaged and not report.repaired:
        raise typer.Exit(ExitStatus.FAILURE)


def _damage_lines(report: VerifyReport, texts: dict[str, str]) -> list[str]:
    def name(key: str) -> str:
        return texts.get(key, key[:16])

    lines = [f"{name(key)}: audio file missing" for key in report.missing]
    lines += [f"{name(key)}: {reason}" for key, reason in report.corrupt]
    lines += [f"index: {problem}" for problem in report.index_errors]
    return lines


def _leftover_lines(report: VerifyReport) -> list[str]:
    lines = [f"{p}: orphan file (no entry refers to it)" for p in report.orphans]
    lines += [f"{p}: entry file the index lost (indexed again)" for p in report.adoptable]
    lines += [f"{p}: stale temporary file of an interrupted write" for p in report.stale_temps]
    return lines


def _verify_summary(directory: Path, report: VerifyReport, repair: bool) -> str:
    damage = len(report.missing) + len(report.corrupt) + len(report.index_errors)
    leftovers = len(report.orphans) + len(report.stale_temps)
    checked = f"{directory}: {report.checked} {plural(report.checked, 'entry', 'entries')} checked"
    if report.rebuilt:
        aside = f"; the old index is kept as {report.moved_aside}" if report.moved_aside else ""
        checked = (
            f"{directory}: index rebuilt from the entry files{aside}; " + checked.split(": ", 1)[1]
        )
    if damage == 0 and leftovers == 0:
        return f"{checked}, no damage"
    found = f"{damage} damaged, {leftovers} leftover {plural(leftovers, 'file', 'files')}"
    if repair:
        return f"{checked}; {found}: repaired"
    hint = " (run `voiceprep cache verify --repair`)"
    return f"{checked}; {found}{hint}"


def merge_command(
    sources: Annotated[
        list[Path],
        typer.Argument(metavar="DIR", help="Cache directories to import from.", show_default=False),
    ],
    cache_dir: CacheDir = None,
) -> None:
    """Import entries from other cache directories.

    Entries already present are skipped.

    Examples:
      voiceprep cache merge shard-1/ shard-2/ --cache-dir .voiceprep-cache
    """
    directory = cache_dir_of(cache_dir)
    for source in sources:
        if not source.is_dir():
            raise UsageError(f"{source}: no such cache directory")
    failed = 0
    with open_cache(directory) as cache:
        for source in sources:
            report = cache.merge(source)
            failed += len(report.failed)
            for key, reason in report.failed:
                _output.error(f"{source}: entry {key[:16]}: {reason}")
            _output.info(
                f"{source}: imported {report.imported}, skipped {report.skipped} already cached"
                + (f", failed {len(report.failed)}" if report.failed else "")
            )
    if failed:
        raise typer.Exit(ExitStatus.FAILURE)
