"""Style losses from optimal transport, on encoder features (B = 1):

- w2: the Wasserstein-2 distance between Gaussians with each layer's feature mean and covariance,
  |μ - μ_s|² + tr(Σ + Σ_s - 2 (Σ_s^½ Σ Σ_s^½)^½), the matrix square root by Newton–Schulz iterations
  (as crowsonkb/style-transfer-pytorch computes it); divided by the style's own second moment per channel
  (tr Σ_s + |μ_s|²) so every layer weighs the same whatever its scale. Its statistics are sums over positions,
  so it tiles.
- ot: STROTSS's (Kolkin et al. 2019) relaxed earth mover's distance between hypercolumns at sampled positions
  (cosine cost), max(mean_i min_j C_ij, mean_j min_i C_ij), plus moment matching (mean absolute difference of
  the means and of the covariances); each layer divided by the style's RMS value there.

Both are multiplied by a constant (W2_SCALE, OT_SCALE) so the default --style-weight, chosen for the Gram loss,
gives a comparable balance against the content loss (measured on coffee + Starry Night at 256 px: the three
terms start equal at the content image).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

EPS = 1e-4  # relative ridge on the covariances (of their mean diagonal): keeps the square roots well conditioned
NEWTON_SCHULZ = 15  # iterations: error under 1e-3 for condition numbers up to ~1e3
OT_POSITIONS = 1024  # positions of the result sampled per evaluation (STROTSS)
OT_STYLE_POSITIONS = 4096  # positions of the style sampled once per scale
W2_SCALE = 1.0
OT_SCALE = 1.0


def sqrtm(a: torch.Tensor, iterations: int = NEWTON_SCHULZ) -> torch.Tensor:
    """Square root of symmetric positive (semi)definite matrices (..., C, C) by coupled Newton–Schulz iterations on
    A / ‖A‖_F (differentiable; converges for every eigenvalue in (0, ‖A‖_F])."""
    norm = a.flatten(-2).norm(dim=-1).clamp_min(1e-30)[..., None, None]
    y = a / norm
    eye = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device).expand_as(a)
    z = eye
    for _ in range(iterations):
        t = 0.5 * (3 * eye - z @ y)
        y, z = y @ t, t @ z
    return y * norm.sqrt()


def raw_moments(f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(1, C, H, W) -> (mean (C,), second raw moment E[f fᵀ] (C, C)): statistics that blend linearly."""
    sum_f, sum_ff, n = sums(f)
    return sum_f / n, sum_ff / n


def sums(f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(1, C, H, W) -> (Σ f (C,), Σ f fᵀ (C, C), number of positions), in float32."""
    flat = f[0].flatten(1).float()
    return flat.sum(1), flat @ flat.t(), flat.new_tensor(float(flat.shape[1]))


def gaussian(mean: torch.Tensor, second: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, covariance with the EPS ridge) from the mean and second raw moment."""
    cov = second - torch.outer(mean, mean)
    ridge = EPS * cov.diagonal().mean().abs().clamp_min(1e-12)
    return mean, cov + ridge * torch.eye(len(mean), dtype=cov.dtype, device=cov.device)


class W2Target:
    """A style layer's Gaussian from the styles' raw MOMENTS [(mean, second moment)] blended by BLEND (they
    combine linearly, as crowsonkb's tool blends styles): mean μ_s, covariance Σ_s, Σ_s^½, and the normaliser
    tr Σ_s + |μ_s|² (the style's second moment summed over channels)."""

    def __init__(self, moments: list[tuple[torch.Tensor, torch.Tensor]], blend: list[float]) -> None:
        mean = sum(w * m for w, (m, _) in zip(blend, moments))
        second = sum(w * q for w, (_, q) in zip(blend, moments))
        self.mean, self.cov = gaussian(mean, second)
        self.root = sqrtm(self.cov)
        self.scale = (self.cov.diagonal().sum() + self.mean.pow(2).sum()).clamp_min(1e-12)

    def distance(self, mean: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
        """W2² between N(MEAN, COV) and the target, over the target's second moment."""
        cross = sqrtm(self.root @ cov @ self.root)
        return ((mean - self.mean).pow(2).sum() + (cov + self.cov - 2 * cross).diagonal().sum()) / self.scale


def w2_loss(target: W2Target, sum_f: torch.Tensor, sum_ff: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    """W2_SCALE × the distance of the features whose sums() these are to TARGET."""
    return W2_SCALE * target.distance(*gaussian(sum_f / n, sum_ff / n))


# --- ot (STROTSS) ----------------------------------------------------------------------------------------------------

def layer_scales(styles: list[dict[str, torch.Tensor]], blend: list[float], layers) -> dict[str, torch.Tensor]:
    """{layer: the RMS value of the styles' features there (blended)}: hypercolumns are divided by it."""
    return {l: sum(w * s[l].float().pow(2).mean() for w, s in zip(blend, styles)).sqrt().clamp_min(1e-8)
            for l in layers}


def sample_hypercolumns(features: dict[str, torch.Tensor], layers, count: int, generator: torch.Generator,
                        scales: dict[str, torch.Tensor]) -> torch.Tensor:
    """(n, ΣC) hypercolumns at n = min(COUNT, positions) random positions of the finest of LAYERS' grids, each layer
    read at the position's cell and divided by SCALES[layer]."""
    h0, w0 = max((tuple(features[l].shape[-2:]) for l in layers), key=lambda hw: hw[0] * hw[1])
    picks = torch.randperm(h0 * w0, generator=generator)[:count]
    ys, xs = picks // w0, picks % w0
    parts = []
    for layer in layers:
        f = features[layer]
        h, w = f.shape[-2:]
        fy, fx = (ys * h // h0).to(f.device), (xs * w // w0).to(f.device)
        parts.append(f[0][:, fy, fx].t().float() / scales[layer])
    return torch.cat(parts, 1)


def remd(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Relaxed earth mover's distance between point sets X (n, D) and Y (m, D) under cosine cost."""
    cost = 1 - F.normalize(x, dim=1) @ F.normalize(y, dim=1).t()
    return torch.maximum(cost.min(1).values.mean(), cost.min(0).values.mean())


def moment_distance(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of the means plus that of the covariances of X (n, D) and Y (m, D)."""
    mx, my = x.mean(0), y.mean(0)
    cx, cy = (x - mx).t() @ (x - mx) / len(x), (y - my).t() @ (y - my) / len(y)
    return (mx - my).abs().mean() + (cx - cy).abs().mean()


def ot_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """STROTSS's style loss between sampled hypercolumns X (n, D) of the result and Y (m, D) of the style."""
    return OT_SCALE * (remd(x, y) + moment_distance(x, y))
