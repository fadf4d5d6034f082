"""Phone outputs (#20): G.711 sample formats, Asterisk-named files, export layouts.

ffmpeg is the oracle: every file voiceprep writes is decoded (or re-encoded) by ffmpeg
and compared with voiceprep's own 16-bit decode at the same rate.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from audiogen import sine, write_audio
from helpers import CLI
from loudmeter import ffmpeg_loudness

FFMPEG = ["ffmpeg", "-v", "error", "-nostdin"]


def ffmpeg(*args: str, data: bytes | None = None) -> bytes:
    return subprocess.run([*FFMPEG, *args], input=data, capture_output=True, check=True).stdout


def ffprobe_stream(path: Path) -> dict[str, str]:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-of", "json", str(path)],
        capture_output=True,
        check=True,
    ).stdout
    return json.loads(out)["streams"][0]


def snr_db(reference: bytes, test: bytes) -> float:
    ref = np.frombuffer(reference, "<i2").astype(np.float64)
    got = np.frombuffer(test, "<i2").astype(np.float64)
    assert len(ref) == len(got)
    noise = np.sum((ref - got) ** 2)
    return float(10 * np.log10(np.sum(ref**2) / max(noise, 1e-9)))


@pytest.fixture(scope="module")
def speechlike(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 s of MP3 at 44.1 kHz whose level moves like speech (syllables, pauses)."""
    rate = 44100
    t = np.arange(3 * rate) / rate
    envelope = 0.15 + 0.6 * np.abs(np.sin(2 * np.pi * 2.5 * t)) ** 3
    voice = sum(sine(f, 3.0, rate)[0] / (k + 1) for k, f in enumerate((180, 360, 720, 1450)))
    signal = (0.5 * envelope * voice / np.max(np.abs(voice)))[None, :].astype(np.float32)
    path = tmp_path_factory.mktemp("phone") / "speech.mp3"
    return write_audio(path, signal, rate=rate, codec="mp3")


def own_s16(cli: CLI, source: Path, rate: int) -> bytes:
    """voiceprep's own 16-bit decode at `rate`, mono."""
    result = cli("decode", source, "-r", str(rate), "-o", "-")
    assert result.code == 0, result.err
    return result.out


@pytest.mark.parametrize(
    ("name", "ffmpeg_format", "law"),
    [("out.ulaw", "mulaw", "ulaw"), ("out.pcmu", "mulaw", "ulaw"), ("out.al", "alaw", "alaw")],
)
def test_g711_outputs_decode_back_within_quantization(
    cli: CLI, speechlike: Path, name: str, ffmpeg_format: str, law: str
) -> None:
    result = cli("decode", speechlike, "-o", name)
    assert result.code == 0, result.err
    coded = (cli.cwd / name).read_bytes()
    reference = own_s16(cli, speechlike, 8000)
    assert len(coded) * 2 == len(reference)  # 8 kHz, one byte a sample
    heard = ffmpeg(
        "-f", ffmpeg_format, "-ar", "8000", "-ac", "1", "-i", "-", "-f", "s16le", "-", data=coded
    )
    assert snr_db(reference, heard) >= 30
    # ... and bit-exact with ffmpeg's own G.711 encoder over the same 16-bit audio
    assert coded == ffmpeg(
        "-f",
        "s16le",
        "-ar",
        "8000",
        "-ac",
        "1",
        "-i",
        "-",
        "-f",
        ffmpeg_format,
        "-",
        data=reference,
    )
    # the same resampling as ffmpeg's own: its 8 kHz decode is within a bit or two
    assert (
        snr_db(
            ffmpeg("-i", str(speechlike), "-ar", "8000", "-ac", "1", "-f", "s16le", "-"), reference
        )
        > 60
    )


@pytest.mark.parametrize(("suffix", "rate"), [(".sln", 8000), (".sln16", 16000), (".sln48", 48000)])
def test_sln_outputs_are_s16_at_the_suffix_rate(
    cli: CLI, speechlike: Path, suffix: str, rate: int
) -> None:
    assert cli("decode", speechlike, "-o", "out" + suffix).code == 0
    assert (cli.cwd / ("out" + suffix)).read_bytes() == own_s16(cli, speechlike, rate)


def test_g722_output_is_ffmpegs_g722_of_the_16k_audio(cli: CLI, speechlike: Path) -> None:
    assert cli("decode", speechlike, "-o", "out.g722").code == 0
    coded = (cli.cwd / "out.g722").read_bytes()
    reference = own_s16(cli, speechlike, 16000)
    assert coded == ffmpeg(
        "-f", "s16le", "-ar", "16000", "-ac", "1", "-i", "-", "-f", "g722", "-", data=reference
    )
    heard = ffmpeg("-f", "g722", "-i", "-", "-f", "s16le", "-", data=coded)
    assert abs(len(heard) - len(reference)) <= 4  # 3 s of 16 kHz audio


@pytest.mark.parametrize(
    ("law", "codec", "tag"), [("ulaw", "pcm_mulaw", "0x0007"), ("alaw", "pcm_alaw", "0x0006")]
)
def test_g711_wav_carries_the_format_tag(
    cli: CLI, speechlike: Path, law: str, codec: str, tag: str
) -> None:
    assert cli("decode", speechlike, "--sample-format", law, "-o", "out.wav").code == 0
    stream = ffprobe_stream(cli.cwd / "out.wav")
    assert (
        stream["codec_name"],
        stream["codec_tag"],
        stream["sample_rate"],
        stream["channels"],
    ) == (
        codec,
        tag,
        "8000",
        1,
    )
    heard = ffmpeg("-i", str(cli.cwd / "out.wav"), "-f", "s16le", "-")
    assert snr_db(own_s16(cli, speechlike, 8000), heard) >= 30


def test_library_decode_takes_g711(speechlike: Path) -> None:
    from voiceprep import decode

    coded = b"".join(decode(speechlike, rate=8000, sample_format="ulaw"))
    reference = b"".join(decode(speechlike, rate=8000))
    assert coded == ffmpeg(
        "-f", "s16le", "-ar", "8000", "-i", "-", "-f", "mulaw", "-", data=reference
    )


def test_phone_files_read_back_by_suffix(cli: CLI, speechlike: Path) -> None:
    for name in ("back.ulaw", "back.alaw", "back.sln16", "back.g722"):
        assert cli("decode", speechlike, "-o", name).code == 0
    info = json.loads(
        cli("info", "--json", "back.ulaw", "back.alaw", "back.sln16", "back.g722").out
    )
    assert [(i["codec"], i["rate"], i["channels"]) for i in info] == [
        ("pcm_mulaw", 8000, 1),
        ("pcm_alaw", 8000, 1),
        ("pcm_s16le", 16000, 1),
        ("adpcm_g722", 16000, 1),
    ]
    assert all(abs(i["duration"] - 3.0) < 0.01 for i in info)
    result = cli("decode", "back.ulaw", "-r", "8000", "-o", "-")
    expected = ffmpeg("-f", "mulaw", "-ar", "8000", "-i", "back.ulaw", "-f", "s16le", "-")
    assert result.code == 0 and result.out == expected


@pytest.mark.parametrize(
    ("args", "needs"),
    [
        (["-o", "x.ulaw", "-r", "16000"], "8000 Hz mono μ-law"),
        (["-o", "x.ulaw", "-c", "2"], "-c 2 contradicts"),
        (["-o", "x.alaw", "--sample-format", "ulaw"], "A-law"),
        (["-o", "x.sln16", "--format", "wav"], "16000 Hz mono s16le"),
        (["-o", "x.sln", "-r", "16000"], "8000 Hz mono s16le"),
        (["-o", "x.g722", "--sample-format", "alaw"], "G.722"),
        (["-o", "x.g722", "-r", "8000"], "G.722"),
        (["-o", "x.wav", "--sample-format", "mulaw"], "ulaw"),
    ],
)
def test_contradictions_are_one_line_exit_2_no_file(
    cli: CLI, speechlike: Path, args: list[str], needs: str
) -> None:
    result = cli.process("decode", speechlike, *args)
    assert result.code == 2
    assert len(result.err_lines) == 1 and needs in result.err, result.err
    assert "Traceback" not in result.err
    assert list(cli.cwd.iterdir()) == []


# --- say, cache get, exports (a real espeak-ng) --------------------------------------------


@pytest.fixture
def warmed(cli: CLI) -> Path:
    (cli.cwd / "menu.csv").write_text(
        "id,text,lang\nthanks,Thank you for calling.,\nsales,Press one for sales.,\n"
        "merci,Merci de votre appel.,fr\n",
        encoding="utf-8",
    )
    result = cli("warm", "menu.csv", "-b", "espeak", "--cache-dir", "cache")
    assert result.code == 0, result.err
    return cli.cwd / "cache"


def warm_export(cli: CLI, directory: str, *options: str) -> None:
    result = cli(
        "warm", "menu.csv", "-b", "espeak", "--cache-dir", "cache", "--export", directory, *options
    )
    assert result.code == 0, result.err


def cached_pcm(cli: CLI, text: str) -> bytes:
    result = cli("cache", "get", text, "-b", "espeak", "--cache-dir", "cache", "-o", "-")
    assert result.code == 0, result.err
    return result.out  # s16le, 24 kHz mono


def ffmpeg_8k(pcm24: bytes) -> bytes:
    return ffmpeg(
        "-f", "s16le", "-ar", "24000", "-i", "-", "-ar", "8000", "-f", "s16le", "-", data=pcm24
    )


def test_cache_get_and_say_write_phone_files(cli: CLI, warmed: Path) -> None:
    text = "Thank you for calling."
    reference = ffmpeg_8k(cached_pcm(cli, text))
    common = ["-b", "espeak", "--cache-dir", "cache"]
    assert cli("cache", "get", text, *common, "-o", "get.ulaw").code == 0
    assert cli("say", text, *common, "-o", "say.pcma").code == 0
    assert cli("cache", "get", text, *common, "--sample-format", "alaw", "-o", "get.wav").code == 0
    heard = ffmpeg("-f", "mulaw", "-ar", "8000", "-i", "get.ulaw", "-f", "s16le", "-")
    assert snr_db(reference, heard) >= 30
    heard = ffmpeg("-f", "alaw", "-ar", "8000", "-i", "say.pcma", "-f", "s16le", "-")
    assert snr_db(reference, heard) >= 30
    assert ffprobe_stream(cli.cwd / "get.wav")["codec_name"] == "pcm_alaw"
    for command in ("cache", "get"), ("say",):
        bad = cli.process(*command, text, *common, "-o", "bad.ulaw", "--format", "wav")
        assert bad.code == 2 and len(bad.err_lines) == 1 and not (cli.cwd / "bad.ulaw").exists()
        bad = cli.process(*command, text, *common, "-o", "bad.sln16", "--sample-format", "alaw")
        assert bad.code == 2 and "16000 Hz mono s16le" in bad.err
        assert not (cli.cwd / "bad.sln16").exists()


def test_asterisk_layout_writes_every_sibling_and_lists_it(cli: CLI, warmed: Path) -> None:
    warm_export(cli, "sounds", "--layout", "asterisk")
    sounds = cli.cwd / "sounds"
    files = sorted(str(p.relative_to(sounds)) for p in sounds.rglob("*") if p.is_file())
    expected = [
        f"en/{n}.{c}" for n in ("sales", "thanks") for c in ("alaw", "g722", "sln16", "ulaw", "wav")
    ]
    expected += [f"fr/merci.{c}" for c in ("alaw", "g722", "sln16", "ulaw", "wav")]
    assert files == sorted([*expected, "index.html", "manifest.json"])
    manifest = json.loads((sounds / "manifest.json").read_text())
    assert manifest["layout"] == "asterisk"
    assert sorted(e["file"] for e in manifest["entries"]) == sorted(expected)
    for entry in manifest["entries"]:
        assert entry["sha256"] == hashlib.sha256((sounds / entry["file"]).read_bytes()).hexdigest()
    reference = ffmpeg_8k(cached_pcm(cli, "Thank you for calling."))
    heard = ffmpeg(
        "-f", "mulaw", "-ar", "8000", "-i", str(sounds / "en/thanks.ulaw"), "-f", "s16le", "-"
    )
    assert snr_db(reference, heard) >= 30
    wav = ffprobe_stream(sounds / "en/thanks.wav")
    assert (wav["codec_name"], wav["sample_rate"]) == ("pcm_s16le", "8000")
    # 16 kHz s16: four bytes for each 8 kHz μ-law byte
    assert (sounds / "en/thanks.sln16").stat().st_size == 4 * (
        sounds / "en/thanks.ulaw"
    ).stat().st_size


def test_asterisk_codecs_choose_the_files(cli: CLI, warmed: Path) -> None:
    result = cli(
        "cache",
        "export",
        "--cache-dir",
        "cache",
        "--layout",
        "asterisk",
        "--codecs",
        "ulaw,sln",
        "--lang",
        "en_GB",
        "out",
    )
    assert result.code == 0, result.err
    names = sorted(p.name for p in (cli.cwd / "out/en_GB").iterdir())
    assert names == sorted(
        f"{n}.{c}"
        for n in ("merci-de-votre-appel", "press-one-for-sales", "thank-you-for-calling")
        for c in ("ulaw", "sln")
    )


def test_freeswitch_layout_has_a_folder_per_rate(cli: CLI, warmed: Path) -> None:
    warm_export(cli, "fs", "--layout", "freeswitch", "--lang", "en_US")
    manifest = json.loads((cli.cwd / "fs/manifest.json").read_text())
    for rate in (8000, 16000, 32000, 48000):
        path = cli.cwd / f"fs/en/us/en/{rate}/thanks.wav"
        assert ffprobe_stream(path)["sample_rate"] == str(rate)
        assert f"en/us/en/{rate}/thanks.wav" in [e["file"] for e in manifest["entries"]]
    assert (cli.cwd / "fs/fr/fr/en/8000/merci.wav").is_file()  # the list's own lang wins


def test_flat_export_in_g711(cli: CLI, warmed: Path) -> None:
    assert (
        cli("cache", "export", "--cache-dir", "cache", "--sample-format", "ulaw", "flat").code == 0
    )
    stream = ffprobe_stream(cli.cwd / "flat/thank-you-for-calling.wav")
    assert (stream["codec_name"], stream["sample_rate"]) == ("pcm_mulaw", "8000")


@pytest.mark.parametrize(
    "args",
    [
        ["--layout", "tree"],
        ["--layout", "asterisk", "--codecs", "ulaw,gsm"],
        ["--layout", "asterisk", "--sample-format", "ulaw"],
        ["--lang", "../etc"],
    ],
)
def test_bad_export_options_are_usage_errors(cli: CLI, warmed: Path, args: list[str]) -> None:
    result = cli.process("cache", "export", "--cache-dir", "cache", "out", *args)
    assert result.code == 2 and len(result.err_lines) == 1, result.err
    assert not (cli.cwd / "out").exists()
    result = cli.process(
        "warm", "menu.csv", "-b", "espeak", "--cache-dir", "cache", "--export", "out2", *args
    )
    assert result.code == 2 and len(result.err_lines) == 1, result.err
    assert not (cli.cwd / "out2").exists()


def test_a_bad_lang_in_a_phrase_list_names_the_line(cli: CLI) -> None:
    (cli.cwd / "bad.csv").write_text("text,lang\nHello.,../../x\n", encoding="utf-8")
    result = cli("warm", "bad.csv", "-b", "espeak", "--cache-dir", "cache")
    assert result.code == 2 and "bad.csv:2" in result.err and "lang" in result.err


# --- the telephony preset ------------------------------------------------------------------


def level_at(pcm: bytes, rate: int, freq: float) -> float:
    samples = np.frombuffer(pcm, "<i2").astype(np.float64)
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(20 * np.log10(spectrum[int(round(freq * len(samples) / rate))] + 1e-9))


def test_highpass_is_libavfilters_highpass_over_a_long_stream(cli: CLI) -> None:
    # 65 s: past the in-memory limit, so the filter runs chunk by chunk across passes
    signal = (0.3 * sine(50, 65.0, 8000) + 0.3 * sine(1000, 65.0, 8000)).astype(np.float32)
    write_audio(cli.cwd / "hum.wav", signal, rate=8000)
    result = cli("decode", "hum.wav", "-r", "8000", "--highpass", "100", "-o", "-")
    assert result.code == 0, result.err
    expected = ffmpeg("-i", "hum.wav", "-af", "highpass=f=100:poles=2", "-f", "s16le", "-")
    assert snr_db(expected, result.out) > 60


def test_telephony_preset_band_limits_levels_and_writes_ulaw(cli: CLI) -> None:
    signal = (0.05 * sine(50, 4.0, 16000) + 0.05 * sine(1000, 4.0, 16000)).astype(np.float32)
    write_audio(cli.cwd / "hum.wav", signal, rate=16000)
    result = cli("decode", "hum.wav", "--telephony")
    assert result.code == 0, result.err
    assert not (cli.cwd / "hum.pcm").exists()
    heard = ffmpeg("-f", "mulaw", "-ar", "8000", "-i", "hum.ulaw", "-f", "s16le", "-")
    assert len(heard) == 2 * 4 * 8000
    before = level_at(own_s16(cli, cli.cwd / "hum.wav", 8000), 8000, 50) - level_at(
        own_s16(cli, cli.cwd / "hum.wav", 8000), 8000, 1000
    )
    after = level_at(heard, 8000, 50) - level_at(heard, 8000, 1000)
    assert before - after > 10  # a 2nd-order high-pass at 100 Hz: about -12 dB at 50 Hz
    integrated, _ = ffmpeg_loudness(np.frombuffer(heard, "<i2") / 32768.0, 8000)
    assert abs(integrated - -20.0) <= 1.0


def test_telephony_from_the_config_file_and_a_suffix_wins(cli: CLI, speechlike: Path) -> None:
    (cli.cwd / "voiceprep.toml").write_text("[process]\ntelephony = true\n", encoding="utf-8")
    assert cli("decode", speechlike, "-o", "tel.wav").code == 0
    assert ffprobe_stream(cli.cwd / "tel.wav")["codec_name"] == "pcm_mulaw"
    assert cli("decode", speechlike, "-o", "tel.sln16").code == 0
    assert (cli.cwd / "tel.sln16").stat().st_size == 3 * 16000 * 2


def test_warm_with_the_preset_exports_ulaw_prompts_at_the_phone_level(
    cli: CLI, warmed: Path
) -> None:
    warm_export(cli, "tel", "--telephony")
    stream = ffprobe_stream(cli.cwd / "tel/thanks.wav")
    assert (stream["codec_name"], stream["sample_rate"]) == ("pcm_mulaw", "8000")
    heard = ffmpeg("-i", str(cli.cwd / "tel/thanks.wav"), "-f", "s16le", "-")
    integrated, peak = ffmpeg_loudness(np.frombuffer(heard, "<i2") / 32768.0, 8000)
    assert abs(integrated - -20.0) <= 1.0 and peak <= -2.0
