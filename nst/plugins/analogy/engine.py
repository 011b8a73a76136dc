"""Deep image analogy (Liao et al. 2017): A (structure) + B′ (appearance) -> A′, and B′ + A -> B.

Coarse to fine over VGG19 layers (relu5_1 … relu1_1): at each layer a bidirectional PatchMatch on the
channel-normalised features of both pairs, (A, A′) against (B, B′); below the top, A′'s features are
A's own blended with a "deconvolution" of B′'s warped features of the layer above (features optimised
so the network maps them onto the warped ones), weighted per pixel by α and A's feature magnitude.
The final NNF carries B′'s pixels to A′ by patch voting; `photo` adds a guided filter so A′ keeps
A's edges exactly.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from nst.core.encoder import LAYERS as VGG_LAYERS
from nst.core.encoder import Encoder
from nst.core.images import MAX_SIDE
from nst.core.patchmatch import patch_distance, patchmatch, upsample_nnf, vote
from nst.errors import FieldError, UsageError
from nst.settings.values import check_range

LAYERS = ("relu5_1", "relu4_1", "relu3_1", "relu2_1", "relu1_1")
# reference parameters (facts.md): α per layer below the top (the top takes all of A), patch size,
# random-search radius (None = all of B)
ALPHAS = {"relu4_1": 0.8, "relu3_1": 0.7, "relu2_1": 0.6, "relu1_1": 0.1}
PATCH_SIZES = {"relu5_1": 3, "relu4_1": 3, "relu3_1": 3, "relu2_1": 5, "relu1_1": 5}
RADII = {"relu5_1": None, "relu4_1": 6, "relu3_1": 6, "relu2_1": 4, "relu1_1": 4}
KAPPA, TAU = 300.0, 0.05  # sharpness and threshold of the feature-magnitude weight
SEARCH_CHANNELS, SEARCH_DIMS = 32, 128  # PatchMatch works on principal-axis patch descriptors (see search_descriptors)
PIXEL_PATCH = 3


@dataclass
class AnalogyParams:
    layers: tuple[str, ...] = LAYERS
    alphas: tuple[float, ...] | None = None  # one per layer below the top; None = reference values
    patch_sizes: tuple[int, ...] | None = None  # one per layer; None = reference values
    pm_iters: int = 5
    deconv_steps: int = 20
    both_directions: bool = True
    photo: bool = False
    seed: int = 0

    def validate(self) -> AnalogyParams:
        """Checks the lists (one clear error) and fills in the reference values."""
        layers = tuple(self.layers)
        if not layers:
            raise FieldError("layers", "needs at least one layer")
        for name in layers:
            if not (name.startswith("relu") and name in VGG_LAYERS):
                raise FieldError("layers", f"'{name}' is not a VGG19 relu layer (e.g. relu5_1,relu4_1,relu3_1)")
        order = [int(n[4]) * 10 + int(n[6:]) for n in layers]
        if order != sorted(order, reverse=True) or len(set(order)) != len(order):
            raise FieldError("layers", "must go from deep to shallow without repeats, e.g. "
                                       "relu5_1,relu4_1,relu3_1,relu2_1,relu1_1")
        alphas = tuple(self.alphas) if self.alphas is not None else tuple(ALPHAS.get(n, 0.5) for n in layers[1:])
        sizes = tuple(self.patch_sizes) if self.patch_sizes is not None else tuple(PATCH_SIZES.get(n, 3) for n in layers)
        if len(alphas) != len(layers) - 1:
            raise FieldError("alphas", f"needs one value per layer below the top ({len(layers) - 1}), got "
                                       f"{len(alphas)}")
        if len(sizes) != len(layers):
            raise FieldError("patch_sizes", f"needs one value per layer ({len(layers)}), got {len(sizes)}")
        if any(not 0 <= a <= 1 for a in alphas):
            raise FieldError("alphas", "must lie in [0, 1]")
        if any(not 1 <= p <= 15 or p % 2 == 0 for p in sizes):
            raise FieldError("patch_sizes", "must be odd, from 1 to 15, e.g. 3,3,3,5,5")
        check_range("pm_iters", self.pm_iters, 1, 1000)
        check_range("deconv_steps", self.deconv_steps, 0, 10000)
        self.layers, self.alphas, self.patch_sizes = layers, alphas, sizes
        return self


@dataclass
class AnalogyResult:
    a_prime: torch.Tensor  # (1, 3, Ha, Wa)
    b: torch.Tensor | None  # (1, 3, Hb, Wb), with both directions
    nnf_ab: torch.Tensor  # (Ha, Wa, 2) positions in B′
    nnf_ba: torch.Tensor | None  # (Hb, Wb, 2) positions in A


def check_size(hw: tuple[int, int], layers: tuple[str, ...], patch_sizes: tuple[int, ...], what: str) -> None:
    """One clear error when the deepest layer's maps are smaller than its patch."""
    h, w = Encoder.feature_size(hw, layers[0])
    if min(h, w) < patch_sizes[0]:
        ratio = min(hw) / max(hw)
        fits = (side for side in range(max(hw) + 1, MAX_SIDE + 1)
                if min(Encoder.feature_size((max(1, round(side * ratio)), side), layers[0])) >= patch_sizes[0])
        need = next(fits, None)
        fix = f"use a size of at least {need}" if need else "use a less elongated image"
        raise UsageError(f"{what} is {hw[1]}×{hw[0]} px, too small for {layers[0]} ({w}×{h} maps, patch "
                         f"{patch_sizes[0]}): {fix} or drop the deepest layer")


def _normalised(f: torch.Tensor) -> torch.Tensor:
    """(C, H, W) with every pixel's feature vector scaled to unit length."""
    return f / f.norm(dim=0, keepdim=True).clamp_min(1e-6)


def _principal_axes(samples: torch.Tensor, dims: int) -> torch.Tensor:
    """(dims, D) top principal axes of SAMPLES (D, N)."""
    centred = samples - samples.mean(1, keepdim=True)
    return torch.linalg.eigh(centred @ centred.T)[1][:, -dims:].T


def search_descriptors(src: torch.Tensor, dst: torch.Tensor, patch: int, generator: torch.Generator,
                       channels: int = SEARCH_CHANNELS, dims: int = SEARCH_DIMS) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel descriptors (dims, H, W) of the PATCH×PATCH patches of SRC (C, Ha, Wa) and DST (C, Hb, Wb).

    Features go to their top CHANNELS principal axes, then every patch to the top DIMS principal axes of
    both images' patches (a convolution), so the squared distance of two descriptors approximates the
    patch distance (measured on relu1_1/relu2_1: matches within 1.5% of the full-dimensional cost) and
    PatchMatch compares DIMS numbers per candidate instead of C·PATCH².
    """
    c = src.shape[0]
    if c > channels:
        both = torch.cat([src.reshape(c, -1), dst.reshape(c, -1)], 1)
        axes = _principal_axes(both[:, :: max(1, both.shape[1] // 16384)], channels)
        src, dst = [(axes @ f.reshape(c, -1)).reshape(channels, *f.shape[1:]) for f in (src, dst)]
        c = channels
    r = patch // 2
    padded = [F.pad(f[None], (r, r, r, r), mode="replicate")[0] for f in (src, dst)]
    columns = []
    for f, fp in zip((src, dst), padded):  # up to 4096 random patches of each image, as (C·P², N) columns
        n = min(4096, f.shape[-2] * f.shape[-1])
        ys = torch.randint(0, f.shape[-2], (n,), generator=generator).to(f.device)
        xs = torch.randint(0, f.shape[-1], (n,), generator=generator).to(f.device)
        columns.append(torch.stack([fp[:, ys + dy, xs + dx] for dy in range(patch) for dx in range(patch)], 1).reshape(-1, n))
    dims = min(dims, c * patch * patch)
    kernel = _principal_axes(torch.cat(columns, 1), dims).reshape(dims, c, patch, patch)
    return F.conv2d(padded[0][None], kernel)[0], F.conv2d(padded[1][None], kernel)[0]


def magnitude_weight(f: torch.Tensor, alpha: float) -> torch.Tensor:
    """(1, H, W) α·sigmoid(κ(m − τ)), m = channel-sum of F², min-max normalised: where a layer's
    response is strong the image keeps its own structure."""
    m = f.square().sum(0, keepdim=True)
    m = (m - m.min()) / (m.max() - m.min()).clamp_min(1e-12)
    return alpha * torch.sigmoid(KAPPA * (m - TAU))


def deconvolve(encoder: Encoder, target: torch.Tensor, lower: str, upper: str, init: torch.Tensor,
               steps: int) -> torch.Tensor:
    """Features (C_l, h_l, w_l) at LOWER that the layers up to UPPER map onto TARGET (C_u, h_u, w_u);
    L-BFGS from INIT."""
    x = init[None].clone().requires_grad_(True)
    if steps == 0:
        return init
    opt = torch.optim.LBFGS([x], max_iter=steps, history_size=8, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-9, tolerance_change=1e-12)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = (encoder.forward_between(x, lower, upper)[0] - target).square().mean()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return x.detach()[0]


def _reconstruct(encoder, own, appearance, nnf, fine_nnf, params, index):
    """Features at the layer below layers[index] for the image whose structure is OWN's ({layer: (C, h, w)}):
    OWN's features blended with a deconvolution of APPEARANCE's upper features warped by NNF (own -> appearance,
    at the upper layer); FINE_NNF, the same field upsampled to the lower layer, warps the starting point."""
    upper, lower = params.layers[index], params.layers[index + 1]
    target = vote(appearance[upper], nnf, params.patch_sizes[index])
    init = vote(appearance[lower], fine_nnf, params.patch_sizes[index + 1])
    recon = deconvolve(encoder, target, lower, upper, init, params.deconv_steps)
    w = magnitude_weight(own[lower], params.alphas[index])
    return own[lower] * w + recon * (1 - w)


def image_analogy(encoder: Encoder, a: torch.Tensor, b_prime: torch.Tensor, params: AnalogyParams,
                  on_layer: Callable[[int, Callable[[], torch.Tensor], float], None] = lambda _i, _preview, _cost: None
                  ) -> AnalogyResult:
    """A, B′ (1, 3, H, W) RGB in [0, 1] (sizes may differ) -> AnalogyResult.

    ON_LAYER(i, preview, cost) is called after each layer's search (i counts from 1); preview() returns
    the A′ this layer's NNF gives, (1, 3, Ha, Wa); cost is the mean descriptor distance of A's matches.
    """
    params.validate()
    layers = params.layers
    check_size(tuple(a.shape[-2:]), layers, params.patch_sizes, "A")
    check_size(tuple(b_prime.shape[-2:]), layers, params.patch_sizes, "B′")
    gen = torch.Generator().manual_seed(params.seed)
    with torch.no_grad():
        fa = {k: v[0] for k, v in encoder(a, layers).items()}
        fb_p = {k: v[0] for k, v in encoder(b_prime, layers).items()}
    both = params.both_directions
    top = layers[0]
    # the top layer: A′ has A's features and B has B′'s; one direction keeps B = B′ at every layer
    fa_p, fb = {top: fa[top]}, {top: fb_p[top]}
    nnf_ab = nnf_ba = None
    for i, layer in enumerate(layers):
        p, radius = params.patch_sizes[i], RADII.get(layer, 4)
        src, dst = search_descriptors(torch.cat([_normalised(fa[layer]), _normalised(fa_p[layer])]),
                                      torch.cat([_normalised(fb[layer]), _normalised(fb_p[layer])]), p, gen)
        nnf_ab = patchmatch(src, dst, 1, params.pm_iters, nnf_ab, radius, gen)  # descriptors hold the whole patch
        if both:
            nnf_ba = patchmatch(dst, src, 1, params.pm_iters, nnf_ba, radius, gen)
        cost = float(patch_distance(src, dst, nnf_ab, 1).mean())
        on_layer(i + 1, lambda nnf=nnf_ab, hw=tuple(fb_p[layer].shape[-2:]): preview(b_prime, nnf, hw, tuple(a.shape[-2:])), cost)
        if i + 1 == len(layers):
            break
        lower = layers[i + 1]
        a_hw, b_hw = tuple(fa[lower].shape[-2:]), tuple(fb_p[lower].shape[-2:])
        fine_ab = upsample_nnf(nnf_ab, a_hw, tuple(fb_p[layer].shape[-2:]), b_hw)
        fa_p[lower] = _reconstruct(encoder, fa, fb_p, nnf_ab, fine_ab, params, i)
        if both:
            fine_ba = upsample_nnf(nnf_ba, b_hw, tuple(fa[layer].shape[-2:]), a_hw)
            fb[lower] = _reconstruct(encoder, fb_p, fa, nnf_ba, fine_ba, params, i)
            nnf_ba = fine_ba
        else:
            fb[lower] = fb_p[lower]
        nnf_ab = fine_ab
    last = layers[-1]
    a_hw, b_hw = tuple(a.shape[-2:]), tuple(b_prime.shape[-2:])
    nnf_ab = upsample_nnf(nnf_ab, a_hw, tuple(fb_p[last].shape[-2:]), b_hw)
    a_prime, b_out = vote(b_prime[0], nnf_ab, PIXEL_PATCH)[None], None
    if both:
        nnf_ba = upsample_nnf(nnf_ba, b_hw, tuple(fa[last].shape[-2:]), a_hw)
        b_out = vote(a[0], nnf_ba, PIXEL_PATCH)[None]
    if params.photo:
        a_prime = photo_refine(a, a_prime)
        b_out = photo_refine(b_prime, b_out) if both else None
    return AnalogyResult(a_prime.clamp(0, 1), b_out.clamp(0, 1) if both else None, nnf_ab, nnf_ba)


def preview(b_prime: torch.Tensor, nnf: torch.Tensor, b_hw: tuple[int, int], a_hw: tuple[int, int]) -> torch.Tensor:
    """(1, 3, Ha, Wa): B′'s pixels carried to A by a layer's NNF (into B′'s maps of size B_HW)."""
    return vote(b_prime[0], upsample_nnf(nnf, a_hw, b_hw, tuple(b_prime.shape[-2:])), PIXEL_PATCH)[None]


def photo_refine(guide: torch.Tensor, rough: torch.Tensor, eps: float = 1e-2) -> torch.Tensor:
    """Photo-realistic refinement, (1, 3, H, W): GUIDE plus the colour change ROUGH − GUIDE smoothed by a
    guided filter steered by GUIDE, so every edge is GUIDE's and the colours are ROUGH's (window ≈ 1/8 of
    the short side)."""
    from kornia.filters import guided_blur

    k = max(5, min(guide.shape[-2:]) // 8 | 1)
    return guide + guided_blur(guide, rough - guide, k, eps)


def flow_image(nnf: torch.Tensor, b_hw: tuple[int, int]) -> torch.Tensor:
    """(3, H, W) colour picture of an NNF: hue = direction, saturation = length of the offset to the
    match (scaled to B's size); the identity field is white."""
    h, w = nnf.shape[:2]
    ys, xs = torch.meshgrid(torch.arange(h, device=nnf.device), torch.arange(w, device=nnf.device), indexing="ij")
    dy = nnf[..., 0].double() / max(1, b_hw[0] - 1) - ys.double() / max(1, h - 1)
    dx = nnf[..., 1].double() / max(1, b_hw[1] - 1) - xs.double() / max(1, w - 1)
    hue = (torch.atan2(dy, dx) / (2 * torch.pi)) % 1.0
    sat = (torch.sqrt(dy ** 2 + dx ** 2) / 2 ** 0.5).clamp(0, 1).sqrt()
    return _hsv_to_rgb(hue, sat).float()


def _hsv_to_rgb(h: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """(3, H, W) RGB of hue H and saturation S, value 1."""
    k = torch.stack([(5 + h * 6) % 6, (3 + h * 6) % 6, (1 + h * 6) % 6])
    return 1 - s * torch.clamp(torch.minimum(k, 4 - k), 0, 1)


def normalise_aspect(a: torch.Tensor, b_prime: torch.Tensor, note: Callable[[str], None], limit: float = 2.0) -> torch.Tensor:
    """B′ centre-cropped to A's aspect ratio when the two ratios differ by more than LIMIT (most of B′
    would otherwise have no structural partner in A); returns B′ (1, 3, h, w)."""
    ra = a.shape[-1] / a.shape[-2]
    hb, wb = b_prime.shape[-2:]
    rb = wb / hb
    if max(ra / rb, rb / ra) <= limit:
        return b_prime
    if rb > ra:
        w = max(1, round(hb * ra))
        x0 = (wb - w) // 2
        out = b_prime[..., :, x0:x0 + w]
    else:
        h = max(1, round(wb / ra))
        y0 = (hb - h) // 2
        out = b_prime[..., y0:y0 + h, :]
    note(f"A and B′ differ in aspect ratio by more than {limit:g}×: B′ centre-cropped to "
         f"{out.shape[-1]}×{out.shape[-2]} "
         "to match A's shape")
    return out
