"""The `nst` command: the typer app assembled from the command modules, and main(), which maps every error to
one line and an exit code: 2 for usage errors, 1 for other errors, 130 for Ctrl-C; no traceback
(NST_DEBUG=1 shows it). Warnings from libraries become `note:` lines."""
from __future__ import annotations

import os
import re
import sys
from typing import Annotated

import typer

from nst.cli.bench import bench
from nst.cli.export import export
from nst.cli.listings import info, plugins_list, plugins_show, weights_list
from nst.cli.run import run
from nst.cli.studio import serve
from nst.cli.train import train
from nst.errors import FieldError, NSTError, UsageError, note_line, printable
from nst.settings.values import as_typed


def _version(value: bool) -> None:
    if value:
        from nst.version import __version__

        typer.echo(f"nst {__version__}")
        raise typer.Exit()


def _root(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                help="Print the version and exit.")] = False) -> None:
    """Neural style transfer with plugins. Start with `nst run CONTENT STYLE -o OUT.png`."""


app = typer.Typer(help="Neural style transfer: `nst run CONTENT STYLE -o OUT.png`.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False, rich_markup_mode=None)
app.callback()(_root)
app.command(no_args_is_help=True)(run)
app.command(no_args_is_help=True)(train)
app.command("bench", no_args_is_help=True)(bench)
app.command("export", no_args_is_help=True)(export)
app.command("info", no_args_is_help=True)(info)
app.command("weights")(weights_list)
app.command("serve")(serve)
plugins_app = typer.Typer(help="List installed plugins, or show one plugin's options.", invoke_without_command=True)
plugins_app.callback()(plugins_list)
plugins_app.command("show")(plugins_show)
app.add_typer(plugins_app, name="plugins")


def _warnings_as_notes() -> None:
    """Library warnings (torch, Pillow, numpy) become one `note:` line each instead of a raw warning."""
    import warnings

    def show(message, category, *_args, **_kwargs) -> None:
        note_line(f"{category.__name__}: {str(message).strip().splitlines()[0] if str(message).strip() else ''}")

    warnings.showwarning = show


def _fail(message: str, code: int) -> None:
    typer.echo(f"error: {printable(message)}", err=True)
    sys.exit(code)


def _parser_message(exc, host) -> str:
    """The argument parser's message; an unknown command that a broken plugin provides names that plugin."""
    text = exc.format_message()
    unknown = re.match(r"No such command '(.+)'", text)
    broken = host.not_working("command", unknown.group(1)) if unknown else None
    if broken is not None:
        return f"command '{unknown.group(1)}' comes from plugin '{broken.name}', which {broken.state()}"
    return text + (f" (see `{exc.ctx.command_path} --help`)" if getattr(exc, "ctx", None) else "")


def _missing_arguments(ctx) -> str:
    """The line for a command given without its arguments: what it needs and where the help is."""
    needed = [p.name.upper() + ("..." if p.nargs == -1 else "") for p in ctx.command.params
              if p.param_type_name == "argument"]
    needed += [max(p.opts, key=len) for p in ctx.command.params if p.param_type_name == "option" and p.required]
    return f"`{ctx.command_path}` needs {', '.join(needed) or 'arguments'} (see `{ctx.command_path} --help`)"


def main() -> None:
    """Console entry point: maps every error to one line and an exit code."""
    try:
        from typer._click.exceptions import ClickException, NoArgsIsHelpError
    except ImportError:  # typer without its own copy of click
        from click.exceptions import ClickException, NoArgsIsHelpError
    from nst.host import default_host

    debug = bool(os.environ.get("NST_DEBUG"))
    try:
        _warnings_as_notes()
        host = default_host()
        for line in host.notes:
            note_line(line)
        host.attach_commands(app)
        code = app(standalone_mode=False, prog_name="nst")
    except KeyboardInterrupt:
        code = 130
    except NoArgsIsHelpError as exc:
        if exc.ctx.parent is None:  # `nst` alone: the list of commands, as --help prints it
            typer.echo(exc.ctx.get_help())
            sys.exit(0)
        _fail(_missing_arguments(exc.ctx), 2)  # `nst info` alone: a usage error, as a missing argument is
    except ClickException as exc:  # the argument parser: bad value, missing option, unknown command
        _fail(_parser_message(exc, default_host()), 2)
    except NSTError as exc:
        if debug:
            import traceback

            traceback.print_exception(exc.__cause__ or exc)
        if isinstance(exc, FieldError):
            exc = as_typed(exc)  # a core setting reached from a command: spelled as its flag
        _fail(str(exc), 2 if isinstance(exc, UsageError) else 1)
    except MemoryError:
        _fail("out of memory; use a smaller --size (or fewer images at once)", 1)
    except Exception as exc:
        if debug:
            raise
        _fail(f"unexpected failure ({type(exc).__name__}: {exc}); set NST_DEBUG=1 for the traceback", 1)
    if code == 130:
        _fail("interrupted", 130)
    sys.exit(code or 0)
