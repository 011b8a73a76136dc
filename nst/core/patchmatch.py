"""PatchMatch (Barnes et al. 2009) on torch tensors, vectorised over all pixels; runs on any device.

A nearest-neighbour field (NNF) from A (C, Ha, Wa) to B (C, Hb, Wb) is a long tensor (Ha, Wa, 2)
holding, for every pixel p of A, the (y, x) of the centre of its best-matching patch in B. The patch
distance is the sum of squared differences over a P×P window and all channels; images are extended
by edge replication, so every pixel has a patch. Callers weight channels by scaling them beforehand.

Memory grows linearly with pixels: distances are computed in row chunks of bounded size.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

CHUNK_ELEMENTS = 1 << 24  # elements of one gathered (C, rows, W) block


def _padded(f: torch.Tensor, r: int) -> torch.Tensor:
    """(C, H, W) -> (C, H + 2r, W + 2r), edges replicated."""
    return F.pad(f[None], (r, r, r, r), mode="replicate")[0] if r else f


def _rows_per_chunk(channels: int, width: int, patch: int) -> int:
    return max(1, CHUNK_ELEMENTS // max(1, channels * width * max(1, patch)))


def patch_distance(a: torch.Tensor, b: torch.Tensor, nnf: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(Ha, Wa) sum of squared differences between A's patch at p and B's patch at nnf[p]."""
    r = patch_size // 2
    a_pad, b_pad = _padded(a, r), _padded(b, r)
    c, ha, wa = a.shape
    wb_pad = b_pad.shape[-1]
    b_flat = b_pad.reshape(c, -1)
    out = torch.empty(ha, wa, device=a.device, dtype=a.dtype)
    step = _rows_per_chunk(c, wa, 1)
    for y0 in range(0, ha, step):
        y1 = min(ha, y0 + step)
        base = nnf[y0:y1, :, 0] * wb_pad + nnf[y0:y1, :, 1]
        d = torch.zeros(y1 - y0, wa, device=a.device, dtype=a.dtype)
        for dy in range(patch_size):
            for dx in range(patch_size):
                a_win = a_pad[:, y0 + dy:y1 + dy, dx:dx + wa]
                b_win = b_flat[:, base + dy * wb_pad + dx]
                d += (a_win - b_win).square().sum(0)
        out[y0:y1] = d
    return out


def random_nnf(a_hw: tuple[int, int], b_hw: tuple[int, int], generator: torch.Generator | None = None,
               device: torch.device | str = "cpu") -> torch.Tensor:
    """(Ha, Wa, 2) uniformly random positions in B."""
    ys = torch.randint(0, b_hw[0], a_hw, generator=generator)
    xs = torch.randint(0, b_hw[1], a_hw, generator=generator)
    return torch.stack([ys, xs], -1).to(device)


def identity_nnf(hw: tuple[int, int], device: torch.device | str = "cpu") -> torch.Tensor:
    """(H, W, 2) mapping every pixel to itself."""
    ys, xs = torch.meshgrid(torch.arange(hw[0], device=device), torch.arange(hw[1], device=device), indexing="ij")
    return torch.stack([ys, xs], -1)


def _clamp(nnf: torch.Tensor, b_hw: tuple[int, int]) -> torch.Tensor:
    return torch.stack([nnf[..., 0].clamp(0, b_hw[0] - 1), nnf[..., 1].clamp(0, b_hw[1] - 1)], -1)


def _improve(a, b, nnf, dist, candidate, patch_size):
    """Keep CANDIDATE (Ha, Wa, 2) where it is closer than the current match; returns (nnf, dist)."""
    cand_dist = patch_distance(a, b, candidate, patch_size)
    better = cand_dist < dist
    return torch.where(better[..., None], candidate, nnf), torch.where(better, cand_dist, dist)


def _shifted(nnf: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Candidate from the neighbour at p + (dy, dx): its match minus the offset (border pixels keep their own)."""
    h, w = nnf.shape[:2]
    ys = (torch.arange(h, device=nnf.device) + dy).clamp(0, h - 1)
    xs = (torch.arange(w, device=nnf.device) + dx).clamp(0, w - 1)
    neighbour = nnf[ys][:, xs]
    offset = torch.stack(torch.meshgrid(ys - torch.arange(h, device=nnf.device),
                                        xs - torch.arange(w, device=nnf.device), indexing="ij"), -1)
    return neighbour - offset


def patchmatch(a: torch.Tensor, b: torch.Tensor, patch_size: int = 3, iters: int = 5, init: torch.Tensor | None = None,
               radius: int | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """NNF (Ha, Wa, 2) from A (C, Ha, Wa) to B (C, Hb, Wb).

    Each iteration propagates good matches from neighbours in all four directions at jumps 8, 4, 2, 1
    from a random start, or 4, 1 from INIT (e.g. an upsampled coarser NNF, already coherent); only jumps
    well inside the image are used. Then it tries random candidates around the current match in windows
    halving from RADIUS (default: the whole of B) down to one pixel. GENERATOR makes the random start
    and search reproducible.
    """
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"patchmatch: A has {a.shape[0]} channels, B {b.shape[0]}")
    b_hw = tuple(b.shape[-2:])
    nnf = random_nnf(tuple(a.shape[-2:]), b_hw, generator, a.device) if init is None else _clamp(init.to(a.device), b_hw)
    dist = patch_distance(a, b, nnf, patch_size)
    radius = max(b_hw) if radius is None else radius
    longest = max(a.shape[-2:])
    jumps = [j for j in ((8, 4, 2, 1) if init is None else (4, 1)) if j == 1 or j * 4 <= longest]
    for _ in range(iters):
        for j in jumps:
            for dy, dx in ((j, 0), (-j, 0), (0, j), (0, -j)):
                nnf, dist = _improve(a, b, nnf, dist, _clamp(_shifted(nnf, dy, dx), b_hw), patch_size)
        r = radius
        while r >= 1:
            jitter = torch.randint(-r, r + 1, nnf.shape, generator=generator).to(a.device)
            nnf, dist = _improve(a, b, nnf, dist, _clamp(nnf + jitter, b_hw), patch_size)
            r //= 2
    return nnf


def patch_vectors(f: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(C, H, W) -> (H·W, C·P²): every pixel's patch, edges replicated."""
    r = patch_size // 2
    return F.unfold(_padded(f, r)[None], patch_size)[0].T


def brute_force_nnf(a: torch.Tensor, b: torch.Tensor, patch_size: int = 3, chunk: int = 1024) -> torch.Tensor:
    """Exact NNF (Ha, Wa, 2) by comparing every patch pair; for small images and tests (cost Ha·Wa·Hb·Wb)."""
    pa, pb = patch_vectors(a, patch_size), patch_vectors(b, patch_size)
    wb = b.shape[-1]
    best = torch.cat([torch.cdist(pa[i:i + chunk], pb).argmin(1) for i in range(0, len(pa), chunk)])
    return torch.stack([best // wb, best % wb], -1).reshape(*a.shape[-2:], 2)


def upsample_nnf(nnf: torch.Tensor, a_hw: tuple[int, int], b_hw_coarse: tuple[int, int],
                 b_hw: tuple[int, int]) -> torch.Tensor:
    """A coarse NNF (ha, wa, 2) into B (b_hw_coarse) as an initial NNF (A_hw, 2) into B (b_hw):
    each fine pixel takes its coarse pixel's match, scaled, plus its own offset inside the coarse cell."""
    ha, wa = nnf.shape[:2]
    dev = nnf.device
    ys, xs = torch.arange(a_hw[0], device=dev), torch.arange(a_hw[1], device=dev)
    yc, xc = ys * ha // a_hw[0], xs * wa // a_hw[1]
    coarse = nnf[yc][:, xc].double()
    sy, sx = b_hw[0] / b_hw_coarse[0], b_hw[1] / b_hw_coarse[1]
    fy = coarse[..., 0] * sy + (ys - yc * a_hw[0] / ha).double()[:, None]
    fx = coarse[..., 1] * sx + (xs - xc * a_hw[1] / wa).double()[None, :]
    return _clamp(torch.stack([fy.floor(), fx.floor()], -1).long(), b_hw)


def vote(b: torch.Tensor, nnf: torch.Tensor, patch_size: int = 3) -> torch.Tensor:
    """(C, Ha, Wa): each pixel the mean of what the overlapping matched patches of B say about it
    (patches centred inside A only, so a perfect NNF reproduces B exactly)."""
    r = patch_size // 2
    c = b.shape[0]
    ha, wa = nnf.shape[:2]
    hb, wb = b.shape[-2:]
    dev = nnf.device
    ys, xs = torch.arange(ha, device=dev), torch.arange(wa, device=dev)
    out = torch.zeros(c, ha, wa, device=b.device, dtype=b.dtype)
    count = torch.zeros(ha, wa, device=b.device, dtype=b.dtype)
    b_flat = b.reshape(c, -1)
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            # the patch centred at p - o covers p at its offset o
            sy, sx = ys - dy, xs - dx
            inside = ((sy >= 0) & (sy < ha))[:, None] & ((sx >= 0) & (sx < wa))[None, :]
            src = nnf[sy.clamp(0, ha - 1)][:, sx.clamp(0, wa - 1)]
            qy, qx = (src[..., 0] + dy).clamp(0, hb - 1), (src[..., 1] + dx).clamp(0, wb - 1)
            w = inside.to(b.dtype)
            out += b_flat[:, qy * wb + qx] * w
            count += w
    return out / count
