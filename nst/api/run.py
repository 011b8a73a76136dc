"""The Python API: run() for the full result, stylize() for just the image."""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from nst.api.arguments import blend_weights, check_call, image_list, input_paths, merge_config, split_plugins
from nst.contract.context import Method, RunContext
from nst.contract.failures import guarded
from nst.core import colors, precision, threads
from nst.core.devices import pick_device, torch_state_kept
from nst.core.encoder import Encoder, load_vgg
from nst.core.files import Outputs
from nst.core.images import as_tensor, check_min_side, check_output_path, resize_long_side, to_pil
from nst.core.planner import MemoryPlan
from nst.core.printfile import check_depth, print_writer, read_extras
from nst.errors import NSTError, UsageError, note_line
from nst.host import PluginHost, default_host, plugins_for_call
from nst.runtime.large import PLANNED, PlanReady
from nst.runtime.observers import ProgressBar, Snapshots
from nst.runtime.run_record import run_record
from nst.settings import Settings, make_settings


@dataclass
class Result:
    """image: (1, 3, H, W) in [0, 1] on the CPU, as written (None with plan=True); summary: figures from the run and
    its plugins; written: the files the run wrote together (the output and any plugin's side outputs); snapshots:
    the save_every images; plan: the memory plan the method made (with plan=True the run stops there and writes
    nothing)."""

    image: torch.Tensor | None
    summary: dict[str, Any] = field(default_factory=dict)
    snapshots: list[Path] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)
    plan: MemoryPlan | None = None

    def pil(self) -> Image.Image:
        return to_pil(self.image)


def run(content, styles: Iterable = (), *, plugins: Iterable[str | object] = (),
        options: dict[str, dict[str, Any]] | None = None, output: str | Path | None = None,
        config: str | Path | None = None, progress: bool = False, note: Callable[[str], None] | None = None,
        host: PluginHost | None = None, overwrite: bool = False, **settings: Any) -> Result:
    """Run a style transfer. CONTENT and STYLES: paths, PIL images or (3, H, W) / (1, 3, H, W) tensors
    (floats in [0, 1] or uint8).

    plugins: names of installed plugins, or plugin objects registered for this call only.
    options: {plugin: {key: value}}; settings: any field of nst.settings.Settings (size, steps, ...);
    config: a TOML file with the same keys (explicit arguments win).
    output: where to write the result (an existing file is replaced); plugins' side outputs (e.g. depth.save) are
    written with it, all or none, and save_every snapshots go next to it. Without it only the side outputs are
    written. overwrite: side outputs may replace the files of those names that nst wrote in their folders before
    (without it an existing one is refused).
    The caller's torch RNG and flush-denormal mode are left as they were.
    """
    note = note or note_line
    check_call(note, output, host, overwrite)
    names, objects = split_plugins(plugins)
    names, options, settings = merge_config(config, names, options, settings)
    run_settings: Settings = make_settings(settings)
    host = host or default_host()
    styles = image_list(styles)
    for name in names:
        host.check_plugin(name)
    outputs = Outputs(input_paths(content, styles, run_settings.model, run_settings.weights, options=options), overwrite)
    if output is not None:
        outputs.reserve(check_output_path(output))
        check_depth(Path(output), run_settings.bit_depth)
    bar = ProgressBar() if progress else None
    observers: list[object] = [bar] if bar else []
    snapshots = None
    if run_settings.save_every:
        if output is None:
            raise UsageError("save_every needs an output path (snapshots are written next to it)")
        snapshots = Snapshots(Path(output), run_settings.save_every)
        observers.append(snapshots)

    with plugins_for_call(host, objects + observers) as added:
        method = host.method(run_settings.method)
        if (run_settings.plan or run_settings.tile or run_settings.max_memory) and method.name not in PLANNED:
            raise UsageError(f"method '{method.name}' does not plan its memory or tile; --plan, --tile and "
                             "--max-memory "
                             f"work with {', '.join(PLANNED)}")
        active = list(dict.fromkeys([method.plugin, *names, *added]))
        resolved = host.resolve_options(active, options)
        outputs.add_inputs(input_paths(options=resolved))
        device = pick_device(run_settings.device)
        content_t = as_tensor(content, note)
        content_t = check_min_side(resize_long_side(content_t, run_settings.size), "the content at this size",
                                   "use a larger size or a less elongated image")
        style_ts = [as_tensor(s, note) for s in styles]
        if method.needs_style and not style_ts:
            raise UsageError(f"method '{method.name}' needs at least one style image")
        weights = blend_weights(run_settings.style_blend, len(style_ts))
        sides = [max(s.shape[-2:]) for s in style_ts]
        style_ts = [_cap(s, run_settings) for s in style_ts]
        style_ts = colors.prepare_styles(run_settings.preserve_colors, content_t, style_ts)
        registry = host.weights()
        numerics = precision.choose(run_settings.precision, device)
        with torch_state_kept(device), threads.using(threads.resolve(run_settings.threads)):
            torch.manual_seed(run_settings.seed)
            torch.set_flush_denormal(True)  # denormal floats slow CPU convolutions many-fold

            def make_encoder() -> Encoder:
                return Encoder(load_vgg(registry, run_settings.weights, progress), run_settings.pooling,
                               precision=numerics).to(device)

            ctx = RunContext(mode="run", settings=run_settings, device=device, content=content_t.to(device),
                             styles=[s.to(device) for s in style_ts], style_weights=weights, options=resolved,
                             hooks=host.run_hooks(active, resolved), encoder_factory=make_encoder, weights=registry,
                             architectures=host.architectures(), outputs=outputs, note=note,
                             generator=torch.Generator().manual_seed(run_settings.seed), style_sides=sides,
                             precision=numerics)
            if bar is not None:
                ctx.on_tile = lambda done, total: bar.tile(ctx, done, total)
            try:
                image = _run_method(ctx, method)
            except PlanReady as ready:
                return Result(None, ctx.summary, plan=ready.plan)
    image = image.detach().float().cpu().clamp(0, 1)
    if output is not None:
        record = run_record(run_settings, content, styles, names, {k: resolved[k] for k in active if resolved.get(k)},
                            ctx.summary.get("precision", ""))
        outputs.add(output, print_writer(image, output, run_settings.bit_depth, read_extras(content, note),
                                                 record))
    written = outputs.commit()
    return Result(image, ctx.summary, snapshots.written if snapshots else [], written, ctx.plan)


def _run_method(ctx: RunContext, method: Method) -> torch.Tensor:
    """prepare -> method -> colours -> postprocess, then nst_finish (also after a failure or Ctrl-C)."""
    started, image, error = time.perf_counter(), None, None
    try:
        ctx.guides.update(ctx.hooks.prepare(ctx))
        image = guarded(method.plugin, f"method '{method.name}'", method.run, ctx)
        if not isinstance(image, torch.Tensor) or image.dim() != 4 or image.shape[1] != 3:
            raise NSTError(f"method '{method.name}' (plugin '{method.plugin}') returned "
                           f"{tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__}, "
                           "not a (1, 3, H, W) image")
        if not torch.isfinite(image).all():
            raise NSTError(f"method '{method.name}' produced NaN or inf pixels; lower the loss weights or --lr")
        image = colors.finish(ctx.settings.preserve_colors, image, ctx.content)
        image = ctx.hooks.postprocess(ctx, image)  # each result checked: (1, 3, H, W), finite
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
    ctx.summary.setdefault("precision", ctx.precision.describe())
    return image


def _cap(style: torch.Tensor, settings: Settings) -> torch.Tensor:
    """Styles far larger than they will ever be used are shrunk once, to save time and memory."""
    limit = round(settings.size * settings.style_scale)
    return resize_long_side(style, limit) if max(style.shape[-2:]) > 2 * limit else style


def stylize(content, styles: Iterable = (), **kwargs: Any) -> Image.Image:
    """Like run(), returning the result as a PIL image."""
    return run(content, styles, **kwargs).pil()
