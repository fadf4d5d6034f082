"""The processing options (voiceprep.process), defined once for every command that
produces audio: decode, warm, say, serve. A command declares the nine parameters with
these types and passes their values to `process_flags(...)`; `resolve_settings` lays
them over the config file's `[process]` table key by key (None means "not given").

    from voiceprep.cli._processing import (
        FadeIn, FadeOut, Loudness, PadEnd, PadStart, SilenceThreshold, TrimPad,
        TrimSilence, TruePeak, process_flags,
    )
    def my_command(..., loudness: Loudness = None, true_peak: TruePeak = None,
                   trim_silence: TrimSilence = None, silence_threshold: SilenceThreshold = None,
                   trim_pad: TrimPad = None, fade_in: FadeIn = None, fade_out: FadeOut = None,
                   pad_start: PadStart = None, pad_end: PadEnd = None): ...
        flags["process"] = process_flags(loudness=loudness, ...)

Synthesizing commands also take `Gate` (the plausibility gate, voiceprep.gate).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

import typer

Loudness = Annotated[
    float | None,
    typer.Option(
        "--loudness",
        metavar="LUFS",
        help="Normalize integrated loudness to LUFS (e.g. -16, -23) by a measured gain.",
        show_default="off",
    ),
]
TruePeak = Annotated[
    float | None,
    typer.Option(
        "--true-peak",
        metavar="DBTP",
        help="With --loudness, a limiter keeps the true peak under DBTP.",
        show_default="-1.5",
    ),
]
TrimSilence = Annotated[
    bool | None,
    typer.Option(
        "--trim-silence/--no-trim-silence",
        help="Cut leading and trailing silence (never inside speech).",
        show_default="no",
    ),
]
SilenceThreshold = Annotated[
    float | None,
    typer.Option(
        "--silence-threshold",
        metavar="DBFS",
        help="With --trim-silence, samples under DBFS are silence.",
        show_default="-50",
    ),
]
TrimPad = Annotated[
    float | None,
    typer.Option(
        "--trim-pad",
        metavar="MS",
        help="With --trim-silence, keep MS of silence at each end.",
        show_default="50",
    ),
]
FadeIn = Annotated[
    float | None,
    typer.Option("--fade-in", metavar="MS", help="Fade in over the first MS.", show_default="0"),
]
FadeOut = Annotated[
    float | None,
    typer.Option("--fade-out", metavar="MS", help="Fade out over the last MS.", show_default="0"),
]
PadStart = Annotated[
    float | None,
    typer.Option("--pad-start", metavar="MS", help="Add MS of silence before.", show_default="0"),
]
PadEnd = Annotated[
    float | None,
    typer.Option("--pad-end", metavar="MS", help="Add MS of silence after.", show_default="0"),
]


class GateMode(StrEnum):
    strict = "strict"
    relaxed = "relaxed"
    off = "off"


Gate = Annotated[
    GateMode | None,
    typer.Option(
        "--gate",
        metavar="MODE",
        help="Plausibility check of each synthesis (silent, truncated, babbling), "
        "MODE strict, relaxed or off.",
        show_default="strict",
    ),
]


def process_flags(
    *,
    loudness: float | None = None,
    true_peak: float | None = None,
    trim_silence: bool | None = None,
    silence_threshold: float | None = None,
    trim_pad: float | None = None,
    fade_in: float | None = None,
    fade_out: float | None = None,
    pad_start: float | None = None,
    pad_end: float | None = None,
) -> dict[str, Any]:
    """The `flags["process"]` mapping `resolve_settings` takes."""
    return {
        "loudness": loudness,
        "true_peak": true_peak,
        "trim_silence": trim_silence,
        "silence_threshold": silence_threshold,
        "trim_pad": trim_pad,
        "fade_in": fade_in,
        "fade_out": fade_out,
        "pad_start": pad_start,
        "pad_end": pad_end,
    }


def gate_flag(gate: GateMode | None) -> str | None:
    return gate.value if gate is not None else None
