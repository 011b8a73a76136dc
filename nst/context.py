"""What a run carries from hook to hook: RunContext, the schedule type and the method record."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import torch

from nst.settings import Settings

if TYPE_CHECKING:
    from nst.core.encoder import Encoder
    from nst.core.weights import Registry
    from nst.plugins.manager import RunHooks


@dataclass
class Scale:
    """One level of a coarse-to-fine schedule: long side in pixels and optimisation steps."""

    size: int
    steps: int


Schedule = list[Scale]


@dataclass
class ScaleState:
    """The current scale's inputs: content (1, 3, h, w) and styles [(1, 3, h_i, w_i)], on ctx.device."""

    index: int
    size: int
    content: torch.Tensor
    styles: list[torch.Tensor]


@dataclass
class Method:
    """A transfer method: run(ctx) -> (1, 3, H, W) image in [0, 1]."""

    name: str
    run: Callable[["RunContext"], torch.Tensor]
    help: str = ""
    needs_style: bool = True
    plugin: str = ""


@dataclass
class RunContext:
    """Everything a run's hooks see.

    content: (1, 3, H, W) at the output size; styles: [(1, 3, H_i, W_i)] as loaded (after colour
    preparation); style_weights: blend weights summing to 1; options: {plugin: {key: value}} for the
    plugins taking part; guides: what nst_prepare hooks returned; summary: figures a plugin wants
    reported at the end (name -> value); scale: the current ScaleState while a method runs;
    total_steps: set by the method when it knows how many on_step calls will come; weights: the
    registry of weight sources (VGG and every plugin's), for plugins that load their own networks.
    """

    settings: Settings
    device: torch.device
    content: torch.Tensor
    styles: list[torch.Tensor]
    style_weights: list[float]
    options: dict[str, dict[str, Any]]
    hooks: "RunHooks"
    encoder_factory: Callable[[], "Encoder"]
    weights: "Registry"
    note: Callable[[str], None] = print
    output: Path | None = None
    guides: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    scale: ScaleState | None = None
    total_steps: int | None = None
    generator: torch.Generator | None = None
    _encoder: "Encoder | None" = None

    def encoder(self) -> "Encoder":
        """The shared VGG encoder on ctx.device (loaded once per run)."""
        if self._encoder is None:
            self._encoder = self.encoder_factory()
        return self._encoder
