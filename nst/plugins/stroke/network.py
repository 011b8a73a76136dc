"""Stroke-size control (Jing et al. 2018, "Stroke Controllable Fast Style Transfer with Adaptive
Receptive Fields"): the StrokePyramid network and the pure helpers both families share.

A stroke size S (pixels) means: the output's strokes are as large, in output pixels, as the style's
strokes when the style image is resized to S pixels on its long side. The network learns one branch per
trained size; a gate turns any size in the trained range (one per image, or one per pixel from a stroke
map) into interpolation weights over neighbouring branches.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from nst.core.blockconv import output_conv
from nst.core.johnson import ConvNormReLU, InstanceNorm, Residual, padded_conv
from nst.errors import FieldError

MAX_BRANCHES = 6
MIN_SIZE, MAX_SIZE = 16, 8192


def check_sizes(sizes: list[int], what: str = "stroke.sizes") -> list[int]:
    """SIZES if they are 2 to MAX_BRANCHES strictly increasing pixel sizes in [MIN_SIZE, MAX_SIZE], else FieldError."""
    sizes = [int(s) for s in sizes]
    shown = ",".join(map(str, sizes))
    if not 2 <= len(sizes) <= MAX_BRANCHES or any(b <= a for a, b in zip(sizes, sizes[1:])):
        raise FieldError(what, f"give 2 to {MAX_BRANCHES} strictly increasing sizes like 256,512,768, got '{shown}'")
    if sizes[0] < MIN_SIZE or sizes[-1] > MAX_SIZE:
        raise FieldError(what, f"sizes must lie between {MIN_SIZE} and {MAX_SIZE} px, got '{shown}'")
    return sizes


def middle_size(sizes: list[int]) -> int:
    """The geometric middle of the range [sizes[0], sizes[-1]], in px."""
    return round(math.sqrt(sizes[0] * sizes[-1]))


def training_sizes(sizes: list[int]) -> list[int]:
    """Sizes visited in turn by training: every branch size, then the geometric midpoints between neighbours."""
    return list(sizes) + [round(math.sqrt(a * b)) for a, b in zip(sizes, sizes[1:])]


def map_to_sizes(values: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """Grey levels in [0, 1] (black = LO, white = HI) -> stroke sizes, geometric in between: LO (HI/LO)^v."""
    return lo * (hi / lo) ** values.clamp(0, 1)


def branch_position(size: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """Stroke sizes (any shape) -> fractional branch index in [0, K-1], linear in log size between
    neighbouring branch sizes; sizes outside the range clamp to the end branches."""
    logs = torch.tensor([math.log(s) for s in sizes], dtype=size.dtype, device=size.device)
    x = size.clamp(sizes[0], sizes[-1]).log()
    k = torch.bucketize(x, logs[1:-1])  # segment index: logs[k] <= x <= logs[k + 1]
    return k + (x - logs[k]) / (logs[k + 1] - logs[k])


def gate_weights(size: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """(B, 1, h, w) stroke sizes -> (B, K, h, w) fusion weights: hat functions of the branch position, so
    at most two neighbouring branches are active and the weights sum to 1 at every pixel."""
    pos = branch_position(size, sizes)
    k = torch.arange(len(sizes), dtype=size.dtype, device=size.device).view(1, -1, 1, 1)
    return (1 - (pos - k).abs()).clamp_min(0)


def smooth(x: torch.Tensor, radius: int) -> torch.Tensor:
    """(B, C, h, w) box-blurred twice with a (2 RADIUS + 1)² window, edges replicated (a soft, tent-like blur)."""
    for _ in range(2):
        x = F.avg_pool2d(F.pad(x, (radius,) * 4, mode="replicate"), 2 * radius + 1, stride=1)
    return x


class DilatedResidual(nn.Module):
    """A residual block whose two 3×3 convs have dilation D: each adds 4 D cells to the receptive field."""

    def __init__(self, c: int, dilation: int) -> None:
        super().__init__()

        def conv() -> nn.Conv2d:
            return nn.Conv2d(c, c, 3, padding=dilation, dilation=dilation, padding_mode="replicate")

        self.body = nn.Sequential(conv(), InstanceNorm(c, affine=True), nn.ReLU(inplace=True),
                                  conv(), InstanceNorm(c, affine=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class StrokePyramidNet(nn.Module):
    """Johnson-style encoder and decoder around a stroke pyramid.

    down: 9×9 conv and two stride-2 convs (to 1/4 resolution, 4·width channels), then `blocks` shared
    residual blocks. Pyramid: branch k = branch k-1 followed by a residual block of dilation 2^k, so each
    branch sees a larger receptive field (+16·2^k px); branch k is trained against the style at sizes[k].
    Gated fusion: per-pixel hat weights of the stroke size's log position between neighbouring branch
    sizes (smoothed at feature resolution) blend the branch features. up: the Johnson decoder.
    """

    def __init__(self, width: int = 32, blocks: int = 5, sizes: list[int] | tuple[int, ...] = (256, 512, 768)) -> None:
        super().__init__()
        sizes = [int(s) for s in sizes]
        check_sizes(sizes)
        self.config = {"arch": "stroke", "width": width, "blocks": blocks, "sizes": sizes}
        self.sizes = sizes
        w = width
        self.down = nn.Sequential(ConvNormReLU(3, w, 9), ConvNormReLU(w, 2 * w, 3, 2), ConvNormReLU(2 * w, 4 * w, 3, 2),
                                  *[Residual(4 * w) for _ in range(blocks)])
        self.pyramid = nn.ModuleList([DilatedResidual(4 * w, 2 ** k) for k in range(len(sizes))])
        self.up = nn.Sequential(ConvNormReLU(4 * w, 2 * w, 3, upsample=True), ConvNormReLU(2 * w, w, 3, upsample=True))
        self.out = padded_conv(w, 3, 9)

    @property
    def inputs(self) -> dict[str, str]:
        """Extra forward inputs -> what is used when a run does not give them (see the johnson plugin)."""
        return {"stroke": f"a stroke size ({self.sizes[0]}-{self.sizes[-1]} px; --plugin stroke --set stroke.size=N "
                          f"or stroke.map=IMAGE); using the middle, {middle_size(self.sizes)} px"}

    def stroke_map(self, stroke, batch: int, hw: tuple[int, int], like: torch.Tensor) -> torch.Tensor:
        """STROKE (None: the middle size; a number; (B,) per image; (B or 1, 1, H', W') per pixel) ->
        (B, 1, h, w) sizes at feature resolution HW, per-pixel maps area-resized in log space and smoothed."""
        if stroke is None:
            stroke = middle_size(self.sizes)
        s = torch.as_tensor(stroke, dtype=like.dtype, device=like.device)
        if s.dim() <= 1:
            return s.reshape(-1, 1, 1, 1).expand(batch, 1, *hw)
        logs = F.interpolate(s.clamp_min(1).log(), size=hw, mode="area" if s.shape[-1] >= hw[1] else "bilinear")
        return smooth(logs, max(1, min(hw) // 32)).exp().expand(batch, 1, *hw)

    def forward(self, x: torch.Tensor, stroke=None) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> (B, 3, H, W) in [0, 1]; STROKE as in stroke_map (sizes in px; outside
        the trained range they act as the nearest end)."""
        h, w = x.shape[-2:]
        y = self.down(F.pad(x * 2 - 1, (0, (-w) % 4, 0, (-h) % 4), mode="reflect"))
        gates = gate_weights(self.stroke_map(stroke, x.shape[0], tuple(y.shape[-2:]), y), self.sizes)
        fused = torch.zeros_like(y)
        for k, branch in enumerate(self.pyramid):
            y = branch(y)
            fused = fused + gates[:, k:k + 1] * y
        return torch.sigmoid(output_conv(self.out[0](self.up(fused)), self.out[1]))[..., :h, :w]


def receptive_field(layer: str) -> int:
    """Receptive field in input pixels of a VGG19 LAYER (e.g. relu5_1: 156): 3×3 convs, 2×2 poolings."""
    from nst.core.encoder import LAYERS

    rf, jump = 1, 1
    for name in LAYERS[: LAYERS.index(layer) + 1]:
        if name.startswith("conv"):
            rf += 2 * jump
        elif name.startswith("pool"):
            rf, jump = rf + jump, 2 * jump
    return rf
