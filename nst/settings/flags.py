"""Command-line flags made from declared settings: `@with_settings(Settings)` gives a typer command one
`--flag` per field, with the declaration's help, choices, default and --help group, and hands the command
the values the user gave as `settings` (text parsed later by the declared types)."""
from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Annotated, Any, Optional

from nst.settings.declare import declared
from nst.settings.values import Option, flag, split_optional, texts


def flag_help(opt: Option, shown: str | None = None) -> str:
    """OPT's help with its choices and default, as --help shows them."""
    base, _ = split_optional(opt.type)
    parts = [opt.help]
    if opt.choices and typing.get_origin(base) is not list:
        parts.append(f"[{'|'.join(map(str, opt.choices))}]")
    default = shown if shown is not None else opt.default_text()
    if default:
        parts.append(f"[default: {default}]")
    return " ".join(parts)


def _parameter(opt: Option, help: str) -> inspect.Parameter:
    import typer

    base, _ = split_optional(opt.type)
    panel = opt.group or None
    if base is bool:
        kind, default = bool, False
    else:
        kind, default = Optional[base if base in (int, float, str, Path) else str], None
    info = typer.Option(flag(opt.key), help=help, rich_help_panel=panel, show_default=False)
    return inspect.Parameter(opt.key, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default, annotation=Annotated[kind, info])


def with_settings(cls: type, only: Iterable[str] | None = None, exclude: Iterable[str] = (),
                  help: dict[str, str] | None = None, shown: dict[str, str] | None = None) -> Callable:
    """Decorator for a typer command taking `settings: dict`: adds a flag per declared field of CLS (ONLY those,
    or all but EXCLUDE), HELP / SHOWN replacing a field's help or shown default for this command."""
    options = declared(cls)
    names = [n for n in (only or options) if n not in set(exclude)]
    help, shown = help or {}, shown or {}

    def decorate(command: Callable) -> Callable:
        own = [p for p in inspect.signature(command, eval_str=True).parameters.values() if p.name != "settings"]
        added = [_parameter(options[n], help.get(n) or flag_help(options[n], shown.get(n))) for n in names]

        @functools.wraps(command)
        def wrapper(**kwargs: Any) -> Any:
            given = texts({n: kwargs.pop(n) for n in names})
            return command(**kwargs, settings=given)

        cut = next((i + 1 for i, p in enumerate(own) if p.name == "output"), len(own))  # after the inputs and -o
        params = own[:cut] + added + own[cut:]
        wrapper.__signature__ = inspect.Signature(params)
        wrapper.__annotations__ = {p.name: p.annotation for p in params}
        return wrapper

    return decorate
