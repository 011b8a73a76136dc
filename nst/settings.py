"""The core options of a run: one dataclass shared by the CLI flags, the TOML config and the API."""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from nst.core.encoder import LAYERS
from nst.core.images import MAX_SIDE
from nst.core.losses import STYLE_LOSSES
from nst.errors import UsageError

CHOICES = {
    "style_loss": STYLE_LOSSES,
    "mmd_kernel": ("gaussian", "linear", "poly", "meanstd"),
    "optimizer": ("lbfgs", "adam"),
    "init": ("content", "noise", "style"),
    "preserve_colors": ("none", "luminance", "histogram"),
    "pooling": ("max", "avg"),
}

GATYS_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
STYLE_LAYERS = {"gram": GATYS_LAYERS, "mmd": GATYS_LAYERS, "mrf": ("relu3_1", "relu4_1")}  # Li & Wand use 3_1, 4_1


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

    def validate(self) -> "Settings":
        if self.style_layers is None and self.style_loss in STYLE_LAYERS:
            self.style_layers = list(STYLE_LAYERS[self.style_loss])
        for name, allowed in CHOICES.items():
            if getattr(self, name) not in allowed:
                raise UsageError(f"--{flag(name)} must be one of {', '.join(allowed)}, got '{getattr(self, name)}'")
        if not 16 <= self.size <= MAX_SIDE:
            raise UsageError(f"--size {self.size} is out of range (16 to {MAX_SIDE})")
        for name in ("steps", "scales", "save_every", "seed"):
            if getattr(self, name) < (1 if name in ("steps", "scales") else 0):
                raise UsageError(f"--{flag(name)} must be {'at least 1' if name in ('steps', 'scales') else '0 or more'}, got {getattr(self, name)}")
        for name in ("content_weight", "style_weight", "tv_weight"):
            if getattr(self, name) < 0:
                raise UsageError(f"--{flag(name)} must be 0 or more, got {getattr(self, name)}")
        if not 0.05 <= self.style_scale <= 8:
            raise UsageError(f"--style-scale must be between 0.05 and 8, got {self.style_scale}")
        if not 0 <= self.strength <= 1:
            raise UsageError(f"--strength must be between 0 and 1, got {self.strength}")
        if self.lr <= 0:
            raise UsageError(f"--lr must be positive, got {self.lr}")
        if self.size / 2 ** (self.scales - 1) < 16:
            raise UsageError(f"--scales {self.scales} is too many for --size {self.size} (the coarsest scale would be under 16 px)")
        for name in ("content_layers", "style_layers"):
            bad = [l for l in getattr(self, name) if l not in LAYERS]
            if bad or not getattr(self, name):
                raise UsageError(f"--{flag(name)}: unknown layer {', '.join(bad) or '(none given)'} (known: {', '.join(LAYERS)})")
        if self.style_blend is not None and any(w < 0 for w in self.style_blend):
            raise UsageError("--style-blend weights must be 0 or more")
        return self


def flag(name: str) -> str:
    return name.replace("_", "-")


def _coerce(name: str, kind: str, value: Any) -> Any:
    """A config/API value to a field's type (KIND as annotated); lists may be comma-separated strings."""
    base = kind.replace(" | None", "")
    try:
        if base == "int":
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if base == "float":
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if base == "str":
            if not isinstance(value, (str, Path)):
                raise ValueError
            return str(value)
        items = value.split(",") if isinstance(value, str) else list(value)  # list fields
        if "float" in base:
            return [float(v) for v in items]
        return [str(v).strip() for v in items]
    except (TypeError, ValueError):
        raise UsageError(f"{flag(name)}: expected {base}, got {value!r}") from None


def parse_fields(cls, values: dict[str, Any], what: str = "option") -> dict[str, Any]:
    """Keyword arguments for dataclass CLS from VALUES (keys with dashes allowed, None = not given),
    checking names and types."""
    types = {f.name: f.type for f in fields(cls)}
    clean = {}
    for key, value in values.items():
        name = key.replace("-", "_")
        if name not in types:
            raise UsageError(f"unknown {what} '{key}' (known: {', '.join(sorted(flag(k) for k in types))})")
        if value is not None:
            clean[name] = _coerce(name, types[name], value)
    return clean


def make_settings(values: dict[str, Any]) -> Settings:
    """Settings from a dict of field names (dashes allowed), checking names, types and ranges."""
    return Settings(**parse_fields(Settings, values)).validate()
