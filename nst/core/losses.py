"""Loss functions on encoder features, and LossTerm, the unit every method and plugin contributes.

Feature maps are (B, C, H, W); every loss returns a scalar tensor.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

import torch
import torch.nn.functional as F

from nst.core import transport
from nst.errors import NSTError, UsageError

Features = dict[str, torch.Tensor]


class CellView(Protocol):
    """Where a tile's cell lies: cell(layer) in the maps of its window, whole(layer) in the whole image's maps
    (pairs of slices (rows, columns); layer "image" for pixels), image_hw the whole image's (H, W)."""

    image_hw: tuple[int, int]

    def cell(self, layer: str) -> tuple[slice, slice]: ...

    def whole(self, layer: str) -> tuple[slice, slice]: ...


@dataclass
class Tileable:
    """How a term is computed tile by tile (nst.core.tiled_gatys): partial(features, image, view) -> {key: tensor}
    sums over the tile's cell positions (the features and image of its window), and combine(sums) -> the term's
    unweighted value from the sums over all cells. The term must equal combine(Σ partial) over a partition."""

    partial: Callable[[Features, torch.Tensor, CellView], dict[str, torch.Tensor]]
    combine: Callable[[dict[str, torch.Tensor]], torch.Tensor]


@dataclass
class LossTerm:
    """A named, weighted loss. `layers`: encoder layers it reads; `fn(features, image) -> scalar`.

    The engine runs the encoder once per step on the union of every term's layers and calls each
    term with the resulting dict and the image being optimised ((1, 3, H, W), RGB in [0, 1]).
    `source`: who contributed it (the host sets the plugin's name; empty for the core terms).
    `tiled`: the same loss as sums over tiles (None: the term needs the whole image at once).
    """

    name: str
    weight: float
    fn: Callable[[Features, torch.Tensor], torch.Tensor]
    layers: tuple[str, ...] = field(default_factory=tuple)
    source: str = ""
    tiled: Tileable | None = None

    def __call__(self, features: Features, image: torch.Tensor) -> torch.Tensor:
        return self.weight * self.fn(features, image)


# --- content -------------------------------------------------------------------------------------

def content_loss(f: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Gatys content loss ½Σ(F − P)², divided by the number of elements so the weight is size-free."""
    return 0.5 * (f - target).pow(2).sum() / f.numel()


# --- Gram ----------------------------------------------------------------------------------------

class _Gram(torch.autograd.Function):
    """(B, C, H, W) -> (B, C, C) = F Fᵀ summed over positions, in either memory layout without a copy; the backward
    uses the symmetry, dF = (dG + dGᵀ) F: one matrix product where autograd would take two."""

    @staticmethod
    def forward(ctx, f: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(f)
        rows = _positions_view(f)
        return rows.transpose(1, 2) @ rows if rows is not None else _channels(f) @ _channels(f).transpose(1, 2)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (f,) = ctx.saved_tensors
        b, c, h, w = f.shape
        both = grad + grad.transpose(1, 2)
        rows = _positions_view(f)
        if rows is not None:  # channels_last: (B, HW, C) rows, the gradient in the same layout
            return (rows @ both).reshape(b, h, w, c).permute(0, 3, 1, 2)
        return (both @ _channels(f)).reshape(b, c, h, w)


def _channels(f: torch.Tensor) -> torch.Tensor:
    return f.reshape(f.shape[0], f.shape[1], -1)


def _positions_view(f: torch.Tensor) -> torch.Tensor | None:
    """(B, C, H, W) in channels_last memory -> its (B, HW, C) rows as a view; None for other layouts."""
    if f.is_contiguous() or not f.is_contiguous(memory_format=torch.channels_last):
        return None
    return f.permute(0, 2, 3, 1).reshape(f.shape[0], -1, f.shape[1])


def gram_sum(f: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, C) = Σ over positions of f fᵀ (unnormalised), float32 in, float32 out."""
    return _Gram.apply(f)


def gram_matrix(f: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, C) = F Fᵀ / (H W)."""
    return gram_sum(f) / (f.shape[-2] * f.shape[-1])


def gram_loss(f: torch.Tensor, target_gram: torch.Tensor) -> torch.Tensor:
    """Gatys: E = Σ(G − A)² / (4 N² M²) with unnormalised Grams, N channels, M = H W positions.

    With G = F Fᵀ / M (gram_matrix) this is Σ(G − A)² / (4 N²).
    """
    n = f.shape[1]
    return (gram_matrix(f) - target_gram).pow(2).sum() / (4 * n * n * f.shape[0])


# --- MMD (Li et al. 2017) ------------------------------------------------------------------------

def _positions(f: torch.Tensor, max_samples: int, generator: torch.Generator | None) -> torch.Tensor:
    """(1, C, H, W) -> (M, C) feature vectors, at most MAX_SAMPLES of them (random subset)."""
    x = f[0].reshape(f.shape[1], -1).t()
    if x.shape[0] > max_samples:
        idx = torch.randperm(x.shape[0], generator=generator, device="cpu")[:max_samples].to(x.device)
        x = x[idx]
    return x


def mmd_loss(f: torch.Tensor, s: torch.Tensor, kernel: str = "gaussian", max_samples: int = 1024,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """Squared MMD between the feature distributions of F (1, C, H, W) and S (1, C, H', W').

    kernel: "linear" k = xᵀy (matches means), "poly" k = (xᵀy)² (the Gram loss up to scale),
    "gaussian" k = exp(−‖x − y‖² / (2σ²)) with σ² the mean squared distance of the style samples
    (bandwidth fixed from S, so it is not optimised away), "meanstd" = Σ_c (μ_x − μ_s)² + (σ_x − σ_s)²
    (Li et al.'s batch-norm statistics). Large maps are subsampled to MAX_SAMPLES positions.
    """
    c = f.shape[1]
    if kernel == "meanstd":
        fx, fs = f[0].reshape(c, -1), s[0].reshape(c, -1)
        return ((fx.mean(1) - fs.mean(1)).pow(2).sum() + (fx.std(1) - fs.std(1)).pow(2).sum()) / c
    x, y = _positions(f, max_samples, generator), _positions(s, max_samples, generator)
    if kernel == "linear":
        return (x.mean(0) - y.mean(0)).pow(2).sum() / c
    if kernel == "poly":
        k = lambda a, b: (a @ b.t()).pow(2)
        return (k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean()) / (c * c)
    if kernel == "gaussian":
        with torch.no_grad():
            sigma2 = torch.cdist(y, y).pow(2).mean().clamp_min(1e-8)
        k = lambda a, b: torch.exp(-torch.cdist(a, b).pow(2) / (2 * sigma2))
        return k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean()
    raise NSTError(f"unknown MMD kernel '{kernel}' (gaussian, linear, poly, meanstd)")


# --- MRF (Li & Wand 2016) ------------------------------------------------------------------------

def extract_patches(f: torch.Tensor, size: int = 3, stride: int = 1) -> torch.Tensor:
    """(1, C, H, W) -> (P, C, size, size): every SIZE×SIZE patch at STRIDE."""
    c = f.shape[1]
    p = F.unfold(f, size, stride=stride)  # (1, C*s*s, P)
    return p[0].t().reshape(-1, c, size, size)


def mrf_loss(f: torch.Tensor, style_patches: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """Li & Wand: each 3×3 patch of F (1, C, H, W) is matched to the style patch with the highest
    normalised cross-correlation; loss = mean over patches of ‖Ψ_i(F) − Ψ_NN(i)(S)‖² / (C k²).

    style_patches: (P, C, k, k) from extract_patches(style features).
    """
    k = style_patches.shape[-1]
    if min(f.shape[-2:]) < k:
        raise NSTError(f"MRF style loss needs feature maps of at least {k}x{k}, got {tuple(f.shape[-2:])}; use a "
                       "larger --size or shallower --style-layers")
    norm = style_patches.flatten(1).norm(dim=1).clamp_min(1e-8)
    with torch.no_grad():
        best_score, best_idx = None, None
        for start in range(0, style_patches.shape[0], chunk):
            kernels = style_patches[start:start + chunk] / norm[start:start + chunk].view(-1, 1, 1, 1)
            score = F.conv2d(f, kernels)[0]  # (P_chunk, H', W'); the patch norm of f is constant per position
            s, i = score.max(0)
            if best_score is None:
                best_score, best_idx = s, i + start
            else:
                better = s > best_score
                best_score = torch.where(better, s, best_score)
                best_idx = torch.where(better, i + start, best_idx)
    mine = extract_patches(f, k)
    matched = style_patches[best_idx.flatten()]
    return (mine - matched).pow(2).mean()


# --- total variation -----------------------------------------------------------------------------

def tv_loss(x: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of neighbouring pixels, (B, C, H, W) -> scalar (a side of 1 px adds nothing)."""
    dh = (x[..., 1:, :] - x[..., :-1, :]).pow(2).mean() if x.shape[-2] > 1 else x.new_zeros(())
    dw = (x[..., :, 1:] - x[..., :, :-1]).pow(2).mean() if x.shape[-1] > 1 else x.new_zeros(())
    return dh + dw


# --- building terms ------------------------------------------------------------------------------

STYLE_LOSSES = ("gram", "mmd", "mrf", "ot", "w2")


def content_term(target: Features, layers: Iterable[str], weight: float) -> LossTerm:
    layers = tuple(layers)

    def fn(feats: Features, _img: torch.Tensor) -> torch.Tensor:
        return sum(content_loss(feats[l], target[l]) for l in layers) / len(layers)

    def partial(feats: Features, _img: torch.Tensor, view: CellView) -> dict[str, torch.Tensor]:
        return {l: 0.5 * (feats[l][(..., *view.cell(l))] - target[l][(..., *view.whole(l))]).pow(2).sum() for l in layers}

    def combine(sums: dict[str, torch.Tensor]) -> torch.Tensor:
        return sum(sums[l] / target[l].numel() for l in layers) / len(layers)

    return LossTerm("content", weight, fn, layers, tiled=Tileable(partial, combine))


def style_term(kind: str, styles: list[Features], blend: list[float], layers: Iterable[str], weight: float,
               mmd_kernel: str = "gaussian", seed: int = 0, name: str = "style",
               grams: list[Features] | None = None,
               moments: list[dict[str, tuple[torch.Tensor, torch.Tensor]]] | None = None) -> LossTerm:
    """Style loss of KIND against several styles, Σ_i blend_i · mean over layers of loss(x, s_i).

    For Gram this equals matching the blended Gram Σ_i blend_i A_i (up to a constant); w2 matches the blended
    raw moments, ot sums over the styles (nst.core.transport). GRAMS: the styles' Grams per layer (1, C, C), and
    MOMENTS (w2): their (mean (C,), second moment (C, C)) per layer, when computed elsewhere (tile by tile),
    instead of their features.
    """
    if kind not in STYLE_LOSSES:
        raise NSTError(f"unknown style loss '{kind}' (choose {', '.join(STYLE_LOSSES)})")
    layers = tuple(layers)
    if kind == "w2":
        return w2_term(moments or [{l: transport.raw_moments(s[l]) for l in layers} for s in styles], blend, layers,
                       weight, name)
    if kind == "ot":
        return ot_term(styles, blend, layers, weight, seed, name)
    if kind == "mrf":
        small = [l for s in styles for l in layers if min(s[l].shape[-2:]) < 3]
        if small:
            raise NSTError(f"MRF style loss: the style image is too small at layer {small[0]} (needs 3x3 features); "
                           "raise --style-scale or --size")
        targets = [{l: extract_patches(s[l]) for l in layers} for s in styles]
    elif kind == "gram":
        targets = grams if grams is not None else [{l: gram_matrix(s[l]) for l in layers} for s in styles]
    else:
        targets = [{l: s[l] for l in layers} for s in styles]
    generator = torch.Generator().manual_seed(seed)

    def one(f: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if kind == "gram":
            return gram_loss(f, t)
        if kind == "mmd":
            return mmd_loss(f, t, mmd_kernel, generator=generator)
        return mrf_loss(f, t)

    def fn(feats: Features, _img: torch.Tensor) -> torch.Tensor:
        total = 0.0
        for w, target in zip(blend, targets):
            total = total + w * sum(one(feats[l], target[l]) for l in layers) / len(layers)
        return total

    return LossTerm(name, weight, fn, layers, tiled=gram_tiled(targets, blend, layers) if kind == "gram" else None)


def w2_term(moments: list[dict[str, tuple[torch.Tensor, torch.Tensor]]], blend: list[float], layers: tuple[str, ...],
            weight: float, name: str = "style") -> LossTerm:
    """Wasserstein-2 style loss (nst.core.transport) against the blended raw MOMENTS [{layer: (mean, second moment)}]
    of the styles, the mean over LAYERS; as sums over tiles too (a Gaussian's statistics are sums over positions)."""
    targets = {l: transport.W2Target([m[l] for m in moments], blend) for l in layers}

    def combine(sums: dict[str, torch.Tensor]) -> torch.Tensor:
        return sum(transport.w2_loss(targets[l], sums[l], sums[l + "#ff"], sums[l + "#n"]) for l in layers) / len(layers)

    def partial(feats: Features, _img: torch.Tensor, view: CellView) -> dict[str, torch.Tensor]:
        out = {}
        for l in layers:
            out[l], out[l + "#ff"], out[l + "#n"] = transport.sums(feats[l][(..., *view.cell(l))])
        return out

    def fn(feats: Features, _img: torch.Tensor) -> torch.Tensor:
        return combine({k: v for l in layers for k, v in zip((l, l + "#ff", l + "#n"), transport.sums(feats[l]))})

    return LossTerm(name, weight, fn, layers, tiled=Tileable(partial, combine))


def ot_term(styles: list[Features], blend: list[float], layers: tuple[str, ...], weight: float, seed: int = 0,
            name: str = "style") -> LossTerm:
    """STROTSS's style loss (nst.core.transport): Σ_i blend_i · ot(hypercolumns of the result at positions sampled
    anew each evaluation, those of style i sampled once)."""
    generator = torch.Generator().manual_seed(seed)
    scales = transport.layer_scales(styles, blend, layers)
    samples = [transport.sample_hypercolumns(s, layers, transport.OT_STYLE_POSITIONS, generator, scales)
               for s in styles]

    def fn(feats: Features, _img: torch.Tensor) -> torch.Tensor:
        x = transport.sample_hypercolumns(feats, layers, transport.OT_POSITIONS, generator, scales)
        return sum(w * transport.ot_loss(x, y) for w, y in zip(blend, samples))

    return LossTerm(name, weight, fn, layers)


def gram_sums(f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(1, C, h, w) -> (Σ f fᵀ (1, C, C), number of positions): the Gram of a part of an image, unnormalised."""
    return gram_sum(f), f.new_tensor(float(f.shape[-2] * f.shape[-1]))


def gram_tiled(targets: list[dict[str, torch.Tensor]], blend: list[float], layers: tuple[str, ...]) -> Tileable:
    """The Gram style loss as sums over tiles: the whole image's Gram is Σ_cells F Fᵀ / Σ_cells positions."""

    def partial(feats: Features, _img: torch.Tensor, view: CellView) -> dict[str, torch.Tensor]:
        out = {}
        for l in layers:
            out[l], out[l + "#n"] = gram_sums(feats[l][(..., *view.cell(l))])
        return out

    def combine(sums: dict[str, torch.Tensor]) -> torch.Tensor:
        total = 0.0
        for w, target in zip(blend, targets):
            per_layer = [(sums[l] / sums[l + "#n"] - target[l]).pow(2).sum() / (4 * target[l].shape[-1] ** 2)
                         for l in layers]
            total = total + w * sum(per_layer) / len(layers)
        return total

    return Tileable(partial, combine)


def tv_term(weight: float) -> LossTerm:
    def partial(_feats: Features, img: torch.Tensor, view: CellView) -> dict[str, torch.Tensor]:
        (rows, cols), (whole_rows, whole_cols), (h, w) = view.cell("image"), view.whole("image"), view.image_hw
        down = img[..., rows.start:rows.stop + (whole_rows.stop < h), cols]  # the next row lies in the halo
        right = img[..., rows, cols.start:cols.stop + (whole_cols.stop < w)]
        dh, dw = down[..., 1:, :] - down[..., :-1, :], right[..., :, 1:] - right[..., :, :-1]
        return {"h": dh.pow(2).sum(), "w": dw.pow(2).sum(), "nh": img.new_tensor(float(dh.numel())),
                "nw": img.new_tensor(float(dw.numel()))}

    def combine(sums: dict[str, torch.Tensor]) -> torch.Tensor:
        return sums["h"] / sums["nh"].clamp_min(1) + sums["w"] / sums["nw"].clamp_min(1)

    return LossTerm("tv", weight, lambda _f, img: tv_loss(img), (), tiled=Tileable(partial, combine))


def merge_terms(core: list[LossTerm], extra: list[LossTerm]) -> list[LossTerm]:
    """CORE terms plus EXTRA ones; an extra term named like a core term (content, style, tv) replaces it.
    Two sources replacing the same core term is refused (their sum would count that term twice)."""
    core_names = {t.name for t in core}
    owners: dict[str, str] = {}
    for t in extra:
        if t.name in core_names and owners.setdefault(t.name, t.source) != t.source:
            first, second = sorted((owners[t.name], t.source))
            raise UsageError(f"plugins '{first}' and '{second}' both replace the core '{t.name}' term; "
                             "use one of them")
    return [t for t in core if t.name not in owners] + extra


# --- guided (masked) style -----------------------------------------------------------------------

def resize_masks(masks: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """(1, K, H, W) soft masks -> (1, K, h, w) by area averaging (each cell keeps its region fraction)."""
    if tuple(masks.shape[-2:]) == tuple(hw):
        return masks
    if hw[0] <= masks.shape[-2] and hw[1] <= masks.shape[-1]:
        return F.interpolate(masks, size=hw, mode="area")
    return F.interpolate(masks, size=hw, mode="bilinear", align_corners=False)


def guided_gram(f: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Gram of the features inside a region: Σ_i m_i f_i f_iᵀ / Σ_i m_i. f (1, C, h, w), mask (1, 1, h, w) -> (1, C, C)."""
    c = f.shape[1]
    flat = f.reshape(1, c, -1)
    m = mask.reshape(1, 1, -1)
    return (flat * m) @ flat.transpose(1, 2) / m.sum().clamp_min(1e-8)


def guided_gram_loss(f: torch.Tensor, mask: torch.Tensor, target_gram: torch.Tensor) -> torch.Tensor:
    """gram_loss restricted to a region (Gatys et al. 2017 spatial control), normalised by region size."""
    n = f.shape[1]
    return (guided_gram(f, mask) - target_gram).pow(2).sum() / (4 * n * n)


def guided_style_term(targets: list[list[dict[str, torch.Tensor]]], masks: dict[str, torch.Tensor],
                      region_weights: list[float], blend: list[float], layers: Iterable[str], weight: float,
                      name: str = "style") -> LossTerm:
    """Region-wise Gram style: Σ_i blend_i Σ_r w_r · mean over layers of guided_gram_loss(F_l, M_l[r], T_ir[l]).

    targets[i][r][l]: Gram (1, C, C) that region r should get from style i at layer l; masks[l]:
    (1, K, h_l, w_l) soft region masks at layer l's feature size; region_weights: K weights w_r."""
    layers = tuple(layers)

    def fn(feats: Features, _img: torch.Tensor) -> torch.Tensor:
        total = 0.0
        for b, per_region in zip(blend, targets):
            for r, (w, target) in enumerate(zip(region_weights, per_region)):
                for l in layers:
                    total = total + b * w * guided_gram_loss(feats[l], masks[l][:, r:r + 1], target[l]) / len(layers)
        return total

    def partial(feats: Features, _img: torch.Tensor, view: CellView) -> dict[str, torch.Tensor]:
        out = {}
        for l in layers:
            f, m = feats[l][(..., *view.cell(l))], masks[l][(..., *view.whole(l))]
            flat, weights = f.reshape(1, f.shape[1], -1), m.reshape(1, m.shape[1], 1, -1)
            out[l] = (flat[:, None] * weights) @ flat.transpose(1, 2)[:, None]  # (1, K, C, C): Σ m f fᵀ per region
            out[l + "#m"] = m.sum((2, 3))  # (1, K)
        return out

    def combine(sums: dict[str, torch.Tensor]) -> torch.Tensor:
        total = 0.0
        for b, per_region in zip(blend, targets):
            for r, (w, target) in enumerate(zip(region_weights, per_region)):
                for l in layers:
                    gram = sums[l][:, r] / sums[l + "#m"][:, r].clamp_min(1e-8)
                    n = target[l].shape[-1]
                    total = total + b * w * (gram - target[l]).pow(2).sum() / (4 * n * n) / len(layers)
        return total

    return LossTerm(name, weight, fn, layers, tiled=Tileable(partial, combine))
