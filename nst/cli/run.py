"""`nst run`: stylise one image, or a folder / glob of them (nst.cli.batch), or repeat a recorded run
(nst.cli.replay). Its settings flags are made from nst.settings.Settings."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from nst.errors import FieldError, UsageError, note_line
from nst.settings import Settings
from nst.settings.flags import with_settings
from nst.settings.values import as_typed, parse_sets

PLUG = "Plugins and config"


def config_keys(config: Path | None, given: dict[str, Any]) -> set[str]:
    """The settings a config file sets that no flag overrides (their errors are spelled 'FILE: key')."""
    from nst.settings.configfile import read_config

    if config is None or not config.is_file():
        return set()
    try:
        return set(read_config(config)[0]) - set(given)
    except Exception:
        return set()


@with_settings(Settings)
def run(
    inputs: Annotated[Optional[list[Path]], typer.Argument(help="CONTENT image, then one or more STYLE images (PNG, "
                                                                "JPEG, TIFF, WebP). With --config-from they may be "
                                                                "left out: the recorded ones are used.",
                                                                show_default=False)] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="Output image; format from the suffix (.png .jpg .webp "
                                                                ".tif). Written atomically, never over an input. PNG "
                                                                "and TIFF keep the content's alpha, JPEG/PNG/TIFF/WebP "
                                                                "its ICC profile; PNG, TIFF and JPEG record the run "
                                                                "(see `nst info`).", show_default=False)] = ...,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="With a folder of inputs: replace results already in "
                                                                "the output folder (refused "
                                                                "otherwise).", rich_help_panel="Run options")] = False,
    plugin: Annotated[Optional[list[str]], typer.Option("--plugin", "-p", help="Plugin taking part in the run "
                                                                               "(repeatable).", rich_help_panel=PLUG)] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Plugin option PLUGIN.KEY=VALUE (repeatable); see "
                                                                    "`nst plugins show PLUGIN`.", rich_help_panel=PLUG)] = None,
    config: Annotated[Optional[Path], typer.Option(help="TOML file with the same keys as these flags (e.g. size = "
                                                        "768), `plugins = [..]` and [set.PLUGIN] tables. Flags "
                                                        "win.", rich_help_panel=PLUG)] = None,
    config_from: Annotated[Optional[Path], typer.Option(help="An image written by `nst run`: repeat its run (settings, "
                                                             "seed, plugins and options, and its inputs unless given). "
                                                             "Flags and --config win.", rich_help_panel=PLUG)] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.", rich_help_panel="Run options")] = False,
    settings: dict[str, Any] = None,
) -> None:
    """Stylise CONTENT with one or more STYLE images and write OUTPUT.

    CONTENT may be a folder or a glob ('photos/*.jpg'): every image is stylised and written to the
    folder OUTPUT as NAME.png (NAME_EXT.png where two inputs share a name); each written file is listed.
    """
    from nst.cli.batch import expand_many, run_many
    from nst.cli.replay import repeat

    call = dict(plugins=list(plugin or []), options=parse_sets(set_ or []), config=config, note=note_line, **settings)
    inputs = list(inputs or [])
    if config_from is not None:
        inputs = repeat(config_from, inputs, call)
    if len(inputs) < 1:
        raise UsageError("give the CONTENT image (and STYLE images), or --config-from an image written by nst run")
    try:
        many = expand_many(inputs[0])
        if many is not None and settings.get("plan"):
            raise UsageError("--plan takes one content image, not a folder or glob")
        if many is not None:
            run_many(many, inputs[1:], output, overwrite, quiet, call)
            return
        from nst.api import run as run_api

        result = run_api(inputs[0], inputs[1:], output=output, progress=not quiet, **call)
    except FieldError as exc:
        raise as_typed(exc, config_keys(config, settings), config) from None
    if result.image is None:  # --plan
        typer.echo(result.plan.describe() if result.plan else f"method '{result.summary.get('method', '?')}' makes no "
                                                              "plan")
        return
    s = result.summary
    typer.echo(f"wrote {output} ({s.pop('size')}, {s.pop('seconds')} s on {s.pop('device')})")
    for path in result.written[1:]:
        typer.echo(f"wrote {path}")
    for key, value in s.items():
        typer.echo(f"  {key}: {value}")
