"""What is installed and what an output holds: `nst plugins [show NAME]`, `nst weights`, `nst info IMAGE`."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from nst.host import default_host


def rich_console():
    """Rich console on stdout; wide when piped so tables are not cut."""
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 400)


def plugins_list(ctx: typer.Context) -> None:
    """Every installed plugin: name, version, providing package, status (broken ones with their error), what it provides."""
    if ctx.invoked_subcommand is not None:
        return
    from rich.table import Table

    host = default_host()
    table = Table("name", "version", "package", "status", "provides")
    for rec in sorted([*host.records.values(), *host.refused], key=lambda r: (r.name, r.status != "ok")):
        status = "ok" if rec.status == "ok" else f"{rec.status}: {rec.error}"
        table.add_row(rec.name, rec.version, rec.package, status, ", ".join(rec.provides()))
    rich_console().print(table, highlight=False)


def plugins_show(name: Annotated[str, typer.Argument(help="Plugin name, as listed by `nst plugins`.")]) -> None:
    """One plugin's methods, commands and options (name, type, default, help)."""
    from rich.table import Table

    from nst.settings.values import type_name

    host = default_host()
    host.check_plugin(name)
    rec = host.records[name]
    console = rich_console()
    console.print(f"[bold]{name}[/bold] {rec.version} from {rec.package}")
    for m in rec.methods.values():
        console.print(f"method [bold]{m.name}[/bold]: {m.help}")
    for command in rec.commands:
        console.print(f"command [bold]nst {command}[/bold] (see nst {command} --help)")
    for arch in rec.architectures:
        console.print(f"architecture [bold]{arch}[/bold]")
    if not rec.options:
        console.print("no options")
        return
    table = Table("option", "type", "default", "help")
    for key, opt in rec.options.items():
        kind = type_name(opt.type) + (f" ({'|'.join(map(str, opt.choices))})" if opt.choices else "")
        table.add_row(f"{name}.{key}", kind, repr(opt.default), opt.help)
    console.print(table)


def info(image: Annotated[Path, typer.Argument(help="An image written by `nst run` (PNG, TIFF or JPEG).",
                                               show_default=False)]) -> None:
    """Print the run an image was made by: nst version, seed, settings, plugins and options, input files (text from
    the file is printed with control characters escaped)."""
    from nst.errors import printable
    from nst.runtime.run_record import read_run_record

    record = read_run_record(image)
    lines = [f"nst {record.version}, seed {record.seed}", *[f"computed in {record.precision}"] * bool(record.precision),
             f"content: {record.content or '(not a file)'}",
             *[f"style: {style or '(not a file)'}" for style in record.styles],
             *[f"plugin: {name}" for name in record.plugins],
             *[f"set {plugin}.{key} = {value}" for plugin, values in record.options.items() for key, value in values.items()],
             *[f"{key} = {value}" for key, value in record.settings.items()]]
    for line in lines:
        typer.echo(printable(line))


def weights_list() -> None:
    """Every known weight source: name, status (embedded / cached / missing), size, sha256, origin."""
    from nst.core.weights import sha256_of

    console = rich_console()
    for src in default_host().weights().sources.values():
        path = src.path()
        present = path.is_file()
        size = f"{path.stat().st_size / 1e6:.1f} MB" if present else "-"
        if present:
            digest = sha256_of(path)
        elif src.sha256:
            digest = src.sha256 + ("… (published prefix)" if len(src.sha256) < 64 else "")
        else:
            digest = "unpinned"
        colour = "green" if present else "yellow"
        console.print(f"[bold]{src.name}[/bold]  [{colour}]{src.status()}[/{colour}]  {size}", highlight=False)
        console.print(f"  sha256  {digest}\n  origin  {src.origin()}\n  file    {path}\n  about   "
                      f"{src.description}", highlight=False, soft_wrap=True)
