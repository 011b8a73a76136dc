"""Settings declared once: a dataclass field made with `setting()` carries its default, help, choices, range
and --help group; `declared(cls)` reads them back as `Option`s, from which the validation, the CLI flags
(nst.settings.flags), the studio's form and the documentation tables are all made."""
from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterable
from functools import cache
from typing import Any

from nst.settings.values import Option, parse_fields

META = "nst"


def setting(default: Any, help: str, *, choices: Iterable | None = None, min: float | None = None,
            max: float | None = None, group: str = "", shown: str | None = None, file: str | None = None) -> Any:
    """A dataclass field declared with everything the front-ends show of it (see Option)."""
    meta = {META: dict(help=help, choices=tuple(choices) if choices else None, min=min, max=max, group=group,
                       shown=shown, file=file)}
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@cache
def declared(cls: type) -> dict[str, Option]:
    """{field name: Option} of a settings dataclass, in declaration order."""
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        out[f.name] = Option(f.name, hints[f.name], default, **f.metadata[META])
    return out


def check_declared(settings: Any) -> None:
    """Every field of SETTINGS converted and checked against its declaration (type, choices, range);
    FieldError names the first bad field."""
    for name, opt in declared(type(settings)).items():
        setattr(settings, name, opt.parse(name, getattr(settings, name)))


def build(cls: type, values: dict[str, Any], what: str = "setting") -> Any:
    """CLS from a dict of field names (dashes allowed; None = not given), converted to the declared types."""
    return cls(**parse_fields(cls, values, what))
