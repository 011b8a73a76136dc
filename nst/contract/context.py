"""What a run or a training carries from hook to hook: RunContext, the schedule types and the method record."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from nst.contract.dispatch import RunHooks
from nst.core.encoder import Encoder
from nst.core.files import Outputs
from nst.core.precision import PLAIN, Precision
from nst.core.weights import Registry
from nst.settings import Settings, TrainSettings


@dataclass
class Scale:
    """One level of a coarse-to-fine schedule: long side in pixels and optimisation steps."""

    size: int
    steps: int


Schedule = list[Scale]


@dataclass
class ScaleState:
    """The current scale of a gatys run: content (1, 3, h, w) and styles [(1, 3, h_i, w_i)], on ctx.device."""

    index: int
    size: int
    content: torch.Tensor
    styles: list[torch.Tensor]


@dataclass
class TrainBatch:
    """The current step of `nst train`: INDEX counts steps from 0, CONTENT the (B, 3, S, S) batch of photos,
    STYLES the style image(s) at the training style size."""

    index: int
    content: torch.Tensor
    styles: list[torch.Tensor]


@dataclass
class Method:
    """A transfer method: run(ctx) -> (1, 3, H, W) image in [0, 1]."""

    name: str
    run: Callable[[RunContext], torch.Tensor]
    help: str = ""
    needs_style: bool = True
    plugin: str = ""


@dataclass
class RunContext:
    """Everything a run's (or a training's) hooks see.

    mode: "run" (`nst run` and the API: gatys, johnson, analogy and plugin methods) or "train"
    (`nst train`); settings: nst.Settings in runs, nst.TrainSettings in training;
    content: (1, 3, H, W) at the output size in runs, None in training (photos come per step in
    `batch`); styles: [(1, 3, H_i, W_i)] as loaded (after colour preparation; in runs, a style over 2 ×
    --size × --style-scale on its long side is shrunk to --size × --style-scale); style_sides: the long side
    of each style image as read, before that (empty: as in styles); style_weights: blend
    weights summing to 1; options: {plugin: {key: value}} for the plugins taking part; guides: what
    nst_prepare hooks returned; summary: figures reported at the end (name -> value); scale: the current
    ScaleState while a gatys run optimises (None otherwise); batch: the current TrainBatch in training;
    total_steps: set by the method when it knows how many on_step calls will come; step_work: the relative cost of
    each of those steps when they differ (coarse to fine: the pixels of the step's scale), so the progress
    display's time left weighs them; weights: the registry
    of weight sources; architectures: the registry of network architectures (name -> build(config));
    outputs: the files this run writes (nst.core.files.Outputs): a plugin writing files reserves their paths
    in nst_prepare (`ctx.outputs.reserve(folder / name, make_folder=True, within=folder)` for a name it chooses in
    the user's folder: checked against the inputs and the overwrite rule) and queues them with
    `ctx.outputs.add(path, write)`, so they appear together with the result or not at all. on_tile(done,
    total): tiled work reports its tiles (within the current step) to the progress display, when there is one;
    plan: the memory plan the method made (nst.core.planner.MemoryPlan), if any; precision: how networks compute on
    this device (nst.core.precision.Precision: the encoder uses it; a method running a network of its own wraps its
    forward with ctx.precision.network and prepares the module with ctx.precision.prepare).
    """

    mode: str
    settings: Settings | TrainSettings
    device: torch.device
    content: torch.Tensor | None
    styles: list[torch.Tensor]
    style_weights: list[float]
    options: dict[str, dict[str, Any]]
    hooks: RunHooks
    encoder_factory: Callable[[], Encoder]
    weights: Registry
    architectures: dict[str, Callable[[dict], torch.nn.Module]] = field(default_factory=dict)
    outputs: Outputs = field(default_factory=Outputs)
    note: Callable[[str], None] = print
    guides: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    scale: ScaleState | None = None
    batch: TrainBatch | None = None
    total_steps: int | None = None
    step_work: list[float] | None = None
    generator: torch.Generator | None = None
    on_tile: Callable[[int, int], None] | None = None
    plan: Any = None
    style_sides: list[int] = field(default_factory=list)
    precision: Precision = PLAIN
    _encoder: Encoder | None = None

    def encoder(self) -> Encoder:
        """The shared VGG encoder on ctx.device (loaded once per run)."""
        if self._encoder is None:
            self._encoder = self.encoder_factory()
        return self._encoder

    @property
    def current_content(self) -> torch.Tensor:
        """The content the current loss terms are built for: ctx.scale.content in a gatys run,
        ctx.batch.content in training, else ctx.content."""
        if self.batch is not None:
            return self.batch.content
        return self.scale.content if self.scale is not None else self.content

    def plugin_options(self, plugin: object | str) -> dict[str, Any]:
        """The validated options of PLUGIN (its name, or the plugin object itself: a module or instance)."""
        return self.options[plugin if isinstance(plugin, str) else self.hooks.name_of(plugin)]
