"""Built-in plugin `johnson`: fast feed-forward transfer with a network trained by `nst train`."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from nst.context import RunContext
from nst.core.devices import check_memory
from nst.core.johnson import blend, johnson_from_config, load_model
from nst.core.onnxrun import onnx_runner, pick_backend
from nst.errors import UsageError
from nst.hookspecs import hookimpl

_CACHE: dict[str, Any] = {}
BYTES_PER_PIXEL = 1024  # a width-32 network's activations at full, half and quarter resolution, inference only


def cached_model(path: str, ctx: RunContext):
    """load_model, kept while the same file (path, mtime) is asked for on the same device."""
    p = Path(path)
    key = (str(p.resolve()), p.stat().st_mtime if p.exists() else 0.0, str(ctx.device), tuple(sorted(ctx.architectures)))
    if _CACHE.get("key") != key:
        _CACHE.clear()
        _CACHE.update(key=key, value=load_model(p, ctx.architectures, ctx.device))
    return _CACHE["value"]


def run(ctx: RunContext) -> torch.Tensor:
    """One forward pass of the style network (with the inputs nst_network_inputs hooks add), blended with
    the content by --strength."""
    if not ctx.settings.model:
        raise UsageError("--method johnson needs --model MODEL.safetensors (make one with `nst train`)")
    net, info = cached_model(ctx.settings.model, ctx)
    ctx.summary.setdefault("model", f"{Path(ctx.settings.model).name} (style {info.get('style', '?')}, {info.get('steps', '?')} steps)")
    width = getattr(net, "config", {}).get("width", 32)
    check_memory(BYTES_PER_PIXEL * ctx.content[0, 0].numel() * width / 32, f"the network at {ctx.settings.size} px",
                 ctx.device, "use a smaller size")
    inputs = ctx.hooks.network_inputs(ctx, net)
    for name, default in getattr(net, "inputs", {}).items():  # inputs a non-Johnson architecture takes
        if name not in inputs:
            ctx.note(f"{Path(ctx.settings.model).name} also takes {default}")
    backend = pick_backend(ctx.settings.backend, ctx.device, supported=not inputs and not getattr(net, "inputs", None))
    ctx.summary.setdefault("backend", backend)
    if backend == "onnx":
        axes = {0: "batch", 2: "height", 3: "width"}
        stylised = onnx_runner(net, (ctx.content[:, :, :64, :64],), ["image"], {"image": axes, "output": axes})(ctx.content)
    else:
        with torch.inference_mode():
            stylised = net(ctx.content, **inputs)
    return blend(stylised.to(ctx.device), ctx.content, ctx.settings.strength).clamp(0, 1)


@hookimpl
def nst_register_methods(register) -> None:
    register("johnson", run, help="Johnson et al. 2016: a trained feed-forward network (--model), milliseconds per image",
             needs_style=False)


@hookimpl
def nst_register_architectures(register) -> None:
    register("johnson", johnson_from_config)
