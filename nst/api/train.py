"""Train a feed-forward style network: `nst.train(style, data, output, ...)` (Johnson et al. 2016).

Runs data-parallel under torchrun (DistributedDataParallel; gloo on CPU, nccl on CUDA) when
WORLD_SIZE > 1. Rank 0 writes the model with its loss curves (MODEL.losses.csv/png) at the end, all
together, and a checkpoint (MODEL.ckpt, with interim curves MODEL.ckpt.losses.csv/png) every
--checkpoint-every steps and on Ctrl-C. A non-finite loss stops the training; the last checkpoint stays.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from nst.api.arguments import check_call, input_paths, merge_config, split_plugins
from nst.api.checkpoints import checkpoint_path, load_checkpoint, save_checkpoint
from nst.api.curves import curve_paths, write_csv, write_loss_curves, write_plot
from nst.contract.context import RunContext, TrainBatch
from nst.core import precision, threads
from nst.core.devices import check_memory, torch_state_kept
from nst.core.encoder import Encoder, load_vgg
from nst.core.files import Outputs
from nst.core.images import as_tensor, check_min_side, load_image, resize_long_side
from nst.core.johnson import MultiStyleNet, TransformerNet, save_model
from nst.core.losses import content_term, merge_terms, style_term, tv_term
from nst.core.photos import PhotoCrops, StreamSampler, collate, find_photos
from nst.errors import NSTError, UsageError, note_line
from nst.host import default_host, plugins_for_call
from nst.runtime.distributed import process_device, rank_and_world
from nst.runtime.observers import ProgressBar
from nst.settings import TrainSettings, make_train_settings
from nst.settings.train import DEFAULT_LR
from nst.version import __version__

SHAPING_HOOKS = ("nst_losses", "nst_train_network", "nst_network_inputs")  # plugins with these change what is trained
BYTES_PER_PIXEL = 8192  # VGG19 activations and gradients of the loss, plus the network's, per training pixel


@dataclass
class TrainResult:
    """model: the file written (None on ranks other than 0); state: the trained weights (CPU tensors);
    losses: one dict of weighted loss terms per step; skipped: unreadable training photos."""

    model: Path | None
    steps: int
    losses: list[dict[str, float]]
    skipped: list[str]
    seconds: float
    state: dict[str, torch.Tensor] = field(default_factory=dict)


def style_network(settings: TrainSettings, styles: int) -> torch.nn.Module:
    """The network `nst train` trains when no plugin gives one: Johnson's TransformerNet for one style, a
    MultiStyleNet (conditional instance norm) for several or for --arch light."""
    w = settings.width
    if settings.arch == "light":
        return MultiStyleNet(styles, (w, w, w), settings.blocks, (max(1, w // 4), max(1, w // 8)))
    if styles > 1:
        return MultiStyleNet(styles, (w, 2 * w, 4 * w), settings.blocks, (2 * w, w))
    return TransformerNet(w, settings.blocks)


def style_name(style) -> str:
    return Path(str(style)).name if isinstance(style, (str, Path)) else "(in memory)"


def train(style, data: str | Path, output: str | Path, *, plugins: Iterable[str | object] = (),
          options: dict[str, dict[str, Any]] | None = None, resume: bool = False, overwrite: bool = False,
          config: str | Path | None = None, progress: bool = False, note: Callable[[str], None] | None = None,
          host=None, **settings: Any) -> TrainResult:
    """Train a style network on the photos under DATA; write it to OUTPUT (rank 0). See TrainSettings.

    STYLE: one style image, or a list of them: one network learns them all (Dumoulin et al. 2017), a step
    per style in turn, and runs any of them or a blend (johnson.style, --style-blend). A checkpoint left by
    an interrupted training is continued with RESUME, or replaced with OVERWRITE
    (without either it is refused). config: a TOML file with the same keys (explicit arguments win).
    The caller's torch RNG and flush-denormal mode are left as they were."""
    note = note or note_line
    check_call(note, output, host)
    names, objects = split_plugins(plugins)
    names, options, settings = merge_config(config, names, options, settings)
    output = Path(output)
    if output.suffix.lower() != ".safetensors":
        raise UsageError(f"{output}: the model file must end in .safetensors")
    if resume and overwrite:
        raise UsageError("give --resume or --overwrite, not both")
    ckpt = checkpoint_path(output)
    if ckpt.exists() and not (resume or overwrite):
        raise UsageError(f"{ckpt} is left from an interrupted training: continue it with --resume, or start over with "
                         "--overwrite")
    styles = list(style) if isinstance(style, (list, tuple)) else [style]
    if not styles:
        raise UsageError("give at least one style image")
    outputs = Outputs(input_paths(styles))
    for path in (output, *curve_paths(output), *([] if resume else [ckpt])):
        outputs.reserve(path)
    rank, world = rank_and_world()
    photos = find_photos(data)
    train_settings = make_train_settings(settings).validate(len(photos), world)
    host = host or default_host()
    for name in names:
        host.check_plugin(name)
    observers = [ProgressBar(unit="img", per_step=train_settings.batch_size * world)] if progress and rank == 0 else []
    with plugins_for_call(host, objects + observers) as added:
        active = list(dict.fromkeys([*names, *added]))
        resolved = host.resolve_options(active, options)
        outputs.add_inputs(input_paths(options=resolved))
        device = process_device(train_settings.device)
        style_images = [check_min_side(as_tensor(s, note), f"style image {style_name(s)}", "use a larger style image").to(device)
                        for s in styles]
        registry = host.weights()
        numerics = precision.choose(train_settings.precision, device)
        with torch_state_kept(device), threads.using(threads.resolve(train_settings.threads)):
            torch.manual_seed(train_settings.seed)
            torch.set_flush_denormal(True)
            ctx = RunContext(mode="train", settings=train_settings, device=device, content=None, styles=style_images,
                             style_weights=[1 / len(styles)] * len(styles), options=resolved, hooks=host.run_hooks(active,
                                                                                                                   resolved),
                             encoder_factory=lambda: encoder, weights=registry, architectures=host.architectures(),
                             outputs=outputs, note=note, generator=torch.Generator().manual_seed(train_settings.seed),
                             precision=numerics)
            net = ctx.hooks.train_network(ctx, train_settings)
            if net is not None and len(styles) > 1:
                raise UsageError("a plugin's own network learns one style; give one style image")
            net = (net or style_network(train_settings, len(styles))).to(device)
            if train_settings.lr is None:
                train_settings.lr = getattr(net, "default_lr", DEFAULT_LR)
                if not (isinstance(train_settings.lr, float) and 0 < train_settings.lr <= 1):
                    raise NSTError(f"the network to train has default_lr {train_settings.lr!r}; it must be a float in "
                                   "(0, 1]")
            arch = getattr(net, "config", {}).get("arch")
            if arch not in ctx.architectures:
                raise NSTError(f"the network to train (architecture {arch!r}) is not registered through "
                               "nst_register_architectures, so its model file could not be loaded")
            if overwrite and rank == 0:
                ckpt.unlink(missing_ok=True)
            check_memory(BYTES_PER_PIXEL * train_settings.batch_size * train_settings.size ** 2,
                         f"training at --size {train_settings.size}, --batch-size {train_settings.batch_size}", device,
                         "use a smaller --size or --batch-size")
            encoder = Encoder(load_vgg(registry, train_settings.weights, progress), train_settings.pooling,
                              precision=numerics).to(device)
            result, error = None, None
            try:
                shaping = {i.plugin_name for hook in SHAPING_HOOKS for i in getattr(host.pm.hook, hook).get_hookimpls()}
                taking_part = {p: {k: str(v) for k, v in resolved[p].items()} for p in active if p in shaping}
                result = train_loop(ctx, net, encoder, photos, data, [style_name(s) for s in styles], output, resume,
                                     rank, world, taking_part)
            except BaseException as exc:
                error = exc
                raise
            finally:
                ctx.hooks.finish(ctx, result, error)
    return result


def train_loop(ctx: RunContext, net, encoder, photos, data, names: list[str], output: Path, resume: bool, rank: int,
                world: int, plugins: dict[str, dict[str, str]]) -> TrainResult:
    """The training steps, checkpoints and the final model + curves. PLUGINS: {name: options as text} of the
    plugins taking part that shape the training (SHAPING_HOOKS), kept in checkpoints so a resume uses the same."""
    settings: TrainSettings = ctx.settings
    device = ctx.device
    opt = torch.optim.Adam(net.parameters(), lr=settings.lr)
    start, history, skipped = 0, [], []
    ckpt = checkpoint_path(output)
    if resume:
        start, history, skipped = load_checkpoint(ckpt, settings, net, opt, device, ctx.architectures, plugins)
        if rank == 0:
            ctx.note(f"resuming from {ckpt} at step {start}")
    numerics = ctx.precision
    model = torch.nn.parallel.DistributedDataParallel(numerics.prepare(net)) if world > 1 else numerics.prepare(net)
    style_ts = [resize_long_side(img, settings.style_size) for img in ctx.styles]
    with torch.no_grad():
        style_losses = [style_term("gram", [encoder(img, settings.style_layers)], [1.0], settings.style_layers,
                                   settings.style_weight)
                        for img in style_ts]
    check_readable(photos, data)
    loader = DataLoader(PhotoCrops(photos, settings.size, settings.seed), batch_size=settings.batch_size,
                        sampler=StreamSampler(settings.batch_size, start, settings.steps - start, rank, world),
                        num_workers=settings.workers, collate_fn=collate, persistent_workers=False)
    ctx.total_steps = settings.steps
    ctx.guides.update(ctx.hooks.prepare(ctx))
    started, step, saved = time.perf_counter(), start, start
    info = {"style": ", ".join(names), "styles": names, "settings": asdict(settings),
            "plugins": sorted(plugins), "data": str(data), "photos": len(photos), "world_size": world,
            "precision": numerics.describe()}

    def checkpoint() -> None:
        nonlocal saved
        if rank == 0 and step > saved:
            save_checkpoint(ckpt, settings, net, opt, step, history, skipped, plugins)
            saved = step  # before the curves: a Ctrl-C while they are drawn leaves a checkpoint that counts
            write_loss_curves(ckpt, history)

    try:
        for batch, bad in loader:
            batch = batch.to(device, non_blocking=True)
            skipped += [b for b in bad if b not in skipped]
            with torch.no_grad():
                target = encoder(batch, settings.content_layers)
            k = step % len(style_ts)  # the style of this step: each in turn
            ctx.batch = TrainBatch(step, batch, [style_ts[k]])
            terms = merge_terms([content_term(target, settings.content_layers, settings.content_weight), style_losses[k],
                                 tv_term(settings.tv_weight)], ctx.hooks.losses(ctx, encoder))
            inputs = ctx.hooks.network_inputs(ctx, net)
            if isinstance(net, MultiStyleNet):
                inputs["style"] = k
            out = numerics.network(model)(batch, **inputs)
            feats = encoder(out, {l for t in terms for l in t.layers})
            parts = {t.name: t(feats, out) for t in terms}
            total = sum(parts.values())
            losses = mean_over_ranks(parts, total, world)
            if not math.isfinite(losses["total"]):
                kept = f"; the checkpoint of step {saved} is kept" if saved > 0 else ""
                raise NSTError(f"training diverged at step {step + 1} (the loss is not finite){kept}; start over "
                               "(--overwrite) with a lower --lr or loss weights")
            opt.zero_grad(set_to_none=True)
            total.backward()
            opt.step()
            step += 1
            history.append({"step": step, **losses})
            ctx.hooks.on_step(ctx, step, out.detach(), losses)
            if step % settings.checkpoint_every == 0 and step < settings.steps:
                checkpoint()
    except KeyboardInterrupt:
        try:
            checkpoint()
        except Exception as exc:  # a full disk, say: the Ctrl-C still ends the training as one
            ctx.note(f"interrupted; the checkpoint of step {step} could not be written ({exc})")
        if rank == 0 and saved > start:
            ctx.note(f"interrupted at step {step}; checkpoint saved, continue with --resume")
        raise
    if skipped and rank == 0:
        ctx.note(f"{len(skipped)} unreadable training image(s) skipped, e.g. {skipped[0]}")
    info.update(steps=step, version=__version__, seconds=round(time.perf_counter() - started, 1))
    if rank == 0:
        ctx.outputs.add(output, lambda tmp: save_model(net, tmp, info))
        csv_path, png_path = curve_paths(output)
        ctx.outputs.add(csv_path, lambda tmp: write_csv(tmp, history))
        ctx.outputs.add(png_path, lambda tmp: write_plot(tmp, history, output.name))
        ctx.outputs.commit()
        for path in (ckpt, *curve_paths(ckpt)):
            path.unlink(missing_ok=True)
    state = {k: v.detach().cpu().clone(memory_format=torch.contiguous_format) for k, v in net.state_dict().items()}
    return TrainResult(output if rank == 0 else None, step, history, skipped, time.perf_counter() - started, state)


def check_readable(photos: list[Path], data) -> None:
    """Fail with one line, before any worker starts, when not a single photo can be read."""
    for path in photos:
        try:
            load_image(path)
            return
        except NSTError:
            continue
    raise NSTError(f"{data}: none of the {len(photos)} training images can be read")


def mean_over_ranks(parts: dict[str, torch.Tensor], total: torch.Tensor, world: int) -> dict[str, float]:
    """The loss terms of this step as floats, averaged over all ranks (each saw its share of the batch)."""
    values = torch.stack([v.detach() for v in parts.values()] + [total.detach()]).float()
    if world > 1:
        dist.all_reduce(values)
        values /= world
    return dict(zip([*parts, "total"], values.tolist()))
