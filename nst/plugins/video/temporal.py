"""Temporal consistency: blending for feed-forward methods, a start image and a temporal loss for gatys, and the
flicker measure (warping error).

Images are (1, 3, H, W) float tensors in [0, 1] on the CPU; masks (H, W) in {0, 1} (1 = motion reliable).
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import torch

from nst.contract.hookspecs import hookimpl
from nst.core.images import resize
from nst.core.losses import LossTerm
from nst.plugins.video.flow import FlowFn, flow_pair, warp

# Feed-forward methods: share of the warped previous output kept on reliable pixels. Along a motion path the
# output is then an exponential moving average of the network's frames with a time constant of
# 1 / (1 - 0.5) = 2 frames, which removes most frame-to-frame flicker while a new frame still shows through.
BLEND = 0.5
# Gatys: weight of the temporal loss mean(mask (x - warped previous)^2). With the default weights, at 128 px
# on Starry Night, 2e6 makes the term about half the content term at the end of a frame (2e4: under 1%), and
# halved the flicker of 2e4 (0.0035 against 0.0064; frame by frame 0.015).
TEMPORAL_LOSS = 2e6


def blend(stylised: torch.Tensor, warped: torch.Tensor, mask: torch.Tensor, weight: float = BLEND) -> torch.Tensor:
    """STYLISED with WEIGHT of the WARPED previous output mixed in where MASK is 1: m (w W + (1 - w) S) + (1 - m) S."""
    keep = weight * mask[None, None].to(stylised.dtype)
    return stylised + keep * (warped - stylised)


def quantised(image: torch.Tensor) -> torch.Tensor:
    """IMAGE as it is stored in an 8-bit frame: the state carried to the next frame, so a resumed run that reads
    the frame back continues exactly as an uninterrupted one."""
    return torch.round(image.clamp(0, 1) * 255) / 255


class TemporalGatys:
    """In-process plugin for one gatys frame: starts the optimisation from the warped previous output (the new
    content where the motion is unreliable) and adds the term `temporal`: WEIGHT * mean over pixels of
    mask * (x - warped)^2, the mask and target resized to each scale of the run."""

    name = "temporal"

    def __init__(self, warped: torch.Tensor, mask: torch.Tensor, content: torch.Tensor, weight: float) -> None:
        self.warped, self.mask, self.weight = warped, mask[None, None], weight
        self.start = content + self.mask * (warped - content)

    @hookimpl
    def nst_prepare(self, ctx) -> dict:
        return {"gatys.init": self.start.to(ctx.device)}

    @hookimpl
    def nst_losses(self, ctx) -> list[LossTerm]:
        shape = tuple(ctx.current_content.shape[-2:])
        target = resize(self.warped, shape).to(ctx.device)
        mask = torch.nn.functional.interpolate(self.mask, size=shape, mode="area").to(ctx.device)

        def temporal(_features, image: torch.Tensor) -> torch.Tensor:
            return (mask * (image - target).pow(2)).sum() / (3 * mask.numel())

        return [LossTerm("temporal", self.weight, temporal)]


def to_tensor(frame: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, H, W) float in [0, 1]."""
    return torch.tensor(frame).permute(2, 0, 1)[None].float() / 255


def to_array(image: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) in [0, 1] -> (H, W, 3) uint8."""
    return (image[0].clamp(0, 1).permute(1, 2, 0) * 255 + 0.5).to(torch.uint8).numpy()


def warping_errors(inputs: Iterable[np.ndarray], outputs: Iterable[np.ndarray], flow: FlowFn) -> Iterator[float]:
    """Per consecutive pair t-1, t: the mean squared RGB difference (values in [0, 1]) between output t and output
    t-1 warped by the flow of the INPUT frames, over the pixels the consistency mask keeps (Lai et al. 2018's
    warping error). Yields one value per pair (none for a single frame)."""
    previous_in = previous_out = None
    for frame_in, frame_out in zip(inputs, outputs):
        current = to_tensor(frame_out)
        if previous_in is not None:
            back, mask = flow_pair(flow, previous_in, frame_in)
            diff = (current - warp(previous_out, back)).pow(2).mean(1)[0]
            yield float((diff * mask).sum() / mask.sum().clamp(min=1))
        previous_in, previous_out = frame_in, current


def flicker(inputs: Iterable[np.ndarray], outputs: Iterable[np.ndarray], flow: FlowFn) -> float:
    """The mean warping error over a clip (0.0 for a single frame)."""
    errors = list(warping_errors(inputs, outputs, flow))
    return sum(errors) / len(errors) if errors else 0.0
