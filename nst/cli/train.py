"""`nst train`: a fast feed-forward style network; its settings flags are made from nst.settings.TrainSettings."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from nst.cli.run import config_keys
from nst.errors import FieldError, note_line, printable
from nst.settings import TrainSettings
from nst.settings.flags import with_settings
from nst.settings.values import as_typed, parse_sets


@with_settings(TrainSettings)
def train(
    style: Annotated[list[Path], typer.Argument(help="The style image, or several: one network learns them all "
                                                     "(conditional instance norm) and runs any one (--set "
                                                     "johnson.style=N) or a blend (--style-blend).", show_default=False)],
    data: Annotated[Path, typer.Option(help="Folder tree of training photos (.jpg .png .webp); unreadable files are "
                                            "skipped and counted.", show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", help="Model file to write (.safetensors); loss curves go "
                                                                "next to it.", show_default=False)],
    resume: Annotated[bool, typer.Option("--resume", help="Continue from MODEL.ckpt with the same options; gives the "
                                                          "same result as an uninterrupted run.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Start over, deleting the MODEL.ckpt an interrupted "
                                                                "training left.")] = False,
    plugin: Annotated[Optional[list[str]], typer.Option("--plugin", "-p", help="Plugin adding loss terms or its own "
                                                                               "network (repeatable).")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Plugin option PLUGIN.KEY=VALUE (repeatable).")] = None,
    config: Annotated[Optional[Path], typer.Option(help="TOML file with the same keys as these flags, `plugins = [..]` "
                                                        "and [set.PLUGIN] tables. Flags win.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    settings: dict[str, Any] = None,
) -> None:
    """Train a fast feed-forward style network for STYLE on the photos in --data (Johnson 2016).

    --plugin arbitrary fine-tunes the pretrained arbitrary-style network for STYLE instead (minutes, not hours).

    Data-parallel on several GPUs or nodes: torchrun --nproc-per-node N -m nst.cli train ...
    """
    from nst.api import train as train_api

    try:
        result = train_api(style if len(style) > 1 else style[0], data, output, plugins=plugin or [],
                           options=parse_sets(set_ or []), resume=resume, overwrite=overwrite, config=config,
                           progress=not quiet, note=note_line, **settings)
    except FieldError as exc:
        raise as_typed(exc, config_keys(config, settings)) from None
    if result.model is not None:
        last = result.losses[-1] if result.losses else {}
        typer.echo(printable(f"wrote {result.model} ({result.steps} steps, {result.seconds:.1f} s; final loss "
                             f"{last.get('total', 0):.4g})"))
        typer.echo(f"  loss curves: {result.model.name}.losses.csv, {result.model.name}.losses.png")
