"""Files that lie about their length (a WAV header promising more than the file holds) or
grow while they are decoded: decoded to what they hold, with a warning only for the lie."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from helpers import run_voiceprep as voiceprep

from voiceprep.decoding import decode
from voiceprep.wav import wav_bytes


def tone(seconds: float, rate: int = 16000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    return (np.sin(2 * np.pi * 440 * t) * 12000).astype("<i2").tobytes()


@pytest.mark.parametrize("seconds", [1, 40], ids=["small", "fast-path"])
def test_a_wav_header_promising_more_than_the_file_holds(tmp_path: Path, seconds: int) -> None:
    pcm = tone(seconds)
    liar = bytearray(wav_bytes(pcm, rate=16000, channels=1))
    struct.pack_into("<I", liar, 40, len(pcm) * 10)  # the data chunk claims 10x
    path = tmp_path / "liar.wav"
    path.write_bytes(liar)
    warnings: list[str] = []

    out = b"".join(decode(path, rate=16000, on_warning=warnings.append))

    assert out == pcm
    assert warnings == [
        f"{path}: the WAV header promises {len(pcm) * 10} bytes of audio, the file holds "
        f"{len(pcm)} (truncated?): decoded what is there"
    ]
    result = voiceprep("decode", path, "-o", "-", "-r", "16000")
    assert result.returncode == 0 and result.stdout == pcm
    assert result.stderr.decode().startswith("voiceprep: warning: ")


def test_an_honest_wav_and_a_streamed_one_give_no_warning(tmp_path: Path) -> None:
    pcm = tone(1)
    honest = tmp_path / "honest.wav"
    honest.write_bytes(wav_bytes(pcm, rate=16000, channels=1))
    streamed = bytearray(honest.read_bytes())
    struct.pack_into("<I", streamed, 40, 0xFFFFFFFF)  # "length unknown", as ffmpeg pipes
    (tmp_path / "streamed.wav").write_bytes(streamed)
    for path in (honest, tmp_path / "streamed.wav"):
        warnings: list[str] = []
        assert b"".join(decode(path, rate=16000, on_warning=warnings.append)) == pcm
        assert warnings == []


def test_a_file_that_grows_while_decoding(tmp_path: Path) -> None:
    pcm = tone(40)
    path = tmp_path / "growing.wav"
    header = bytearray(wav_bytes(pcm, rate=16000, channels=1))
    struct.pack_into("<I", header, 40, 0xFFFFFFFF)  # a recorder still writing it
    path.write_bytes(header)
    warnings: list[str] = []
    chunks = decode(path, rate=16000, on_warning=warnings.append)

    first = next(chunks)
    with path.open("ab") as more:  # the recorder goes on while we decode
        more.write(tone(1))
    rest = b"".join(chunks)

    assert len(first + rest) >= len(pcm)
    assert warnings == [
        f"{path}: the file grew by {len(tone(1))} bytes while it was decoded "
        "(still being written?): the output may end before the file does"
    ]
