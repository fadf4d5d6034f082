"""export_entries: cached phrases as playable WAVs plus a manifest (cache export, warm --export)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from audiogen import dominant_frequency, pcm_to_array
from audiogen import sine_pcm as tone

from voiceprep.cache import AudioCache
from voiceprep.decoding import decode, probe
from voiceprep.errors import VoiceprepError
from voiceprep.export import ExportItem, assign_file_names, export_entries, slugify
from voiceprep.keys import BackendIdentity, cache_key

IDENTITY = BackendIdentity("espeak", voice="en")


def put(cache: AudioCache, text: str, freq: float, *, rate: int = 24000, channels: int = 1) -> str:
    key = cache_key(IDENTITY, text, rate=rate, channels=channels)
    cache.put(
        key,
        tone(freq, rate=rate, channels=channels),
        rate=rate,
        channels=channels,
        text=text,
        identity=IDENTITY,
    )
    return key


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[AudioCache]:
    with AudioCache(tmp_path / "cache") as opened:
        yield opened


def test_slugs_are_ascii_and_never_empty() -> None:
    assert slugify("One moment, please.") == "one-moment-please"
    assert slugify("  Crème brûlée!  ") == "creme-brulee"
    assert slugify("…") == "phrase"
    assert len(slugify("word " * 50)) <= 64


def test_export_writes_playable_wavs_and_a_manifest_with_their_sha256(
    cache: AudioCache, tmp_path: Path
) -> None:
    hold = put(cache, "Please hold.", 440)
    bye = put(cache, "Goodbye!", 660, rate=16000, channels=2)
    out = tmp_path / "out"
    report = export_entries(
        cache,
        [ExportItem(hold, "Please hold.", id="hold"), ExportItem(bye, "Goodbye!")],
        out,
    )
    assert report.ok and len(report.written) == 2
    assert sorted(p.name for p in out.iterdir()) == [
        "goodbye.wav",
        "hold.wav",
        "index.html",
        "manifest.json",
    ]

    info = probe(out / "goodbye.wav")
    assert (info.rate, info.channels, info.codec) == (16000, 2, "pcm_s16le")
    pcm = b"".join(decode(out / "hold.wav", rate=24000, channels=1))
    assert abs(dominant_frequency(pcm_to_array(pcm, 1)[0], 24000) - 440) < 5

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["version"] == 1
    rows = {row["file"]: row for row in manifest["entries"]}
    assert rows["hold.wav"]["text"] == "Please hold." and rows["hold.wav"]["id"] == "hold"
    assert rows["hold.wav"]["key"] == hold
    assert rows["goodbye.wav"]["id"] is None
    assert rows["goodbye.wav"]["duration"] == pytest.approx(0.5)
    for name, row in rows.items():
        assert row["sha256"] == hashlib.sha256((out / name).read_bytes()).hexdigest()
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_colliding_names_get_key_suffixes_whatever_the_order(
    cache: AudioCache, tmp_path: Path
) -> None:
    a = put(cache, "Yes!", 300)
    b = put(cache, "yes?", 500)
    c = put(cache, "No.", 700)
    items = [ExportItem(a, "Yes!"), ExportItem(b, "yes?"), ExportItem(c, "No.")]
    forward = {item.key: name for item, name in assign_file_names(items)}
    backward = {item.key: name for item, name in assign_file_names(items[::-1])}
    assert forward == backward
    assert forward == {a: f"yes-{a[:8]}", b: f"yes-{b[:8]}", c: "no"}  # the suffix: per layout
    report = export_entries(cache, items, tmp_path / "out")
    assert len(report.written) == 3 and len(list((tmp_path / "out").glob("*.wav"))) == 3


def test_ids_cannot_escape_the_directory(cache: AudioCache, tmp_path: Path) -> None:
    key = put(cache, "Sneaky", 440)
    out = tmp_path / "out"
    report = export_entries(cache, [ExportItem(key, "Sneaky", id="../../etc/passwd")], out)
    (written,) = report.written
    assert "/" not in written.file and not written.file.startswith(".")
    assert (out / written.file).is_file()
    assert not (tmp_path / "etc").exists()


def test_missing_and_damaged_entries_are_reported_not_written(
    cache: AudioCache, tmp_path: Path
) -> None:
    good = put(cache, "Fine", 440)
    damaged = put(cache, "Broken", 550)
    path = cache.wav_path(damaged)
    blob = bytearray(path.read_bytes())
    blob[200] ^= 0x55
    path.write_bytes(bytes(blob))
    absent = cache_key(IDENTITY, "Never cached", rate=24000, channels=1)
    items = [ExportItem(good, "Fine"), ExportItem(damaged, "Broken"), ExportItem(absent, "Never")]
    report = export_entries(cache, items, tmp_path / "out")
    assert not report.ok
    assert [m.text for m in report.written] == ["Fine"]
    assert [i.text for i in report.missing] == ["Never"]
    assert [i.text for i, _ in report.failed] == ["Broken"]
    assert "sha256" in report.failed[0][1]
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert [row["text"] for row in manifest["entries"]] == ["Fine"]


def test_the_same_phrase_under_two_ids_gets_two_files(cache: AudioCache, tmp_path: Path) -> None:
    key = put(cache, "Hello", 440)
    items = [ExportItem(key, "Hello", id="greeting"), ExportItem(key, "Hello", id="hello-again")]
    report = export_entries(cache, items, tmp_path / "out")
    assert sorted(m.file for m in report.written) == ["greeting.wav", "hello-again.wav"]


def test_what_is_not_a_regular_file_is_never_replaced(cache: AudioCache, tmp_path: Path) -> None:
    """A FIFO, a device node or a symlink where an export file goes is left alone (CI runs
    as root: replacing it would follow no permission check): that phrase fails, naming
    it; a manifest.json that is not a regular file fails the export."""

    texts = ("Fifo.", "Device.", "Link.")
    items = [ExportItem(put(cache, text, 300 + 100 * i), text) for i, text in enumerate(texts)]
    out = tmp_path / "out"
    out.mkdir()
    os.mkfifo(out / "fifo.wav")
    os.mknod(out / "device.wav", 0o600 | 0o020000, os.makedev(1, 3))  # like /dev/null
    victim = tmp_path / "victim"
    victim.write_text("not yours")
    (out / "link.wav").symlink_to(victim)
    report = export_entries(cache, items, out)
    assert report.written == []
    assert sorted(item.text for item, _ in report.failed) == ["Device.", "Fifo.", "Link."]
    assert all("not a regular file" in reason for _, reason in report.failed)
    assert (out / "fifo.wav").is_fifo() and (out / "device.wav").is_char_device()
    assert (out / "link.wav").is_symlink() and victim.read_text() == "not yours"
    assert json.loads((out / "manifest.json").read_text())["entries"] == []

    (out / "manifest.json").unlink()
    (out / "manifest.json").symlink_to(victim)
    with pytest.raises(VoiceprepError, match="manifest.json: not a regular file"):
        export_entries(cache, items[:0], out)
    assert victim.read_text() == "not yours" and (out / "manifest.json").is_symlink()
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_without_the_review_page_an_index_html_is_left_alone(
    cache: AudioCache, tmp_path: Path
) -> None:
    out = tmp_path / "site"
    out.mkdir()
    (out / "index.html").write_text("<p>the user's own page</p>")
    hold = put(cache, "Please hold.", 440)
    assert export_entries(cache, [ExportItem(hold, "Please hold.")], out, review=False).ok
    assert (out / "index.html").read_text() == "<p>the user's own page</p>"
    assert (out / "manifest.json").exists()
