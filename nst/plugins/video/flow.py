"""Optical flow between frames, the forward-backward consistency mask (Ruder et al. 2016) and backward warping.

A flow from frame A to frame B is a (H, W, 2) float32 tensor of (dx, dy) in pixels: the content at pixel x of A
is at x + flow(x) in B. Estimators: OpenCV's DIS (default) and Farneback, and torchvision's RAFT (weights from
a weight source: downloaded with a sha256 check and cached, or a local file).
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from nst.core.weights import Registry, WeightSource, read_tensors
from nst.errors import NSTError

FlowFn = Callable[[np.ndarray, np.ndarray], torch.Tensor]  # (H, W, 3) uint8 A, B -> (H, W, 2) flow A -> B
ESTIMATORS = ("dis", "farneback", "raft")
# Ruder et al. 2016, eq. (6)-(7): forward-backward disagreement and motion-boundary thresholds
CONSISTENCY = (0.01, 0.5)
RAFT_MIN = 128  # px per side: RAFT's correlation pyramid needs 16 feature cells (smaller frames are padded)
MOTION_BOUNDARY = (0.01, 0.002)
RAFT_SOURCES = {
    "raft-large": WeightSource(
        name="raft-large", kind="url", filename="raft_large_C_T_SKHT_V2-ff5fadd5.pth",
        url="https://download.pytorch.org/models/raft_large_C_T_SKHT_V2-ff5fadd5.pth", sha256="ff5fadd5",
        local_hint="--flow-weights PATH", info={"arch": "large"},
        description="RAFT large (Teed & Deng 2020), torchvision's C+T+S+K+H weights, BSD-3: nst video --flow raft"),
    "raft-small": WeightSource(
        name="raft-small", kind="url", filename="raft_small_C_T_V2-01064c6d.pth",
        url="https://download.pytorch.org/models/raft_small_C_T_V2-01064c6d.pth", sha256="01064c6d",
        local_hint="--flow-weights PATH", info={"arch": "small"},
        description="RAFT small (Teed & Deng 2020), torchvision's C+T weights, BSD-3: nst video --flow raft "
                    "--flow-weights raft-small"),
}


def _cv2():
    try:
        import cv2
    except ImportError:
        raise NSTError("nst video needs OpenCV and PyAV: pip install 'nst-suite[video]'") from None
    return cv2


def _grey(frame: np.ndarray) -> np.ndarray:
    return _cv2().cvtColor(np.ascontiguousarray(frame), _cv2().COLOR_RGB2GRAY)


def dis_flow() -> FlowFn:
    """OpenCV's DIS optical flow (Kroeger et al. 2016), medium preset, on luminance."""
    cv2 = _cv2()
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)

    def flow(a: np.ndarray, b: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(dis.calc(_grey(a), _grey(b), None))

    return flow


def farneback_flow() -> FlowFn:
    """OpenCV's Farneback polynomial-expansion flow on luminance (5 levels, 15 px window)."""
    cv2 = _cv2()

    def flow(a: np.ndarray, b: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(cv2.calcOpticalFlowFarneback(_grey(a), _grey(b), None, 0.5, 5, 15, 3, 5, 1.2, 0))

    return flow


def load_raft(path) -> torch.nn.Module:
    """torchvision's RAFT (large or small, told apart by the weights) from a file of tensors."""
    from torchvision.models.optical_flow import raft_large, raft_small

    state = read_tensors(path)
    for build in (raft_large, raft_small):
        net = build(weights=None, progress=False)
        try:
            net.load_state_dict(state, strict=True)
            return net.eval()
        except RuntimeError:
            continue
    raise NSTError(f"{path}: not the weights of torchvision's RAFT (large or small)")


def raft_flow(registry: Registry, weights: str, device: torch.device, updates: int = 12) -> FlowFn:
    """RAFT with WEIGHTS (a registered name or a file path), run on DEVICE with UPDATES refinement iterations."""
    net = load_raft(registry.resolve(weights).fetch()).to(device)

    def prepare(frame: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1)[None].float().to(device)
        return t / 127.5 - 1.0

    def flow(a: np.ndarray, b: np.ndarray) -> torch.Tensor:
        h, w = a.shape[:2]
        pad = (0, max(RAFT_MIN, w + -w % 8) - w, 0, max(RAFT_MIN, h + -h % 8) - h)  # multiples of 8, at least 128
        x, y = (F.pad(prepare(f), pad, mode="replicate") for f in (a, b))
        with torch.inference_mode():
            out = net(x, y, num_flow_updates=updates)[-1]
        return out[0, :, :h, :w].permute(1, 2, 0).float().cpu()

    return flow


def estimator(name: str, registry: Registry | None = None, weights: str = "raft-large",
              device: torch.device = torch.device("cpu")) -> FlowFn:
    """The flow function NAME ("dis", "farneback" or "raft")."""
    if name == "dis":
        return dis_flow()
    if name == "farneback":
        return farneback_flow()
    if name == "raft":
        if registry is None:
            registry = Registry()
            for source in RAFT_SOURCES.values():
                registry.add(source)
        return raft_flow(registry, weights, device)
    raise NSTError(f"unknown flow estimator '{name}' ({', '.join(ESTIMATORS)})")


def _grid(flow: torch.Tensor) -> torch.Tensor:
    """(H, W, 2) flow -> (1, H, W, 2) grid_sample coordinates of x + flow(x) (align_corners=True)."""
    h, w = flow.shape[:2]
    ys, xs = torch.meshgrid(torch.arange(h, dtype=flow.dtype), torch.arange(w, dtype=flow.dtype), indexing="ij")
    gx = (xs + flow[..., 0]) * (2 / max(w - 1, 1)) - 1
    gy = (ys + flow[..., 1]) * (2 / max(h - 1, 1)) - 1
    return torch.stack([gx, gy], dim=-1)[None]


def warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Backward warp: (1, C, H, W) IMAGE of frame B sampled at x + FLOW(x), FLOW (H, W, 2) from frame A to B;
    the result is aligned with A (bilinear; outside B the nearest border pixel)."""
    grid = _grid(flow.to(image.dtype)).to(image.device)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=True)


def consistency_mask(back: torch.Tensor, forward: torch.Tensor) -> torch.Tensor:
    """(H, W) float mask of the pixels of frame A whose motion is reliable: 1 where the flow A -> B (BACK) and the
    flow B -> A (FORWARD) sampled at the target agree, the target lies inside B, and A is off a motion boundary.
    0 marks occlusions, disocclusions and the border entering the frame (Ruder et al. 2016)."""
    h, w = back.shape[:2]
    fwd_at = warp(forward.permute(2, 0, 1)[None], back)[0].permute(1, 2, 0)
    disagreement = (fwd_at + back).pow(2).sum(-1)
    size = fwd_at.pow(2).sum(-1) + back.pow(2).sum(-1)
    occluded = disagreement > CONSISTENCY[0] * size + CONSISTENCY[1]
    grad_x = torch.zeros_like(back)
    grad_y = torch.zeros_like(back)
    grad_x[:, 1:-1] = (back[:, 2:] - back[:, :-2]) / 2
    grad_y[1:-1] = (back[2:] - back[:-2]) / 2
    boundary = grad_x.pow(2).sum(-1) + grad_y.pow(2).sum(-1) > MOTION_BOUNDARY[0] * back.pow(2).sum(-1) + MOTION_BOUNDARY[1]
    ys, xs = torch.meshgrid(torch.arange(h, dtype=back.dtype), torch.arange(w, dtype=back.dtype), indexing="ij")
    tx, ty = xs + back[..., 0], ys + back[..., 1]
    outside = (tx < 0) | (tx > w - 1) | (ty < 0) | (ty > h - 1)
    return (~(occluded | boundary | outside)).float()


def flow_pair(flow: FlowFn, previous: np.ndarray, current: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """(flow current -> previous, consistency mask of the current frame) between two (H, W, 3) uint8 frames."""
    back = flow(current, previous)
    forward = flow(previous, current)
    return back, consistency_mask(back, forward)
