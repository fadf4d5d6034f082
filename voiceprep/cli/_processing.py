"""The processing options (voiceprep.process), defined once for every command that
produces audio: decode, warm, say, serve. A command decorated with `processing_options`
declares one keyword-only parameter `process` in their place (where they show in its
help) and gets their values in it, the mapping `resolve_settings` lays over the config
file's `[process]` table key by key (None means "not given"):

    @processing_options
    def my_command(..., *, process: Flags, ...) -> None:
        settings = resolve(..., process=process)

Synthesizing commands also take `Gate` (the plausibility gate, voiceprep.gate).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from voiceprep.cli._options import option_group

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


HighPass = Annotated[
    float | None,
    typer.Option(
        "--highpass",
        metavar="HZ",
        help="Cut what is below HZ (a 2nd-order Butterworth high-pass).",
        show_default="off",
    ),
]
Telephony = Annotated[
    bool | None,
    typer.Option(
        "--telephony",
        help="Prompts for phone lines: high-pass at 100 Hz, loudness -20 LUFS under "
        "-3 dBTP, and files written as 8 kHz μ-law unless OUT's name or --sample-format "
        "says otherwise.",
        show_default="off",
    ),
]


processing_options = option_group(
    "process",
    loudness=Loudness,
    true_peak=TruePeak,
    trim_silence=TrimSilence,
    silence_threshold=SilenceThreshold,
    trim_pad=TrimPad,
    fade_in=FadeIn,
    fade_out=FadeOut,
    pad_start=PadStart,
    pad_end=PadEnd,
    highpass=HighPass,
    telephony=Telephony,
)


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


def gate_flag(gate: GateMode | None) -> str | None:
    return gate.value if gate is not None else None
