"""The Python API: run() for the full result, stylize() for just the image."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from PIL import Image

from nst.config import read_config
from nst.context import RunContext
from nst.core import colors
from nst.core.devices import pick_device, torch_state_kept
from nst.core.encoder import Encoder, load_vgg
from nst.core.files import Outputs
from nst.core.images import as_tensor, check_min_side, check_output_path, resize_long_side, to_pil
from nst.errors import NSTError, UsageError, note_line
from nst.core.planner import Plan
from nst.core.printfile import check_depth, print_writer, read_extras
from nst.host import PluginHost, default_host, plugins_for_call
from nst.large import PLANNED, PlanReady
from nst.observers import ProgressBar, Snapshots
from nst.settings import Settings, make_settings


@dataclass
class Result:
    """image: (1, 3, H, W) in [0, 1] on the CPU (None with plan=True); summary: figures from the run and its
    plugins; written: the files the run wrote (the output and any plugin's side outputs, then snapshots);
    plan: the memory plan the method made (with plan=True the run stops there and writes nothing)."""

    image: torch.Tensor | None
    summary: dict[str, Any] = field(default_factory=dict)
    snapshots: list[Path] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)
    plan: Plan | None = None

    def pil(self) -> Image.Image:
        return to_pil(self.image)


def blend_weights(blend: list[float] | None, count: int) -> list[float]:
    """Blend weights for COUNT styles, normalised to sum 1 (equal when not given)."""
    if count == 0:
        return []
    weights = blend if blend is not None else [1.0] * count
    if len(weights) != count:
        raise UsageError(f"style_blend has {len(weights)} weight(s) for {count} style image(s)")
    total = sum(weights)
    if total <= 0:
        raise UsageError("style_blend weights must not all be 0")
    return [w / total for w in weights]


def split_plugins(plugins: Iterable[str | object]) -> tuple[list[str], list[object]]:
    """(names of installed plugins, plugin objects) from a `plugins=` argument (a list, not one string)."""
    if isinstance(plugins, (str, Path)) or not isinstance(plugins, Iterable):
        raise UsageError(f"plugins must be a list, e.g. plugins=[\"depth\"], got {plugins!r}")
    plugins = list(plugins)
    objects = [p for p in plugins if not isinstance(p, str)]
    for p in objects:
        if not any(name.startswith("nst_") for name in dir(p)):
            raise UsageError(f"plugins: {p!r} is neither a plugin name nor a plugin object (it has no nst_* hooks)")
    return [p for p in plugins if isinstance(p, str)], objects


def merge_config(config: str | Path | None, plugins: list[str], options: dict | None,
                 settings: dict[str, Any]) -> tuple[list[str], dict[str, dict[str, Any]], dict[str, Any]]:
    """Plugins, options and settings with the config file's underneath the explicit ones."""
    if options is not None and not isinstance(options, dict):
        raise UsageError(f"options must be a dict {{plugin: {{key: value}}}}, got {options!r}")
    merged_options: dict[str, dict[str, Any]] = {}
    if config is not None:
        values, file_plugins, sets = read_config(config)
        settings = {**values, **settings}
        plugins = list(dict.fromkeys(file_plugins + plugins))
        merged_options = {k: dict(v) for k, v in sets.items()}
    for name, values in (options or {}).items():
        if not isinstance(values, dict):
            raise UsageError(f"options for plugin '{name}' must be a dict of option values, got {values!r}")
        merged_options.setdefault(name, {}).update(values)
    return plugins, merged_options, settings


IMAGE_TYPES = (str, os.PathLike, Image.Image, torch.Tensor)


def image_list(styles: Any) -> list:
    """STYLES as a list: one image (path, PIL image or tensor) or an iterable of them."""
    if isinstance(styles, IMAGE_TYPES):
        return [styles]
    if not isinstance(styles, Iterable):
        raise NSTError(f"styles must be an image (a path, a PIL image or a tensor) or a list of them, got {styles!r}")
    return list(styles)


def check_call(note: Any, output: Any, host: Any) -> None:
    """One clear error for API arguments of the wrong type (instead of a TypeError deep inside)."""
    if not callable(note):
        raise UsageError(f"note must be a function taking a message, got {note!r}")
    if output is not None and not isinstance(output, (str, os.PathLike)):
        raise UsageError(f"output must be a file path, got {output!r}")
    if host is not None and not isinstance(host, PluginHost):
        raise UsageError(f"host must be an nst.PluginHost, got {host!r}")


def input_paths(*items: Any, options: dict[str, dict[str, Any]] | None = None) -> list[Path]:
    """Every file among ITEMS (paths, lists of paths, other values ignored) and the Path-valued OPTIONS."""
    found: list[Path] = []
    for item in items:
        for value in item if isinstance(item, (list, tuple)) else [item]:
            if isinstance(value, (str, os.PathLike)) and Path(value).is_file():
                found.append(Path(value))
    for values in (options or {}).values():
        found += input_paths(*values.values())
    return found


def run(content, styles: Iterable = (), *, plugins: Iterable[str | object] = (),
        options: dict[str, dict[str, Any]] | None = None, output: str | Path | None = None,
        config: str | Path | None = None, progress: bool = False, note: Callable[[str], None] | None = None,
        host: PluginHost | None = None, **settings: Any) -> Result:
    """Run a style transfer. CONTENT and STYLES: paths, PIL images or (3, H, W) / (1, 3, H, W) tensors
    (floats in [0, 1] or uint8).

    plugins: names of installed plugins, or plugin objects registered for this call only.
    options: {plugin: {key: value}}; settings: any field of nst.settings.Settings (size, steps, ...);
    config: a TOML file with the same keys (explicit arguments win).
    output: where to write the result; plugins' side outputs (e.g. depth.save) are written with it, all
    or none, and save_every snapshots go next to it. Without it only the side outputs are written.
    The caller's torch RNG and flush-denormal mode are left as they were.
    """
    note = note or note_line
    check_call(note, output, host)
    names, objects = split_plugins(plugins)
    names, options, settings = merge_config(config, names, options, settings)
    config_: Settings = make_settings(settings)
    host = host or default_host()
    styles = image_list(styles)
    for name in names:
        host.check_plugin(name)
    outputs = Outputs(input_paths(content, styles, config_.model, config_.weights, options=options))
    if output is not None:
        outputs.reserve(check_output_path(output))
        check_depth(Path(output), config_.bit_depth)
    bar = ProgressBar() if progress else None
    observers: list[object] = [bar] if bar else []
    snapshots = None
    if config_.save_every:
        if output is None:
            raise UsageError("save_every needs an output path (snapshots are written next to it)")
        snapshots = Snapshots(Path(output), config_.save_every)
        observers.append(snapshots)

    with plugins_for_call(host, objects + observers) as added:
        method = host.method(config_.method)
        if (config_.plan or config_.tile or config_.max_memory) and method.name not in PLANNED:
            raise UsageError(f"method '{method.name}' does not plan its memory or tile; --plan, --tile and --max-memory "
                             f"work with {', '.join(PLANNED)}")
        active = list(dict.fromkeys([method.plugin, *names, *added]))
        resolved = host.resolve_options(active, options)
        outputs.add_inputs(input_paths(options=resolved))
        device = pick_device(config_.device)
        content_t = as_tensor(content, note)
        content_t = check_min_side(resize_long_side(content_t, config_.size), "the content at this size",
                                   "use a larger size or a less elongated image")
        style_ts = [as_tensor(s, note) for s in styles]
        if method.needs_style and not style_ts:
            raise UsageError(f"method '{method.name}' needs at least one style image")
        weights = blend_weights(config_.style_blend, len(style_ts))
        style_ts = [_cap(s, config_) for s in style_ts]
        style_ts = colors.prepare_styles(config_.preserve_colors, content_t, style_ts)
        registry = host.weights()
        with torch_state_kept(device):
            torch.manual_seed(config_.seed)
            torch.set_flush_denormal(True)  # denormal floats slow CPU convolutions many-fold

            def make_encoder() -> Encoder:
                return Encoder(load_vgg(registry, config_.weights, progress), config_.pooling).to(device)

            ctx = RunContext(mode="run", settings=config_, device=device, content=content_t.to(device),
                             styles=[s.to(device) for s in style_ts], style_weights=weights, options=resolved,
                             hooks=host.run_hooks(active, resolved), encoder_factory=make_encoder, weights=registry,
                             architectures=host.architectures(), outputs=outputs, note=note,
                             generator=torch.Generator().manual_seed(config_.seed))
            if bar is not None:
                ctx.on_tile = lambda done, total: bar.tile(ctx, done, total)
            try:
                image = _run_method(ctx, method)
            except PlanReady as ready:
                return Result(None, ctx.summary, plan=ready.plan)
    image = image.detach().float().cpu().clamp(0, 1)
    if output is not None:
        record = run_record(config_, content, styles, names, {k: resolved[k] for k in active if resolved.get(k)})
        outputs.add(output, print_writer(image, output, config_.bit_depth, read_extras(content), record))
    written = outputs.commit()
    return Result(image, ctx.summary, snapshots.written if snapshots else [], written, ctx.plan)


def run_record(settings: Settings, content, styles: list, plugins: list[str], options: dict) -> dict:
    """What the output file records of its run (nst info, nst run --config-from): nst version, seed, every
    setting, the plugins named and their options, the input files."""
    from dataclasses import asdict

    from nst import __version__

    def name(image) -> str | None:
        return str(Path(image).resolve()) if isinstance(image, (str, os.PathLike)) else None

    values = {k: v for k, v in asdict(settings).items() if k != "plan"}
    return {"version": __version__, "seed": settings.seed, "settings": values, "plugins": plugins,
            "options": options, "content": name(content), "styles": [name(s) for s in styles]}


def read_run_record(path: str | Path) -> dict:
    """The record of the run that wrote PATH (see run_record); one NSTError when it has none."""
    from nst.core.printfile import read_record

    record = read_record(path)
    if record is None or not isinstance(record.get("settings"), dict):
        raise NSTError(f"{path}: holds no nst run record (written by another program, by an older nst, or in a "
                       "format without metadata such as WebP or BMP)")
    return record


def _run_method(ctx: RunContext, method) -> torch.Tensor:
    """prepare -> method -> colours -> postprocess, then nst_finish (also after a failure or Ctrl-C)."""
    started, image, error = time.perf_counter(), None, None
    try:
        ctx.guides.update(ctx.hooks.prepare(ctx))
        image = ctx.hooks.method(method, ctx)
        if not isinstance(image, torch.Tensor) or image.dim() != 4 or image.shape[1] != 3:
            raise NSTError(f"method '{method.name}' (plugin '{method.plugin}') returned "
                           f"{tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__}, "
                           "not a (1, 3, H, W) image")
        if not torch.isfinite(image).all():
            raise NSTError(f"method '{method.name}' produced NaN or inf pixels; lower the loss weights or --lr")
        image = colors.finish(ctx.settings.preserve_colors, image, ctx.content)
        image = ctx.hooks.postprocess(ctx, image)
    except torch.cuda.OutOfMemoryError as exc:
        error = exc
        raise NSTError(f"CUDA ran out of memory at size {ctx.settings.size}; try a smaller size, fewer scales or "
                       "device cpu") from None
    except BaseException as exc:
        error = exc
        raise
    finally:
        ctx.hooks.finish(ctx, image if error is None else None, error)
    ctx.summary.setdefault("seconds", round(time.perf_counter() - started, 2))
    ctx.summary.setdefault("size", f"{image.shape[-1]}x{image.shape[-2]}")
    ctx.summary.setdefault("device", str(ctx.device))
    return image


def _cap(style: torch.Tensor, config: Settings) -> torch.Tensor:
    """Styles far larger than they will ever be used are shrunk once, to save time and memory."""
    limit = round(config.size * config.style_scale)
    return resize_long_side(style, limit) if max(style.shape[-2:]) > 2 * limit else style


def stylize(content, styles: Iterable = (), **kwargs: Any) -> Image.Image:
    """Like run(), returning the result as a PIL image."""
    return run(content, styles, **kwargs).pil()
