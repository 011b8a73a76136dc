"""Hypercolumns: several VGG relu layers, each divided by its channel count, brought to one grid (a quarter of the
image's sides, relu3's grid) and stacked, (1, D, ceil(H/4), ceil(W/4)).

Layers finer than the grid are averaged over 2×2 or 4×4 cells, coarser ones upsampled bilinearly; both are
local, so a tile's hypercolumns equal the whole image's wherever its halo covers the receptive field
(HALO_EXTRA adds the upsampling's reach to the encoder's).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

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


def hypercolumns(features: dict[str, torch.Tensor], layers, grid: tuple[int, int]) -> torch.Tensor:
    """{layer: (1, C_l, h_l, w_l)} -> (1, ΣC_l, *GRID) in float32, each layer divided by C_l."""
    parts = []
    for layer in layers:
        f = features[layer].float() / features[layer].shape[1]
        stride = layer_stride(layer)
        if stride < GRID:
            f = F.avg_pool2d(f, GRID // stride, ceil_mode=True)
        elif stride > GRID:
            f = F.interpolate(f, scale_factor=stride // GRID, mode="bilinear", align_corners=False)
        parts.append(f[..., : grid[0], : grid[1]])
    return torch.cat(parts, 1)


def flat(columns: torch.Tensor) -> torch.Tensor:
    """(1, D, h, w) -> (h w, D)."""
    return columns[0].flatten(1).t()


def rotations(image: torch.Tensor, rotate: bool) -> list[torch.Tensor]:
    """IMAGE and, with ROTATE, its 90°, 180° and 270° rotations (more neighbours to choose from)."""
    return [torch.rot90(image, k, dims=(2, 3)) for k in range(4 if rotate else 1)]
