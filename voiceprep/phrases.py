"""Phrase lists: the prompts `voiceprep warm` prebuilds.

Formats, chosen by the file's suffix:

- `.txt` (and any other suffix): one phrase a line; blank lines and lines starting with
  `#` are skipped; surrounding whitespace is trimmed.
- `.csv` / `.tsv`: a header row naming the columns; `text` is required, `voice`, `id`
  and `lang` are optional, other columns are ignored.
- `.json`: a list of strings, or of objects with `text` (and optionally `voice`, `id`,
  `lang`).
- `.jsonl`: one JSON string or object per line.
- `-`: standard input. It is read as `.txt` unless its first character says otherwise:
  `[` means JSON, `{` means JSON Lines, and a first line that is a header of known column
  names (`text`, `voice`, `id`) separated by tabs or commas means TSV or CSV.

Files are UTF-8 (a BOM is tolerated). Every problem raises `PhraseListError` naming the
file and line. Duplicates (same normalized text and voice) are kept once, the first wins.
Line formats are read from the file a line at a time; `read_phrase_lists` returns a
`PhraseList`, which holds a long list as columns rather than an object per phrase.
"""

from __future__ import annotations

import bisect
import csv
import json
import re
import sys
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, overload

from voiceprep.audio_format import STDIO
from voiceprep.errors import InputError, PhraseListError, UsageError
from voiceprep.keys import check_unicode, normalize_text

FORMATS = ("txt", "csv", "tsv", "json", "jsonl")
_SUFFIX_FORMAT = {".csv": "csv", ".tsv": "tsv", ".json": "json", ".jsonl": "jsonl"}
_COLUMNS = ("text", "voice", "id", "lang")
# A language tag as sound folders name it: en, en_GB, pt-BR (no path can hide in it).
LANG_TAG = re.compile(r"[A-Za-z]{2,8}([_-][A-Za-z0-9]{1,8}){0,2}")


@dataclass(frozen=True, slots=True)
class Phrase:
    """One prompt to synthesize, with where it came from (for messages).

    Small on purpose (slots, the list's name shared, the line a number): a list holds one
    per phrase, and lists run to a million phrases.
    """

    text: str
    voice: str | None = None
    id: str | None = None
    origin: str = ""  # the list's name
    line: int = 0
    lang: str | None = None  # the sound folder it is exported into (None: --lang)

    @property
    def source(self) -> str:
        """ "file:line", for messages."""
        return f"{self.origin}:{self.line}" if self.line else self.origin

    @property
    def normalized(self) -> str:
        return normalize_text(self.text)


def read_phrase_lists(paths: Iterable[str | Path], *, stdin: IO[bytes] | None = None) -> PhraseList:
    """Every phrase of every list, in order, duplicates removed (the first one wins).

    Raises PhraseListError when two different phrases claim the same `id` (their exported
    files would overwrite each other).
    """
    seen: dict[str | None, set[str]] = {}  # voice → normalized texts
    ids: set[str | tuple[str, str]] = set()  # id, or (lang, id)
    result = PhraseList()
    for path in paths:
        for phrase in iter_phrase_list(path, stdin=stdin):
            normalized = phrase.normalized
            if normalized == phrase.text:
                normalized = phrase.text  # one string for both (most phrases)
            texts = seen.setdefault(phrase.voice, set())
            if normalized in texts:
                continue
            texts.add(normalized)
            if phrase.id is not None:
                # the same id in two languages: two sound folders, no clash
                claim = phrase.id if phrase.lang is None else (phrase.lang, phrase.id)
                if claim in ids:
                    other = next(p for p in result if (p.id, p.lang) == (phrase.id, phrase.lang))
                    raise PhraseListError(
                        f"{phrase.source}: id {phrase.id!r} is already used at {other.source}"
                    )
                ids.add(claim)
            result.append(phrase)
    return result


class PhraseList(Sequence[Phrase]):
    """Phrases in order, held as columns: a list of texts, the line numbers in an array,
    each list's name once per run of its phrases, (voice, lang) as one tuple shared by the
    phrases that have the same, ids in a column made at the first one. A `Phrase` is made
    when one is read.

    A list of a million phrases costs its texts and about 30 bytes a phrase, not an object
    per phrase (issue #26: warm's plan keeps this list, not the phrases).
    """

    __slots__ = ("_extras", "_ids", "_lines", "_names", "_shared", "_starts", "_texts")

    def __init__(self, phrases: Iterable[Phrase] = ()) -> None:
        self._texts: list[str] = []
        self._lines = array("Q")
        self._extras: list[tuple[str | None, str | None] | None] = []  # (voice, lang)
        self._ids: list[str | None] | None = None  # made at the first id
        self._starts: list[int] = []  # the first row of each run of phrases of one list
        self._names: list[str] = []  # and that list's name
        self._shared: dict[Any, Any] = {}  # one tuple for equal (voice, lang)
        for phrase in phrases:
            self.append(phrase)

    def append(self, phrase: Phrase) -> None:
        if not self._names or self._names[-1] != phrase.origin:
            self._starts.append(len(self._texts))
            self._names.append(phrase.origin)
        if phrase.id is not None and self._ids is None:
            self._ids = [None] * len(self._texts)
        if self._ids is not None:
            self._ids.append(phrase.id)
        self._texts.append(phrase.text)
        self._lines.append(phrase.line)
        extras = None
        if phrase.voice is not None or phrase.lang is not None:
            extras = (phrase.voice, phrase.lang)
            extras = self._shared.setdefault(extras, extras)
        self._extras.append(extras)

    def text(self, row: int) -> str:
        """The text of row `row`, without making its `Phrase`."""
        return self._texts[row]

    def voice(self, row: int) -> str | None:
        extras = self._extras[row]
        return extras[0] if extras is not None else None

    def __len__(self) -> int:
        return len(self._texts)

    @overload
    def __getitem__(self, index: int) -> Phrase: ...
    @overload
    def __getitem__(self, index: slice) -> list[Phrase]: ...
    def __getitem__(self, index: int | slice) -> Phrase | list[Phrase]:
        if isinstance(index, slice):
            return [self[row] for row in range(len(self))[index]]
        text, line, extras = self._texts[index], self._lines[index], self._extras[index]
        run = bisect.bisect_right(self._starts, index % len(self)) - 1  # the list it is from
        voice, lang = extras or (None, None)
        id_ = self._ids[index] if self._ids is not None else None
        return Phrase(text, voice, id_, self._names[run], line, lang)


def read_phrase_list(path: str | Path, *, stdin: IO[bytes] | None = None) -> list[Phrase]:
    """The phrases of one list (duplicates kept); `-` reads standard input."""
    return list(iter_phrase_list(path, stdin=stdin))


def iter_phrase_list(path: str | Path, *, stdin: IO[bytes] | None = None) -> Iterator[Phrase]:
    """The phrases of one list one by one, as they are parsed (a problem raises when it is
    reached); `-` reads standard input."""
    name = str(path)
    if name == STDIO:
        name = "<stdin>"
        text = _decode_utf8((stdin or sys.stdin.buffer).read(), name)
        return parse_phrases(text, sniff_format(text), name)
    fmt = format_for(path)
    if fmt == "json":  # decoded item by item, from the whole text
        return _parse_json(_decode_utf8(_read_file(Path(path)), name), name)
    # Line formats are read a line at a time: the file is never in memory as a whole.
    return _parse_lines(_file_lines(Path(path), name), fmt, name)


def format_for(path: str | Path) -> str:
    return _SUFFIX_FORMAT.get(Path(path).suffix.lower(), "txt")


def sniff_format(text: str) -> str:
    """The format of a list read from stdin, from its first non-blank character or line."""
    stripped = text.lstrip()
    if stripped.startswith("["):
        return "json"
    if stripped.startswith("{"):
        return "jsonl"
    first_line = stripped.split("\n", 1)[0].strip().lower()
    for fmt, sep in (("tsv", "\t"), ("csv", ",")):
        names = [name.strip().strip('"') for name in first_line.split(sep)]
        if len(names) > 1 and "text" in names and all(n in _COLUMNS for n in names):
            return fmt
    return "txt"


def parse_phrases(text: str, fmt: str, name: str) -> Iterator[Phrase]:
    """Phrases from decoded text in format `fmt`; `name` is used in messages."""
    if fmt == "json":
        return _parse_json(text, name)
    if fmt in FORMATS:
        return _parse_lines(_text_lines(text), fmt, name)
    raise ValueError(f"unknown phrase-list format {fmt!r}")


def _parse_lines(lines: Iterable[str], fmt: str, name: str) -> Iterator[Phrase]:
    """Phrases from the lines (newlines kept) of a list in a line format."""
    if fmt == "txt":
        return _parse_txt(lines, name)
    if fmt == "jsonl":
        return _parse_jsonl(lines, name)
    return _parse_table(lines, name, "," if fmt == "csv" else "\t")


# --- reading --------------------------------------------------------------------------


def _read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise _read_error(path, exc) from None


def _read_error(path: Path, exc: OSError) -> InputError:
    if isinstance(exc, FileNotFoundError):
        return InputError(f"{path}: no such file")
    if isinstance(exc, IsADirectoryError):
        return InputError(f"{path}: is a directory")
    if isinstance(exc, PermissionError):
        return InputError(f"{path}: permission denied")
    return InputError(f"{path}: cannot read: {exc.strerror}")


def _file_lines(path: Path, name: str) -> Iterator[str]:
    """The lines of a UTF-8 file (newlines kept), one at a time. Opened at once, so a
    missing file raises here; newlines are universal, as `_decode_utf8` makes them."""
    try:
        handle = path.open(encoding="utf-8-sig", newline=None)
    except OSError as exc:
        raise _read_error(path, exc) from None
    return _read_lines(handle, path, name)


def _read_lines(handle: IO[str], path: Path, name: str) -> Iterator[str]:
    with handle:
        try:
            yield from handle
        except UnicodeDecodeError:
            _decode_utf8(_read_file(path), name)  # raises, naming the line and column
            raise PhraseListError(f"{name}: invalid UTF-8") from None  # changed meanwhile
        except OSError as exc:
            raise _read_error(path, exc) from None


def _decode_utf8(data: bytes, name: str) -> str:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        bad = data[exc.start : exc.start + 1].hex()
        raise PhraseListError(
            f"{name}:{line}: invalid UTF-8 (byte 0x{bad} at column {column})"
        ) from None
    # Universal newlines, so line numbers agree with what an editor shows.
    return text.replace("\r\n", "\n").replace("\r", "\n")


# --- formats --------------------------------------------------------------------------


def _text_lines(text: str) -> Iterator[str]:
    """The lines (newlines kept) of text with "\n" newlines, without a list of them all."""
    start = 0
    while start < len(text):
        end = text.find("\n", start) + 1 or len(text)
        yield text[start:end]
        start = end


def _parse_txt(lines: Iterable[str], name: str) -> Iterator[Phrase]:
    for number, line in enumerate(lines, 1):
        phrase = line.strip()
        if phrase and not phrase.startswith("#"):
            yield Phrase(phrase, origin=name, line=number)


def _parse_table(lines: Iterable[str], name: str, delimiter: str) -> Iterator[Phrase]:
    reader = csv.reader(lines, delimiter=delimiter, strict=True)
    header: list[str] | None = None
    columns: dict[str, int] = {}
    last_line = 0
    try:
        for row in reader:
            first_line, last_line = last_line + 1, reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            if header is None:
                header = [cell.strip().lower() for cell in row]
                columns = {col: header.index(col) for col in _COLUMNS if col in header}
                if "text" not in columns:
                    found = ", ".join(repr(h) for h in header)
                    raise PhraseListError(
                        f"{name}:{first_line}: missing required column 'text' (header has {found})"
                    )
                continue
            fields = {
                col: row[index].strip() if index < len(row) else ""
                for col, index in columns.items()
            }
            yield _phrase_from_fields(fields, name, first_line)
    except csv.Error as exc:
        raise PhraseListError(f"{name}:{reader.line_num}: malformed row: {exc}") from None
    if header is None:
        raise PhraseListError(f"{name}:1: no header row (expected a 'text' column)")


def _phrase_from_fields(fields: dict[str, Any], name: str, line: int) -> Phrase:
    source = f"{name}:{line}"
    text = fields.get("text")
    if not isinstance(text, str):
        raise PhraseListError(f"{source}: 'text' must be a string")
    for field in ("text", "voice", "id", "lang"):
        value = fields.get(field)
        if isinstance(value, str):
            try:
                check_unicode(value, field)
            except UsageError as exc:  # a lone surrogate, e.g. "\ud800" in JSON
                raise PhraseListError(f"{source}: {exc}") from None
    if not normalize_text(text):
        raise PhraseListError(f"{source}: empty text")
    return Phrase(
        text.strip(),
        voice=_optional_str(fields.get("voice"), "voice", source),
        id=_optional_str(fields.get("id"), "id", source),
        origin=name,
        line=line,
        lang=_lang(fields.get("lang"), source),
    )


def _lang(value: Any, source: str) -> str | None:
    lang = _optional_str(value, "lang", source)
    if lang is not None and not LANG_TAG.fullmatch(lang):
        raise PhraseListError(f"{source}: 'lang' {lang!r} is not a language tag (en, en_GB)")
    return lang


def _optional_str(value: Any, field: str, source: str) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise PhraseListError(f"{source}: {field!r} must be a string")
    return str(value).strip() or None


def _phrase_from_json(item: Any, name: str, line: int) -> Phrase:
    if isinstance(item, str):
        return _phrase_from_fields({"text": item}, name, line)
    if isinstance(item, dict):
        if "text" not in item:
            raise PhraseListError(f"{name}:{line}: object has no 'text' key")
        return _phrase_from_fields(item, name, line)
    raise PhraseListError(
        f"{name}:{line}: expected a string or an object with 'text', got {type(item).__name__}"
    )


def _json_error(name: str, exc: json.JSONDecodeError) -> PhraseListError:
    return PhraseListError(f"{name}:{exc.lineno}: invalid JSON: {exc.msg} (column {exc.colno})")


_SPACE = re.compile(r"[ \t\n\r]*")  # JSON's whitespace


def _skip_space(text: str, pos: int) -> int:
    match = _SPACE.match(text, pos)
    return match.end() if match else pos


def _parse_json(text: str, name: str) -> Iterator[Phrase]:
    """A JSON list, decoded item by item (never the whole document at once), each phrase
    with its line: counted on from the previous item's, so the walk is linear."""
    pos = _skip_space(text, 0)
    if not text.startswith("[", pos):
        try:  # not a list: what it is, or where it is malformed
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            raise _json_error(name, exc) from None
        except RecursionError:
            raise PhraseListError(f"{name}:1: invalid JSON: nested too deeply") from None
        raise PhraseListError(
            f"{name}:1: expected a JSON list of strings or objects, got {type(document).__name__}"
        )
    decoder = json.JSONDecoder()
    line, counted = 1, 0
    pos = _skip_space(text, pos + 1)
    more = not text.startswith("]", pos)
    if not more:  # []
        pos = _skip_space(text, pos + 1)
    while more:
        line, counted = line + text.count("\n", counted, pos), pos
        try:
            item, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise _json_error(name, exc) from None
        except RecursionError:  # `[[[[…` 100,000 deep: the parser recurses per level
            raise PhraseListError(f"{name}:{line}: invalid JSON: nested too deeply") from None
        yield _phrase_from_json(item, name, line)
        pos = _skip_space(text, end)
        more = text.startswith(",", pos)
        if not more and not text.startswith("]", pos):
            raise _json_error(name, json.JSONDecodeError("Expecting ',' delimiter", text, pos))
        pos = _skip_space(text, pos + 1)
    if pos < len(text):
        raise _json_error(name, json.JSONDecodeError("Extra data", text, pos))


def _parse_jsonl(lines: Iterable[str], name: str) -> Iterator[Phrase]:
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line.removesuffix("\n"))  # columns as an editor counts them
        except json.JSONDecodeError as exc:
            raise PhraseListError(
                f"{name}:{number}: invalid JSON: {exc.msg} (column {exc.colno})"
            ) from None
        except RecursionError:
            raise PhraseListError(f"{name}:{number}: invalid JSON: nested too deeply") from None
        yield _phrase_from_json(item, name, number)
