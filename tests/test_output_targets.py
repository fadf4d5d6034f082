"""Where audio goes (issue 12 item 2, issue 13 item 4): outputs never replace what is not
a regular file, one overwrite rule and `--force` for decode, say and cache get, no
traceback on a full disk or a full or closed stdout (issue 12 item 4).

Every case runs the real program in a child process, as a user would.
"""

from __future__ import annotations

import contextlib
import os
import pty
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import av
import pytest
from audiogen import write_sine
from helpers import run_voiceprep as voiceprep
from helpers import voiceprep_command

from voiceprep.backends import get_backend
from voiceprep.cache import AudioCache
from voiceprep.keys import cache_key
from voiceprep.output import OutputSpec, atomic_file, write_pcm
from voiceprep.output import WriteError as OutputWriteError

ESPEAK = ["-b", "espeak", "-r", "16000"]


def one_error_line(result: subprocess.CompletedProcess[bytes]) -> str:
    err = result.stderr.decode(errors="replace")
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("voiceprep: error: "), err
    return lines[0]


@pytest.fixture(scope="module")
def tone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sine(tmp_path_factory.mktemp("in") / "tone.flac", seconds=2, rate=48000)


@pytest.fixture(scope="module")
def cached(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache holding "Hello." for espeak at 16 kHz (as `warm -b espeak -r 16000` keeps it)."""
    directory = tmp_path_factory.mktemp("cache")
    identity = get_backend("espeak").identity(None)
    key = cache_key(identity, "Hello.", rate=16000, channels=1)
    with AudioCache(directory) as cache:
        cache.put(key, b"\x01\x00" * 16000, rate=16000, channels=1, text="Hello.",
                  identity=identity)  # fmt: skip
    return directory


def _commands(tone: Path, cached: Path, out: str) -> dict[str, list[str | os.PathLike[str]]]:
    """The three commands that write audio, each writing to `out`."""
    return {
        "decode": ["decode", tone, "-o", out],
        "say": ["say", "Hello.", "-o", out, "--cache-dir", cached, *ESPEAK],
        "cache get": ["cache", "get", "Hello.", "-o", out, "--cache-dir", cached, *ESPEAK],
    }


COMMANDS = ("decode", "say", "cache get")


# --- device nodes, FIFOs, /dev/stdout, symlinks -----------------------------------------


@pytest.fixture
def null_device(tmp_path: Path) -> Path:
    """A node of /dev/null's device (1, 3) of our own: the case of `-o /dev/null` as root,
    without putting the machine's /dev/null at risk should the code under test be wrong."""
    node = tmp_path / "null"
    try:
        os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))
        node.write_bytes(b"probe")  # a filesystem mounted nodev refuses to open it
    except OSError as exc:
        pytest.skip(f"cannot make a device node here (needs root, a dev mount): {exc}")
    return node


@pytest.mark.parametrize("command", COMMANDS)
def test_a_device_node_stays_a_character_device(
    command: str, tone: Path, cached: Path, null_device: Path
) -> None:
    # As root a rename over /dev/null succeeds and turns it into a file: never rename there.
    result = voiceprep(*_commands(tone, cached, str(null_device))[command], "--force")
    after = os.stat(null_device)

    assert result.returncode == 0, result.stderr
    assert stat.S_ISCHR(after.st_mode) and after.st_rdev == os.makedev(1, 3)
    # A device is written, not overwritten: no --force needed either.
    assert voiceprep(*_commands(tone, cached, str(null_device))[command]).returncode == 0
    assert sorted(os.listdir(null_device.parent)) == ["null"]  # no temporary file left


@pytest.mark.parametrize("command", COMMANDS)
def test_dev_null_itself_is_written(command: str, tone: Path, cached: Path) -> None:
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    result = voiceprep(*_commands(tone, cached, "/dev/null")[command])  # no --force: harmless
    assert result.returncode == 0, result.stderr
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


@pytest.mark.parametrize("command", COMMANDS)
def test_a_fifo_is_written_in_place(command: str, tone: Path, cached: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "audio.pcm"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()), daemon=True)
    reader.start()
    result = voiceprep(*_commands(tone, cached, str(fifo))[command])
    reader.join(60)
    expected = voiceprep(*_commands(tone, cached, "-")[command])

    assert result.returncode == 0, result.stderr
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert received == [expected.stdout] and len(expected.stdout) > 1000
    assert sorted(os.listdir(tmp_path)) == ["audio.pcm"]  # no temporary file beside it


@pytest.mark.parametrize("command", COMMANDS)
def test_dev_stdout_writes_to_stdout(command: str, tone: Path, cached: Path) -> None:
    through_path = voiceprep(*_commands(tone, cached, "/dev/stdout")[command])
    dash = voiceprep(*_commands(tone, cached, "-")[command])

    assert through_path.returncode == 0, through_path.stderr
    assert through_path.stdout == dash.stdout and len(dash.stdout) > 1000


@pytest.mark.parametrize("command", COMMANDS)
def test_a_symlink_is_followed_to_its_file(
    command: str, tone: Path, cached: Path, tmp_path: Path
) -> None:
    target = tmp_path / "real.pcm"
    target.write_bytes(b"old audio")
    link = tmp_path / "link.pcm"
    link.symlink_to(target)
    argv = _commands(tone, cached, str(link))[command]

    refused = voiceprep(*argv)
    assert refused.returncode == 2 and "already exists" in one_error_line(refused)
    assert target.read_bytes() == b"old audio"

    result = voiceprep(*argv, "--force")
    assert result.returncode == 0, result.stderr
    assert link.is_symlink() and os.readlink(link) == str(target)  # the link stays
    assert target.read_bytes() == voiceprep(*_commands(tone, cached, "-")[command]).stdout
    assert sorted(os.listdir(tmp_path)) == ["link.pcm", "real.pcm"]


def test_a_dangling_symlink_creates_its_target(tone: Path, tmp_path: Path) -> None:
    link = tmp_path / "link.pcm"
    link.symlink_to(tmp_path / "new.pcm")

    result = voiceprep("decode", tone, "-o", link)

    assert result.returncode == 0, result.stderr
    assert link.is_symlink() and (tmp_path / "new.pcm").stat().st_size == 2 * 24000 * 2


def test_a_terminal_behind_a_path_is_refused(tone: Path) -> None:
    primary, secondary = pty.openpty()
    try:
        result = voiceprep("decode", tone, "-o", os.ttyname(secondary))
    finally:
        os.close(primary)
        os.close(secondary)
    assert result.returncode == 2
    assert "refusing to write binary audio to a terminal" in one_error_line(result)


# --- one overwrite rule, one terminal rule, "wrote" on a terminal --------------------------


@pytest.mark.parametrize("command", COMMANDS)
def test_an_existing_file_is_kept_without_force(
    command: str, tone: Path, cached: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out.wav"
    out.write_bytes(b"keep me")
    argv = _commands(tone, cached, str(out))[command]

    refused = voiceprep(*argv)
    assert refused.returncode == 2
    assert one_error_line(refused) == (
        f"voiceprep: error: {out}: already exists (use --force to overwrite)"
    )
    assert out.read_bytes() == b"keep me"

    replaced = voiceprep(*argv, "--force")
    assert replaced.returncode == 0, replaced.stderr
    assert out.read_bytes()[:4] == b"RIFF"


@pytest.mark.parametrize("command", COMMANDS)
def test_binary_audio_to_a_terminal_is_refused_with_one_message(
    command: str, tone: Path, cached: Path
) -> None:
    primary, secondary = pty.openpty()
    try:
        result = subprocess.run(
            [sys.executable, "-m", "voiceprep", *map(str, _commands(tone, cached, "-")[command])],
            stdout=secondary,
            stderr=subprocess.PIPE,
            timeout=120,
        )
    finally:
        os.close(primary)
        os.close(secondary)
    assert result.returncode == 2
    assert one_error_line(result) == (
        "voiceprep: error: refusing to write binary audio to a terminal; "
        "redirect stdout or use -o FILE"
    )


@pytest.mark.parametrize("command", COMMANDS)
def test_on_a_terminal_each_command_says_what_it_wrote(
    command: str, tone: Path, cached: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out.pcm"
    primary, secondary = pty.openpty()
    try:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "voiceprep",
                *map(str, _commands(tone, cached, str(out))[command]),
            ],
            stdout=subprocess.PIPE,
            stderr=secondary,
            timeout=120,
        )
        os.close(secondary)
        screen = _read_all(primary)
    finally:
        os.close(primary)
    assert result.returncode == 0
    seconds = "2.00" if command == "decode" else "1.00"  # the tone, the cached entry
    assert f"wrote {out} ({seconds} s of audio" in screen


def _read_all(fd: int) -> str:
    data = b""
    with contextlib.suppress(OSError):
        while chunk := os.read(fd, 4096):
            data += chunk
    return data.decode(errors="replace")


def test_say_refuses_an_existing_file_before_synthesizing(tmp_path: Path) -> None:
    out = tmp_path / "out.wav"
    out.write_bytes(b"keep me")
    # A backend that cannot run would fail *after* a check made too late.
    result = voiceprep("say", "Hello.", "-o", out, "-b", "openai", "--cache-dir", tmp_path / "c",
                       "-O", "base_url=http://127.0.0.1:9")  # fmt: skip
    assert result.returncode == 2 and "already exists" in one_error_line(result)


# --- full disk, full or closed stdout ---------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs: room for the temporary file's first chunks, not for the output."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {done.stderr.decode()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_during_decode_is_one_line_and_leaves_nothing(
    tone: Path, small_disk: Path
) -> None:
    result = voiceprep("decode", tone, "-o", small_disk / "out.wav", "-r", "48000", "-c", "2")

    assert result.returncode == 1
    assert one_error_line(result) == (
        f"voiceprep: error: {small_disk / 'out.wav'}: write failed: no space left on device"
    )
    assert os.listdir(small_disk) == []


def test_a_write_error_is_not_raised_again_by_close(tmp_path: Path) -> None:
    # The library side of the full disk above, where no mount is possible: the error is one
    # WriteError, never the OSError that closing the buffered file would raise again.
    dest = tmp_path / "out.pcm"
    with pytest.raises(OutputWriteError, match="no space left on device"), atomic_file(dest) as out:
        out.write(b"x" * 100)  # buffered: the failing flush comes at the end

        def full(*_: object) -> None:
            raise OSError(28, "No space left on device")

        out.raw.write = full  # type: ignore[attr-defined]
    assert os.listdir(tmp_path) == []


STDOUT_WRITERS = {
    "decode -o -": lambda tone, cached: ["decode", tone, "-o", "-"],
    "cache get -o -": lambda tone, cached: [
        "cache",
        "get",
        "Hello.",
        "-o",
        "-",
        "--cache-dir",
        cached,
        *ESPEAK,
    ],  # fmt: skip
    "say": lambda tone, cached: ["say", "Hello.", "--cache-dir", cached, *ESPEAK],
    "cache ls": lambda tone, cached: ["cache", "ls", "--cache-dir", cached],
    "warm --json": lambda tone, cached: ["warm", "-", "--json", "--cache-dir", cached, *ESPEAK],
}


@pytest.mark.parametrize("name", sorted(STDOUT_WRITERS))
def test_stdout_on_a_full_device_is_one_line(name: str, tone: Path, cached: Path) -> None:
    with open("/dev/full", "wb") as full:
        result = voiceprep(*STDOUT_WRITERS[name](tone, cached), stdout=full.fileno(),
                           input=b"Hello.\n")  # fmt: skip
    assert result.returncode == 1
    assert "no space left on device" in one_error_line(result)


@pytest.mark.parametrize("name", ["decode -o -", "cache get -o -", "say"])
def test_audio_to_a_stdout_that_is_not_open_is_one_line(
    name: str, tone: Path, cached: Path
) -> None:
    """Started with stdout closed (`>&-`): refused before any work, never a Python error."""
    argv = [os.fspath(a) for a in STDOUT_WRITERS[name](tone, cached)]
    command = voiceprep_command(*argv)
    result = subprocess.run(
        ["sh", "-c", 'exec "$@" >&-', "sh", *command], capture_output=True, timeout=120
    )
    assert result.returncode == 1
    assert one_error_line(result) == "voiceprep: error: cannot write to stdout: it is closed"


@pytest.mark.parametrize("name", ["cache ls", "warm --json", "--version"])
def test_text_to_a_stdout_that_is_not_open_is_one_line(
    name: str, tone: Path, cached: Path, tmp_path: Path
) -> None:
    """Started with `>&-`, a command that prints fails when it prints, as coreutils' do:
    one line and 1, never a Python error (it was `unexpected AttributeError`)."""
    argv = ["--version"] if name == "--version" else STDOUT_WRITERS[name](tone, cached)
    command = voiceprep_command(*[os.fspath(a) for a in argv])
    result = subprocess.run(
        ["sh", "-c", 'exec "$@" >&-', "sh", *command],
        capture_output=True,
        input=b"Hello.\n",
        timeout=120,
    )
    assert result.returncode == 1
    assert one_error_line(result) == "voiceprep: error: cannot write to stdout: it is closed"


def test_a_command_that_writes_a_file_works_with_stdout_closed(tone: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.wav"
    command = voiceprep_command("decode", os.fspath(tone), "-o", os.fspath(out), "-r", "16000")
    result = subprocess.run(
        ["sh", "-c", 'exec "$@" >&-', "sh", *command], capture_output=True, timeout=120
    )
    assert (result.returncode, result.stderr) == (0, b"")
    with av.open(os.fspath(out)) as container:
        assert container.streams.audio[0].rate == 16000


@pytest.mark.parametrize("name", sorted(STDOUT_WRITERS))
def test_stdout_closed_by_its_reader_ends_quietly(name: str, tone: Path, cached: Path) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before anything is written (`| true`)
    try:
        result = voiceprep(*STDOUT_WRITERS[name](tone, cached), stdout=write_end,
                           input=b"Hello.\n")  # fmt: skip
    finally:
        os.close(write_end)
    assert result.returncode == 1
    assert result.stderr == b""


def test_write_pcm_writes_a_fifo_in_place(tmp_path: Path) -> None:
    fifo = tmp_path / "x.wav"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    write_pcm(b"\x00\x01" * 10, fifo, OutputSpec(rate=16000, container="wav"))
    reader.join(30)
    assert got and got[0][:4] == b"RIFF" and got[0][-20:] == b"\x00\x01" * 10
