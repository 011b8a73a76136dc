"""NNST's final colour correction, in OkLab (Björn Ottosson 2020): the chroma (a, b) given the style's mean and
covariance by a whitening-colouring transform, smoothed by a filter guided by the lightness, every channel
clamped to the style's range. Images are (1, 3, H, W) sRGB in [0, 1].

The chroma transformed is the content's (as the reference code does: the photo's colour layout in the
painting's palette, robust) or the result's own.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

# linear sRGB -> LMS and cube-rooted LMS -> Lab, from the OkLab definition
_M1 = torch.tensor([[0.4122214708, 0.5363325363, 0.0514459929],
                    [0.2119034982, 0.6806995451, 0.1073969566],
                    [0.0883024619, 0.2817188376, 0.6299787005]])
_M2 = torch.tensor([[0.2104542553, 0.7936177850, -0.0040720468],
                    [1.9779984951, -2.4285922050, 0.4505937099],
                    [0.0259040371, 0.7827717662, -0.8086757660]])
SHARPNESS = 10.0  # filter weight exp(-SHARPNESS |ΔL|) between neighbours (the reference's (e^{-5|ΔL|})²)
ITERATIONS = 5  # 3×3 passes of the filter
EPS = 1e-4  # added to the chroma covariances' diagonals


def _apply(matrix: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,bjhw->bihw", matrix.to(x), x)


def to_oklab(rgb: torch.Tensor) -> torch.Tensor:
    c = rgb.clamp(0, 1)
    linear = torch.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    return _apply(_M2, _apply(_M1, linear).clamp_min(0) ** (1 / 3))


def from_oklab(lab: torch.Tensor) -> torch.Tensor:
    linear = _apply(torch.linalg.inv(_M1), _apply(torch.linalg.inv(_M2), lab) ** 3).clamp(0, 1)
    return torch.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055).clamp(0, 1)


def match_moments(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(1, C, H, W) values given the per-channel mean and the covariance of TARGET (1, C, H', W'):
    whitened with X's covariance, coloured with TARGET's (symmetric square roots, float64)."""
    def stats(t):
        flat = t[0].flatten(1).double()
        mean = flat.mean(1, keepdim=True)
        cov = (flat - mean) @ (flat - mean).t() / flat.shape[1] + EPS * torch.eye(len(flat), dtype=flat.dtype,
                                                                                   device=flat.device)
        vals, vecs = torch.linalg.eigh(cov)
        return flat, mean, vecs, vals.clamp_min(1e-12)

    flat, mean, vecs, vals = stats(x)
    _, t_mean, t_vecs, t_vals = stats(target)
    white = vecs @ torch.diag(vals ** -0.5) @ vecs.t()
    colour = t_vecs @ torch.diag(t_vals ** 0.5) @ t_vecs.t()
    out = colour @ white @ (flat - mean) + t_mean
    return out.to(x.dtype).reshape(x.shape)


def guided_smooth(values: torch.Tensor, guide: torch.Tensor, iterations: int = ITERATIONS) -> torch.Tensor:
    """VALUES (1, C, H, W) averaged over 3×3 neighbourhoods, ITERATIONS times, each neighbour weighted by
    exp(-SHARPNESS |ΔGUIDE|) (GUIDE (1, 1, H, W)): smooth within regions of even lightness, not across its edges."""
    h, w = guide.shape[-2:]
    padded = F.pad(guide, (1, 1, 1, 1), mode="replicate")
    weights = [torch.exp(-SHARPNESS * (padded[..., i:i + h, j:j + w] - guide).abs()) for i in range(3) for j in range(3)]
    total = sum(weights)
    for _ in range(iterations):
        p = F.pad(values, (1, 1, 1, 1), mode="replicate")
        values = sum(wt * p[..., i:i + h, j:j + w] for wt, (i, j) in zip(weights, [(i, j) for i in range(3)
                                                                                   for j in range(3)])) / total
    return values


def correct(result: torch.Tensor, content: torch.Tensor, style: torch.Tensor, source: str = "content") -> torch.Tensor:
    """RESULT's lightness with the chroma of SOURCE ("content" or "result") given STYLE's chroma statistics and
    smoothed along RESULT's lightness; each OkLab channel clamped to STYLE's range."""
    lab, style_lab = to_oklab(result), to_oklab(style)
    chroma = (to_oklab(content) if source == "content" else lab)[:, 1:]
    chroma = match_moments(chroma, style_lab[:, 1:])
    out = torch.cat([lab[:, :1], guided_smooth(chroma, lab[:, :1])], 1)
    lo, hi = style_lab.amin((0, 2, 3)).view(1, 3, 1, 1), style_lab.amax((0, 2, 3)).view(1, 3, 1, 1)
    return from_oklab(torch.maximum(torch.minimum(out, hi), lo))
