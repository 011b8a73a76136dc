"""Train a Johnson transformation network for one style: `nst.train(style, data, output, ...)`.

Runs data-parallel under torchrun (DistributedDataParallel; gloo on CPU, nccl on CUDA) when
WORLD_SIZE > 1. Rank 0 writes the model, checkpoints (MODEL.ckpt) and loss curves (MODEL.losses.csv/png).
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

from nst.context import RunContext, ScaleState
from nst.core.encoder import LAYERS, Encoder, load_vgg
from nst.core.files import atomic_path
from nst.core.images import as_tensor, check_writable, resize_long_side
from nst.core.johnson import TransformerNet, save_model
from nst.core.losses import content_term, merge_terms, style_term, tv_term
from nst.core.photos import PhotoCrops, StreamSampler, collate, find_photos
from nst.errors import NSTError, UsageError
from nst.settings import GATYS_LAYERS, parse_fields


@dataclass
class TrainSettings:
    """Options of `nst train` (CLI flags with '-' for '_', config keys, API keywords)."""

    size: int = 256
    batch_size: int = 4
    steps: int | None = None  # default: 2000 unless epochs is given
    epochs: float | None = None
    lr: float = 1e-3
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

    def validate(self, photos: int, world: int) -> "TrainSettings":
        if not 16 <= self.size <= 2048:
            raise UsageError(f"--size {self.size} is out of range (16 to 2048)")
        if min(self.batch_size, self.width, self.blocks, self.checkpoint_every) < 1 or self.workers < 0:
            raise UsageError("--batch-size, --width, --blocks and --checkpoint-every must be at least 1, --workers 0 or more")
        if self.steps is not None and self.epochs is not None:
            raise UsageError("give --steps or --epochs, not both")
        if self.epochs is not None:
            self.steps = max(1, math.ceil(self.epochs * photos / (self.batch_size * world)))
        self.steps = 2000 if self.steps is None else self.steps
        if self.steps < 1 or self.lr <= 0 or min(self.content_weight, self.style_weight, self.tv_weight) < 0:
            raise UsageError("--steps and --lr must be positive, loss weights 0 or more")
        bad = [l for l in self.content_layers + self.style_layers if l not in LAYERS]
        if bad:
            raise UsageError(f"unknown layer {', '.join(bad)} (known: {', '.join(LAYERS)})")
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
    from nst.api import pick_device

    device = pick_device(name)
    if device.type == "cuda" and "LOCAL_RANK" in os.environ:
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    return device


def checkpoint_path(model: Path) -> Path:
    return model.with_name(model.name + ".ckpt")


def train(style, data: str | Path, output: str | Path, *, plugins: Iterable[str | object] = (),
          options: dict[str, dict[str, Any]] | None = None, resume: bool = False, progress: bool = False,
          note: Callable[[str], None] | None = None, host=None, **settings: Any) -> TrainResult:
    """Train a style network on the photos under DATA; write it to OUTPUT (rank 0). See TrainSettings."""
    from nst.api import plugins_for_call, default_host
    from nst.observers import ProgressBar

    note = note or (lambda msg: print(f"note: {msg}"))
    output = Path(output)
    if output.suffix.lower() != ".safetensors":
        raise UsageError(f"{output}: the model file must end in .safetensors")
    check_writable(output)
    rank, world = _distributed()
    photos = find_photos(data)
    config = make_train_settings(settings).validate(len(photos), world)
    host = host or default_host()
    named = [p for p in plugins if isinstance(p, str)]
    for name in named:
        host.check_plugin(name)
    observers = [ProgressBar(unit="img", per_step=config.batch_size * world)] if progress and rank == 0 else []
    with plugins_for_call(host, [p for p in plugins if not isinstance(p, str)] + observers) as added:
        active = list(dict.fromkeys([*named, *added]))
        resolved = host.resolve_options(active, options or {})
        device = _device(config.device)
        style_full = as_tensor(style, note).to(device)
        style_t = resize_long_side(style_full, config.style_size)
        registry = host.weights()
        ctx = RunContext(settings=config, device=device, content=torch.zeros(1, 3, config.size, config.size, device=device),
                         styles=[style_full], style_weights=[1.0], options=resolved, hooks=host.run_hooks(active),
                         encoder_factory=lambda: encoder, weights=registry, note=note, output=output,
                         generator=torch.Generator().manual_seed(config.seed))
        torch.manual_seed(config.seed)
        torch.set_flush_denormal(True)
        net = (ctx.hooks.train_network(ctx, config) or TransformerNet(config.width, config.blocks)).to(device)
        opt = torch.optim.Adam(net.parameters(), lr=config.lr)
        start, history, skipped = 0, [], []
        ckpt = checkpoint_path(output)
        if resume:
            start, history, skipped = _load_checkpoint(ckpt, config, net, opt, device)
            if rank == 0:
                note(f"resuming from {ckpt} at step {start}")
        model = torch.nn.parallel.DistributedDataParallel(net) if world > 1 else net
        encoder = Encoder(load_vgg(registry, config.weights, progress), config.pooling).to(device)
        with torch.no_grad():
            style_feats = encoder(style_t, config.style_layers)
        _check_readable(photos, data)
        loader = DataLoader(PhotoCrops(photos, config.size, config.seed), batch_size=config.batch_size,
                            sampler=StreamSampler(config.batch_size, start, config.steps - start, rank, world),
                            num_workers=config.workers, collate_fn=collate, persistent_workers=False)
        ctx.total_steps = config.steps
        ctx.guides.update(ctx.hooks.prepare(ctx))
        style_loss = style_term("gram", [style_feats], [1.0], config.style_layers, config.style_weight)
        started, step = time.perf_counter(), start
        info = {"style": Path(str(style)).name if isinstance(style, (str, Path)) else "(in memory)", "settings": asdict(config),
                "plugins": active, "data": str(data), "photos": len(photos), "world_size": world}
        try:
            for batch, bad in loader:
                batch = batch.to(device, non_blocking=True)
                skipped += [b for b in bad if b not in skipped]
                with torch.no_grad():
                    target = encoder(batch, config.content_layers)
                ctx.content = batch
                ctx.scale = ScaleState(step, config.size, batch, [style_t])
                terms = merge_terms([content_term(target, config.content_layers, config.content_weight), style_loss,
                                     tv_term(config.tv_weight)], ctx.hooks.losses(ctx, encoder))
                out = model(batch, **ctx.hooks.network_inputs(ctx, net))
                feats = encoder(out, {l for t in terms for l in t.layers})
                parts = {t.name: t(feats, out) for t in terms}
                total = sum(parts.values())
                opt.zero_grad(set_to_none=True)
                total.backward()
                opt.step()
                step += 1
                losses = _mean_over_ranks(parts, total, world)
                history.append({"step": step, **losses})
                ctx.hooks.on_step(ctx, step, out.detach(), losses)
                if rank == 0 and step % config.checkpoint_every == 0 and step < config.steps:
                    _save_checkpoint(ckpt, config, net, opt, step, history, skipped)
                    write_loss_curves(output, history)
        except KeyboardInterrupt:
            if rank == 0 and step > start:
                _save_checkpoint(ckpt, config, net, opt, step, history, skipped)
                write_loss_curves(output, history)
                note(f"interrupted at step {step}; checkpoint saved, continue with --resume")
            raise
        finally:
            for obs in observers:
                obs.close()
        if skipped and rank == 0:
            note(f"{len(skipped)} unreadable training image(s) skipped, e.g. {skipped[0]}")
        info.update(steps=step, version=_version(), seconds=round(time.perf_counter() - started, 1))
        if rank == 0:
            save_model(net, output, info)
            write_loss_curves(output, history)
            ckpt.unlink(missing_ok=True)
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


def _save_checkpoint(path: Path, config: TrainSettings, net, opt, step: int, history, skipped) -> None:
    with atomic_path(path) as tmp:
        torch.save({"config": asdict(config), "net_config": net.config, "net": net.state_dict(), "opt": opt.state_dict(), "step": step,
                    "history": history, "skipped": skipped, "world": _distributed()[1]}, tmp)


def _load_checkpoint(path: Path, config: TrainSettings, net, opt, device) -> tuple[int, list, list]:
    if not path.is_file():
        raise NSTError(f"--resume: no checkpoint {path} (checkpoints are written every --checkpoint-every steps)")
    try:
        state = torch.load(path, map_location=device, weights_only=True)
        saved = state["config"]
    except Exception:
        raise NSTError(f"{path}: damaged checkpoint; delete it to start over") from None
    differ = [k for k in ("size", "batch_size", "width", "blocks", "lr", "content_weight", "style_weight", "tv_weight", "seed",
                          "style_size", "content_layers", "style_layers", "pooling", "weights") if saved.get(k) != asdict(config)[k]]
    if not differ and state.get("net_config", net.config) != net.config:
        differ = ["network (plugin options)"]
    if differ:
        raise UsageError(f"--resume: the checkpoint was made with other options ({', '.join(differ)}); use the same ones")
    if state.get("world", 1) != _distributed()[1]:
        raise UsageError(f"--resume: the checkpoint was made with {state.get('world', 1)} process(es), this run has "
                         f"{_distributed()[1]}; use the same number so every photo is seen as before")
    net.load_state_dict(state["net"])
    opt.load_state_dict(state["opt"])
    if state["step"] >= config.steps:
        raise UsageError(f"--resume: the checkpoint is at step {state['step']}, nothing left to do for --steps {config.steps}")
    return state["step"], state["history"], state["skipped"]


def write_loss_curves(model: Path, history: list[dict[str, float]]) -> None:
    """MODEL.losses.csv (one row per step) and MODEL.losses.png (log-scale curves), written atomically."""
    if not history:
        return
    names = [k for k in history[0] if k != "step"]
    csv_path = model.with_name(model.name + ".losses.csv")
    with atomic_path(csv_path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["step", *names])
        writer.writerows([[row["step"], *(f"{row[n]:.6g}" for n in names)] for row in history])
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    steps = [row["step"] for row in history]
    for n in names:
        ax.plot(steps, [max(row[n], 1e-12) for row in history], label=n, linewidth=1)
    ax.set(yscale="log", xlabel="step", ylabel="weighted loss", title=model.name)
    ax.legend()
    fig.tight_layout()
    with atomic_path(model.with_name(model.name + ".losses.png")) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
