"""The `nst` command line: thin typer commands over the Python API.

Errors a user can fix print one line `error: ...` and exit 1 (2 for usage errors), no traceback.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from nst.errors import NSTError, UsageError
from nst.settings import CHOICES, Settings

app = typer.Typer(help="Neural style transfer: `nst run CONTENT STYLE -o OUT.png`.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False, rich_markup_mode=None)
plugins_app = typer.Typer(help="List installed plugins, or show one plugin's options.", invoke_without_command=True)
app.add_typer(plugins_app, name="plugins")
D = Settings()
RUN = "Run options"
STYLE = "Style options"
OPT = "Optimisation"
PLUG = "Plugins and config"


def _console():
    """Rich console on stdout; wide when piped so tables are not cut."""
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 160)


def _version(value: bool) -> None:
    if value:
        from nst import __version__

        typer.echo(f"nst {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")] = False) -> None:
    """Neural style transfer with plugins. Start with `nst run CONTENT STYLE -o OUT.png`."""


def _choice(name: str) -> str:
    return "|".join(CHOICES[name])


def _parse_sets(items: list[str]) -> dict[str, dict[str, str]]:
    """['depth.weight=2'] -> {'depth': {'weight': '2'}}."""
    out: dict[str, dict[str, str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        plugin, dot, name = key.strip().partition(".")
        if not sep or not dot or not plugin or not name:
            raise UsageError(f"--set expects PLUGIN.KEY=VALUE, got '{item}'")
        out.setdefault(plugin, {})[name] = value
    return out


def _load_config(path: Path) -> dict[str, Any]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NSTError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise NSTError(f"{path}: cannot read config ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: not valid TOML ({exc})") from None


@app.command(no_args_is_help=True)
def run(
    inputs: Annotated[list[Path], typer.Argument(help="CONTENT image, then one or more STYLE images (PNG, JPEG, TIFF, WebP).", show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output image; format from the suffix (.png .jpg .webp .tif). Written atomically.", show_default=False)],
    method: Annotated[Optional[str], typer.Option(help=f"Transfer method, from the method registry (`nst plugins` shows providers). [default: {D.method}]", rich_help_panel=RUN)] = None,
    size: Annotated[Optional[int], typer.Option(help=f"Long side of the output in pixels. [default: {D.size}]", rich_help_panel=RUN)] = None,
    steps: Annotated[Optional[int], typer.Option(help=f"Optimisation steps at each scale. [default: {D.steps}]", rich_help_panel=OPT)] = None,
    content_weight: Annotated[Optional[float], typer.Option(help=f"Weight of the content loss. [default: {D.content_weight:g}]", rich_help_panel=STYLE)] = None,
    style_weight: Annotated[Optional[float], typer.Option(help=f"Weight of the style loss; higher = more stylised. [default: {D.style_weight:g}]", rich_help_panel=STYLE)] = None,
    tv_weight: Annotated[Optional[float], typer.Option(help=f"Total-variation weight (smoothness). [default: {D.tv_weight:g}]", rich_help_panel=STYLE)] = None,
    style_loss: Annotated[Optional[str], typer.Option(help=f"Style loss: gram (Gatys), mmd (Li 2017) or mrf (Li & Wand patches). [{_choice('style_loss')}] [default: {D.style_loss}]", rich_help_panel=STYLE)] = None,
    mmd_kernel: Annotated[Optional[str], typer.Option(help=f"Kernel for --style-loss mmd. [{_choice('mmd_kernel')}] [default: {D.mmd_kernel}]", rich_help_panel=STYLE)] = None,
    style_blend: Annotated[Optional[str], typer.Option(help="Comma-separated weights, one per style image (normalised to sum 1). [default: equal]", rich_help_panel=STYLE)] = None,
    style_scale: Annotated[Optional[float], typer.Option(help=f"Style image size relative to the output; smaller = finer strokes. [default: {D.style_scale:g}]", rich_help_panel=STYLE)] = None,
    content_layers: Annotated[Optional[str], typer.Option(help=f"Comma-separated VGG layers for content. [default: {','.join(D.content_layers)}]", rich_help_panel=STYLE)] = None,
    style_layers: Annotated[Optional[str], typer.Option(help="Comma-separated VGG layers for style. [default: relu1_1,relu2_1,relu3_1,relu4_1,relu5_1; mrf: relu3_1,relu4_1]", rich_help_panel=STYLE)] = None,
    optimizer: Annotated[Optional[str], typer.Option(help=f"[{_choice('optimizer')}] [default: {D.optimizer}]", rich_help_panel=OPT)] = None,
    lr: Annotated[Optional[float], typer.Option(help=f"Adam step size (pixels in 0..1). [default: {D.lr:g}]", rich_help_panel=OPT)] = None,
    init: Annotated[Optional[str], typer.Option(help=f"Start image. [{_choice('init')}] [default: {D.init}]", rich_help_panel=OPT)] = None,
    seed: Annotated[Optional[int], typer.Option(help=f"Random seed; runs on CPU are reproducible. [default: {D.seed}]", rich_help_panel=OPT)] = None,
    scales: Annotated[Optional[int], typer.Option(help=f"Coarse-to-fine levels, each half the size of the next. [default: {D.scales}]", rich_help_panel=OPT)] = None,
    preserve_colors: Annotated[Optional[str], typer.Option(help=f"Keep the content's colours: luminance-only transfer, or match the style's histogram to the content. [{_choice('preserve_colors')}] [default: {D.preserve_colors}]", rich_help_panel=STYLE)] = None,
    pooling: Annotated[Optional[str], typer.Option(help=f"VGG pooling. [{_choice('pooling')}] [default: {D.pooling}]", rich_help_panel=RUN)] = None,
    weights: Annotated[Optional[str], typer.Option(help=f"Encoder weights: a name from `nst weights` or a file path. [default: {D.weights}]", rich_help_panel=RUN)] = None,
    device: Annotated[Optional[str], typer.Option(help=f"auto, cpu, cuda or cuda:N. [default: {D.device}]", rich_help_panel=RUN)] = None,
    save_every: Annotated[Optional[int], typer.Option(help="Write OUT_stepNNNN.png every N steps (0 = never). [default: 0]", rich_help_panel=RUN)] = None,
    model: Annotated[Optional[str], typer.Option(help="For --method johnson: the network file from `nst train`.", rich_help_panel=RUN)] = None,
    strength: Annotated[Optional[float], typer.Option(help="For --method johnson: blend of stylised and content, 0..1. [default: 1]", rich_help_panel=RUN)] = None,
    plugin: Annotated[Optional[list[str]], typer.Option("--plugin", "-p", help="Plugin taking part in the run (repeatable).", rich_help_panel=PLUG)] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Plugin option PLUGIN.KEY=VALUE (repeatable); see `nst plugins show PLUGIN`.", rich_help_panel=PLUG)] = None,
    config: Annotated[Optional[Path], typer.Option(help="TOML file with the same keys as these flags (e.g. size = 768), `plugins = [..]` and [set.PLUGIN] tables. Flags win.", rich_help_panel=PLUG)] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.", rich_help_panel=RUN)] = False,
) -> None:
    """Stylise CONTENT with one or more STYLE images and write OUTPUT.

    With a method that needs no style (johnson), CONTENT may be a folder or a glob ('photos/*.jpg'):
    every image is stylised and written to the folder OUTPUT as NAME.png.
    """
    from nst.api import run as run_api
    from nst.core.images import check_output_path, save_image

    values: dict[str, Any] = {}
    plugins: list[str] = []
    sets: dict[str, dict[str, Any]] = {}
    if config is not None:
        values = _load_config(config)
        plugins = list(values.pop("plugins", values.pop("plugin", [])))
        sets = values.pop("set", {})
        if not isinstance(sets, dict) or not all(isinstance(v, dict) for v in sets.values()):
            raise UsageError(f"{config}: [set] must hold one table per plugin, e.g. [set.depth]")
    flags = dict(method=method, size=size, steps=steps, content_weight=content_weight, style_weight=style_weight,
                 tv_weight=tv_weight, style_loss=style_loss, mmd_kernel=mmd_kernel, style_blend=style_blend,
                 style_scale=style_scale, content_layers=content_layers, style_layers=style_layers, optimizer=optimizer,
                 lr=lr, init=init, seed=seed, scales=scales, preserve_colors=preserve_colors, pooling=pooling,
                 weights=weights, device=device, save_every=save_every, model=model, strength=strength)
    values.update({k: v for k, v in flags.items() if v is not None})
    for name, options in _parse_sets(set_ or []).items():
        sets.setdefault(name, {}).update(options)
    plugins = list(dict.fromkeys(plugins + (plugin or [])))
    note = lambda msg: typer.echo(f"note: {msg}", err=True)
    many = _expand_many(inputs[0])
    if many is not None:
        _run_many(many, inputs[1:], output, plugins, sets, quiet, note, values)
        return
    check_output_path(output)
    content, styles = inputs[0], inputs[1:]
    result = run_api(content, styles, plugins=plugins, options=sets, output=output, progress=not quiet, note=note, **values)
    save_image(result.image, output)
    s = result.summary
    typer.echo(f"wrote {output} ({s.pop('size')}, {s.pop('seconds')} s on {s.pop('device')})")
    for key, value in s.items():
        typer.echo(f"  {key}: {value}")


def _expand_many(first: Path) -> list[Path] | None:
    """The images of a folder or glob pattern given as CONTENT, or None for a single file."""
    import glob

    from nst.core.photos import PHOTO_SUFFIXES

    text = str(first)
    if first.is_dir():
        found = sorted(p for p in first.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES | {".tif", ".tiff"})
    elif any(ch in text for ch in "*?[") and not first.exists():
        found = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
    else:
        return None
    if not found:
        raise NSTError(f"{first}: no images to stylise")
    return found


def _run_many(images: list[Path], styles: list[Path], out_dir: Path, plugins, sets, quiet: bool, note, values) -> None:
    """Stylise each image into OUT_DIR/NAME.png; the model stays loaded between images."""
    import time

    from rich.progress import Progress

    from nst.api import run as run_api
    from nst.core.images import save_image

    if out_dir.suffix and not out_dir.is_dir():
        raise UsageError(f"{out_dir}: with several inputs, -o must be a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    started, failed = time.perf_counter(), []
    with Progress(disable=quiet, transient=True) as bar:
        task = bar.add_task("stylising", total=len(images))
        for path in images:
            try:
                result = run_api(path, styles, plugins=plugins, options=sets, progress=False, note=note, **values)
                save_image(result.image, out_dir / f"{path.stem}.png")
            except UsageError:
                raise
            except NSTError as exc:
                failed.append(path)
                note(str(exc))
            bar.advance(task)
    seconds = time.perf_counter() - started
    done = len(images) - len(failed)
    typer.echo(f"wrote {done} image(s) to {out_dir} ({seconds:.1f} s, {done / seconds:.1f} images/s)")
    if failed:
        raise NSTError(f"{len(failed)} image(s) could not be stylised (see the notes above)")


@app.command(no_args_is_help=True)
def train(
    style: Annotated[Path, typer.Argument(help="The style image.", show_default=False)],
    data: Annotated[Path, typer.Option(help="Folder tree of training photos (.jpg .png .webp); unreadable files are skipped and counted.", show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", help="Model file to write (.safetensors); loss curves go next to it.", show_default=False)],
    size: Annotated[Optional[int], typer.Option(help="Training crop size in pixels. [default: 256]")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Photos per step (per process under torchrun). [default: 4]")] = None,
    steps: Annotated[Optional[int], typer.Option(help="Training steps. [default: 2000]")] = None,
    epochs: Annotated[Optional[float], typer.Option(help="Passes over the data (instead of --steps).")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Adam learning rate. [default: 0.001]")] = None,
    content_weight: Annotated[Optional[float], typer.Option(help="[default: 1]")] = None,
    style_weight: Annotated[Optional[float], typer.Option(help="Higher = more stylised. [default: 0.0005]")] = None,
    tv_weight: Annotated[Optional[float], typer.Option(help="[default: 100000]")] = None,
    style_size: Annotated[Optional[int], typer.Option(help="Long side of the style image during training; larger = bigger strokes. [default: 1.5 x size]")] = None,
    width: Annotated[Optional[int], typer.Option(help="Channels of the network's first layer; 16 is ~3x faster at inference. [default: 32]")] = None,
    blocks: Annotated[Optional[int], typer.Option(help="Residual blocks; fewer is faster. [default: 5]")] = None,
    content_layers: Annotated[Optional[str], typer.Option(help="[default: relu3_1]")] = None,
    style_layers: Annotated[Optional[str], typer.Option(help="[default: relu1_1,relu2_1,relu3_1,relu4_1,relu5_1]")] = None,
    weights: Annotated[Optional[str], typer.Option(help="Loss network weights. [default: vgg19]")] = None,
    device: Annotated[Optional[str], typer.Option(help="auto, cpu, cuda or cuda:N (under torchrun: one GPU per process). [default: auto]")] = None,
    seed: Annotated[Optional[int], typer.Option(help="[default: 0]")] = None,
    checkpoint_every: Annotated[Optional[int], typer.Option(help="Write MODEL.ckpt every N steps. [default: 200]")] = None,
    workers: Annotated[Optional[int], typer.Option(help="Data-loading processes. [default: 2]")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from MODEL.ckpt with the same options; gives the same result as an uninterrupted run.")] = False,
    plugin: Annotated[Optional[list[str]], typer.Option("--plugin", "-p", help="Plugin adding loss terms (repeatable).")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Plugin option PLUGIN.KEY=VALUE (repeatable).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Train a fast feed-forward style network for STYLE on the photos in --data (Johnson 2016).

    Data-parallel on several GPUs or nodes: torchrun --nproc-per-node N -m nst.cli train ...
    """
    from nst.training import train as train_api

    flags = dict(size=size, batch_size=batch_size, steps=steps, epochs=epochs, lr=lr, content_weight=content_weight,
                 style_weight=style_weight, tv_weight=tv_weight, style_size=style_size, width=width, blocks=blocks,
                 content_layers=content_layers, style_layers=style_layers, weights=weights, device=device, seed=seed,
                 checkpoint_every=checkpoint_every, workers=workers)
    result = train_api(style, data, output, plugins=plugin or [], options=_parse_sets(set_ or []), resume=resume,
                       progress=not quiet, note=lambda msg: typer.echo(f"note: {msg}", err=True),
                       **{k: v for k, v in flags.items() if v is not None})
    if result.model is not None:
        last = result.losses[-1] if result.losses else {}
        typer.echo(f"wrote {result.model} ({result.steps} steps, {result.seconds:.1f} s; final loss {last.get('total', 0):.4g})")
        typer.echo(f"  loss curves: {result.model.name}.losses.csv, {result.model.name}.losses.png")


@app.command("export", no_args_is_help=True)
def export(
    model: Annotated[Path, typer.Argument(help="A model file from `nst train`.", show_default=False)],
    onnx: Annotated[Path, typer.Option("--onnx", help="ONNX file to write (input 'image', output 'stylised', (B, 3, H, W) in 0..1, any size).", show_default=False)],
    opset: Annotated[int, typer.Option(help="ONNX opset.")] = 17,
) -> None:
    """Export a trained style network to ONNX, for onnxruntime and other runtimes."""
    from nst.core.images import check_writable
    from nst.core.johnson import export_onnx, load_model

    check_writable(onnx)
    net, info = load_model(model)
    try:
        export_onnx(net, onnx, opset)
    except ImportError as exc:
        raise NSTError(f"ONNX export needs the onnx package ({exc.name}): pip install 'nst-suite[onnx]'") from None
    typer.echo(f"wrote {onnx} (style {info.get('style', '?')}, opset {opset})")


@plugins_app.callback()
def plugins_list(ctx: typer.Context) -> None:
    """Every installed plugin: name, version, providing package, status (broken ones with their error)."""
    if ctx.invoked_subcommand is not None:
        return
    from rich.table import Table

    host = _host()
    methods = host.methods()
    options = host.options()
    table = Table("name", "version", "package", "status", "provides")
    for name, rec in sorted(host.records.items()):
        provides = [f"method {m}" for m, meth in methods.items() if meth.plugin == name]
        if options.get(name):
            provides.append(f"{len(options[name])} option(s)")
        status = "ok" if rec.status == "ok" else f"[red]error[/red]: {rec.error}"
        table.add_row(name, rec.version, rec.package, status, ", ".join(provides))
    _console().print(table)


@plugins_app.command("show")
def plugins_show(name: Annotated[str, typer.Argument(help="Plugin name, as listed by `nst plugins`.")]) -> None:
    """One plugin's options (name, type, default, help) and the methods it provides."""
    from rich.table import Table

    host = _host()
    host.check_plugin(name)
    rec = host.records[name]
    console = _console()
    console.print(f"[bold]{name}[/bold] {rec.version} from {rec.package}")
    for m in (m for m in host.methods().values() if m.plugin == name):
        console.print(f"method [bold]{m.name}[/bold]: {m.help}")
    options = host.options().get(name, {})
    if not options:
        console.print("no options")
        return
    table = Table("option", "type", "default", "help")
    for key, opt in options.items():
        kind = opt.type.__name__ + (f" ({'|'.join(map(str, opt.choices))})" if opt.choices else "")
        table.add_row(f"{name}.{key}", kind, repr(opt.default), opt.help)
    console.print(table)


@app.command("weights")
def weights_list() -> None:
    """Every known weight source: name, status (embedded / cached / missing), size, sha256, origin."""
    from nst.core.weights import sha256_of

    console = _console()
    for src in _host().weights().sources.values():
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
        console.print(f"  sha256  {digest}\n  origin  {src.origin()}\n  file    {path}\n  about   {src.description}", highlight=False, soft_wrap=True)


def _host():
    from nst.api import default_host

    return default_host()


def main() -> None:
    """Console entry point: maps errors to one line and an exit code."""
    try:
        _host().register_commands(app)
        app()
    except UsageError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except NSTError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        typer.echo("error: interrupted", err=True)
        sys.exit(130)
    except Exception as exc:
        if os.environ.get("NST_DEBUG"):
            raise
        typer.echo(f"error: unexpected failure ({type(exc).__name__}: {exc}); set NST_DEBUG=1 for the traceback", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
