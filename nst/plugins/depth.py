"""Built-in plugin `depth`: depth-preserving style transfer (Liu, Lai & Rosin 2017).

A frozen monocular depth network D (MiDaS v2.1 small: EfficientNet-Lite3 from timm + RefineNet-style
decoder, laid out so the official checkpoint loads with strict key matching) adds the loss
‖ssi(D(y)) − ssi(D(x_c))‖², ssi = scale/shift normalisation (MiDaS predicts relative inverse depth).
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import torch
import torch.nn.functional as F
import typer
from torch import nn

from nst.contract.hookspecs import hookimpl
from nst.core.encoder import IMAGENET_MEAN, IMAGENET_STD
from nst.core.images import image_writer
from nst.core.losses import LossTerm
from nst.core.weights import WeightSource, read_tensors
from nst.errors import NSTError, UsageError, printable

MODELS = ("midas-small",)
MIDAS_SMALL_URL = "https://github.com/isl-org/MiDaS/releases/download/v2_1/midas_v21_small_256.pt"


class ResidualConvUnit(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class FusionBlock(nn.Module):
    """Adds the skip input (after a residual unit), refines, upsamples ×2, 1×1 conv to C_out."""

    def __init__(self, c: int, c_out: int) -> None:
        super().__init__()
        self.resConfUnit1 = ResidualConvUnit(c)
        self.resConfUnit2 = ResidualConvUnit(c)
        self.out_conv = nn.Conv2d(c, c_out, 1)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        if skip is not None:
            x = x + self.resConfUnit1(skip)
        x = F.interpolate(self.resConfUnit2(x), scale_factor=2, mode="bilinear", align_corners=True)
        return self.out_conv(x)


class MidasSmall(nn.Module):
    """MiDaS v2.1 small. forward((B, 3, H, W) RGB in [0, 1]) -> (B, 1, h, w) relative inverse depth,
    computed at the network's input size (each side a multiple of 32, at most 256)."""

    def __init__(self, features: int = 64) -> None:
        super().__init__()
        try:
            import timm
        except ImportError:
            raise NSTError("the depth plugin needs timm: pip install timm") from None
        net = timm.create_model("tf_efficientnet_lite3", pretrained=False)
        self.pretrained = nn.Module()
        # nn.Identity at index 2 keeps the official key layout (timm's bn1 already applies the activation)
        self.pretrained.layer1 = nn.Sequential(net.conv_stem, net.bn1, nn.Identity(), *net.blocks[0:2])
        self.pretrained.layer2 = nn.Sequential(*net.blocks[2:3])
        self.pretrained.layer3 = nn.Sequential(*net.blocks[3:5])
        self.pretrained.layer4 = nn.Sequential(*net.blocks[5:7])
        f = features
        self.scratch = nn.Module()
        for i, (c_in, c_out) in enumerate(zip((32, 48, 136, 384), (f, 2 * f, 4 * f, 8 * f)), 1):
            setattr(self.scratch, f"layer{i}_rn", nn.Conv2d(c_in, c_out, 3, padding=1, bias=False))
        self.scratch.refinenet4 = FusionBlock(8 * f, 4 * f)
        self.scratch.refinenet3 = FusionBlock(4 * f, 2 * f)
        self.scratch.refinenet2 = FusionBlock(2 * f, f)
        self.scratch.refinenet1 = FusionBlock(f, f)
        self.scratch.output_conv = nn.Sequential(
            nn.Conv2d(f, f // 2, 3, padding=1), nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
            nn.Conv2d(f // 2, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 1, 1), nn.ReLU(), nn.Identity())
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    @staticmethod
    def input_size(h: int, w: int) -> tuple[int, int]:
        """Keep the aspect, longest side at most 256, both sides multiples of 32 (at least 32)."""
        scale = min(1.0, 256 / max(h, w))
        return max(32, round(h * scale / 32) * 32), max(32, round(w * scale / 32) * 32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=self.input_size(*x.shape[-2:]), mode="bicubic", align_corners=False)
        x = (x - self.mean) / self.std
        l1 = self.pretrained.layer1(x)
        l2 = self.pretrained.layer2(l1)
        l3 = self.pretrained.layer3(l2)
        l4 = self.pretrained.layer4(l3)
        s = self.scratch
        p = s.refinenet4(s.layer4_rn(l4))
        p = s.refinenet3(p, s.layer3_rn(l3))
        p = s.refinenet2(p, s.layer2_rn(l2))
        p = s.refinenet1(p, s.layer1_rn(l1))
        return s.output_conv(p)


def load_depth_model(name: str, weights: Path | None, device: torch.device, registry=None, progress: bool = True) -> MidasSmall:
    """The frozen depth net in eval mode: weights from a local file, or the registry source NAME."""
    if name not in MODELS:
        raise UsageError(f"unknown depth model '{name}' (available: {', '.join(MODELS)})")
    if weights is not None:
        state = read_tensors(Path(weights))
    else:
        state = registry.get(name).load(progress)
    net = MidasSmall()
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        missing = str(exc).split("\n")[1].strip() if "\n" in str(exc) else str(exc)
        raise NSTError(f"{weights or name}: not {name} weights (strict key check failed: {missing[:160]})") from None
    return net.to(device).eval().requires_grad_(False)


def ssi(d: torch.Tensor) -> torch.Tensor:
    """Scale/shift normalisation per image: (d − median) / mean|d − median|. (B, 1, h, w) -> same."""
    flat = d.flatten(1)
    med = flat.median(dim=1, keepdim=True).values
    scale = (flat - med).abs().mean(dim=1, keepdim=True).clamp_min(1e-6)
    return ((flat - med) / scale).view_as(d)


def depth_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of scale/shift-normalised depth maps."""
    return (ssi(pred) - ssi(target)).pow(2).mean()


def correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1])


def colour_map(depth: torch.Tensor):
    """(1, 1, h, w) -> PIL image, min-max normalised, matplotlib's magma colour map (near = bright)."""
    import numpy as np
    from matplotlib import colormaps
    from PIL import Image

    d = depth[0, 0].detach().float().cpu()
    d = (d - d.min()) / (d.max() - d.min()).clamp_min(1e-8)
    rgb = colormaps["magma"](d.numpy())[..., :3]
    return Image.fromarray((rgb * 255).astype(np.uint8), "RGB")


SAVED = ("depth_content.png", "depth_result.png")


@hookimpl
def nst_plugin_options(register) -> None:
    register("weight", float, 1e4, "weight of the depth loss (scale/shift-invariant MSE of depth maps)", min=0, max=1e12)
    register("model", str, "midas-small", "depth network", choices=MODELS)
    register("weights", Path, None, "local weights file for the depth network (instead of downloading)")
    register("save", Path, None, "folder for colour-mapped depth maps of the content and the result", file="out")


@hookimpl
def nst_register_weights(register) -> None:
    register(WeightSource(name="midas-small", kind="url", url=MIDAS_SMALL_URL, filename="midas_v21_small_256.pt",
                          sha256=None, local_hint="--set depth.weights=PATH, or nst depth --weights PATH",
                          description="MiDaS v2.1 small depth network (isl-org/MiDaS, MIT); sha256 not published, "
                                      "unpinned"))


@hookimpl
def nst_prepare(ctx, options):
    """Load the frozen depth net; in runs, the content's depth map (and the depth.save outputs reserved)."""
    if options["save"] is not None and ctx.mode == "run":
        for name in SAVED:
            ctx.outputs.reserve(options["save"] / name, make_folder=True, within=options["save"])
    net = load_depth_model(options["model"], options["weights"], ctx.device, ctx.weights)
    if ctx.content is None:  # training: targets come per batch
        return {"depth.net": net}
    with torch.no_grad():
        return {"depth.net": net, "depth.content": net(ctx.content)}


@hookimpl
def nst_losses(ctx, options):
    """The depth term against the current content (the scale's image, or the training batch)."""
    net = ctx.guides["depth.net"]
    with torch.no_grad():
        target = net(ctx.current_content)
    return [LossTerm("depth", options["weight"], lambda _f, image: depth_loss(net(image), target))]


@hookimpl
def nst_postprocess(ctx, image, options):
    """Reports how well the layering survived, and queues the depth maps when depth.save is set."""
    with torch.no_grad():
        out = ctx.guides["depth.net"](image)
    ctx.summary["depth correlation (content vs result)"] = round(correlation(out, ctx.guides["depth.content"]), 3)
    folder = options["save"]
    if folder is not None:
        for name, depth in zip(SAVED, (ctx.guides["depth.content"], out)):
            ctx.outputs.add(folder / name, image_writer(colour_map(depth), folder / name))
        ctx.summary["depth maps"] = str(folder)
    return None


@hookimpl
def nst_register_commands(app) -> None:
    @app.command("depth", no_args_is_help=True)
    def depth_command(
        image: Annotated[Path, typer.Argument(help="Image to estimate depth for.", show_default=False)],
        output: Annotated[Path, typer.Option("--output", "-o", help="Colour-mapped depth PNG (bright = near).",
                                             show_default=False)],
        model: Annotated[str, typer.Option(help=f"Depth network: {', '.join(MODELS)}.")] = "midas-small",
        weights: Annotated[Optional[Path], typer.Option(help="Local weights file instead of the download.")] = None,
        device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    ) -> None:
        """Show what the depth plugin's network sees: relative inverse depth of IMAGE as a PNG."""
        from nst.core.devices import pick_device
        from nst.core.files import Outputs
        from nst.core.images import check_output_path, load_image
        from nst.host import default_host

        outputs = Outputs([image, weights])
        outputs.reserve(check_output_path(output))
        dev = pick_device(device)
        net = load_depth_model(model, weights, dev, default_host().weights())
        with torch.no_grad():
            depth = net(load_image(image).to(dev))
        outputs.add(output, image_writer(colour_map(depth), output))
        outputs.commit()
        typer.echo(printable(f"wrote {output} ({depth.shape[-1]}x{depth.shape[-2]} depth map from {model})"))
