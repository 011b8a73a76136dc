"""Colour control (Gatys et al. 2017): luminance-only transfer and histogram matching.

Images are (1, 3, H, W) RGB in [0, 1]; colour spaces come from kornia.
"""
from __future__ import annotations

import torch
from kornia.color import rgb_to_ycbcr, ycbcr_to_rgb

from nst.core.images import resize


def luminance(image: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) RGB in [0, 1] -> (B, 1, H, W) Rec. 601 luma (YCbCr's Y)."""
    return rgb_to_ycbcr(image)[:, :1]


def match_histogram(source: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Per-channel histogram (quantile) matching: SOURCE's values remapped so each channel has
    REFERENCE's distribution. Shapes (1, C, H, W) and (1, C, H', W') -> (1, C, H, W)."""
    out = torch.empty_like(source)
    for c in range(source.shape[1]):
        src = source[0, c].flatten()
        ref = reference[0, c].flatten().sort().values
        order = src.argsort()
        q = torch.linspace(0, 1, src.numel(), device=src.device)
        idx = (q * (ref.numel() - 1)).round().long()
        flat = torch.empty_like(src)
        flat[order] = ref[idx]
        out[0, c] = flat.view_as(source[0, c])
    return out


def match_luminance(style: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """Shift and scale STYLE's luminance to CONTENT's mean and std (greyscale result, 3 channels)."""
    ys, yc = luminance(style), luminance(content)
    y = (ys - ys.mean()) / ys.std().clamp_min(1e-6) * yc.std() + yc.mean()
    return y.clamp(0, 1).expand(-1, 3, -1, -1).contiguous()


def keep_content_colors(image: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """IMAGE's luminance with CONTENT's chroma (YCbCr), at IMAGE's size."""
    content = resize(content, tuple(image.shape[-2:]))
    ycc = rgb_to_ycbcr(image.clamp(0, 1))
    chroma = rgb_to_ycbcr(content)[:, 1:]
    return ycbcr_to_rgb(torch.cat([ycc[:, :1], chroma], dim=1)).clamp(0, 1)


def prepare_styles(mode: str, content: torch.Tensor, styles: list[torch.Tensor]) -> list[torch.Tensor]:
    """Before a run: 'histogram' recolours each style to the content's histogram; 'luminance' turns
    each style into its luminance matched to the content's (the chroma is restored afterwards)."""
    if mode == "histogram":
        return [match_histogram(s, content) for s in styles]
    if mode == "luminance":
        return [match_luminance(s, content) for s in styles]
    return styles


def finish(mode: str, image: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """After a run: 'luminance' puts the content's chroma back."""
    return keep_content_colors(image, content) if mode == "luminance" else image
