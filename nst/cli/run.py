"""`nst run`: stylise one image, or a folder / glob of them (nst.cli.batch), or repeat a recorded run
(nst.cli.replay). Its settings flags are made from nst.settings.Settings."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from nst.errors import FieldError, UsageError, note_line, printable
from nst.settings import Settings
from nst.settings.flags import with_settings
from nst.settings.values import as_typed, parse_sets

PLUG = "Plugins and config"


def config_keys(config: Path | None, given: dict[str, Any]) -> dict[str, Path]:
    """{setting: CONFIG} for the settings a config file sets that no flag overrides (their errors are spelled
    'FILE: key')."""
    from nst.settings.configfile import read_config

    if config is None or not config.is_file():
        return {}
    try:
        return {key.replace("-", "_"): config for key in set(read_config(config)[0]) - set(given)}
    except Exception:
        return {}


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
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace what nst wrote before in the folders it "
                                                                "names files in: results of a folder of inputs, "
                                                                "side outputs such as depth.save (refused otherwise; "
                                                                "files nst did not write are never "
                                                                "replaced).", rich_help_panel="Run options")] = False,
    plugin: Annotated[Optional[list[str]], typer.Option("--plugin", "-p", help="Plugin taking part in the run "
                                                                               "(repeatable).", rich_help_panel=PLUG)] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Plugin option PLUGIN.KEY=VALUE (repeatable); see "
                                                                    "`nst plugins show PLUGIN`.", rich_help_panel=PLUG)] = None,
    config: Annotated[Optional[Path], typer.Option(help="TOML file with the same keys as these flags (e.g. size = "
                                                        "768), `plugins = [..]` and [set.PLUGIN] tables. Flags "
                                                        "win.", rich_help_panel=PLUG)] = None,
    config_from: Annotated[Optional[Path], typer.Option(help="An image written by `nst run`: repeat its settings, seed, "
                                                             "plugins and options (flags and --config win). Files it "
                                                             "names are used only when given again or confirmed with "
                                                             "--recorded-files; options that write files are not "
                                                             "repeated.", rich_help_panel=PLUG)] = None,
    recorded_files: Annotated[bool, typer.Option("--recorded-files", help="With --config-from: also use the files "
                                                                          "the record names (content, styles, "
                                                                          "weights, model, masks), each printed "
                                                                          "first.", rich_help_panel=PLUG)] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.", rich_help_panel="Run options")] = False,
    settings: dict[str, Any] = None,
) -> None:
    """Stylise CONTENT with one or more STYLE images and write OUTPUT.

    CONTENT may be a folder or a glob ('photos/*.jpg'): every image is stylised and written to the
    folder OUTPUT as NAME.png (NAME_EXT.png where two inputs share a name); each written file is listed.
    """
    from nst.cli.batch import expand_many, run_many
    from nst.cli.replay import repeat
    from nst.core.files import Outputs

    call = dict(plugins=list(plugin or []), options=parse_sets(set_ or []), config=config, note=note_line,
                overwrite=overwrite, **settings)
    inputs, typed, recorded = list(inputs or []), bool(inputs), set()
    if recorded_files and config_from is None:
        raise UsageError("--recorded-files goes with --config-from IMAGE")
    if config_from is not None:
        Outputs([config_from]).reserve(output, make_folder=True)  # the image replayed is an input too
        inputs, recorded = repeat(config_from, inputs, call, recorded_files)
    if len(inputs) < 1:
        raise UsageError("give the CONTENT image (and STYLE images), or --config-from an image written by nst run")
    try:
        many = expand_many(inputs[0]) if typed else None  # a path read from a file is never a pattern
        if many is not None and call.get("plan"):
            raise UsageError("--plan takes one content image, not a folder or glob")
        if many is not None:
            run_many(many, inputs[1:], output, quiet, call)
            return
        from nst.api import run as run_api

        result = run_api(inputs[0], inputs[1:], output=output, progress=not quiet, **call)
    except FieldError as exc:
        raise as_typed(exc, {**config_keys(config, settings), **dict.fromkeys(recorded, config_from)}) from None
    if result.image is None:  # --plan
        typer.echo(result.plan.describe() if result.plan else f"method '{result.summary.get('method', '?')}' makes no "
                                                              "plan")
        return
    s = result.summary
    typer.echo(printable(f"wrote {output} ({s.pop('size')}, {s.pop('seconds')} s on {s.pop('device')})"))
    for path in [p for p in result.written if p != Path(output)]:
        typer.echo(printable(f"wrote {path}"))
    if result.snapshots:
        typer.echo(printable(f"wrote {len(result.snapshots)} snapshot(s): {result.snapshots[0]}"
                             f"{f' … {result.snapshots[-1].name}' if len(result.snapshots) > 1 else ''}"))
    for key, value in s.items():
        typer.echo(printable(f"  {key}: {value}"))
