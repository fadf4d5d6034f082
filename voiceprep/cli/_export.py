"""The export options of `cache export` and `warm --export` (voiceprep.export), declared
once. Kept out of _options.py: voiceprep.export is not needed by `--help` or `--version`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from voiceprep.cli._options import Flags, option_group
from voiceprep.errors import UsageError
from voiceprep.export import CODECS, DEFAULT_CODECS, DEFAULT_LANG, LAYOUTS, ExportOptions
from voiceprep.telephony import TELEPHONY_SAMPLE_FORMAT

# How `cache export` and `warm --export` lay their files out (voiceprep.export).
export_options = option_group(
    "layout",
    layout=Annotated[
        str | None,
        typer.Option(
            "--layout",
            metavar="LAYOUT",
            help="Export LAYOUT: flat (DIR/ID.wav), asterisk (DIR/LANG/ID.CODEC) or "
            "freeswitch (DIR/LANG/REGION/VOICE/RATE/ID.wav).",
            show_default=LAYOUTS[0],
        ),
    ],
    codecs=Annotated[
        str | None,
        typer.Option(
            "--codecs",
            metavar="LIST",
            help=f"With --layout asterisk, the files per phrase: a comma-separated LIST of "
            f"{', '.join(CODECS)}.",
            show_default=",".join(DEFAULT_CODECS),
        ),
    ],
    export_format=Annotated[
        str | None,
        typer.Option(
            "--sample-format",
            metavar="FMT",
            help="With the flat layout, the exported WAVs' sample FMT: s16 (at the cache's "
            "rate), ulaw or alaw (8000 Hz mono, WAV tags 7/6).",
            show_default="s16",
        ),
    ],
    lang=Annotated[
        str | None,
        typer.Option(
            "--lang",
            metavar="LANG",
            help="LANG, the language folder (en, en_GB) of phrases whose list gives none.",
            show_default=DEFAULT_LANG,
        ),
    ],
)


def check_export_dir(directory: Path, option: str) -> None:
    """Before any work: the export goes into a directory, or where one can be made (never
    onto a file, a device or a dangling symlink)."""
    if os.path.lexists(directory) and not directory.is_dir():
        raise UsageError(f"{directory}: {option} needs a directory")


def export_settings(layout: Flags, *, telephony: bool = False) -> ExportOptions:
    """ExportOptions from the `export_options` flags (UsageError for a bad value). With
    the telephony preset, flat WAVs are 8 kHz μ-law unless --sample-format says otherwise."""
    codecs = layout["codecs"]
    sample_format = layout["export_format"]
    if telephony and sample_format is None and layout["layout"] in (None, LAYOUTS[0]):
        sample_format = TELEPHONY_SAMPLE_FORMAT
    values: dict[str, Any] = {
        "layout": layout["layout"],
        "codecs": tuple(c.strip().lower() for c in codecs.split(",")) if codecs else None,
        "sample_format": sample_format,
        "lang": layout["lang"],
    }
    return ExportOptions(**{name: value for name, value in values.items() if value is not None})
