"""Neural Neighbor Style Transfer (Kolkin et al. 2022), the optimisation variant, tile-ready.

At each scale of a coarse-to-fine schedule:
1. the style bank: hypercolumns of every painting (and its 90°, 180°, 270° rotations) at this scale's stroke
   size(s), nst.plugins.nnst.search;
2. matching: the query image, alpha × the content + (1 - alpha) × the current result (the content alone at the
   first scale), gives hypercolumns; each is replaced by its nearest bank row under centred cosine distance,
   searched only where guidance allows (a semantic region's partner region, a stroke-map level) and drawn
   from several paintings in the blend's proportions;
3. the image, a Laplacian pyramid, takes Adam steps against the loss: mean over positions of 1 - cos(its
   hypercolumn, the target) (plus plugin terms); every REMATCH steps the matching is redone on the changed
   image.
The loss is a sum over positions, so it tiles (nst.core.tiled_gatys.TiledLoss) and so does the matching (two
passes over the tiles: the query's mean, then the search).
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from nst.core.encoder import Encoder
from nst.core.gatys import StepObserver, evaluate
from nst.core.losses import CellView, LossTerm, Tileable
from nst.core.tiled_gatys import ALIGN, TiledLoss, halo_for
from nst.core.tiles import grid
from nst.errors import NSTError
from nst.plugins.nnst import search
from nst.plugins.nnst.features import (
    GRID_LAYER,
    HALO_EXTRA,
    LAYERS,
    block_side,
    cell_sizes,
    cells,
    channels,
    fine_layers,
    fine_map,
    flat,
    grid_map,
    grid_shape,
    hypercolumns,
    rotations,
)
from nst.plugins.nnst.pyramid import decompose, synthesise

# The neighbour term's weight: its value (1 - cosine, about 0.3-0.6) times this is of the order of a Gatys run's
# style term with the default weights, so plugin terms weighted for gatys (nst video's temporal loss, depth) keep
# their balance. Adam's steps do not depend on it otherwise.
SCALE = 1e4
SETTLED = 0.02  # a rematch that changes fewer neighbours than this doubles the interval to the next


@dataclass
class Params:
    """LAYERS: VGG relu layers of the hypercolumns; ALPHA: the content's share in the query image (1 = most
    content, 0 = most style); ROTATE: search the style's rotations too; LR: Adam's step on the pyramid's
    coefficients; REMATCH: steps between matchings (0: once per scale; doubled after a matching that changed under
    SETTLED of the neighbours); SEED: dithering of stroke levels; CELLS: the fine layers' blocks join the loss."""

    layers: tuple[str, ...] = LAYERS
    alpha: float = 0.75
    rotate: bool = True
    lr: float = 2e-3
    rematch: int = 100
    seed: int = 0
    cells: bool = True


@dataclass
class Guidance:
    """Where neighbours come from (all optional but BLEND). BLEND: share of each painting; LABELS: the content's
    region labels (H, W) at the output size and STYLE_LABELS each painting's (h_i, w_i) at its own size;
    PAIRINGS[i][r]: painting i's region for content region r (None: the whole painting); REGION_WEIGHTS: the
    neighbour loss's weight per content region; LEVELS: (1, K, H, W) weights of K stroke levels per output
    pixel (summing to 1), each position drawing from one level (dithered)."""

    blend: list[float]
    labels: torch.Tensor | None = None
    style_labels: list[torch.Tensor] | None = None
    pairings: list[list[int | None]] | None = None
    region_weights: list[float] | None = None
    levels: torch.Tensor | None = None


@dataclass
class Positions:
    """The grid positions of one scale (h, w): REGION and LEVEL (h w,) long, WEIGHT (h, w) or None."""

    hw: tuple[int, int]
    region: torch.Tensor
    level: torch.Tensor
    weight: torch.Tensor | None


def _nearest_labels(labels: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(labels[None, None].float(), size=hw, mode="nearest")[0, 0].long()


def positions(guide: Guidance, hw: tuple[int, int], device, seed: int) -> Positions:
    """Region, stroke level and loss weight of every grid position of an image of shape HW."""
    g = grid_shape(hw)
    n = g[0] * g[1]
    region = (_nearest_labels(guide.labels.cpu(), g).flatten() if guide.labels is not None
              else torch.zeros(n, dtype=torch.long))
    level = torch.zeros(n, dtype=torch.long)
    if guide.levels is not None and guide.levels.shape[1] > 1:
        probs = F.adaptive_avg_pool2d(guide.levels.float().cpu(), g)[0].flatten(1).t()  # (n, K)
        generator = torch.Generator().manual_seed(seed)
        level = torch.multinomial(probs.clamp_min(0) + 1e-12, 1, generator=generator)[:, 0]
    weight = None
    if guide.region_weights is not None and any(w != 1 for w in guide.region_weights):
        weight = torch.tensor(guide.region_weights)[region].view(g).to(device)
    return Positions(g, region.to(device), level.to(device), weight)


def columns_by_tile(encoder: Encoder, image: torch.Tensor, layers, cell: int, halo: int, with_cells: bool = False):
    """(hypercolumns of each tile's cell (1, D, h, w), its cells (1, F, h, w) with WITH_CELLS (else None), where they
    lie in IMAGE's grid (rows, cols)) for CELL px tiles of IMAGE (1, 3, H, W) (one tile when CELL is 0), without
    gradients."""
    from nst.core.tiled_gatys import View

    hw = tuple(image.shape[-2:])
    with torch.no_grad():
        for tile in grid(hw[0], hw[1], max(ALIGN, (cell or max(hw)) // ALIGN * ALIGN), halo, ALIGN):
            y0, y1, x0, x1 = tile.window
            window = image[..., y0:y1, x0:x1]
            feats, g = encoder(window, layers), grid_shape(tuple(window.shape[-2:]))
            inside = (..., *View(tile, hw).cell(GRID_LAYER))
            blocks = cells(feats, layers, g) if with_cells else None
            yield (hypercolumns(feats, layers, g)[inside], None if blocks is None else blocks[inside],
                   View(tile, hw).whole(GRID_LAYER))


def style_bank(encoder: Encoder, styles: list[list[torch.Tensor]], guide: Guidance, params: Params,
               dtype: torch.dtype, max_rows: int, cell: int = 0) -> search.Bank:
    """The bank of STYLES[level][i] (each painting at each stroke level's size, with its rotations), region labels
    when guided; a painting with more than its share of MAX_ROWS positions keeps every s-th row and column."""
    sides = [(level, i, rotated, k) for level, images in enumerate(styles) for i, image in enumerate(images)
             for k, rotated in enumerate(rotations(image, params.rotate))]
    share = max_rows / len(sides)
    parts, halo = {}, tile_halo(params.layers)
    for level, i, rotated, k in sides:
        g = grid_shape(tuple(rotated.shape[-2:]))
        stride = max(1, math.ceil(math.sqrt(g[0] * g[1] / share)))
        labels = None
        if guide.style_labels is not None:
            labels = torch.rot90(_nearest_labels(guide.style_labels[i].cpu(), tuple(styles[level][i].shape[-2:])), k)
            labels = _nearest_labels(labels, g).to(rotated.device)
        for columns, blocks, (rows, cols) in columns_by_tile(encoder, rotated, params.layers, cell, halo, True):
            keep = (slice((-rows.start) % stride, None, stride), slice((-cols.start) % stride, None, stride))
            part = parts.setdefault((i, level), ([], [], []))
            part[0].append(flat(columns[(..., *keep)]))
            if blocks is not None:
                part[1].append(flat(blocks[(..., *keep)]))
            if labels is not None:
                part[2].append(labels[rows, cols][keep].flatten())
    return search.make_bank([(i, level, torch.cat(rows), torch.cat(blocks) if blocks else None,
                              torch.cat(labels) if labels else None)
                             for (i, level), (rows, blocks, labels) in parts.items()], dtype)


@dataclass
class Targets:
    """The current matching: INDEX (h, w) bank rows, the loss's targets; CHANGED: for each matching after the
    first, the share of positions whose neighbour changed; SECONDS spent matching."""

    index: torch.Tensor | None = None
    changed: list[float] = field(default_factory=list)
    seconds: float = 0.0
    maps: tuple | None = None  # target_maps of INDEX for the whole image, made when first needed


def match(encoder: Encoder, query: torch.Tensor, bank: search.Bank, where: Positions, guide: Guidance, params: Params,
          cell: int = 0, halo: int = 0) -> torch.Tensor:
    """(h, w) bank rows: each grid position of QUERY (1, 3, H, W) matched as the module says; in CELL px tiles
    (HALO px around) when CELL > 0."""
    gh, gw = where.hw
    with torch.no_grad():
        tiles = list(columns_by_tile(encoder, query, params.layers, cell, halo)) if not cell else None
        total = torch.zeros(bank.rows.shape[1], device=query.device)
        for columns, _, _ in tiles or columns_by_tile(encoder, query, params.layers, cell, halo):
            total += columns[0].sum((1, 2))
        mean = total / (gh * gw)
        styles = sorted({s.style for s in bank.sources})
        best = torch.full((gh * gw, len(styles)), -float("inf"), device=query.device)
        index = torch.zeros((gh * gw, len(styles)), dtype=torch.long, device=query.device)
        ids = torch.arange(gh * gw, device=query.device).view(gh, gw)
        for columns, _, whole in tiles or columns_by_tile(encoder, query, params.layers, cell, halo):
            at = ids[whole].flatten()
            queries = search.centre_queries(flat(columns), mean)
            for source in bank.sources:
                for region in where.region[at].unique().tolist():
                    sel = ((where.region[at] == region) & (where.level[at] == source.level)).nonzero()[:, 0]
                    if not len(sel):
                        continue
                    start, end = _run(source, guide, region)
                    value, row = search.nearest(queries[sel], bank, start, end, source.mean)
                    best[at[sel], source.style], index[at[sel], source.style] = value, row
        choice = torch.zeros(gh * gw, dtype=torch.long, device=query.device)
        for region in where.region.unique().tolist():
            for level in where.level.unique().tolist():
                sel = ((where.region == region) & (where.level == level)).nonzero()[:, 0]
                if len(sel):
                    choice[sel] = search.balance(best[sel], guide.blend)
    return index.gather(1, choice[:, None])[:, 0].view(gh, gw)


def _run(source: search.Source, guide: Guidance, region: int) -> tuple[int, int]:
    """The bank rows a content region may draw from in SOURCE: its paired region's, or the whole painting's."""
    partner = guide.pairings[source.style][region] if guide.pairings is not None else None
    if partner is None:
        return source.start, source.end
    if partner not in source.runs:
        raise NSTError(f"style {source.style + 1}: region {partner} vanished at this scale (too small); enlarge it "
                       "or raise --style-scale")
    return source.runs[partner]


def target_maps(bank: search.Bank, index: torch.Tensor, dims: list[int], fine: list[str], sizes: list[int]):
    """The targets of the grid positions INDEX (h, w) (bank rows) laid out as maps: [(C_l, h, w)] per layer (DIMS: the
    C_l), together a unit vector at each position; and [(1, C_l, k h, k w)] per FINE layer (SIZES: C_l k²), each k×k
    block a unit vector."""
    h, w = index.shape
    at = index.flatten()
    columns = bank.targets(at).t().reshape(-1, h, w).split(dims)
    blocks = []
    if fine:
        for layer, part in zip(fine, bank.cells[at].float().split(sizes, 1)):
            part = F.normalize(part, dim=1, eps=1e-8)
            blocks.append(F.pixel_shuffle(part.t().reshape(1, -1, h, w), block_side(layer)))
    return columns, blocks


def neighbour_term(bank: search.Bank, targets: Targets, layers, weight_map: torch.Tensor | None, dims: list[int],
                   sizes: list[int] = ()) -> LossTerm:
    """The LossTerm "style": SCALE × the mean over grid positions p of w_p · cost_p, normalised by Σ w_p (WEIGHT_MAP
    (h, w), all 1 when None). cost_p = 1 - cos(hypercolumn_p, its target) (DIMS: each layer's C_l); with cells
    (SIZES: each fine layer's block length C_l k²), the mean of that and of each fine layer's 1 - cos(block_p, the
    target's block). As sums over tiles too.

    Computed layer by layer against the targets laid out as maps (made once per matching for the whole image), so
    no (D, h, w) hypercolumn or cell tensor of the image is built: a fine layer's block cosines are sums over k×k
    blocks of products on its map."""
    layers = tuple(layers)
    fine = fine_layers(layers) if bank.cells is not None and len(sizes) > 0 else []

    def costs(feats, g: tuple[int, int], inside: tuple[slice, slice], maps) -> torch.Tensor:
        """(h, w) cost of the positions INSIDE the grid G of FEATS, against MAPS (target_maps of those positions)."""
        (r0, r1, _), (c0, c1, _) = inside[0].indices(g[0]), inside[1].indices(g[1])
        dot = norm2 = 0
        for layer, target in zip(layers, maps[0]):
            m = grid_map(feats[layer], layer, g)[:, r0:r1, c0:c1] / feats[layer].shape[1]
            dot, norm2 = dot + (m * target).sum(0), norm2 + m.square().sum(0)
        cost = 1 - dot / norm2.sqrt().clamp_min(1e-12)
        if not fine:
            return cost
        block = 0
        for layer, target in zip(fine, maps[1]):
            k = block_side(layer)
            f = fine_map(feats[layer], k, g)
            if (r0, r1, c0, c1) != (0, g[0], 0, g[1]):  # (a slice's backward costs a pass over the whole map)
                f = f[..., k * r0:k * r1, k * c0:k * c1]
            d = F.avg_pool2d((f * target).sum(1, keepdim=True), k, divisor_override=1)[0, 0]
            n = F.avg_pool2d(f.square().sum(1, keepdim=True), k, divisor_override=1)[0, 0]
            block = block + 1 - d / n.sqrt().clamp_min(1e-8)
        return 0.5 * (cost + block / len(fine))

    def sums(cost: torch.Tensor, rows: tuple[slice, slice]) -> dict[str, torch.Tensor]:
        w = weight_map[rows] if weight_map is not None else torch.ones_like(cost)
        return {"s": (w * cost).sum(), "n": w.sum()}

    def combine(s: dict[str, torch.Tensor]) -> torch.Tensor:
        return s["s"] / s["n"].clamp_min(1e-8)

    def fn(feats, image) -> torch.Tensor:
        everywhere = (slice(None), slice(None))
        if targets.maps is None:  # once per matching
            targets.maps = target_maps(bank, targets.index, dims, fine, sizes)
        return combine(sums(costs(feats, grid_shape(tuple(image.shape[-2:])), everywhere, targets.maps), everywhere))

    def partial(feats, window, view: CellView) -> dict[str, torch.Tensor]:
        rows = view.whole(GRID_LAYER)
        maps = target_maps(bank, targets.index[rows], dims, fine, sizes)
        return sums(costs(feats, grid_shape(tuple(window.shape[-2:])), view.cell(GRID_LAYER), maps), rows)

    return LossTerm("style", SCALE, fn, layers, tiled=Tileable(partial, combine))


def tile_halo(layers) -> int:
    """The halo that makes a tile's hypercolumns exact."""
    return halo_for(layers) + HALO_EXTRA


@dataclass
class Scale:
    """One scale's work: LEVEL of the pyramid (0 = full size), STEPS, the content at this size, CELL px tiles (0:
    untiled)."""

    level: int
    steps: int
    content: torch.Tensor
    cell: int = 0


def optimise_scale(pyramid: list[torch.Tensor], content_pyramid: list[torch.Tensor], scale: Scale, first: bool,
                   encoder: Encoder, bank: search.Bank, where: Positions, guide: Guidance, params: Params,
                   extra: Callable[[], list[LossTerm]], on_step: StepObserver | None = None,
                   on_tile=None) -> tuple[list[torch.Tensor], Targets]:
    """Adam on PYRAMID[scale.level:] (the image at this scale) against the neighbour term and EXTRA() terms;
    returns the pyramid with those levels decomposed afresh, and the matching's record."""
    k = scale.level
    hw = tuple(pyramid[k].shape[-2:])
    halo = tile_halo(params.layers)
    targets = Targets()

    def rematch(image: torch.Tensor, alpha: float) -> None:
        started = time.perf_counter()
        query = alpha * scale.content + (1 - alpha) * image
        index = match(encoder, query, bank, where, guide, params, scale.cell, halo)
        if targets.index is not None:
            targets.changed.append(float((index != targets.index).float().mean()))
        targets.index, targets.maps = index, None
        targets.seconds += time.perf_counter() - started

    with torch.no_grad():  # the first query: the content's own detail at this scale over the coarser result
        rematch(synthesise([content_pyramid[k]] + pyramid[k + 1:]), 1.0 if first else params.alpha)
    sizes = cell_sizes(encoder, params.layers) if params.cells else []
    dims = channels(encoder, params.layers)
    terms = [neighbour_term(bank, targets, params.layers, where.weight, dims, sizes)] + extra()
    tiled = TiledLoss(terms, encoder, hw, scale.cell, halo=halo, on_tile=on_tile) if scale.cell else None
    variables = [p.detach().clone().requires_grad_(True) for p in pyramid[k:]]
    opt = torch.optim.Adam(variables, lr=params.lr)
    interval, due = params.rematch, 1 + params.rematch
    for step in range(1, scale.steps + 1):
        if params.rematch and step == due:
            with torch.no_grad():
                rematch(synthesise(variables), params.alpha)
            if targets.changed[-1] < SETTLED:  # the neighbours have settled: look again less often
                interval *= 2
            due = step + interval
        opt.zero_grad(set_to_none=True)
        image = synthesise(variables)
        if tiled is None:
            total, parts = evaluate(terms, encoder, image)
            total.backward()
        else:
            total, parts, grad = tiled(image.detach())
            image.backward(grad)
        if not torch.isfinite(total):
            raise NSTError("nnst diverged (non-finite loss); lower nnst.lr")
        opt.step()
        if on_step is not None:
            losses = {name: float(v.detach()) for name, v in parts.items()}
            losses["total"] = float(total.detach())
            on_step(step, image.detach(), losses)
    with torch.no_grad():
        result = synthesise(variables)
    return pyramid[:k] + decompose(result, len(pyramid) - 1 - k), targets
