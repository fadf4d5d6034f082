"""Phrase lists in every format, and every way they can be malformed."""

from __future__ import annotations

import io
import json
import tracemalloc
from pathlib import Path

import pytest

from voiceprep.cli import main
from voiceprep.errors import InputError, PhraseListError
from voiceprep.phrases import Phrase, read_phrase_list, read_phrase_lists, sniff_format


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def texts(phrases: list[Phrase]) -> list[str]:
    return [p.text for p in phrases]


# --- each format ----------------------------------------------------------------------


def test_txt_skips_blank_and_comment_lines_and_trims(tmp_path: Path) -> None:
    path = write(tmp_path, "p.txt", "# greetings\n  Hello there.  \n\n\tOne moment.\n#x\n")
    phrases = read_phrase_list(path)
    assert texts(phrases) == ["Hello there.", "One moment."]
    assert [p.source for p in phrases] == [f"{path}:2", f"{path}:4"]
    assert all(p.voice is None and p.id is None for p in phrases)


def test_txt_tolerates_bom_and_crlf(tmp_path: Path) -> None:
    path = write(tmp_path, "p.txt", b"\xef\xbb\xbfBonjour\r\nAu revoir\r\n")
    phrases = read_phrase_list(path)
    assert texts(phrases) == ["Bonjour", "Au revoir"]
    assert phrases[1].source.endswith(":2")


def test_unknown_suffix_reads_as_txt(tmp_path: Path) -> None:
    path = write(tmp_path, "prompts.list", "Yes\nNo\n")
    assert texts(read_phrase_list(path)) == ["Yes", "No"]


def test_csv_with_voice_id_and_extra_columns(tmp_path: Path) -> None:
    content = 'notes,ID,Text,voice\nx,greet,"Hello, caller.",\n\ny,menu,"Press 1\nor 2",amy\n'
    path = write(tmp_path, "p.csv", content)
    phrases = read_phrase_list(path)
    assert phrases == [
        Phrase("Hello, caller.", None, "greet", str(path), 2),
        Phrase("Press 1\nor 2", "amy", "menu", str(path), 4),
    ]


def test_tsv(tmp_path: Path) -> None:
    path = write(tmp_path, "p.tsv", "text\tid\nGoodbye.\tbye\nThanks, bye\t\n")
    phrases = read_phrase_list(path)
    assert texts(phrases) == ["Goodbye.", "Thanks, bye"]
    assert [p.id for p in phrases] == ["bye", None]


def test_json_strings_and_objects_know_their_lines(tmp_path: Path) -> None:
    content = '[\n  "One moment.",\n  {"text": "Hold on", "id": 7, "voice": "v2"},\n\n  "Bye"\n]'
    path = write(tmp_path, "p.json", content)
    phrases = read_phrase_list(path)
    assert phrases == [
        Phrase("One moment.", None, None, str(path), 2),
        Phrase("Hold on", "v2", "7", str(path), 3),
        Phrase("Bye", None, None, str(path), 5),
    ]


def test_jsonl(tmp_path: Path) -> None:
    path = write(tmp_path, "p.jsonl", '"plain"\n\n{"text": "obj", "id": "o"}\n')
    phrases = read_phrase_list(path)
    assert phrases == [
        Phrase("plain", origin=str(path), line=1),
        Phrase("obj", None, "o", str(path), 3),
    ]


@pytest.mark.parametrize("suffix", ["txt", "jsonl", "csv"])
def test_line_lists_count_every_kind_of_newline_as_an_editor_does(
    tmp_path: Path, suffix: str
) -> None:
    """Files in a line format are read a line at a time: CR LF, a lone CR and LF are each
    one newline, as when the whole file was decoded at once; from stdin too."""
    lines = {
        "txt": ["One", "Two", "", "Three", "Four"],
        "jsonl": ['{"text": "One"}', '"Two"', "", '"Three"', '{"text": "Four"}'],
        "csv": ["id,text", "1,One", "2,Two", "", "3,Three", "4,Four"],
    }[suffix]
    newlines = ["\r\n", "\n", "\r", "\r\n", "\r", "\n"]  # never a CR then an LF
    content = "".join(line + newline for line, newline in zip(lines, newlines, strict=False))
    path = write(tmp_path, f"p.{suffix}", "\ufeff" + content)
    first = 2 if suffix == "csv" else 1
    expected = [("One", first), ("Two", first + 1), ("Three", first + 3), ("Four", first + 4)]
    assert [(p.text, p.line) for p in read_phrase_list(path)] == expected
    piped = read_phrase_list("-", stdin=io.BytesIO(content.encode()))
    assert [(p.text, p.line) for p in piped] == expected


@pytest.mark.parametrize(
    ("suffix", "bad_line", "message"),
    [
        ("txt", "caf\xe9 au lait", r"long\.txt:20001: invalid UTF-8 \(byte 0xe9 at column 4\)"),
        ("jsonl", '"caf\xe9"', r"long\.jsonl:20001: invalid UTF-8 \(byte 0xe9 at column 5\)"),
    ],
)
def test_invalid_utf8_deep_in_a_long_line_list_names_its_line_and_column(
    tmp_path: Path, suffix: str, bad_line: str, message: str
) -> None:
    good = "Hello" if suffix == "txt" else '"Hello"'
    content = (good + "\r\n") * 20_000 + bad_line + "\n"
    path = write(tmp_path, f"long.{suffix}", content.encode("latin-1"))
    with pytest.raises(PhraseListError, match=message):
        read_phrase_list(path)


def test_a_jsonl_error_column_is_counted_on_its_own_line(tmp_path: Path) -> None:
    path = write(tmp_path, "p.jsonl", '"a"\r\n{"text": \r\n')
    with pytest.raises(PhraseListError, match=r"p\.jsonl:2: invalid JSON: .* \(column 10\)"):
        read_phrase_list(path)


@pytest.mark.parametrize(
    ("content", "fmt"),
    [
        ('["a", "b"]', "json"),
        ('{"text": "a"}\n', "jsonl"),
        ("text,id\na,1\n", "csv"),
        ("id\ttext\n1\ta\n", "tsv"),
        ("text, please repeat that\n", "txt"),
        ("Hello\n", "txt"),
    ],
)
def test_stdin_format_is_sniffed(content: str, fmt: str) -> None:
    assert sniff_format(content) == fmt
    phrases = read_phrase_list("-", stdin=io.BytesIO(content.encode()))
    assert phrases and all(p.source.startswith("<stdin>:") for p in phrases)


def test_duplicates_kept_once_across_files_first_wins(tmp_path: Path) -> None:
    a = write(tmp_path, "a.txt", "Hello  world\nBye\n")
    b = write(tmp_path, "b.json", json.dumps(["Hello world", {"text": "Bye", "voice": "v2"}]))
    phrases = read_phrase_lists([a, b])
    assert [(p.text, p.voice) for p in phrases] == [
        ("Hello  world", None),
        ("Bye", None),
        ("Bye", "v2"),
    ]
    assert phrases[0].source == f"{a}:1"


def test_one_id_for_two_phrases_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "p.csv", "id,text\nx,Hello\nx,Goodbye\n")
    with pytest.raises(PhraseListError, match=r"p\.csv:3: id 'x' is already used at .*p\.csv:2"):
        read_phrase_lists([path])


# --- malformed lists ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("bad.txt", b"fine\nalso fine\nbad \xff byte\n", r"bad\.txt:3: invalid UTF-8"),
        ("bad.csv", b"id,text\n1,ok\n2,caf\xe9\n", r"bad\.csv:3: invalid UTF-8"),
        ("nocol.csv", "id,phrase\n1,Hello\n", r"nocol\.csv:1: missing required column 'text'"),
        ("nocol.tsv", "\nvoice\tid\n", r"nocol\.tsv:2: missing required column 'text'"),
        ("empty.csv", "text,id\n,only-an-id\n", r"empty\.csv:2: empty text"),
        ("quote.csv", 'text\n"unterminated\n', r"quote\.csv:\d+: malformed row"),
        ("bad.json", '[\n  "a",\n  "b"\n  "c"\n]', r"bad\.json:4: invalid JSON"),
        ("dict.json", '{"text": "a"}', r"dict\.json:1: expected a JSON list"),
        ("num.json", '[\n"a",\n3\n]', r"num\.json:3: expected a string or an object"),
        ("notext.json", '[{"id": "x"}]', r"notext\.json:1: object has no 'text' key"),
        ("bad.jsonl", '"a"\n{"text": }\n', r"bad\.jsonl:2: invalid JSON"),
        ("badvoice.jsonl", '{"text": "a", "voice": ["x"]}\n', r"badvoice\.jsonl:1: 'voice'"),
    ],
)
def test_malformed_list_names_file_and_line(
    tmp_path: Path, name: str, content: str | bytes, message: str
) -> None:
    path = write(tmp_path, name, content)
    with pytest.raises(PhraseListError, match=message):
        read_phrase_list(path)


def test_missing_file_and_directory_are_input_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        read_phrase_list(tmp_path / "nope.txt")
    with pytest.raises(InputError, match="is a directory"):
        read_phrase_list(tmp_path)


@pytest.mark.parametrize(
    ("name", "content", "where"),
    [
        ("bad.txt", b"ok\n\xc3\x28\n", "bad.txt:2: invalid UTF-8"),
        ("bad.json", b'["a",]', "bad.json:1: invalid JSON"),
        ("bad.csv", b"voice,id\nv,1\n", "bad.csv:1: missing required column 'text'"),
    ],
)
def test_cli_malformed_list_is_one_line_exit_2(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
    content: bytes,
    where: str,
) -> None:
    path = write(tmp_path, name, content)
    with pytest.raises(SystemExit) as exit_info:
        main(["warm", str(path), "--cache-dir", str(tmp_path / "cache"), "--dry-run"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("voiceprep: error: ")
    assert where in err


def test_cli_missing_list_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["warm", str(tmp_path / "missing.txt"), "--cache-dir", str(tmp_path / "c")])
    assert exit_info.value.code == 2
    assert f"{tmp_path / 'missing.txt'}: no such file" in capsys.readouterr().err


@pytest.mark.parametrize("suffix", ["txt", "json", "jsonl"])
def test_a_long_list_takes_memory_in_proportion_to_its_phrases_only(
    tmp_path: Path, suffix: str
) -> None:
    """100,000 phrases: what reading holds at its peak is the phrases, about 160 bytes each
    for .txt, and for a .json list its text too (line formats are read a line at a time;
    holding the decoded file took 300 bytes a phrase for .txt, every line split out beside
    it 530)."""
    count = 100_000
    texts_ = [f"Your reference number is {i}; please hold." for i in range(count)]
    if suffix == "txt":
        content = "".join(f"{t}\n" for t in texts_)
    elif suffix == "jsonl":
        content = "".join(f"{json.dumps({'text': t})}\n" for t in texts_)
    else:
        content = "[\n" + ",\n".join(json.dumps(t) for t in texts_) + "\n]\n"
    path = write(tmp_path, f"long.{suffix}", content)
    tracemalloc.start()
    try:
        phrases = read_phrase_lists([path])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(phrases) == count and phrases[-1].source == f"{path}:{count + (suffix == 'json')}"
    whole = len(content) if suffix == "json" else 0
    assert peak < whole + count * 185, peak / count


def test_a_bad_item_deep_in_a_long_json_list_names_its_line(tmp_path: Path) -> None:
    content = "[\n" + ",\n".join(['"a phrase"'] * 150_000 + ["3"]) + "\n]\n"
    path = write(tmp_path, "long.json", content)
    with pytest.raises(PhraseListError, match=r"long\.json:150002: expected a string"):
        read_phrase_list(path)
