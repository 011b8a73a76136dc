"""The image as a Laplacian pyramid: the variables NNST optimises (coarse structure moves as fast as fine detail).

A pyramid is a list of (1, 3, h_i, w_i) tensors, finest first: band-pass levels, then the low-pass residual.
Each level halves the previous one's sides (rounding up); synthesise(decompose(x)) == x exactly.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

MAX_LEVELS = 8  # as the reference: a 512 px image down to a 2 px residual
MIN_SIDE = 2  # no level is halved below this


def halved(hw: tuple[int, int]) -> tuple[int, int]:
    return -(-hw[0] // 2), -(-hw[1] // 2)


def level_shapes(hw: tuple[int, int], levels: int = MAX_LEVELS) -> list[tuple[int, int]]:
    """(h, w) of every level of an HW image's pyramid, finest first (at most LEVELS + 1 of them)."""
    shapes = [tuple(hw)]
    while len(shapes) <= levels and min(shapes[-1]) >= 2 * MIN_SIDE:
        shapes.append(halved(shapes[-1]))
    return shapes


def _down(x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(x, size=hw, mode="bilinear", align_corners=False, antialias=True)


def _up(x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(x, size=hw, mode="bilinear", align_corners=False)


def decompose(image: torch.Tensor, levels: int = MAX_LEVELS) -> list[torch.Tensor]:
    """(1, 3, H, W) -> its Laplacian pyramid (finest band first, residual last)."""
    shapes = level_shapes(tuple(image.shape[-2:]), levels)
    out, current = [], image
    for shape in shapes[1:]:
        low = _down(current, shape)
        out.append(current - _up(low, tuple(current.shape[-2:])))
        current = low
    return out + [current]


def synthesise(pyramid: list[torch.Tensor]) -> torch.Tensor:
    """The image of a pyramid (or of its coarse end, pyramid[i:], at level i's size)."""
    current = pyramid[-1]
    for band in reversed(pyramid[:-1]):
        current = band + _up(current, tuple(band.shape[-2:]))
    return current
