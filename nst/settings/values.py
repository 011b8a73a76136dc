"""Typed values: one coercion for core settings (CLI flags, config keys, API keywords) and plugin options,
and the one parser of what a user types (`--set PLUGIN.KEY=VALUE`, flag text).

Values typed on the command line arrive wrapped in `Text` and are parsed ("0.5,0.5" -> [0.5, 0.5],
"yes" -> True); values from a TOML file or the Python API are native and only checked, never reparsed
("5" is not a float). Every float must be finite. Errors are `FieldError`s naming the field; the layer
that knows how the user spelled it (`--style-blend`, `analogy.alphas`) re-spells them.
"""
from __future__ import annotations

import math
import numbers
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from nst.errors import FieldError, UsageError

SCALARS = (bool, int, float, str, Path)
LISTS = (list[int], list[float], list[str], list[Path])
INT_LIMIT = 2 ** 63  # ints beyond int64 fit no tensor and no seed
TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


class Text(str):
    """A value as typed on the command line: parsed according to the field's type."""


def split_optional(kind: Any) -> tuple[Any, bool]:
    """(T, True) for Optional[T] / T | None, else (KIND, False)."""
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(kind)) == 2:
            return args[0], True
    return kind, False


def type_name(kind: Any) -> str:
    base, optional = split_optional(kind)
    name = f"list[{typing.get_args(base)[0].__name__}]" if typing.get_origin(base) is list else base.__name__
    return name + (" or none" if optional else "")


def _scalar(kind: type, value: Any, text: bool, field: str) -> Any:
    def bad(expected: str | None = None) -> FieldError:
        return FieldError(field, f"expected {expected or kind.__name__}, got {value!r}")

    if kind is bool:
        if text:
            low = value.strip().lower()
            if low not in TRUE + FALSE:
                raise bad("true or false (bool)")
            return low in TRUE
        if not isinstance(value, bool):
            raise bad("true or false (bool)")
        return value
    if kind is int:
        if text:
            try:
                value = int(value.strip())
            except ValueError:
                raise bad("an integer (int)") from None
        elif isinstance(value, bool) or not (isinstance(value, numbers.Integral)
                                            or (isinstance(value, float) and value.is_integer())):
            raise bad("an integer (int)")
        if abs(int(value)) >= INT_LIMIT:
            raise FieldError(field, f"{value} is too large")
        return int(value)
    if kind is float:
        if text:
            try:
                value = float(value.strip())
            except ValueError:
                raise bad("a number (float)") from None
        elif isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise bad("a number (float)")
        if not math.isfinite(float(value)):
            raise FieldError(field, f"must be a finite number, got {value}")
        return float(value)
    if kind is str:
        if isinstance(value, os.PathLike):  # a model given as a path, for example
            value = os.fspath(value)
        if not isinstance(value, str):
            raise bad("a string")
        return str(value)
    if kind is Path:
        if not isinstance(value, (str, os.PathLike)) or not str(os.fspath(value)).strip():
            raise bad("a file or folder path")
        return Path(value)
    raise FieldError(field, f"has unsupported type {kind!r}")


def coerce(kind: Any, value: Any, field: str) -> Any:
    """VALUE converted to KIND (one of SCALARS or LISTS, possibly Optional); `Text` values are parsed.

    Text lists are comma-separated ("" is the empty list); None, or "" typed for an optional
    non-string field, means "not set". Raises FieldError."""
    base, optional = split_optional(kind)
    text = isinstance(value, Text)
    if value is None or (optional and text and not value.strip() and base is not str):
        if optional:
            return None
        raise FieldError(field, f"needs a value ({type_name(kind)})")
    if typing.get_origin(base) is list:
        item = typing.get_args(base)[0]
        if text:
            items = [Text(t.strip()) for t in value.split(",")] if value.strip() else []
            if any(not t for t in items):
                raise FieldError(field, f"expected a comma-separated list of {item.__name__} values, got {value!r}")
        elif isinstance(value, (list, tuple)):
            items = list(value)
        else:
            raise FieldError(field, f"expected a list of {item.__name__} values, got {value!r}")
        return [_scalar(item, v, isinstance(v, Text), field) for v in items]
    return _scalar(base, value, text, field)


def number_text(value: float) -> str:
    """VALUE as short as it reads back exactly: 1000000 (an int), 1e+12, 0.5, 1.0000001 (never '1' for 1.0000001)."""
    if isinstance(value, int):
        return str(value)
    short = f"{value:g}"
    return short if float(short) == value else repr(value)


def check_range(field: str, value: Any, lo: float | None = None, hi: float | None = None) -> None:
    """FieldError unless VALUE is finite and LO <= VALUE <= HI (each element for lists; None bounds are open)."""
    for v in value if isinstance(value, list) else [value]:
        if v is None or isinstance(v, (str, Path, bool)):
            continue
        if isinstance(v, float) and not math.isfinite(v):
            raise FieldError(field, f"must be a finite number, got {v}")
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            span = f"between {number_text(lo)} and {number_text(hi)}" if lo is not None and hi is not None else (
                f"at least {number_text(lo)}" if lo is not None else f"at most {number_text(hi)}")
            raise FieldError(field, f"must be {span}, got {number_text(v)}")


FILE_KINDS = ("in", "out")


@dataclass
class Option:
    """A typed value declared once: a plugin option (nst_plugin_options) or a core setting (nst.settings.declare).
    MIN / MAX bound numbers and list items; GROUP is its --help section; SHOWN is the default as help prints it
    where the default is computed (None: the default itself). FILE: "in" when the value names files nst reads
    (every Path option unless declared otherwise), "out" when it makes nst write files (a folder for side outputs,
    snapshots); a run record replays neither of them on its own (see nst.runtime.run_record)."""

    key: str
    type: Any
    default: Any
    help: str = ""
    choices: tuple | None = None
    min: float | None = None
    max: float | None = None
    group: str = ""
    shown: str | None = None
    file: str | None = None

    def __post_init__(self) -> None:
        base, _ = split_optional(self.type)
        if base not in SCALARS and base not in LISTS:
            raise ValueError(f"option '{self.key}' has unsupported type {self.type!r} (use bool, int, float, str, Path "
                             "or list[int], list[float], list[str], list[Path])")
        if self.file is None and base in (Path, list[Path]):
            self.file = "in"
        if self.file not in (None, *FILE_KINDS):
            raise ValueError(f"option '{self.key}': file must be 'in', 'out' or None, got {self.file!r}")
        if self.default is None and not split_optional(self.type)[1]:
            self.type = typing.Optional[self.type]
        self.default = self.parse(self.key, self.default)  # a default the type refuses is the author's bug

    def parse(self, field: str, value: Any) -> Any:
        """VALUE for this option (field name FIELD, e.g. 'depth.weight'), converted and checked."""
        value = coerce(self.type, value, field)
        if self.choices and value is not None:
            bad = [v for v in (value if isinstance(value, list) else [value]) if v not in self.choices]
            if bad:
                raise FieldError(field, f"must be one of {', '.join(map(str, self.choices))}, got {bad[0]!r}")
        check_range(field, value, self.min, self.max)
        return value


    def default_text(self) -> str:
        """The default as --help and the tables show it ('' when there is none)."""
        if self.shown is not None:
            return self.shown
        value = self.default
        if value is None:
            return ""
        if isinstance(value, list):
            return ",".join(map(str, value))
        if isinstance(value, bool):
            return "on" if value else ""  # a flag: off unless given
        return f"{value:g}" if isinstance(value, float) else str(value)


def flag(name: str) -> str:
    """A settings field's command-line flag: 'style_blend' -> '--style-blend'."""
    return "--" + name.replace("_", "-")


def as_typed(exc: FieldError, sources: Mapping[str, Any] | None = None) -> FieldError:
    """EXC with a core setting named as the user typed it: its flag ('--size'), or 'FILE: size' when the value came
    from a file (SOURCES: {field: the config file or image it came from}). Plugin options ('depth.weight'), flags
    and fields already spelled ('run.toml: size', a path) stay as they are."""
    if exc.field.startswith(("-", "/")) or "." in exc.field or ":" in exc.field:
        return exc
    source = (sources or {}).get(exc.field)
    return exc.spelled(f"{source}: {exc.field}" if source is not None else flag(exc.field))


def parse_sets(items: list[str]) -> dict[str, dict[str, Any]]:
    """['depth.weight=2'] -> {'depth': {'weight': Text('2')}} (parsed later by the options' declared types)."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        plugin, dot, name = key.strip().partition(".")
        if not sep or not dot or not plugin or not name:
            raise UsageError(f"--set expects PLUGIN.KEY=VALUE, got '{item}'")
        out.setdefault(plugin, {})[name] = Text(value)
    return out


def texts(values: dict[str, Any]) -> dict[str, Any]:
    """Values as typed: strings wrapped as Text (parsed by the fields' types: '0.5,0.5' -> [0.5, 0.5]);
    None and False (a flag not given) dropped."""
    return {k: Text(v) if isinstance(v, str) else v for k, v in values.items() if v is not None and v is not False}


def parse_fields(cls, values: dict[str, Any], what: str = "setting") -> dict[str, Any]:
    """Keyword arguments for dataclass CLS from VALUES (keys with dashes allowed; None = not given),
    converted to the fields' annotated types."""
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    clean = {}
    for key, value in values.items():
        name = str(key).replace("-", "_")
        if name not in known:
            raise UsageError(f"unknown {what} '{key}' (known: {', '.join(sorted(n.replace('_', '-') for n in known))})")
        if value is not None:
            clean[name] = coerce(hints[name], value, name)
    return clean


