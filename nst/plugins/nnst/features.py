"""Hypercolumns: several VGG relu layers, each divided by its channel count, brought to one grid (a quarter of the
image's sides, relu3's grid) and stacked, (1, D, ceil(H/4), ceil(W/4)); and cells: the layers finer than the
grid, each grid position's 4×4 (relu1) or 2×2 (relu2) block of values stacked, (1, F, ceil(H/4), ceil(W/4)).

The search compares hypercolumns, where layers finer than the grid are averaged over their 2×2 or 4×4 cells and
coarser ones upsampled bilinearly. The loss also compares cells, so the pixels inside a grid cell follow the
matched painting's fine structure (without it they are free, and alias into dots at the grid's period). All of
it is local, so a tile's values equal the whole image's wherever its halo covers the receptive field
(HALO_EXTRA adds the upsampling's reach to the encoder's).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nst.core.tiled_gatys import layer_stride

# VGG19's relu layers of blocks 1-4 matching the reference's VGG16 set (conv5 dropped): relu3_4 and relu4_4, which
# VGG16 lacks, are left out too (measured: the search costs in proportion to the 2,688 channels)
LAYERS = ("relu1_1", "relu1_2", "relu2_1", "relu2_2", "relu3_1", "relu3_2", "relu3_3", "relu4_1", "relu4_2",
          "relu4_3")
GRID = 4  # input pixels per hypercolumn position
GRID_LAYER = "relu3_1"  # a layer whose maps have the grid's stride (tiles.View slices cells with it)
HALO_EXTRA = 16  # px beyond the encoder's receptive radius: the bilinear upsampling of stride-8 layers


def grid_shape(hw: tuple[int, int]) -> tuple[int, int]:
    """The hypercolumn grid of an (H, W) image."""
    return -(-hw[0] // GRID), -(-hw[1] // GRID)


def grid_map(feature: torch.Tensor, layer: str, grid: tuple[int, int]) -> torch.Tensor:
    """One layer's (1, C, h_l, w_l) map brought to the grid, (C, *GRID) float32, not yet divided by C: averaged over
    cells where finer, upsampled bilinearly where coarser."""
    f, stride = feature.float(), layer_stride(layer)
    if stride < GRID:
        f = F.avg_pool2d(f, GRID // stride, ceil_mode=True)
    elif stride > GRID:
        f = F.interpolate(f, scale_factor=stride // GRID, mode="bilinear", align_corners=False)
    return f[0, :, : grid[0], : grid[1]]


def hypercolumns(features: dict[str, torch.Tensor], layers, grid: tuple[int, int]) -> torch.Tensor:
    """{layer: (1, C_l, h_l, w_l)} -> (1, ΣC_l, *GRID) in float32, each layer divided by C_l."""
    return torch.cat([grid_map(features[l], l, grid) / features[l].shape[1] for l in layers])[None]


def fine_layers(layers) -> list[str]:
    """The layers whose maps are finer than the grid: their cells join the loss."""
    return [l for l in layers if layer_stride(l) < GRID]


def block_side(layer: str) -> int:
    """The side of a fine layer's block in one grid cell: GRID / its stride."""
    return GRID // layer_stride(layer)


def fine_map(feature: torch.Tensor, k: int, grid: tuple[int, int]) -> torch.Tensor:
    """A fine layer's (1, C, h_l, w_l) map cut or completed (edge rows and columns repeated) to whole k×k blocks of
    the grid, (1, C, k gh, k gw) float32."""
    f = feature.float()
    h, w = k * grid[0], k * grid[1]
    if (f.shape[-2], f.shape[-1]) != (h, w):
        f = F.pad(f[..., :h, :w], (0, max(0, w - f.shape[-1]), 0, max(0, h - f.shape[-2])), mode="replicate")
    return f


def cells(features: dict[str, torch.Tensor], layers, grid: tuple[int, int]) -> torch.Tensor | None:
    """{layer: (1, C_l, h_l, w_l)} -> (1, F, *GRID) float32: for each fine layer, every grid position's k×k block
    (k = GRID / stride) of its values divided by C_l, edge blocks completed by replication; None without fine layers."""
    parts = [F.pixel_unshuffle(fine_map(features[l], block_side(l), grid) / features[l].shape[1], block_side(l))
             for l in fine_layers(layers)]
    return torch.cat(parts, 1) if parts else None


def channels(encoder, layers) -> list[int]:
    """C_l of each layer."""
    return [encoder.convs[l.replace("relu", "conv")].out_channels for l in layers]


def cell_sizes(encoder, layers) -> list[int]:
    """The length of each fine layer's block in cells()' rows: C_l k²."""
    fine = fine_layers(layers)
    return [c * block_side(l) ** 2 for c, l in zip(channels(encoder, fine), fine)]


class Padded(nn.Module):
    """ENCODER run on the image reflect-padded by PAD px (a multiple of 16: every pooling keeps its grid), its maps
    cropped back to the image's: the image's edges are no longer next to the convolutions' zero padding, which
    otherwise leaves thin bright lines along them. A tile's window is padded the same way, which only changes
    its halo."""

    def __init__(self, encoder, pad: int = 16) -> None:
        super().__init__()
        self.encoder, self.pad = encoder, pad

    @property
    def convs(self):
        return self.encoder.convs

    def forward(self, x: torch.Tensor, layers) -> dict[str, torch.Tensor]:
        p = self.pad
        if min(x.shape[-2:]) <= p:
            return self.encoder(x, layers)
        feats = self.encoder(F.pad(x, (p, p, p, p), mode="reflect"), layers)
        out = {}
        for layer, f in feats.items():
            s = layer_stride(layer)
            h, w = -(-x.shape[-2] // s), -(-x.shape[-1] // s)
            out[layer] = Crop.apply(f, (p // s, p // s + h, p // s, p // s + w))
        return out


class Crop(torch.autograd.Function):
    """x[..., y0:y1, x0:x1] of a (B, C, H, W) map, whose backward writes the gradient into one zeroed map of x's
    shape and memory layout (two slices would each make and fill one)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, box: tuple[int, int, int, int]) -> torch.Tensor:
        ctx.shape, ctx.box = x.shape, box
        ctx.layout = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
        y0, y1, x0, x1 = box
        return x[..., y0:y1, x0:x1]

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        y0, y1, x0, x1 = ctx.box
        out = torch.empty(ctx.shape, dtype=grad.dtype, device=grad.device, memory_format=ctx.layout).zero_()
        out[..., y0:y1, x0:x1] = grad
        return out, None


def flat(columns: torch.Tensor) -> torch.Tensor:
    """(1, D, h, w) -> (h w, D)."""
    return columns[0].flatten(1).t()


def rotations(image: torch.Tensor, rotate: bool) -> list[torch.Tensor]:
    """IMAGE and, with ROTATE, its 90°, 180° and 270° rotations (more neighbours to choose from)."""
    return [torch.rot90(image, k, dims=(2, 3)) for k in range(4 if rotate else 1)]
