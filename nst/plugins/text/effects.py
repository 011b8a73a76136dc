"""Text-effect transfer (Yang et al. 2017, "Awesome Typography"): guided patch synthesis with PatchMatch.

Given example glyphs S_i (as Guides, see nst.plugins.text.glyphs), the same glyphs with an effect S′_i and a
target glyph T, synthesise T′: T's layout with the S′ effect. Every pixel of T′ is assembled from
S′ patches found at the same normalised distance from the outline:

- The examples are rescaled so their stroke radius matches T's (when it differs by over 25%), and
  all of them are laid side by side into one source, so the search pools their patches.
- Guidance channels: the signed distance U (clipped at `far`, the distance beyond which S′ shows only
  its background, then expressed in T's pixels) times `distance_weight`, and the glyph mask times
  `mask_weight · (1 - k / n)` at EM iteration k of n (the text-mask term of Yang's cost fades out so
  the appearance takes over); a padding channel keeps patch centres off the source's borders and the
  gaps between examples (so no edge-replicated patch is copied). Appearance channels: S′ against the
  current estimate of T′.
- Coarse-to-fine: an image pyramid (factor 2, coarsest long side about `coarsest` px); the first NNF
  comes from the guidance alone, then each level runs EM iterations (PatchMatch search, then voting),
  fewer at finer levels; the NNF is upsampled between levels.
- Adaptive patch size: each iteration searches with `patch_size` and `large_patch`; a pixel takes the
  large patch's vote where that patch fits about as well per pixel as the small one (smooth,
  uniform parts of the effect), and the small one near detail that the large one cannot follow.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from nst.core.patchmatch import patch_distance, patchmatch, upsample_nnf, vote
from nst.errors import FieldError, NSTError
from nst.plugins.text.glyphs import Guide, distance_guide
from nst.settings.values import check_range

BACKGROUNDS = ("keep", "transparent", "synthesize")
RESCALE_TOLERANCE = 1.25  # examples are rescaled when their stroke radius differs from T's by more
PROFILE_BIN = 0.25  # stroke radii per bin of the outside colour profile
PROFILE_TAU = 0.04  # a bin whose mean colour is this far (RMS, 0..1) from the ground still shows the effect
REACH_RUN = 2.0  # stroke radii of plain ground after which the effect counts as ended
BORDER_PENALTY = 10.0  # weight that keeps patch centres off the source's borders (no edge-replicated patches)
FIT_SLACK = 1.25  # the large patch wins where its per-pixel distance is within this factor of the small one's


@dataclass
class EffectParams:
    """Synthesis settings; see the module docstring for their roles."""

    patch_size: int = 5
    large_patch: int = 9
    coarsest: int = 32
    max_levels: int = 6
    iters_coarse: int = 8
    iters_fine: int = 3
    pm_iters: int = 2
    distance_weight: float = 0.25
    mask_weight: float = 1.0
    seed: int = 0

    def validate(self) -> EffectParams:
        """Checks ranges; errors name the field (FieldError)."""
        for name in ("patch_size", "large_patch"):
            value = getattr(self, name)
            if not 1 <= value <= 31 or value % 2 == 0:
                raise FieldError(name, f"must be an odd number from 1 to 31, got {value}")
        for name in ("iters_coarse", "iters_fine", "pm_iters"):
            check_range(name, getattr(self, name), 1, 1000)
        for name in ("distance_weight", "mask_weight"):
            check_range(name, getattr(self, name), 0, 1e6)
        check_range("seed", self.seed, 0, 2 ** 63 - 1)
        return self


@dataclass
class EffectBackground:
    """What S′ looks like away from the glyph: COLOUR (3,) the ground's median colour; NOISE the 90th
    percentile of pixels' RMS difference from it in the far region (0 for a plain ground); REACH the U
    beyond which S′'s mean colour at that distance matches the ground; FAR the U where guidance is
    clipped; INSIDE_COVER (bins,) the mean coverage of S′ pixels at U in [-1, 0] (10 bins)."""

    colour: torch.Tensor
    noise: float
    reach: float
    far: float
    inside_cover: np.ndarray


def _rms(image: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """(3, ...) image, (3,) colour -> (...) RMS colour difference in [0, 1]."""
    return np.sqrt(((image - colour.reshape(3, *([1] * (image.ndim - 1)))) ** 2).mean(0))


def _soft_cover(diff: np.ndarray, noise: float) -> np.ndarray:
    """How clearly a pixel differs from the ground, 0..1: 0 below NOISE + 0.02, 1 from 0.15 above that."""
    lo = noise + 0.02
    return np.clip((diff - lo) / 0.15, 0.0, 1.0)


def _reach(u: np.ndarray, px: np.ndarray, colour: np.ndarray) -> float:
    """The U (> 0) where the effect ends, from outside pixels U (N,), colours PX (3, N): the start of
    the first stretch of REACH_RUN stroke radii (or up to the last pixel) over which the mean colour of
    every PROFILE_BIN-wide distance bin stays within tau of the ground COLOUR. tau is PROFILE_TAU, or
    1.5 times the median deviation of the outer half of the bins when the ground is textured."""
    bins = np.floor(u / PROFILE_BIN).astype(np.int64)
    counts = np.bincount(bins)
    means = np.stack([np.bincount(bins, weights=px[c]) for c in range(3)]) / np.maximum(counts, 1)
    dev = np.where(counts > 0, _rms(means, colour), 0.0)
    filled = np.flatnonzero(counts)
    tau = max(PROFILE_TAU, 1.5 * float(np.median(dev[filled[len(filled) // 2:]])))
    run = int(round(REACH_RUN / PROFILE_BIN))
    for k in range(len(dev)):
        if (dev[k:k + run] <= tau).all():
            return k * PROFILE_BIN
    return len(dev) * PROFILE_BIN


def measure_background(examples: list[tuple[Guide, torch.Tensor]]) -> EffectBackground:
    """EffectBackground pooled over EXAMPLES [(guide of S_i, S′_i (1, 3, H, W))]."""
    frames, us, pixels = [], [], []
    for guide, styled in examples:
        img = styled[0].detach().float().cpu().numpy()
        frames.append(np.concatenate([img[:, 0], img[:, -1], img[:, :, 0], img[:, :, -1]], axis=1))
        us.append(guide.u.reshape(-1))
        pixels.append(img.reshape(3, -1))
    colour = np.median(np.concatenate(frames, axis=1), axis=1)
    u, px = np.concatenate(us), np.concatenate(pixels, axis=1)
    outside = u > 0
    reach = 0.0
    if outside.any():
        reach = _reach(u[outside], px[:, outside], colour)
        far = min(reach + 0.5, float(np.quantile(u[outside], 0.9)))
    else:
        far = 0.5
    far = max(far, 0.25)
    distant = u >= far
    noise = float(np.quantile(_rms(px[:, distant], colour), 0.9)) if distant.any() else 0.0
    inside = u <= 0
    cover = _soft_cover(_rms(px[:, inside], colour), noise)
    idx = np.clip(((u[inside] + 1) * 10).astype(np.int64), 0, 9)
    inside_cover = np.bincount(idx, weights=cover, minlength=10) / np.maximum(np.bincount(idx, minlength=10), 1)
    return EffectBackground(torch.from_numpy(colour.astype(np.float32)), noise, reach, far, inside_cover)


def match_scale(guide: Guide, styled: torch.Tensor, radius: float) -> tuple[Guide, torch.Tensor]:
    """Rescale an example so its stroke radius is about RADIUS px (unchanged within RESCALE_TOLERANCE)."""
    factor = radius / guide.radius
    if max(factor, 1 / factor) <= RESCALE_TOLERANCE:
        return guide, styled
    h, w = guide.mask.shape
    hw = (max(4, round(h * factor)), max(4, round(w * factor)))
    mask = torch.from_numpy(guide.mask.astype(np.float32))[None, None]
    mask = F.interpolate(mask, size=hw, mode="bilinear", antialias=True, align_corners=False)[0, 0].numpy() >= 0.5
    styled = F.interpolate(styled, size=hw, mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)
    return distance_guide(mask), styled


def guide_channels(guide: Guide, far: float, radius: float) -> torch.Tensor:
    """(3, H, W): U clipped to [-1, FAR] in pixels of size RADIUS per stroke radius, the glyph mask,
    and a zero 'padding' channel (1 where pooled_source pads)."""
    u = torch.from_numpy(np.clip(guide.u, -1.0, far) * radius)
    return torch.stack([u, torch.from_numpy(guide.mask.astype(np.float32)), torch.zeros_like(u)])


def pooled_source(parts: list[tuple[torch.Tensor, torch.Tensor]], gap: int) -> tuple[torch.Tensor, torch.Tensor]:
    """[(guide (3, H_i, W_i), S′ (3, H_i, W_i))] side by side, each padded (edges replicated, padding
    channel 1) to the tallest height and by GAP px on its right -> (guide (3, H, ΣW), S′ (3, H, ΣW))."""
    height = max(g.shape[1] for g, _ in parts)
    joined = []
    for g, s in parts:
        pad = (0, gap, 0, height - g.shape[1])
        both = F.pad(torch.cat([g, s])[None], pad, mode="replicate")[0]
        both[2] = F.pad(g[2][None, None], pad, value=1.0)[0, 0]
        joined.append(both)
    both = torch.cat(joined, dim=2)
    return both[:3], both[3:]


def _off_limits(padding: torch.Tensor, r: int) -> torch.Tensor:
    """(H, W) 1 where a patch of radius R centred there would touch PADDING (H, W) or the border."""
    near = F.max_pool2d((padding > 0.01).float()[None, None], 2 * r + 1, 1, r)[0, 0]
    if r:
        near[:r], near[-r:], near[:, :r], near[:, -r:] = 1.0, 1.0, 1.0, 1.0
    return near


def _resize(x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """(C, H, W) -> (C, *HW), antialiased bilinear."""
    if tuple(x.shape[-2:]) == tuple(hw):
        return x
    return F.interpolate(x[None], size=hw, mode="bilinear", antialias=True, align_corners=False)[0]


def pyramid(t_hw: tuple[int, int], s_hw: tuple[int, int], params: EffectParams) -> list[tuple[tuple, tuple, int]]:
    """Levels, coarsest first: (target size, source size, EM iterations)."""
    levels = 1 + max(0, min(params.max_levels - 1, int(math.floor(math.log2(max(t_hw) / params.coarsest)))))
    out = []
    for level in range(levels):
        f = 2.0 ** (level - levels + 1)
        frac = level / (levels - 1) if levels > 1 else 1.0
        iters = round(params.iters_coarse + (params.iters_fine - params.iters_coarse) * frac)
        out.append(((max(4, round(t_hw[0] * f)), max(4, round(t_hw[1] * f))),
                    (max(4, round(s_hw[0] * f)), max(4, round(s_hw[1] * f))), iters))
    return out


def total_steps(t_hw: tuple[int, int], s_hw: tuple[int, int], params: EffectParams) -> int:
    """EM iterations one synthesis runs (for a progress bar)."""
    return sum(iters for _, _, iters in pyramid(t_hw, s_hw, params))


def _search(a, b, nnfs, sizes, params, generator):
    """One adaptive-patch search: NNFs per patch size, and (H, W) bool 'use the large patch'."""
    nnfs = [patchmatch(a, b, p, params.pm_iters, init=nnf, generator=generator) for nnf, p in zip(nnfs, sizes)]
    if len(sizes) == 1:
        return nnfs, None
    d_small, d_large = (patch_distance(a, b, nnf, p) / (p * p) for nnf, p in zip(nnfs, sizes))
    return nnfs, d_large <= FIT_SLACK * d_small + 1e-6


def _vote(styled, nnfs, sizes, large):
    """(3, H, W) estimate: the small patches' vote, the large patches' where LARGE (H, W) (smoothed)."""
    small = vote(styled, nnfs[0], sizes[0])
    if large is None:
        return small
    weight = F.avg_pool2d(large.float()[None, None], 3, 1, 1, count_include_pad=False)[0]
    return small + weight * (vote(styled, nnfs[1], sizes[1]) - small)


def synthesize(source_guide: torch.Tensor, styled: torch.Tensor, target_guide: torch.Tensor, params: EffectParams,
               on_step: Callable[[], None] = lambda: None, device: torch.device | str = "cpu") -> torch.Tensor:
    """T′ (3, Ht, Wt), on the CPU, from the source guidance (3, Hs, Ws) and effect S′ (3, Hs, Ws) for the
    target guidance (3, Ht, Wt) (channels as made by guide_channels and pooled_source; patch centres stay
    off the source's borders and padding), computed on DEVICE; ON_STEP is called after each EM iteration."""
    source_guide, styled, target_guide = (t.to(device) for t in (source_guide, styled, target_guide))
    generator = torch.Generator().manual_seed(params.seed)
    sizes = sorted({params.patch_size, params.large_patch})
    levels = pyramid(tuple(target_guide.shape[-2:]), tuple(styled.shape[-2:]), params)
    nnfs, prev_s_hw = None, None
    for t_hw, s_hw, iters in levels:
        tg, sg, ss = _resize(target_guide, t_hw), _resize(source_guide, s_hw).clone(), _resize(styled, s_hw)
        sg[2] = _off_limits(sg[2], sizes[-1] // 2)
        if nnfs is None:
            w = torch.tensor([params.distance_weight, params.mask_weight, BORDER_PENALTY], device=device).view(3, 1, 1)
            first = patchmatch(w * tg, w * sg, sizes[0], params.pm_iters + 2, generator=generator)
            nnfs, large = [first] * len(sizes), None
        else:
            nnfs = [upsample_nnf(nnf, t_hw, prev_s_hw, s_hw) for nnf in nnfs]
            if large is not None:
                large = F.interpolate(large.float()[None, None], size=t_hw, mode="nearest")[0, 0] > 0.5
        estimate = _vote(ss, nnfs, sizes, large)
        for k in range(iters):
            w = torch.tensor([params.distance_weight, params.mask_weight * (1 - k / iters), BORDER_PENALTY],
                             device=device).view(3, 1, 1)
            a, b = torch.cat([w * tg, estimate]), torch.cat([w * sg, ss])
            nnfs, large = _search(a, b, nnfs, sizes, params, generator)
            estimate = _vote(ss, nnfs, sizes, large)
            on_step()
        prev_s_hw = s_hw
    return estimate.clamp(0, 1).cpu()


def coverage(result: torch.Tensor, target: Guide, background: EffectBackground) -> torch.Tensor:
    """(H, W) alpha in [0, 1] of a synthesised T′ (3, H, W): how clearly each pixel differs from the
    ground colour (_soft_cover); inside the glyph at least the mean coverage of S′ at the same U; 0
    beyond the effect's reach (U > reach + 0.25)."""
    diff = _rms(result.detach().cpu().numpy(), background.colour.numpy())
    alpha = _soft_cover(diff, background.noise)
    idx = np.clip(((target.u + 1) * 10).astype(np.int64), 0, 9)
    alpha = np.where(target.u <= 0, np.maximum(alpha, background.inside_cover[idx]), alpha)
    alpha = np.where(target.u > background.reach + 0.25, 0.0, alpha)
    return torch.from_numpy(alpha.astype(np.float32))


def unmix(result: torch.Tensor, alpha: torch.Tensor, colour: torch.Tensor) -> torch.Tensor:
    """(3, H, W) foreground colours F with result = alpha·F + (1 - alpha)·COLOUR (result where alpha ≈ 0)."""
    fg = (result - (1 - alpha) * colour.view(3, 1, 1)) / alpha.clamp(min=1e-3)
    return torch.where(alpha > 0.01, fg, result).clamp(0, 1)


@dataclass
class EffectPlan:
    """A prepared transfer: the pooled source (guidance (3, Hs, Ws), S′ (3, Hs, Ws)), the target's
    guidance channels (3, Ht, Wt), the measured BACKGROUND, and RUNS (1, or 2 for `synthesize`)."""

    source_guide: torch.Tensor
    source_styled: torch.Tensor
    target_guide: torch.Tensor
    background: EffectBackground
    runs: int


def plan_transfer(examples: list[tuple[Guide, torch.Tensor]], target: Guide, background_mode: str,
                  params: EffectParams) -> EffectPlan:
    """Scale-match the EXAMPLES [(guide of S_i, S′_i (1, 3, H, W))] to TARGET and pool them."""
    if background_mode not in BACKGROUNDS:
        raise NSTError(f"background must be one of {', '.join(BACKGROUNDS)}, got '{background_mode}'")
    params.validate()
    scaled = [match_scale(g, s, target.radius) for g, s in examples]
    background = measure_background(scaled)
    parts = [(guide_channels(g, background.far, target.radius), s[0].float()) for g, s in scaled]
    source_guide, source_styled = pooled_source(parts, gap=params.large_patch)
    return EffectPlan(source_guide, source_styled, guide_channels(target, background.far, target.radius), background,
                2 if background_mode == "synthesize" else 1)


def transfer(plan: EffectPlan, target: Guide, background_mode: str, params: EffectParams,
             on_step: Callable[[], None] = lambda: None, device: torch.device | str = "cpu") -> torch.Tensor:
    """T′ (1, 3, H, W), or (1, 4, H, W) RGBA for background_mode 'transparent'.

    keep: the synthesis as it comes (far from the glyph, S′'s far-ground patches); transparent: RGBA
    with alpha = coverage and colours unmixed from the ground colour; synthesize: the unmixed effect
    over a ground synthesised separately for the whole canvas (guidance 'far' everywhere)."""
    result = synthesize(plan.source_guide, plan.source_styled, plan.target_guide, params, on_step, device)
    if background_mode == "keep":
        return result[None]
    alpha = coverage(result, target, plan.background)
    fg = unmix(result, alpha, plan.background.colour)
    if background_mode == "transparent":
        return torch.cat([fg, alpha[None]])[None]
    ground = plan.target_guide.clone()
    ground[0], ground[1] = plan.background.far * target.radius, 0.0  # the padding channel stays 0
    back = synthesize(plan.source_guide, plan.source_styled, ground, params, on_step, device)
    return (alpha * fg + (1 - alpha) * back)[None]
