"""The core options of a run: one dataclass shared by the CLI flags, the TOML config and the API."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nst.core.encoder import LAYERS
from nst.core.images import MAX_SIDE
from nst.core.losses import STYLE_LOSSES
from nst.core.onnxrun import BACKENDS
from nst.core.planner import parse_bytes
from nst.options import FieldError, check_range, parse_fields

CHOICES = {
    "style_loss": STYLE_LOSSES,
    "mmd_kernel": ("gaussian", "linear", "poly", "meanstd"),
    "optimizer": ("lbfgs", "adam"),
    "init": ("content", "noise", "style"),
    "preserve_colors": ("none", "luminance", "histogram"),
    "pooling": ("max", "avg"),
    "backend": BACKENDS,
}

GATYS_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
STYLE_LAYERS = {"gram": GATYS_LAYERS, "mmd": GATYS_LAYERS, "mrf": ("relu3_1", "relu4_1")}  # Li & Wand use 3_1, 4_1
MAX_WEIGHT = 1e12  # loss weights beyond this overflow float32 losses: refused rather than "diverged"
MAX_STEPS = 1_000_000
SEED_LIMIT = 2 ** 63 - 1


@dataclass
class Settings:
    """Core options. Field names are the CLI flags with '-' for '_' and the config-file keys."""

    method: str = "gatys"
    size: int = 512
    steps: int = 300
    content_weight: float = 1.0
    style_weight: float = 5e-3
    tv_weight: float = 1e5
    style_loss: str = "gram"
    mmd_kernel: str = "gaussian"
    style_blend: list[float] | None = None
    style_scale: float = 1.0
    content_layers: list[str] = field(default_factory=lambda: ["relu4_2"])
    style_layers: list[str] | None = None  # None: STYLE_LAYERS[style_loss]
    optimizer: str = "lbfgs"
    lr: float = 0.02
    init: str = "content"
    seed: int = 0
    scales: int = 1
    preserve_colors: str = "none"
    pooling: str = "avg"
    weights: str = "vgg19"
    device: str = "auto"
    save_every: int = 0
    model: str | None = None
    strength: float = 1.0
    backend: str = "auto"
    max_memory: str | None = None  # e.g. "8GB"; None: the device's free memory less a margin
    tile: int = 0  # tile cell side in px; 0: the planner decides
    plan: bool = False  # print the plan and stop
    bit_depth: int = 8  # 8 or 16 (PNG, TIFF)

    def validate(self) -> "Settings":
        """Checks choices and ranges; errors name the field (FieldError)."""
        if self.style_layers is None and self.style_loss in STYLE_LAYERS:
            self.style_layers = list(STYLE_LAYERS[self.style_loss])
        for name, allowed in CHOICES.items():
            if getattr(self, name) not in allowed:
                raise FieldError(name, f"must be one of {', '.join(allowed)}, got '{getattr(self, name)}'")
        if not 16 <= self.size <= MAX_SIDE:
            raise FieldError("size", f"{self.size} is out of range (16 to {MAX_SIDE} pixels on the long side)")
        check_range("steps", self.steps, 1, MAX_STEPS)
        check_range("scales", self.scales, 1, 10)
        check_range("save_every", self.save_every, 0, MAX_STEPS)
        check_range("seed", self.seed, 0, SEED_LIMIT)
        for name in ("content_weight", "style_weight", "tv_weight"):
            check_range(name, getattr(self, name), 0, MAX_WEIGHT)
        check_range("style_scale", self.style_scale, 0.05, 8)
        check_range("strength", self.strength, 0, 1)
        if not 0 < self.lr <= 10:
            raise FieldError("lr", f"must be positive and at most 10, got {self.lr:g}")
        if self.size / 2 ** (self.scales - 1) < 16:
            raise FieldError("scales", f"{self.scales} is too many for size {self.size} (the coarsest scale would be under 16 px)")
        for name in ("content_layers", "style_layers"):
            bad = [l for l in getattr(self, name) if l not in LAYERS]
            if bad or not getattr(self, name):
                raise FieldError(name, f"unknown layer {', '.join(bad) or '(none given)'} (known: {', '.join(LAYERS)})")
        if self.style_blend is not None:
            check_range("style_blend", self.style_blend, 0, MAX_WEIGHT)
        if self.tile != 0 and not 16 <= self.tile <= MAX_SIDE:
            raise FieldError("tile", f"must be 0 (planned) or 16 to {MAX_SIDE} px, got {self.tile}")
        if self.bit_depth not in (8, 16):
            raise FieldError("bit_depth", f"must be 8 or 16, got {self.bit_depth}")
        if self.max_memory is not None:
            parse_bytes(self.max_memory)
        return self

    @property
    def memory_budget(self) -> int | None:
        """max_memory in bytes, or None (the planner takes the device's free memory less a margin)."""
        return None if self.max_memory is None else parse_bytes(self.max_memory)


def make_settings(values: dict[str, Any]) -> Settings:
    """Settings from a dict of field names (dashes allowed), checking names, types and ranges."""
    return Settings(**parse_fields(Settings, values)).validate()
