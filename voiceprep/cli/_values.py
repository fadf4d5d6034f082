"""Command-line words to Python values, without pydantic.

Typer 0.29 converts each option's value through a pydantic `TypeAdapter`: importing
pydantic and building an adapter per parameter cost every command ~0.06 s of CPU and 7 MiB
of peak RSS before it did anything (docs/performance.md). voiceprep's parameters are all
of a few plain types (str, int, float, bool, Path, an Enum, a list of those), converted
here the way those adapters do; anything else keeps Typer's own conversion.

`install(command)` sets this conversion on each of a command's parameters (Typer builds
it lazily, on first use, into `_runtime_param`). A refused value raises Typer's
`BadParameter` from an `Unparsed` naming the value and what kind it failed to be, which
voiceprep.cli._app turns into one line naming the option.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, get_args, get_origin

import typer
from typer._coercion import RuntimeParam
from typer._param_types import coerce_cli_choice, coerce_cli_path

# pydantic's lax integer: digits (with `_`), an optional sign, a zero fraction ("5.0").
_INTEGER = re.compile(r"\s*([+-]?[0-9](?:_?[0-9])*)(?:\.0+)?\s*", re.ASCII)
_TRUE = {"1", "on", "t", "true", "y", "yes"}
_FALSE = {"0", "off", "f", "false", "n", "no"}


class Unparsed(ValueError):
    """`value` is not a `kind` ("int_parsing", "float_parsing", "bool_parsing", "enum")."""

    def __init__(self, value: object, kind: str, message: str) -> None:
        super().__init__(message)
        self.value, self.kind = value, kind


def _int(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    match = _INTEGER.fullmatch(str(value))
    if match is None:
        raise Unparsed(value, "int_parsing", "Input should be a valid integer")
    return int(match.group(1))


def _float(value: Any) -> float:
    if isinstance(value, float | int) and not isinstance(value, bool):
        return float(value)
    text = str(value)
    try:
        if not text.isascii():  # float() would read "١٢" as 12
            raise ValueError
        return float(text)
    except ValueError:
        raise Unparsed(value, "float_parsing", "Input should be a valid number") from None


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE or text in _FALSE or not text:  # (Typer reads an empty word as False)
        return text in _TRUE
    raise Unparsed(value, "bool_parsing", "Input should be a valid boolean")


def _str(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


_CONVERTERS: dict[Any, Callable[[Any], Any]] = {str: _str, int: _int, float: _float, bool: _bool}


@dataclass(frozen=True)
class PlainValue(RuntimeParam):
    """One parameter's conversion: each word (of a list, each item) through `item`."""

    item: Any  # the annotation of one value

    def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
        if isinstance(value, list | tuple):
            return [self._one(word, param, ctx) for word in value]
        one = self._one(value, param, ctx)
        return [one] if get_origin(self.annotation) is list else one

    def _one(self, value: Any, param: Any, ctx: Any) -> Any:
        try:
            if isinstance(self.item, type) and issubclass(self.item, Enum):
                return _choice(value, self.item, self.parameter_info.case_sensitive, ctx)
            if isinstance(self.item, type) and issubclass(self.item, Path):
                path = value if isinstance(value, Path) else Path(value)
                return coerce_cli_path(
                    path, self.parameter_info, path_type=Path, param=param, ctx=ctx
                )
            return _CONVERTERS[self.item](value)
        except Unparsed as exc:
            raise typer.BadParameter(str(exc), ctx=ctx, param=param) from exc


def _choice(value: Any, kind: type[Enum], case_sensitive: bool, ctx: Any) -> Any:
    try:
        return coerce_cli_choice(value, choices=tuple(kind), case_sensitive=case_sensitive, ctx=ctx)
    except ValueError as exc:
        raise Unparsed(value, "enum", str(exc)) from None


def _plain(annotation: Any) -> Any | None:
    """The one-value annotation if voiceprep converts it (else None: Typer does)."""
    if get_origin(annotation) is list:
        (annotation,) = get_args(annotation)
    if annotation in _CONVERTERS:
        return annotation
    if isinstance(annotation, type) and issubclass(annotation, Enum | Path):
        return annotation
    return None


def install(params: list[Any]) -> None:
    """Convert these parameters' values here rather than through pydantic."""
    for param in params:
        descriptor = getattr(param, "type_descriptor", None)
        if descriptor is None or descriptor.file_annotation is not None:
            continue
        info = descriptor.parameter_info
        if any(value is not None for value in (info.parser, info.min, info.max, info.path_type)):
            continue  # (none of voiceprep's: Typer converts them)
        item = _plain(descriptor.annotation)
        if item is not None:
            param._runtime_param = PlainValue(info, descriptor.annotation, item)
