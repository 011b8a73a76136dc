"""Image optimisation (Gatys et al. 2016): pixels updated by L-BFGS or Adam against loss terms."""
from __future__ import annotations

from typing import Callable

import torch

from nst.core.encoder import Encoder
from nst.core.images import resize
from nst.core.losses import LossTerm
from nst.errors import NSTError

StepObserver = Callable[[int, torch.Tensor, dict[str, float]], None]


def scale_sizes(size: int, levels: int) -> list[int]:
    """Long sides of a coarse-to-fine pyramid ending at SIZE, halving each level: 512, 3 -> [128, 256, 512]."""
    return [max(16, round(size / 2 ** (levels - 1 - i))) for i in range(levels)]


def initial_image(kind: str, content: torch.Tensor, style: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """(1, 3, H, W) start point: the content, uniform noise, or the style resized to the content's shape."""
    if kind == "content":
        return content.clone()
    if kind == "noise":
        noise = torch.rand(content.shape, generator=generator, dtype=content.dtype)
        return noise.to(content.device)
    if kind == "style":
        return resize(style, tuple(content.shape[-2:])).clone()
    raise NSTError(f"unknown init '{kind}' (content, noise, style)")


def evaluate(terms: list[LossTerm], encoder: Encoder, image: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One encoder pass over the union of every term's layers; returns (total, {name: weighted value})."""
    layers = {l for t in terms for l in t.layers}
    features = encoder(image, layers) if layers else {}
    parts: dict[str, torch.Tensor] = {}
    for term in terms:
        value = term(features, image)
        parts[term.name] = parts[term.name] + value if term.name in parts else value
    total = sum(parts.values())
    return total, parts


def optimise(image: torch.Tensor, terms: list[LossTerm], encoder: Encoder, steps: int, optimizer: str = "lbfgs",
             lr: float = 0.02, on_step: StepObserver | None = None) -> torch.Tensor:
    """Minimise the sum of TERMS over the pixels of IMAGE (1, 3, H, W); returns the result in [0, 1].

    L-BFGS (one iteration per step, strong-Wolfe line search) works on unconstrained pixels and
    the result is clamped at the end; Adam (step LR) clamps after every step.
    """
    x = image.detach().clone().requires_grad_(True)
    if optimizer == "lbfgs":
        opt = torch.optim.LBFGS([x], lr=1.0, max_iter=1, history_size=50, tolerance_grad=0.0, tolerance_change=0.0)
    elif optimizer == "adam":
        opt = torch.optim.Adam([x], lr=lr)
    else:
        raise NSTError(f"unknown optimizer '{optimizer}' (lbfgs, adam)")
    last: dict[str, float] = {}

    def closure() -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        total, parts = evaluate(terms, encoder, x)
        total.backward()
        last.clear()
        last.update({k: float(v.detach()) for k, v in parts.items()})
        last["total"] = float(total.detach())
        return total

    for step in range(1, steps + 1):
        opt.step(closure)
        if optimizer == "adam":
            with torch.no_grad():
                x.clamp_(0, 1)
        if not torch.isfinite(x).all():
            raise NSTError("the optimisation diverged (non-finite pixels); lower the loss weights or use --optimizer adam")
        if on_step is not None:
            on_step(step, x.detach(), dict(last))
    return x.detach().clamp(0, 1)
