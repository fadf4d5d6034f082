"""`voiceprep decode` end to end: real files made with PyAV, the real CLI in a subprocess."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
import wave
from pathlib import Path

import numpy as np
import pytest
from audiogen import dominant_frequency, pcm_to_array, sine, write_audio, write_sine
from helpers import CLI, Result, read_terminal, voiceprep_command

from voiceprep.wav import UNKNOWN_SIZE, parse_wav_header, wav_bytes

SECONDS = 2.0


def error_lines(result: Result) -> list[str]:
    return result.err_lines


def assert_one_error(result: Result, code: int, *words: str) -> None:
    """Exit `code`, one `voiceprep: error:` line on stderr naming `words`, no traceback."""
    lines = error_lines(result)
    assert result.code == code, lines
    assert len(lines) == 1, lines
    assert lines[0].startswith("voiceprep: error: ")
    for word in words:
        assert word in lines[0]
    assert result.out == b""


def leftovers(directory: Path) -> list[str]:
    """Temporary files a decode might have left behind."""
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".part"))


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Small real inputs: 440 Hz (880 Hz on the right channel) for 2 s."""
    d = tmp_path_factory.mktemp("media")
    return {
        "wav": write_sine(d / "stereo.wav", seconds=SECONDS, rate=44100, channels=2),
        "flac": write_sine(d / "tone.flac", seconds=SECONDS, rate=48000, codec="flac"),
        "mp3": write_sine(d / "tone.mp3", seconds=SECONDS, rate=44100, codec="mp3"),
        "ogg": write_sine(d / "tone.ogg", seconds=SECONDS, rate=48000, codec="opus"),
    }


@pytest.fixture
def work(tmp_path: Path, media: dict[str, Path]) -> Path:
    """A directory holding copies of the inputs, so outputs land beside them."""
    for path in media.values():
        (tmp_path / path.name).write_bytes(path.read_bytes())
    return tmp_path


# --- stdin and stdout -------------------------------------------------------------------


def test_stdin_to_stdout_gives_raw_pcm_at_the_asked_rate(cli: CLI, media: dict[str, Path]) -> None:
    result = cli.process("decode", "-", "-r", "16000", stdin=media["flac"].read_bytes())

    assert result.code == 0, result.err
    assert result.err == ""
    samples = pcm_to_array(result.out, 1)[0]
    assert len(samples) == SECONDS * 16000
    assert dominant_frequency(samples, 16000) == pytest.approx(440, abs=2)


def test_stdin_redirected_from_an_m4a_file_can_seek(cli: CLI, tmp_path: Path) -> None:
    # PyAV's MP4 muxer writes the index at the end: readable only by seeking back.
    m4a = write_sine(tmp_path / "clip.m4a", seconds=SECONDS, codec="aac")
    with m4a.open("rb") as stdin:
        proc = cli.popen(
            "decode", "-", "-o", "-", stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        out, err = proc.communicate(timeout=60)

    assert proc.returncode == 0, err
    samples = pcm_to_array(out, 1)[0]
    assert abs(len(samples) - SECONDS * 24000) < 0.02 * SECONDS * 24000
    assert dominant_frequency(samples, 24000) == pytest.approx(440, abs=2)


def test_file_to_stdout_as_wav_streams_a_header_of_unknown_length(
    cli: CLI,
    media: dict[str, Path],
) -> None:
    result = cli.process(
        "decode", media["wav"], "-o", "-", "--format", "wav", "-c", "2", "-r", "48000"
    )

    assert result.code == 0, result.err
    header = parse_wav_header(result.out)
    assert (header.rate, header.channels, header.sample_format) == (48000, 2, "s16")
    # A pipe cannot be rewound: sizes say "unknown", as ffmpeg writes them.
    assert int.from_bytes(result.out[40:44], "little") == UNKNOWN_SIZE
    left, right = pcm_to_array(result.out[header.data_offset :], 2)
    assert len(left) == SECONDS * 48000
    assert dominant_frequency(left, 48000) == pytest.approx(440, abs=2)
    assert dominant_frequency(right, 48000) == pytest.approx(880, abs=2)


def test_stdout_wav_is_readable_by_the_wave_module(
    cli: CLI, media: dict[str, Path], tmp_path: Path
) -> None:
    result = cli.process("decode", media["mp3"], "-o", "-", "--format", "wav")
    streamed = tmp_path / "streamed.wav"
    streamed.write_bytes(result.out)

    with wave.open(str(streamed)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (24000, 1, 2)
        frames = w.readframes(10**9)
    assert abs(len(frames) // 2 - SECONDS * 24000) < 0.01 * SECONDS * 24000


def test_stdout_that_closes_early_ends_quietly(media: dict[str, Path]) -> None:
    # `voiceprep decode x - | head -c 100`: no traceback when the reader goes away.
    command = [sys.executable, "-m", "voiceprep", "decode", str(media["wav"]), "-o", "-"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    assert len(proc.stdout.read(100)) == 100
    proc.stdout.close()
    stderr = proc.stderr.read()
    proc.wait(timeout=60)
    assert b"Traceback" not in stderr
    assert proc.returncode in (0, 1)


# --- files: naming, format, WAV headers -------------------------------------------------


def test_default_output_is_beside_the_input_as_pcm(cli: CLI, work: Path) -> None:
    result = cli.process("decode", work / "tone.flac")

    assert result.code == 0, result.err
    assert result.out == b"" and result.err == ""
    pcm = (work / "tone.pcm").read_bytes()
    assert len(pcm) == SECONDS * 24000 * 2
    assert dominant_frequency(pcm_to_array(pcm, 1)[0], 24000) == pytest.approx(440, abs=2)
    assert leftovers(work) == []


def test_format_wav_writes_beside_the_input_with_patched_sizes(cli: CLI, work: Path) -> None:
    result = cli.process("decode", work / "tone.mp3", "--format", "wav", "-r", "8000")

    assert result.code == 0, result.err
    out = work / "tone.wav"
    blob = out.read_bytes()
    header = parse_wav_header(blob)
    assert header.data_bytes == len(blob) - 44
    assert int.from_bytes(blob[4:8], "little") == len(blob) - 8
    with wave.open(str(out)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
        assert w.getnframes() == header.data_bytes // 2
        samples = pcm_to_array(w.readframes(w.getnframes()), 1)[0]
    assert dominant_frequency(samples, 8000) == pytest.approx(440, abs=2)


def test_format_follows_the_output_suffix_unless_given(cli: CLI, work: Path) -> None:
    assert cli.process("decode", work / "tone.ogg", "-o", work / "a.wav").code == 0
    assert cli.process("decode", work / "tone.ogg", "-o", work / "b.raw").code == 0
    assert (
        cli.process("decode", work / "tone.ogg", "-o", work / "c.wav", "--format", "raw").code == 0
    )

    assert (work / "a.wav").read_bytes()[:4] == b"RIFF"
    raw = (work / "b.raw").read_bytes()
    assert raw[:4] != b"RIFF"
    assert (work / "c.wav").read_bytes() == raw
    assert (work / "a.wav").read_bytes()[44:] == raw


def test_f32_stereo_wav_keeps_channels_apart(cli: CLI, work: Path) -> None:
    out = work / "f32.wav"
    result = cli.process(
        "decode", work / "stereo.wav", "-o", out, "--sample-format", "f32", "-c", "2"
    )

    assert result.code == 0, result.err
    blob = out.read_bytes()
    header = parse_wav_header(blob)
    assert (header.rate, header.channels, header.sample_format) == (24000, 2, "f32")
    left, right = pcm_to_array(blob[header.data_offset :], 2, "f32")
    assert len(left) == SECONDS * 24000
    assert dominant_frequency(left, 24000) == pytest.approx(440, abs=2)
    assert dominant_frequency(right, 24000) == pytest.approx(880, abs=2)
    assert 0.4 < np.max(np.abs(left)) <= 0.51  # float samples, not integers


# --- start / duration -------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_tones(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One second of 440 Hz, then one second of 1000 Hz (mono WAV, 48 kHz)."""
    rate = 48000
    signal = np.concatenate([sine(440, 1.0, rate), sine(1000, 1.0, rate)], axis=1)
    return write_audio(tmp_path_factory.mktemp("tones") / "two.wav", signal, rate=rate)


def test_start_and_duration_cut_sample_exactly(cli: CLI, two_tones: Path) -> None:
    head = cli.process("decode", two_tones, "-o", "-", "--duration", "0.5", "-r", "16000")
    tail = cli.process("decode", two_tones, "-o", "-", "--start", "1.25", "-r", "16000")
    middle = cli.process("decode", two_tones, "-o", "-", "--start", "1", "--duration", "0.25")

    for result in (head, tail, middle):
        assert result.code == 0, result.err
    head_samples = pcm_to_array(head.out, 1)[0]
    tail_samples = pcm_to_array(tail.out, 1)[0]
    middle_samples = pcm_to_array(middle.out, 1)[0]
    assert len(head_samples) == 8000
    assert len(tail_samples) == 12000
    assert len(middle_samples) == 6000
    assert dominant_frequency(head_samples, 16000) == pytest.approx(440, abs=4)
    assert dominant_frequency(tail_samples, 16000) == pytest.approx(1000, abs=4)
    assert dominant_frequency(middle_samples[600:], 24000) == pytest.approx(1000, abs=8)


def test_start_past_the_end_writes_an_empty_output_and_warns(
    cli: CLI, two_tones: Path, tmp_path: Path
) -> None:
    out = tmp_path / "late.pcm"

    result = cli.process("decode", two_tones, "--start", "5", "-o", out)

    assert result.code == 0
    assert out.read_bytes() == b""
    [line] = error_lines(result)
    assert line.startswith(f"voiceprep: warning: {two_tones}: no audio")


@pytest.mark.parametrize(
    ("option", "value", "word"),
    [
        ("--start", "-1", "start"),
        ("--duration", "0", "duration"),
        ("--duration", "x", "--duration"),
        # were "unexpected OverflowError", exit 1 (issue #26)
        ("--start", "inf", "start"),
        ("--start", "1e308", "start"),
        ("--duration", "inf", "duration"),
        ("--duration", "1e308", "duration"),
    ],
)
def test_bad_start_or_duration_is_a_usage_error(
    cli: CLI, media: dict[str, Path], option: str, value: str, word: str
) -> None:
    result = cli.process("decode", media["wav"], "-o", "-", option, value)
    assert_one_error(result, 2, word)


def test_rate_and_channels_come_from_the_environment_unless_given(
    cli: CLI,
    media: dict[str, Path],
) -> None:
    env = {"VOICEPREP_RATE": "16000", "VOICEPREP_CHANNELS": "2"}
    from_env = cli.process("decode", media["flac"], "-o", "-", env=env)
    flag_wins = cli.process("decode", media["flac"], "-o", "-", "-r", "8000", "-c", "1", env=env)

    assert from_env.code == flag_wins.code == 0
    assert len(from_env.out) == SECONDS * 16000 * 2 * 2
    assert len(flag_wins.out) == SECONDS * 8000 * 2


# --- damaged input: decode around it, warn ---------------------------------------------


@pytest.fixture(scope="module")
def damaged_mp3(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 6-second MP3 with 20 kB of random bytes in the middle."""
    d = tmp_path_factory.mktemp("damaged")
    clean = write_sine(d / "clean.mp3", seconds=6.0, codec="mp3").read_bytes()
    middle = len(clean) // 2
    garbage = random.Random(5).randbytes(20_000)
    path = d / "damaged.mp3"
    path.write_bytes(clean[:middle] + garbage + clean[middle:])
    return path


@pytest.mark.parametrize("batch", [False, True])
def test_damaged_input_is_decoded_around_with_warnings(
    cli: CLI, damaged_mp3: Path, tmp_path: Path, batch: bool
) -> None:
    inputs = [damaged_mp3, write_sine(tmp_path / "ok.flac", codec="flac")] if batch else []
    args = [*inputs, "--out-dir", tmp_path / "out"] if batch else [damaged_mp3, "-o", "-"]

    result = cli.process("decode", *args)

    assert result.code == 0
    lines = error_lines(result)
    assert lines, "a skipped packet is worth a warning"
    assert all(line.startswith(f"voiceprep: warning: {damaged_mp3}: ") for line in lines)
    assert len(lines) <= 6  # at most five, then a count of the rest
    pcm = (tmp_path / "out" / "damaged.pcm").read_bytes() if batch else result.out
    samples = pcm_to_array(pcm, 1)[0]
    assert 5.5 * 24000 < len(samples) < 6.2 * 24000
    assert dominant_frequency(samples, 24000) == pytest.approx(440, abs=2)


# --- existing outputs: --force, no clobber ----------------------------------------------


def test_existing_output_is_kept_without_force(cli: CLI, work: Path) -> None:
    out = work / "tone.pcm"
    out.write_bytes(b"precious")

    result = cli.process("decode", work / "tone.flac")

    assert_one_error(result, 2, str(out), "already exists", "--force")
    assert out.read_bytes() == b"precious"
    assert leftovers(work) == []


def test_force_replaces_an_existing_output(cli: CLI, work: Path) -> None:
    out = work / "tone.pcm"
    out.write_bytes(b"old")

    result = cli.process("decode", work / "tone.flac", "--force")

    assert result.code == 0, result.err
    assert len(out.read_bytes()) == SECONDS * 24000 * 2


def test_output_never_replaces_its_own_input(cli: CLI, work: Path) -> None:
    before = (work / "stereo.wav").read_bytes()

    result = cli.process("decode", work / "stereo.wav", "--format", "wav", "--force")

    assert_one_error(result, 2, "stereo.wav", "input")
    assert (work / "stereo.wav").read_bytes() == before


# --- bad inputs: one line, the right exit code, nothing left behind ----------------------


def _bad_inputs(directory: Path) -> dict[str, Path]:
    good = write_sine(directory / "good.mp3", seconds=1.0, codec="mp3")
    (directory / "adir").mkdir()
    (directory / "empty.mp3").write_bytes(b"")
    (directory / "text.mp3").write_text("This is not audio, it is a note to self.\n")
    (directory / "random.wav").write_bytes(random.Random(1234).randbytes(64 * 1024))
    (directory / "header.wav").write_bytes(wav_bytes(b"", rate=44100, channels=1))
    (directory / "header.mp3").write_bytes(good.read_bytes()[:100])
    return {
        "missing": directory / "missing.mp3",
        "directory": directory / "adir",
        "empty": directory / "empty.mp3",
        "text": directory / "text.mp3",
        "random": directory / "random.wav",
        "header-only wav": directory / "header.wav",
        "header-only mp3": directory / "header.mp3",
        "no audio stream": _video_only(directory / "video.mp4"),
    }


def _video_only(path: Path) -> Path:
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for _ in range(5):
            image = np.zeros((48, 64, 3), dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


# Missing or unreadable input is a usage error (2); a file that opens but does not
# decode is "the command ran but something failed" (1).
BAD_INPUT_CODES = {
    "missing": (2, "no such file"),
    "directory": (2, "is a directory"),
    "empty": (1, "empty"),
    "text": (1, ""),
    "random": (1, ""),
    "header-only wav": (1, ""),
    "header-only mp3": (1, ""),
    "no audio stream": (1, "no audio stream"),
}


@pytest.mark.parametrize("kind", list(BAD_INPUT_CODES))
def test_bad_input_fails_in_one_line_and_leaves_nothing(
    cli: CLI, tmp_path: Path, kind: str
) -> None:
    bad = _bad_inputs(tmp_path)[kind]
    code, reason = BAD_INPUT_CODES[kind]
    before = sorted(os.listdir(tmp_path))

    result = cli.process("decode", bad, "-o", tmp_path / "out.pcm")

    assert_one_error(result, code, str(bad), reason)
    assert sorted(os.listdir(tmp_path)) == before  # no output, no temporary file


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["-r", "7999"], ["rate", "7999"]),
        (["-r", "192001"], ["rate", "192001"]),
        (["-r", "fast"], ["--rate"]),
        (["-c", "3"], ["channel", "3"]),
        (["-c", "0"], ["channel", "0"]),
        (["--format", "mp3"], ["--format"]),
        (["--sample-format", "s24"], ["--sample-format"]),
        (["--frobnicate"], ["--frobnicate"]),
        (["-j", "0"], ["job"]),
    ],
)
def test_bad_options_are_one_line_usage_errors(
    cli: CLI, work: Path, args: list[str], words: list[str]
) -> None:
    result = cli.process("decode", work / "tone.flac", *args)

    assert_one_error(result, 2, *words)
    assert not (work / "tone.pcm").exists()


def test_several_inputs_with_one_output_is_a_usage_error(cli: CLI, work: Path) -> None:
    result = cli.process("decode", work / "tone.flac", work / "tone.mp3", "-o", work / "x.pcm")
    assert_one_error(result, 2, "--output")
    assert not (work / "x.pcm").exists()


def test_missing_input_argument_is_a_usage_error(cli: CLI) -> None:
    assert_one_error(cli.process("decode"), 2, "INPUT")


def test_unwritable_output_is_reported_and_nothing_is_written(cli: CLI, work: Path) -> None:
    missing_dir = work / "no" / "such" / "dir" / "out.pcm"
    into_a_dir = work

    for target in (missing_dir, into_a_dir):
        result = cli.process("decode", work / "tone.flac", "-o", target)
        assert_one_error(result, 2, str(target))
    assert not (work / "no").exists()
    assert leftovers(work) == []


def test_out_dir_that_is_a_file_is_a_usage_error(cli: CLI, work: Path) -> None:
    (work / "taken").write_text("a file, not a directory")

    result = cli.process(
        "decode", work / "tone.flac", work / "stereo.wav", "--out-dir", work / "taken"
    )

    assert_one_error(result, 2, str(work / "taken"))
    assert (work / "taken").read_text() == "a file, not a directory"


def test_binary_audio_is_not_written_to_a_terminal(cli: CLI, media: dict[str, Path]) -> None:
    import pty

    primary, secondary = pty.openpty()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "voiceprep", "decode", str(media["wav"]), "-o", "-"],
            stdout=secondary,
            stderr=subprocess.PIPE,
            timeout=60,
        )
    finally:
        os.close(secondary)
        os.close(primary)
    assert proc.returncode == 2
    assert b"terminal" in proc.stderr


# --- batch: --out-dir, -j, one bad file -------------------------------------------------


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_batch_decodes_the_good_files_and_reports_the_bad_one(
    cli: CLI, work: Path, jobs: str
) -> None:
    bad = work / "broken.mp3"
    bad.write_text("not audio")
    (work / "tone.ogg").rename(work / "other.ogg")
    out_dir = work / "out" / "nested"
    inputs = [work / "stereo.wav", bad, work / "other.ogg", work / "tone.mp3"]
    (work / "tone.mp3").rename(inputs[3].with_name("song.mp3"))
    inputs[3] = inputs[3].with_name("song.mp3")

    result = cli.process(
        "decode", *inputs, "--out-dir", out_dir, "-j", jobs, "--format", "wav", "-c", "2"
    )

    assert result.code == 1
    assert error_lines(result) == [error_lines(result)[0]]
    assert error_lines(result)[0].startswith(f"voiceprep: error: {bad}: ")
    names = ["other.wav", "song.wav", "stereo.wav"]
    assert sorted(p.name for p in out_dir.iterdir()) == names
    for name in names:
        with wave.open(str(out_dir / name)) as w:
            left = pcm_to_array(w.readframes(w.getnframes()), 2)[0]
        assert abs(len(left) - SECONDS * 24000) < 0.01 * SECONDS * 24000
        assert dominant_frequency(left, 24000) == pytest.approx(440, abs=2)


def test_batch_on_a_terminal_shows_progress_errors_and_a_summary(work: Path) -> None:
    import pty

    bad = work / "broken.mp3"
    bad.write_text("not audio")
    primary, secondary = pty.openpty()
    command = [sys.executable, "-m", "voiceprep", "decode", "--out-dir", "out", "-j", "2"]
    proc = subprocess.Popen(
        [*command, str(work / "tone.flac"), str(bad), str(work / "stereo.wav")],
        stderr=secondary,
        cwd=work,
    )
    os.close(secondary)
    text = read_terminal(primary)
    proc.wait(timeout=60)

    assert proc.returncode == 1
    assert f"voiceprep: error: {bad}: " in text
    assert "decoded 2 of 3 files, 1 failed" in text
    assert "Traceback" not in text
    assert sorted(p.name for p in (work / "out").iterdir()) == ["stereo.pcm", "tone.pcm"]


def test_batch_outputs_match_single_decodes(cli: CLI, work: Path) -> None:
    inputs = [work / "stereo.wav", work / "tone.mp3", work / "tone.ogg"]
    out_dir = work / "out"

    # Three stems collide ("tone"): a usage error before anything is decoded.
    clash = cli.process("decode", *inputs, "--out-dir", out_dir)
    assert_one_error(clash, 2, "tone")
    assert not out_dir.exists() or list(out_dir.iterdir()) == []

    renamed = []
    for i, path in enumerate(inputs):
        target = work / f"in{i}{path.suffix}"
        path.rename(target)
        renamed.append(target)
    result = cli.process("decode", *renamed, "--out-dir", out_dir, "-j", "2", "-r", "16000")

    assert result.code == 0, result.err
    for path in renamed:
        single = cli.process("decode", path, "-o", "-", "-r", "16000")
        assert (out_dir / f"{path.stem}.pcm").read_bytes() == single.out


def test_batch_missing_file_exits_2_after_decoding_the_rest(cli: CLI, work: Path) -> None:
    result = cli.process(
        "decode", work / "tone.flac", work / "nope.mp3", work / "stereo.wav", "-j", "2"
    )

    assert result.code == 2
    assert error_lines(result) == [f"voiceprep: error: {work / 'nope.mp3'}: no such file"]
    assert len((work / "tone.pcm").read_bytes()) == SECONDS * 24000 * 2
    assert len((work / "stereo.pcm").read_bytes()) == SECONDS * 24000 * 2


def test_batch_stdin_must_be_alone(cli: CLI, work: Path) -> None:
    assert_one_error(cli.process("decode", "-", work / "tone.flac"), 2, "stdin")


# --- Ctrl-C: exit 130, nothing half-written ---------------------------------------------


def _slow_wav(seconds: float = 12.0) -> bytes:
    """A mono 48 kHz WAV; fed partly through a pipe it keeps the decoder waiting."""
    return wav_bytes(
        (sine(440, seconds, 48000)[0] * 32767).astype("<i2").tobytes(), rate=48000, channels=1
    )


def _wait_for(predicate: object, what: str, limit: float = 60.0) -> None:
    deadline = time.monotonic() + limit
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.02)


def test_ctrl_c_while_writing_a_file_exits_130_and_leaves_nothing(tmp_path: Path) -> None:
    data = _slow_wav()
    proc = subprocess.Popen(
        voiceprep_command("decode", "-", "-o", "out.pcm"),
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
    )
    assert proc.stdin is not None and proc.stderr is not None
    proc.stdin.write(data[: len(data) * 3 // 4])  # more than the probe needs, not all
    proc.stdin.flush()
    _wait_for(lambda: leftovers(tmp_path), "the temporary output")

    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)
    proc.stdin.close()

    assert proc.returncode == 130
    assert b"Traceback" not in proc.stderr.read()
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("group", [False, True], ids=["to-the-parent", "to-the-group"])
def test_ctrl_c_during_a_parallel_batch_exits_130_and_leaves_nothing(
    tmp_path: Path, group: bool
) -> None:
    # `group`: as a terminal sends Ctrl-C, to the whole process group (workers included).
    # Named pipes as inputs: each worker blocks reading one, mid-file, until interrupted.
    fifos = [tmp_path / "one.wav", tmp_path / "two.wav"]
    for fifo in fifos:
        os.mkfifo(fifo)
    out_dir = tmp_path / "out"
    proc = subprocess.Popen(
        voiceprep_command("decode", *fifos, "--out-dir", out_dir, "-j", "2"),
        stderr=subprocess.PIPE,
        start_new_session=group,
    )
    assert proc.stderr is not None
    data = _slow_wav()
    writers: list[object] = []

    def feed(fifo: Path) -> None:
        handle = fifo.open("wb")  # blocks until a worker opens it
        writers.append(handle)
        # The worker is killed while this write may still be blocked: a broken pipe then
        # is the expected end, not a failure of the feeder.
        with contextlib.suppress(BrokenPipeError):
            handle.write(data[: len(data) * 3 // 4])
            handle.flush()

    threads = [threading.Thread(target=feed, args=(f,), daemon=True) for f in fifos]
    for thread in threads:
        thread.start()
    _wait_for(lambda: out_dir.exists() and len(leftovers(out_dir)) == 2, "two temporary outputs")

    if group:
        os.killpg(proc.pid, signal.SIGINT)
    else:
        proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)
    for handle in writers:
        with contextlib.suppress(BrokenPipeError):
            handle.close()  # type: ignore[attr-defined]

    assert proc.returncode == 130
    assert b"Traceback" not in proc.stderr.read()
    assert os.listdir(out_dir) == []


def test_a_worker_that_dies_fails_its_file_and_the_batch_goes_on(
    tmp_path: Path, media: dict[str, Path]
) -> None:
    # A decoder crash (a segfault on a hostile file) kills a worker process; simulate
    # one with SIGKILL while the worker is stuck reading a named pipe.
    fifo = tmp_path / "stuck.wav"
    os.mkfifo(fifo)
    others = [tmp_path / "a.flac", tmp_path / "b.mp3", tmp_path / "c.wav"]
    for source, target in zip(("flac", "mp3", "wav"), others, strict=True):
        target.write_bytes(media[source].read_bytes())
    out_dir = tmp_path / "out"
    command = [sys.executable, "-m", "voiceprep", "decode", str(fifo), *map(str, others)]
    proc = subprocess.Popen(
        [*command, "--out-dir", str(out_dir), "-j", "2"], stderr=subprocess.PIPE
    )
    assert proc.stderr is not None
    writer = fifo.open("wb")  # blocks until a worker opens the pipe
    data = _slow_wav()
    writer.write(data[: len(data) * 3 // 4])
    writer.flush()
    _wait_for(
        lambda: any(name.startswith(".stuck.pcm.") for name in leftovers(out_dir)),
        "the pipe's temporary output",
    )
    holder = _process_holding(proc.pid, fifo)

    os.kill(holder, signal.SIGKILL)
    proc.wait(timeout=60)
    writer.close()

    lines = proc.stderr.read().decode().splitlines()
    assert proc.returncode == 1
    assert lines == [f"voiceprep: error: {fifo}: decoder process killed by SIGKILL"]
    assert sorted(os.listdir(out_dir)) == ["a.pcm", "b.pcm", "c.pcm"]  # no temporary file


def _process_holding(parent: int, path: Path) -> int:
    """The child of `parent` that has `path` open."""
    children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    for child in map(int, children):
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{child}/fd").iterdir():
                if os.readlink(fd) == str(path):
                    return child
    raise AssertionError(f"no child of {parent} holds {path}")


# --- start-up stays light ----------------------------------------------------------------


@pytest.mark.parametrize(
    "args", [["--version"], ["--help"], ["decode", "--help"], ["serve", "--help"]]
)
def test_help_and_version_do_not_import_heavy_modules(args: list[str]) -> None:
    probe = (
        "import sys\n"
        "from voiceprep.cli import main\n"
        f"code = 0\ntry:\n    main({args!r})\nexcept SystemExit as exit:\n    code = exit.code\n"
        "loaded = {m.split('.')[0] for m in sys.modules}\n"
        "heavy = sorted(loaded & {'av', 'httpx', 'piper', 'numpy', 'rich', 'starlette',"
        " 'uvicorn', 'prometheus_client', 'anyio'})\n"
        "print('HEAVY=' + ','.join(heavy), 'CODE=' + str(code))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)

    last = result.stdout.strip().splitlines()[-1]
    assert last == "HEAVY= CODE=0"


def test_a_decode_imports_neither_pydantic_nor_the_other_commands(
    media: dict[str, Path], tmp_path: Path
) -> None:
    # Typer would convert each value through a pydantic TypeAdapter (~0.06 s of CPU and
    # 7 MiB at every start); voiceprep.cli._values converts them, and only the command
    # asked for is imported and built.
    out = tmp_path / "out.pcm"
    argv = ["decode", str(media["wav"]), "-o", str(out), "-r", " 16_000"]
    probe = (
        "import sys\n"
        "from voiceprep.cli import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
        "others = [m for m in sys.modules if m.startswith('voiceprep.cli.')"
        " and m.rsplit('.', 1)[1] in ('warm', 'serve', 'cache', 'remote', 'backends')]\n"
        "print('pydantic' in sys.modules, others)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.stdout.strip().splitlines()[-1] == "False []", result.stderr
    assert out.stat().st_size == round(SECONDS * 16000) * 2  # -r ' 16_000' read as 16000
