"""The core settings of a run, declared once: `nst run`'s flags, the config file's keys, the API's keywords,
the studio's form and the documentation tables are all made from these declarations."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nst.core.encoder import LAYERS
from nst.core.images import MAX_SIDE
from nst.core.losses import STYLE_LOSSES
from nst.core.onnxrun import BACKENDS
from nst.core.planner import parse_bytes
from nst.core.precision import PRECISIONS
from nst.core.threads import MAX_THREADS
from nst.errors import FieldError
from nst.settings.declare import build, check_declared, setting

RUN, STYLE, OPTIMISE, LARGE = "Run options", "Style options", "Optimisation", "Large output"
GATYS_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
STYLE_LAYERS = {"gram": GATYS_LAYERS, "mmd": GATYS_LAYERS, "mrf": ("relu3_1", "relu4_1"),  # Li & Wand use 3_1, 4_1
                "ot": GATYS_LAYERS, "w2": GATYS_LAYERS}
MAX_WEIGHT = 1e12  # loss weights beyond this overflow float32 losses: refused rather than "diverged"
MAX_STEPS = 1_000_000
SEED_LIMIT = 2 ** 63 - 1
PRECISION_HELP = ("Arithmetic of the networks: bf16 (bfloat16 convolutions, float32 losses and optimiser) or fp32; "
                  "auto = bf16 where the hardware has it (CPUs with AVX512-BF16 or AMX, CUDA from Ampere on), else fp32.")
THREADS_HELP = "CPU threads for torch and onnxruntime; 0 = NST_THREADS, else OMP_NUM_THREADS, else the physical cores."


@dataclass
class Settings:
    """Core options of a run. Field names are the CLI flags with '-' for '_' and the config-file keys."""

    method: str = setting("gatys", "Transfer method, from the method registry (`nst plugins` shows providers).",
                          group=RUN)
    size: int = setting(512, "Long side of the output in pixels.", min=16, max=MAX_SIDE, group=RUN)
    steps: int = setting(300, "Optimisation steps at each scale (with --scales 0: at the first scale; fewer at each "
                         "larger one).", min=1, max=MAX_STEPS, group=OPTIMISE)
    content_weight: float = setting(1.0, "Weight of the content loss.", min=0, max=MAX_WEIGHT, group=STYLE)
    style_weight: float = setting(5e-3, "Weight of the style loss; higher = more stylised.", min=0, max=MAX_WEIGHT,
                                  group=STYLE)
    tv_weight: float = setting(1e5, "Total-variation weight (smoothness).", min=0, max=MAX_WEIGHT, group=STYLE)
    style_loss: str = setting("gram", "Style loss: gram (Gatys), mmd (Li 2017), mrf (Li & Wand patches), ot "
                              "(STROTSS: relaxed earth mover's distance + moments) or w2 (Wasserstein-2 of each layer's "
                              "mean and covariance).", choices=STYLE_LOSSES, group=STYLE)
    mmd_kernel: str = setting("gaussian", "Kernel for --style-loss mmd.",
                              choices=("gaussian", "linear", "poly", "meanstd"), group=STYLE)
    style_blend: list[float] | None = setting(None, "Comma-separated weights, one per style image (normalised to "
                                              "sum 1).", min=0, max=MAX_WEIGHT, group=STYLE, shown="equal")
    style_scale: float = setting(1.0, "Style image size relative to the output; smaller = finer strokes.", min=0.05,
                                 max=8, group=STYLE)
    content_layers: list[str] = setting(["relu4_2"], "Comma-separated VGG layers for content.", choices=LAYERS,
                                        group=STYLE)
    style_layers: list[str] | None = setting(None, "Comma-separated VGG layers for style.", choices=LAYERS,
                                             group=STYLE, shown=f"{','.join(GATYS_LAYERS)}; mrf: "
                                                                f"{','.join(STYLE_LAYERS['mrf'])}")
    optimizer: str = setting("lbfgs", "Optimiser of the image.", choices=("lbfgs", "adam"), group=OPTIMISE)
    lr: float = setting(0.02, "Adam step size (pixels in 0..1); positive, at most 10.", max=10, group=OPTIMISE)
    init: str = setting("content", "Start image.", choices=("content", "noise", "style"), group=OPTIMISE)
    average: float = setting(0.0, "Output the exponential moving average of the iterates with this decay, e.g. 0.99 "
                             "(crowsonkb's style-transfer; smoother with Adam); 0 = the best iterate.", min=0,
                             max=0.9999, group=OPTIMISE)
    seed: int = setting(0, "Random seed; runs on CPU are reproducible.", min=0, max=SEED_LIMIT, group=OPTIMISE)
    scales: int = setting(0, "Coarse-to-fine levels, each half the size of the next. 0 = automatic: one level up to "
                          "724 px; a larger output starts at 512 px and grows by √2 per level, half the steps each "
                          "time (at least 20), so a print costs a fraction of full-size steps.", min=0, max=10,
                          group=OPTIMISE)
    preserve_colors: str = setting("none", "Keep the content's colours: luminance-only transfer, or match the "
                                   "style's histogram to the content.", choices=("none", "luminance", "histogram"),
                                   group=STYLE)
    pooling: str = setting("avg", "VGG pooling.", choices=("max", "avg"), group=RUN)
    weights: str = setting("vgg19", "Encoder weights: a name from `nst weights` or a file path.", group=RUN, file="in")
    device: str = setting("auto", "auto, cpu, cuda or cuda:N.", group=RUN)
    precision: str = setting("auto", PRECISION_HELP, choices=PRECISIONS, group=RUN)
    threads: int = setting(0, THREADS_HELP, min=0, max=MAX_THREADS, group=RUN, shown="0 (the physical cores)")
    save_every: int = setting(0, "Write OUT_stepNNNN.png every N steps (0 = never).", min=0, max=MAX_STEPS, group=RUN,
                              file="out")
    model: str | None = setting(None, "For --method johnson: the network file from `nst train`, or multistyle26.",
                                group=RUN, file="in")
    strength: float = setting(1.0, "0..1. johnson: blend of stylised and content; arbitrary: interpolation from "
                              "the content's own style vector to the painting's.", min=0, max=1, group=RUN)
    backend: str = setting("auto", "Feed-forward methods (johnson, arbitrary): onnx runs the network through "
                           "onnxruntime (several times faster on a CPU), torch through PyTorch; auto = onnx on the "
                           "CPU when installed.", choices=BACKENDS, group=RUN)
    max_memory: str | None = setting(None, "Memory budget for the run, e.g. 8GB or 512MB: larger images are "
                                     "computed in tiles that fit it (gatys, johnson, arbitrary).", group=LARGE,
                                     shown="the device's free memory less 10%")
    tile: int = setting(0, "Tile side in pixels (16 or more), instead of the planner's choice; 0 = planned.", min=0,
                        max=MAX_SIDE, group=LARGE)
    plan: bool = setting(False, "Print the plan (scales, tiles, halo, estimated peak memory and time) and exit "
                         "without running.", group=LARGE)
    bit_depth: int = setting(8, "Bits per channel of PNG and TIFF output.", choices=(8, 16), group=LARGE)

    def validate(self) -> Settings:
        """Checks types, choices and ranges as declared, then what depends on several fields; errors name
        the field (FieldError)."""
        if self.style_layers is None and self.style_loss in STYLE_LAYERS:
            self.style_layers = list(STYLE_LAYERS[self.style_loss])
        check_declared(self)
        if self.lr <= 0:
            raise FieldError("lr", f"must be positive and at most 10, got {self.lr:g}")
        if self.size / 2 ** (self.scales - 1) < 16:
            raise FieldError("scales", f"{self.scales} is too many for size {self.size} (the coarsest scale would be "
                                       "under 16 px)")
        for name in ("content_layers", "style_layers"):
            if not getattr(self, name):
                raise FieldError(name, f"give at least one layer (known: {', '.join(LAYERS)})")
        if self.tile != 0 and self.tile < 16:
            raise FieldError("tile", f"must be 0 (planned) or 16 to {MAX_SIDE} px, got {self.tile}")
        if self.max_memory is not None:
            parse_bytes(self.max_memory)
        return self

    @property
    def memory_budget(self) -> int | None:
        """max_memory in bytes, or None (the planner takes the device's free memory less a margin)."""
        return None if self.max_memory is None else parse_bytes(self.max_memory)


def make_settings(values: dict[str, Any]) -> Settings:
    """Settings from a dict of field names (dashes allowed), checking names, types and ranges."""
    return build(Settings, values).validate()
