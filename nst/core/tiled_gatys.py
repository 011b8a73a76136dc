"""The Gatys loss of a whole image, and its gradient, computed tile by tile: seam-free by construction.

Every tileable term (nst.core.losses.Tileable) is a function of sums over positions: a Gram matrix is
Σ F Fᵀ / M, the content and TV terms are sums of local squares. A step therefore takes two passes over
the tiles, each tile a cell of the image grown by a halo of VGG's receptive radius at the deepest layer
used (so the cell's features equal the whole image's):

1. without gradients: each term's sums over every cell (S = Σ_tiles s_t);
2. the loss L(S) once, and dL/dS by autograd on those few small tensors;
3. per tile, with gradients: the surrogate Σ <dL/dS, s_t> backpropagated to the window's pixels; the
   window gradients (halo included) add up to dL/dx of the untiled loss, by the chain rule.

The second pass recomputes the forward of each window (checkpointing at tile granularity), so memory
holds one window's activations at a time. Cells and halos are multiples of 16 px, so every pooling keeps
the whole image's grid.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch

from nst.core.encoder import Encoder
from nst.core.losses import LossTerm
from nst.core.tiles import Tile, grid
from nst.core.transport import sums as moment_sums
from nst.errors import UsageError

ALIGN = 16  # four poolings before relu5_1


def layer_stride(layer: str) -> int:
    """Input pixels per position of LAYER's maps ("image": 1)."""
    if layer == "image":
        return 1
    block = int(layer[4] if layer.startswith("pool") else layer[-3])
    return 2 ** (block if layer.startswith("pool") else block - 1)


def receptive_radius(layer: str) -> int:
    """How far, in input pixels, a position of LAYER sees beyond its own stride cell (3×3 convs, 2×2 pools)."""
    from nst.core.encoder import LAYERS

    radius, jump = 0, 1
    for name in LAYERS[: LAYERS.index(layer) + 1]:
        if name.startswith("conv"):
            radius += jump
        elif name.startswith("pool"):
            jump *= 2
    return radius + jump


def halo_for(layers) -> int:
    """The halo (a multiple of ALIGN) that makes a cell's features at LAYERS exact."""
    deepest = max((receptive_radius(l) for l in layers), default=1)
    return math.ceil(deepest / ALIGN) * ALIGN


class View:
    """A tile's cell in its window's maps and in the whole image's maps (see losses.CellView)."""

    def __init__(self, tile: Tile, image_hw: tuple[int, int]) -> None:
        self.tile, self.image_hw = tile, image_hw

    def cell(self, layer: str) -> tuple[slice, slice]:
        d = layer_stride(layer)
        (cy0, cy1, cx0, cx1), (wy0, _, wx0, _) = self.tile.cell, self.tile.window
        return slice((cy0 - wy0) // d, -(-(cy1 - wy0) // d)), slice((cx0 - wx0) // d, -(-(cx1 - wx0) // d))

    def whole(self, layer: str) -> tuple[slice, slice]:
        d = layer_stride(layer)
        cy0, cy1, cx0, cx1 = self.tile.cell
        return slice(cy0 // d, -(-cy1 // d)), slice(cx0 // d, -(-cx1 // d))


def check_tileable(terms: list[LossTerm]) -> None:
    """One clear line naming the first term that cannot be split into tiles."""
    for t in terms:
        if t.tiled is None:
            who = f" (plugin '{t.source}')" if t.source else ""
            raise UsageError(f"loss term '{t.name}'{who} needs the whole image at once and cannot be computed in tiles "
                             "(tileable: content, tv, gram style, semantic and stroke region Grams); raise "
                             "--max-memory, "
                             "lower --size or leave the term out")


TileObserver = Callable[[int, int], None]


class TiledLoss:
    """loss(x) -> (total, {name: value}, dL/dx) of TERMS on the (1, 3, H, W) image X, in CELL px tiles."""

    def __init__(self, terms: list[LossTerm], encoder: Encoder, hw: tuple[int, int], cell: int,
                 halo: int | None = None, on_tile: TileObserver | None = None) -> None:
        check_tileable(terms)
        self.terms, self.encoder, self.hw, self.on_tile = terms, encoder, hw, on_tile
        self.layers = sorted({l for t in terms for l in t.layers})
        self.halo = halo_for(self.layers) if halo is None else halo
        self.tiles = grid(hw[0], hw[1], max(ALIGN, cell // ALIGN * ALIGN), self.halo, ALIGN)

    def _partials(self, window: torch.Tensor, tile: Tile) -> list[dict[str, torch.Tensor]]:
        """Each term's sums over TILE's cell, from its WINDOW (1, 3, h, w) of the image."""
        feats = self.encoder(window, self.layers) if self.layers else {}
        view = View(tile, self.hw)
        return [t.tiled.partial(feats, window, view) for t in self.terms]

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        total_tiles, done = 2 * len(self.tiles), 0
        sums: list[dict[str, torch.Tensor]] = [{} for _ in self.terms]
        with torch.no_grad():
            for tile in self.tiles:
                y0, y1, x0, x1 = tile.window
                for acc, part in zip(sums, self._partials(x[..., y0:y1, x0:x1], tile)):
                    for k, v in part.items():
                        acc[k] = acc[k] + v if k in acc else v.clone()
                done += 1
                if self.on_tile:
                    self.on_tile(done, total_tiles)
        leaves = [{k: v.detach().requires_grad_(True) for k, v in acc.items()} for acc in sums]
        with torch.enable_grad():
            parts: dict[str, torch.Tensor] = {}
            for term, leaf in zip(self.terms, leaves):
                value = term.weight * term.tiled.combine(leaf)
                parts[term.name] = parts[term.name] + value if term.name in parts else value
            total = sum(parts.values())
            flat = [v for leaf in leaves for v in leaf.values()]
            grads = torch.autograd.grad(total, flat, allow_unused=True)
        slopes, i = [], 0
        for leaf in leaves:
            slopes.append({k: g for k, g in zip(leaf, grads[i:i + len(leaf)]) if g is not None})
            i += len(leaf)
        grad = torch.zeros_like(x)
        for tile in self.tiles:
            y0, y1, x0, x1 = tile.window
            window = x[..., y0:y1, x0:x1].detach().requires_grad_(True)
            with torch.enable_grad():
                pieces = [(p[k] * s[k]).sum() for p, s in zip(self._partials(window, tile), slopes) for k in s]
                surrogate = sum(pieces) if pieces else None
            if surrogate is not None and surrogate.requires_grad:
                surrogate.backward()
                grad[..., y0:y1, x0:x1] += window.grad
            done += 1
            if self.on_tile:
                self.on_tile(done, total_tiles)
        return total.detach(), {k: v.detach() for k, v in parts.items()}, grad


def _tile_maps(encoder: Encoder, image: torch.Tensor, layers, cell: int):
    """(View, {layer: maps of the tile's window}) for each tile of IMAGE (1, 3, H, W), without gradients."""
    hw = tuple(image.shape[-2:])
    with torch.no_grad():
        for tile in grid(hw[0], hw[1], max(ALIGN, cell // ALIGN * ALIGN), halo_for(layers), ALIGN):
            y0, y1, x0, x1 = tile.window
            yield View(tile, hw), encoder(image[..., y0:y1, x0:x1], layers)


def tiled_features(encoder: Encoder, image: torch.Tensor, layers, cell: int) -> dict[str, torch.Tensor]:
    """ENCODER's maps of IMAGE (1, 3, H, W) at LAYERS, computed tile by tile and assembled (equal to one pass)."""
    hw = tuple(image.shape[-2:])
    out: dict[str, torch.Tensor] = {}
    for view, feats in _tile_maps(encoder, image, layers, cell):
        for l in layers:
            if l not in out:
                fh, fw = -(-hw[0] // layer_stride(l)), -(-hw[1] // layer_stride(l))
                out[l] = feats[l].new_zeros(1, feats[l].shape[1], fh, fw)
            out[l][(..., *view.whole(l))] = feats[l][(..., *view.cell(l))]
    return out


def tiled_moments(encoder: Encoder, image: torch.Tensor, layers, cell: int) -> dict[str, tuple[torch.Tensor, ...]]:
    """{layer: (Σ f (C,), Σ f fᵀ (C, C), positions)} of IMAGE's maps at LAYERS, summed tile by tile: Grams, means
    and covariances follow (tiled_grams)."""
    sums: dict[str, list[torch.Tensor]] = {}
    for view, feats in _tile_maps(encoder, image, layers, cell):
        for l in layers:
            part = moment_sums(feats[l][(..., *view.cell(l))])
            sums[l] = list(part) if l not in sums else [a + b for a, b in zip(sums[l], part)]
    return {l: tuple(v) for l, v in sums.items()}


def tiled_grams(encoder: Encoder, image: torch.Tensor, layers, cell: int) -> dict[str, torch.Tensor]:
    """The Gram matrices (1, C, C) of IMAGE's maps at LAYERS, summed tile by tile (equal to gram_matrix)."""
    return {l: ff[None] / n for l, (_, ff, n) in tiled_moments(encoder, image, layers, cell).items()}
