"""The Python API: run() for the full result, stylize() for just the image."""
from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from PIL import Image

from nst.context import RunContext
from nst.core import colors
from nst.core.encoder import Encoder, load_vgg
from nst.core.images import as_tensor, check_output_path, resize_long_side, to_pil
from nst.errors import NSTError, UsageError
from nst.observers import ProgressBar, Snapshots
from nst.plugins.manager import PluginHost
from nst.settings import Settings, make_settings

_HOST: PluginHost | None = None


def default_host() -> PluginHost:
    """The process-wide plugin host (entry points loaded once)."""
    global _HOST
    if _HOST is None:
        _HOST = PluginHost()
    return _HOST


@dataclass
class Result:
    """image: (1, 3, H, W) in [0, 1] on the CPU; summary: figures from the run and its plugins."""

    image: torch.Tensor
    summary: dict[str, Any] = field(default_factory=dict)
    snapshots: list[Path] = field(default_factory=list)

    def pil(self) -> Image.Image:
        return to_pil(self.image)


def pick_device(name: str) -> torch.device:
    """'auto' | 'cpu' | 'cuda' | 'cuda:i' -> torch.device, with a clear error when CUDA is absent."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or (name.startswith("cuda:") and name[5:].isdigit()):
        if not torch.cuda.is_available():
            raise NSTError(f"device '{name}' requested but no CUDA GPU is available; use --device cpu")
        index = int(name[5:]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise NSTError(f"device '{name}' does not exist (this machine has {torch.cuda.device_count()} GPU(s))")
        return torch.device(name)
    raise UsageError(f"--device must be auto, cpu, cuda or cuda:N, got '{name}'")


def blend_weights(blend: list[float] | None, count: int) -> list[float]:
    """Blend weights for COUNT styles, normalised to sum 1 (equal when not given)."""
    if count == 0:
        return []
    weights = blend if blend is not None else [1.0] * count
    if len(weights) != count:
        raise UsageError(f"--style-blend has {len(weights)} weight(s) for {count} style image(s)")
    total = sum(weights)
    if total <= 0:
        raise UsageError("--style-blend weights must not all be 0")
    return [w / total for w in weights]


@contextmanager
def plugins_for_call(host: PluginHost, plugins: Iterable[object]):
    """Register plugin objects for the duration of a run; yields their names."""
    added = [host.register(p) for p in plugins]
    try:
        yield added
    finally:
        for name in added:
            host.unregister(name)


def run(content, styles: Iterable = (), *, plugins: Iterable[str | object] = (),
        options: dict[str, dict[str, Any]] | None = None, output: str | Path | None = None,
        progress: bool = False, note: Callable[[str], None] | None = None, host: PluginHost | None = None,
        **settings: Any) -> Result:
    """Run a style transfer. CONTENT and STYLES: paths, PIL images or (3, H, W) / (1, 3, H, W) tensors.

    plugins: names of installed plugins, or plugin objects registered for this call only.
    options: {plugin: {key: value}}; settings: any field of nst.settings.Settings (size, steps, ...).
    output: only used for --save-every snapshots (written next to it); the caller saves the result.
    """
    note = note or (lambda msg: print(f"note: {msg}", file=sys.stderr))
    config: Settings = make_settings(settings)
    host = host or default_host()
    styles = list(styles) if not isinstance(styles, (str, Path, Image.Image, torch.Tensor)) else [styles]
    named = [p for p in plugins if isinstance(p, str)]
    objects = [p for p in plugins if not isinstance(p, str)]
    for name in named:
        host.check_plugin(name)
    observers: list[object] = []
    if progress:
        observers.append(ProgressBar())
    snapshots = None
    if config.save_every:
        if output is None:
            raise UsageError("--save-every needs an output path (snapshots are written next to it)")
        snapshots = Snapshots(check_output_path(output), config.save_every)
        observers.append(snapshots)

    with plugins_for_call(host, objects + observers) as added:
        method = host.method(config.method)
        active = list(dict.fromkeys([method.plugin, *named, *added]))
        resolved = host.resolve_options(active, options or {})
        device = pick_device(config.device)
        content_t = resize_long_side(as_tensor(content, note), config.size)
        style_ts = [as_tensor(s, note) for s in styles]
        if method.needs_style and not style_ts:
            raise UsageError(f"method '{method.name}' needs at least one style image")
        weights = blend_weights(config.style_blend, len(style_ts))
        style_ts = [_cap(s, config) for s in style_ts]
        style_ts = colors.prepare_styles(config.preserve_colors, content_t, style_ts)
        torch.manual_seed(config.seed)
        torch.set_flush_denormal(True)  # denormal floats slow CPU convolutions many-fold
        registry = host.weights()

        def make_encoder() -> Encoder:
            return Encoder(load_vgg(registry, config.weights, progress), config.pooling).to(device)

        ctx = RunContext(settings=config, device=device, content=content_t.to(device),
                         styles=[s.to(device) for s in style_ts], style_weights=weights, options=resolved,
                         hooks=host.run_hooks(active), encoder_factory=make_encoder, weights=registry, note=note,
                         output=Path(output) if output else None,
                         generator=torch.Generator().manual_seed(config.seed))
        started = time.perf_counter()
        try:
            ctx.guides.update(ctx.hooks.prepare(ctx))
            image = method.run(ctx)
            image = colors.finish(config.preserve_colors, image, ctx.content)
            image = ctx.hooks.postprocess(ctx, image)
        except torch.cuda.OutOfMemoryError:
            raise NSTError(f"CUDA ran out of memory at --size {config.size}; try a smaller --size, fewer --scales or --device cpu") from None
        finally:
            for obs in observers:
                if isinstance(obs, ProgressBar):
                    obs.close()
        ctx.summary.setdefault("seconds", round(time.perf_counter() - started, 2))
        ctx.summary.setdefault("size", f"{image.shape[-1]}x{image.shape[-2]}")
        ctx.summary.setdefault("device", str(device))
    return Result(image.detach().float().cpu().clamp(0, 1), ctx.summary, snapshots.written if snapshots else [])


def _cap(style: torch.Tensor, config: Settings) -> torch.Tensor:
    """Styles far larger than they will ever be used are shrunk once, to save time and memory."""
    limit = round(config.size * config.style_scale)
    return resize_long_side(style, limit) if max(style.shape[-2:]) > 2 * limit else style


def stylize(content, styles: Iterable = (), **kwargs: Any) -> Image.Image:
    """Like run(), returning the result as a PIL image."""
    return run(content, styles, **kwargs).pil()
