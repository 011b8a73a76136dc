"""Tiles: any image size through a fixed amount of memory.

A tiling splits an (H, W) image into CELLS that partition it (sides multiples of ALIGN, so strided layers
and poolings keep the same grid as on the whole image); each cell is computed from its WINDOW, the cell grown
by a HALO on every side (clipped to the image). With a halo at least as wide as the network's receptive
radius, a cell's values computed from its window equal those of the whole image.

Feed-forward networks (run_network) also need the instance-norm statistics of the whole image, or tiles
differ in colour and contrast. They run in one pass on recorded lazy maps (nst.core.lazy_tiles) wherever the
network allows it. The rest use the older scheme: the network runs tile by tile once per norm layer. In pass k, norm
layers 0..k-1 apply the whole-image statistics found in earlier passes, norm layer k adds the per-channel sum
and sum of squares of the CELL's positions (halos excluded, each position counted once) and the pass stops
there; after all tiles, its mean and variance are final. The pass that meets no new norm layer is the last
one: its outputs are the result. For N norm layers that is N + 1 partial forwards per tile (about 7 forwards
for a Johnson network, whose late layers run at 1/4 resolution), and memory holds one window's
activations plus the input and output images. Overlapping cell borders are blended with linear ramps that
sum to 1 (feathered), so a halo shorter than the receptive field fades instead of cutting a seam.
"""
from __future__ import annotations

import contextlib
import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from nst.core import lazy_tiles
from nst.errors import NSTError

Box = tuple[int, int, int, int]  # y0, y1, x0, x1 (ends exclusive)


@dataclass(frozen=True)
class Tile:
    """CELL: the part this tile answers for; WINDOW: what it computes (the cell and its halo, inside the image)."""

    cell: Box
    window: Box

    def cell_in_window(self, h: int, w: int, window_hw: tuple[int, int]) -> Box:
        """The cell in the coordinates of an (H, W) map computed from the window (at 1/2, 1/4 ... of its size)."""
        (wy0, _, wx0, _), (cy0, cy1, cx0, cx1) = self.window, self.cell
        fy, fx = h / window_hw[0], w / window_hw[1]
        return (round((cy0 - wy0) * fy), math.ceil((cy1 - wy0) * fy - 1e-6),
                round((cx0 - wx0) * fx), math.ceil((cx1 - wx0) * fx - 1e-6))


def _splits(n: int, cell: int, align: int) -> list[int]:
    """Boundaries 0 = b_0 < ... < b_k = N of cells at most CELL long (rounded to ALIGN), near-equal."""
    count = max(1, math.ceil(n / max(align, cell)))
    bounds = [0] + [min(n, round(n * i / count / align) * align) for i in range(1, count)] + [n]
    return sorted(set(bounds))


def grid(h: int, w: int, cell: int, halo: int, align: int = 1) -> list[Tile]:
    """Cells of at most CELL px a side covering (H, W) once, each with its window (HALO px around, clipped)."""
    if cell <= 0 or halo < 0:
        raise NSTError(f"tiles need a positive cell size and a halo >= 0, got {cell} and {halo}")
    rows, cols = _splits(h, cell, align), _splits(w, cell, align)
    halo = math.ceil(halo / align) * align
    tiles = []
    for y0, y1 in zip(rows, rows[1:]):
        for x0, x1 in zip(cols, cols[1:]):
            window = (max(0, y0 - halo), min(h, y1 + halo), max(0, x0 - halo), min(w, x1 + halo))
            tiles.append(Tile((y0, y1, x0, x1), window))
    return tiles


def _ramp(lo: int, hi: int, start: int, end: int, size: int, overlap: int) -> torch.Tensor:
    """1-D weights over window positions START..END-1 for cell [LO, HI) of a side SIZE long: 1 inside, linear
    ramps 2·OVERLAP wide centred on inner cell borders (a neighbour's ramp is the complement)."""
    p = torch.arange(start, end, dtype=torch.float32) + 0.5
    w = torch.ones_like(p)
    if overlap > 0:
        if lo > 0:
            w = torch.minimum(w, ((p - (lo - overlap)) / (2 * overlap)).clamp(0, 1))
        if hi < size:
            w = torch.minimum(w, (((hi + overlap) - p) / (2 * overlap)).clamp(0, 1))
    else:
        w = ((p >= lo) & (p < hi)).float()
    return w


def feather(tile: Tile, h: int, w: int, overlap: int) -> torch.Tensor:
    """(1, 1, wh, ww) blending weights of TILE's window in an (H, W) image; with OVERLAP at most the halo and
    half the narrowest cell, the weights of all tiles sum to 1 at every pixel."""
    (cy0, cy1, cx0, cx1), (wy0, wy1, wx0, wx1) = tile.cell, tile.window
    wy = _ramp(cy0, cy1, wy0, wy1, h, overlap)
    wx = _ramp(cx0, cx1, wx0, wx1, w, overlap)
    return (wy[:, None] * wx[None, :])[None, None]


def blend_width(tiles: list[Tile], overlap: int, halo: int) -> int:
    """OVERLAP cut to what feathering allows: at most the HALO and half the narrowest cell of TILES."""
    return min(overlap, halo, *(min(t.cell[1] - t.cell[0], t.cell[3] - t.cell[2]) // 2 for t in tiles))


# --- whole-image instance norm ---------------------------------------------------------------------------------------

class TileableNorm:
    """Mixin for instance-norm modules: they normalise through instance_norm(self, ...), which a
    WholeImageNorms pass can redirect to whole-image statistics."""

    tile_norm: Callable[[torch.Tensor, float], torch.Tensor] | None = None  # WholeImageNorms or lazy_tiles.LazyNorms


def instance_norm(module: TileableNorm, x: torch.Tensor, eps: float, weight: torch.Tensor | None = None,
                  bias: torch.Tensor | None = None) -> torch.Tensor:
    """F.instance_norm of X (B, C, h, w) with optional per-channel affine (C,), unless MODULE is inside a tiled
    pass: then the whole image's statistics (see WholeImageNorms). Computed in float32 whatever X's dtype (bfloat16
    under autocast), so the statistics keep their precision."""
    x = x.float()
    if module.tile_norm is None:
        return F.instance_norm(x, weight=weight, bias=bias, eps=eps)
    y = module.tile_norm(x, eps)
    return y if weight is None else y * weight[:, None, None] + bias[:, None, None]


class _Collected(Exception):
    """Stops a pass at the norm layer whose statistics it gathered."""


class WholeImageNorms:
    """The state of the tiled passes: per norm call index, whole-image (mean, var) of shape (1, C, 1, 1)."""

    def __init__(self) -> None:
        self.stats: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._sums: list[torch.Tensor] | None = None
        self._calls, self._tile, self._window_hw = 0, None, (1, 1)

    def start(self, tile: Tile, window_hw: tuple[int, int]) -> None:
        self._calls, self._tile, self._window_hw = 0, tile, window_hw

    def __call__(self, x: torch.Tensor, eps: float) -> torch.Tensor:
        index, self._calls = self._calls, self._calls + 1
        if index < len(self.stats):
            mean, var = self.stats[index]
            return (x - mean) * torch.rsqrt(var + eps)
        y0, y1, x0, x1 = self._tile.cell_in_window(x.shape[-2], x.shape[-1], self._window_hw)
        cell = x[..., y0:y1, x0:x1].double()
        sums = torch.stack([cell.sum((0, 2, 3)), cell.pow(2).sum((0, 2, 3)),
                            torch.full((x.shape[1],), float(cell[0, 0].numel() * x.shape[0]), dtype=torch.float64,
                                       device=x.device)])
        self._sums = sums if self._sums is None else self._sums + sums
        raise _Collected

    def finish_layer(self) -> bool:
        """After a pass: whether it gathered a layer's statistics (then they are final), else it was the last."""
        if self._sums is None:
            return False
        total, squares, count = self._sums
        mean = total / count
        var = (squares / count - mean.pow(2)).clamp_min(0)
        self.stats.append((mean.float().view(1, -1, 1, 1), var.float().view(1, -1, 1, 1)))
        self._sums = None
        return True


def norm_layers(net: nn.Module) -> list[TileableNorm]:
    return [m for m in net.modules() if isinstance(m, TileableNorm)]


def receptive_radius(net: nn.Module) -> int:
    """An upper bound, in input pixels, of how far an output value of NET sees: the convolutions in definition
    order, each adding (k - 1) / 2 · dilation · the stride so far (upsampling modules divide it again)."""
    radius, jump = 0.0, 1.0
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            radius += (m.kernel_size[0] - 1) // 2 * m.dilation[0] * jump
            jump *= m.stride[0]
        elif isinstance(m, nn.Upsample) and m.scale_factor:
            jump /= float(m.scale_factor)
    return math.ceil(radius)


TileObserver = Callable[[int, int], None]
Forward = Callable[[torch.Tensor, Tile], torch.Tensor]


def one_pass(net: nn.Module, forward: Forward, image: torch.Tensor) -> lazy_tiles.Survey | str:
    """What a one-pass tiled run of NET over IMAGE (1, 3, H, W), sides multiples of the alignment, would keep (see
    lazy_tiles.survey), or why it cannot run in one pass. Records on meta tensors only: milliseconds."""
    whole = Tile((0, image.shape[-2], 0, image.shape[-1]), (0, image.shape[-2], 0, image.shape[-1]))
    with torch.inference_mode(), _norms_hooked(net, lazy_tiles.LazyNorms(None)) as norms:
        try:
            return lazy_tiles.survey(lambda x: forward(x, whole), image, norms)
        except lazy_tiles.Unsupported as why:
            return str(why)
        except Exception as error:  # recording met something else it cannot do; the passes run the code for real
            return f"{type(error).__name__} while recording ({str(error).splitlines()[0][:120] if str(error) else ''})"


def run_network(net: nn.Module, forward: Forward, image: torch.Tensor, cell: int, halo: int, overlap: int = 16,
                align: int = 4, on_tile: TileObserver | None = None, note: Callable[[str], None] | None = None,
                spill: bool = False) -> torch.Tensor:
    """NET's output for IMAGE (1, 3, H, W) computed tile by tile with whole-image instance-norm statistics.

    forward(window (1, 3, h, w), tile) -> (1, C, h, w) runs NET on one window (the caller adds any other inputs,
    cropped to tile.window). The image is reflect-padded to a multiple of ALIGN first, as the networks do.
    In one pass by lazy maps (nst.core.lazy_tiles: tiles of at most CELL px, the result exact) where the network
    allows, its whole maps in memory or (SPILL) in temporary files; else (NOTE says why) in N + 1 passes over
    windows with a HALO, OVERLAP px feathered. on_tile(done, total) after every tile. Returns (1, C, H, W) on
    IMAGE's device.
    """
    h, w = image.shape[-2:]
    padded = F.pad(image, (0, (-w) % align, 0, (-h) % align), mode="reflect") if (h % align or w % align) else image
    hp, wp = padded.shape[-2:]
    found = one_pass(net, forward, padded)
    if isinstance(found, str):
        if note is not None:
            note(f"tiles: this network runs in {len(norm_layers(net)) + 1} passes over overlapping windows ({found} "
                 "cannot be computed in one pass)")
        return _run_in_passes(net, forward, image, padded, cell, halo, overlap, align, on_tile)
    whole = Tile((0, hp, 0, wp), (0, hp, 0, wp))
    with contextlib.ExitStack() as stack:
        folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="nst-maps-", ignore_cleanup_errors=True)) \
            if spill else None
        store = lazy_tiles.Store(torch.device("cpu") if padded.device.type == "cuda" else padded.device, folder)
        evaluator = lazy_tiles.Evaluator(cell * cell * found.density, store, found.keep, found.stages, on_tile)
        with torch.inference_mode(), _norms_hooked(net, lazy_tiles.LazyNorms(evaluator)):
            return lazy_tiles.run(lambda x: forward(x, whole), padded, evaluator)[..., :h, :w]


@contextlib.contextmanager
def _norms_hooked(net: nn.Module, hook):
    """NET's norm layers normalising through HOOK(x, eps) while inside (gives HOOK)."""
    for module in norm_layers(net):
        module.tile_norm = hook
    try:
        yield hook
    finally:
        for module in norm_layers(net):
            module.tile_norm = None


def _run_in_passes(net: nn.Module, forward: Forward, image: torch.Tensor, padded: torch.Tensor, cell: int, halo: int,
                   overlap: int, align: int, on_tile: TileObserver | None) -> torch.Tensor:
    """run_network for networks lazy maps cannot record: one partial pass per norm layer (see the module's text)."""
    h, w = image.shape[-2:]
    hp, wp = padded.shape[-2:]
    tiles = grid(hp, wp, cell, halo, align)
    overlap = blend_width(tiles, overlap, halo)
    passes = len(norm_layers(net)) + 1
    norms = WholeImageNorms()
    out, done = None, 0
    with _norms_hooked(net, norms), torch.inference_mode():
        while True:
            for tile in tiles:
                y0, y1, x0, x1 = tile.window
                norms.start(tile, (y1 - y0, x1 - x0))
                try:
                    result = forward(padded[..., y0:y1, x0:x1], tile)
                except _Collected:
                    pass
                else:
                    if out is None:
                        out = image.new_zeros(1, result.shape[1], hp, wp)
                    out[..., y0:y1, x0:x1] += feather(tile, hp, wp, overlap).to(result) * result
                done += 1
                if on_tile is not None:
                    on_tile(done, max(passes, len(norms.stats) + 1) * len(tiles))
            if not norms.finish_layer():
                break
    if out is None:
        raise NSTError("the network produced no output in its tiled passes")
    return out[..., :h, :w]
