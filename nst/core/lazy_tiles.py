"""A feed-forward network over a large image in tiles, in one pass.

The network's forward runs once on LAZY maps: stand-ins for whole-image activations (B, C, h, w) that record
each operation instead of computing it. Where an instance norm needs its input's statistics over the whole
image (and for the output), the recorded operations are computed tile by tile: the tiles partition the map,
and each tile's inputs are cut from the stored maps with exactly the margin its convolutions, paddings and
upsamplings need, found by walking the recorded graph backwards. The norm's input is then stored whole and
the graph goes on from it. So every activation is computed once (margins of a few pixels per stage instead
of the network's whole receptive field), the result equals the untiled network's, and memory holds the maps
stored at the norms (as an untiled forward holds its activations) plus one tile's work.

Known operations: pointwise maths, conv2d, pad, nearest upsampling by whole factors, pixel_shuffle, slicing
and channel concatenation. Anything else raises Unsupported, and the caller falls back to another scheme.
"""
from __future__ import annotations

import contextlib
import math
import os
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

Box = tuple[int, int, int, int]  # y0, y1, x0, x1 (ends exclusive) on a map's own grid
Spans = tuple[tuple[int, int], tuple[int, int]]  # (y0, y1), (x0, x1)


class Unsupported(Exception):
    """The network does something lazy maps cannot record (the message names it)."""


class UnsupportedAttribute(Unsupported, AttributeError):
    """A tensor attribute or method lazy maps do not have (hasattr() is False for it)."""


MIN_SIDE = 16  # px: the smallest tile side (margins of a few pixels would cost more than the tile)
_CREATED = threading.local()  # .count: Lazy maps made so far in this thread's pass (their INDEX)


class Lazy:
    """A (B, C, h, w) map of the whole image: a recorded operation on other maps, or STORED (computed whole).
    INDEX: its place in the order of creation (the same in every pass of the same network); USERS: how many
    recorded maps read it."""

    func: Callable | None = None  # what computes it (a torch function), for recorded maps

    def __init__(self, meta: torch.Tensor, device: torch.device, op: Op | None = None, args=(), kwargs=None,
                 stored: torch.Tensor | None = None) -> None:
        if meta.dim() != 4:
            raise Unsupported(f"a {meta.dim()}-d result of {op.name if op else 'an input'} (maps are 4-d)")
        self.meta, self.device = meta, device
        self.op, self.args, self.kwargs, self.stored = op, args, kwargs or {}, stored
        self.sources, self.users = _lazies((args, kwargs)), 0
        for source in self.sources:
            source.users += 1
        self.autocast = (torch.is_autocast_enabled(device.type), torch.get_autocast_dtype(device.type))
        self.index = _CREATED.count = getattr(_CREATED, "count", 0) + 1

    @classmethod
    def leaf(cls, tensor: torch.Tensor) -> Lazy:
        return cls(torch.empty_like(tensor, device="meta"), tensor.device, stored=tensor)

    # --- what code may ask of a tensor -----------------------------------------------------------------------------
    shape = property(lambda self: self.meta.shape)
    dtype = property(lambda self: self.meta.dtype)
    ndim = property(lambda self: 4)
    is_cuda = property(lambda self: self.device.type == "cuda")

    def dim(self) -> int:
        return 4

    def size(self, dim: int | None = None):
        return self.meta.size() if dim is None else self.meta.size(dim)

    def inputs(self) -> list[Lazy]:
        """The maps this one is computed from (none once stored)."""
        return self.sources

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if func in OPERATORS:  # a computed tensor's operator with a map: tensor * map, tensor.add(map), ...
            func, swapped = OPERATORS[func]
            args = args[::-1] if swapped else args
        op = OPS.get(func)
        if op is None:
            raise Unsupported(f"{getattr(func, '__name__', func)} on a whole-image map")
        return record(op, func, args, kwargs or {})

    def _method(self, name: str, *args, **kwargs) -> Lazy:
        return record(Op(), getattr(torch.Tensor, name), (self, *args), kwargs)

    def float(self) -> Lazy:
        return self._method("float")

    def contiguous(self, memory_format=torch.contiguous_format) -> Lazy:
        return self._method("contiguous", memory_format=memory_format)

    def to(self, *args, **kwargs) -> Lazy:
        """Only a dtype change (a move to the map's own device is none)."""
        dtypes = [a for a in (*args, *kwargs.values()) if isinstance(a, torch.dtype)]
        places = [a for a in (*args, *kwargs.values()) if not isinstance(a, torch.dtype)]
        if len(dtypes) > 1 or any(not isinstance(a, (str, torch.device)) or torch.device(a) != self.device
                                  for a in places):
            raise Unsupported(f"to({', '.join(map(str, (*args, *kwargs.values())))}) of a whole-image map")
        return self._method("to", dtypes[0]) if dtypes else self

    def __getattr__(self, name: str):
        """Tensor methods that are a pointwise torch function (x.tanh(), x.mul(2), ...); nothing else."""
        func = getattr(torch, name, None) if not name.startswith("_") else None
        if func is None or type(OPS.get(func)) is not Op:
            raise UnsupportedAttribute(f"'{name}' of a whole-image map")
        return lambda *args, **kwargs: func(self, *args, **kwargs)

    def __getitem__(self, index) -> Lazy:
        return record(SLICE, torch.Tensor.__getitem__, (self, index), {})

    __add__ = lambda self, o: torch.add(self, o)  # noqa: E731
    __radd__ = lambda self, o: torch.add(o, self)  # noqa: E731
    __sub__ = lambda self, o: torch.sub(self, o)  # noqa: E731
    __rsub__ = lambda self, o: torch.sub(o, self)  # noqa: E731
    __mul__ = lambda self, o: torch.mul(self, o)  # noqa: E731
    __rmul__ = lambda self, o: torch.mul(o, self)  # noqa: E731
    __truediv__ = lambda self, o: torch.div(self, o)  # noqa: E731
    __rtruediv__ = lambda self, o: torch.div(o, self)  # noqa: E731
    __pow__ = lambda self, o: torch.pow(self, o)  # noqa: E731
    __rpow__ = lambda self, o: torch.pow(o, self)  # noqa: E731
    __neg__ = lambda self: torch.neg(self)  # noqa: E731
    __abs__ = lambda self: torch.abs(self)  # noqa: E731
    __gt__ = lambda self, o: torch.gt(self, o)  # noqa: E731
    __ge__ = lambda self, o: torch.ge(self, o)  # noqa: E731
    __lt__ = lambda self, o: torch.lt(self, o)  # noqa: E731
    __le__ = lambda self, o: torch.le(self, o)  # noqa: E731

    def __bool__(self) -> bool:
        raise Unsupported("the truth of a whole-image map (control flow on its values)")

    def __len__(self) -> int:
        raise Unsupported("len() of a whole-image map")


def _swap(value, lazy: Callable, tensor: Callable | None = None):
    """VALUE (nested tuples, lists, dicts) with every Lazy replaced by lazy(it) (and every tensor by tensor(it))."""
    if isinstance(value, Lazy):
        return lazy(value)
    if isinstance(value, torch.Tensor):
        return value if tensor is None else tensor(value)
    if isinstance(value, (tuple, list)):
        return type(value)(_swap(v, lazy, tensor) for v in value)
    if isinstance(value, dict):
        return {k: _swap(v, lazy, tensor) for k, v in value.items()}
    return value


def _lazies(value) -> list[Lazy]:
    found: dict[int, Lazy] = {}
    _swap(value, lambda m: found.setdefault(id(m), m))
    return list(found.values())


def _values(value) -> list:
    """The leaves of VALUE (nested tuples, lists, dicts)."""
    if isinstance(value, (tuple, list)):
        return [leaf for v in value for leaf in _values(v)]
    if isinstance(value, dict):
        return _values(list(value.values()))
    return [value]


def record(op: Op, func: Callable, args: tuple, kwargs: dict) -> Lazy:
    """A Lazy for FUNC(*ARGS, **KWARGS) computed by OP; its shape from running FUNC on meta tensors."""
    inplace = bool(kwargs.get("inplace"))
    kwargs = {k: v for k, v in kwargs.items() if k != "inplace"}  # a tile of a stored map must never change it
    if inplace:
        return _in_place(record(op, func, args, kwargs), args[0])
    fused = fuse_affine(func, args, kwargs)
    if fused is not None:
        return fused
    lazies = _lazies((args, kwargs))
    if type(op) is Op:  # pointwise: a computed tensor over the same image (a mask, say) is read tile by tile too
        hw = lazies[0].shape[-2:]
        spread = lambda t: Lazy.leaf(t) if t.dim() == 4 and t.shape[-2:] == hw else t  # noqa: E731
        args, kwargs = _swap(args, lambda m: m, spread), _swap(kwargs, lambda m: m, spread)
        lazies = _lazies((args, kwargs))
    meta = func(*_swap(args, lambda m: m.meta, lambda t: t.to("meta")), **_swap(kwargs, lambda m: m.meta,
                                                                              lambda t: t.to("meta")))
    if not isinstance(meta, torch.Tensor):
        raise Unsupported(f"{op.name} giving a {type(meta).__name__}")
    node = Lazy(meta, lazies[0].device, op, args, kwargs)
    node.func = func
    op.check(node)
    return node


def _in_place(result: Lazy, target) -> Lazy:
    """An in-place step (e.g. ReLU(inplace=True)) on TARGET, recorded as RESULT: TARGET becomes the result (later
    readers see the new values, as in eager mode) and RESULT keeps TARGET's old recording. Refused when other
    recorded maps already read TARGET (they would have to see the old values)."""
    if not isinstance(target, Lazy) or target.users > 1:  # RESULT itself reads it
        raise Unsupported("an in-place step on a whole-image map that other steps also read")
    target.__dict__, result.__dict__ = result.__dict__, target.__dict__
    swap = lambda m: result if m is target else m  # noqa: E731
    target.args, target.kwargs = _swap(target.args, swap), _swap(target.kwargs, swap)
    target.sources, target.users, result.users = [result], 0, 1
    return target


# --- operations: the margin each needs and how a tile of it is computed ------------------------------------------------

class Op:
    """An operation on maps. need(node, box) -> the Spans of its map inputs that a BOX of its output reads;
    compute(node, values, box): the output on BOX, where values(input, spans) cuts an input's computed tile."""

    name = "pointwise"

    def check(self, node: Lazy) -> None:
        """Pointwise: every map input on the output's grid, every other tensor without extent over the image."""
        for a in _values((node.args, node.kwargs)):
            if isinstance(a, Lazy) and a.shape[-2:] != node.shape[-2:]:
                raise Unsupported(f"{getattr(node, 'func', self.name)} of maps of different sizes")
            if isinstance(a, torch.Tensor) and a.dim() and (a.shape[-1] != 1 or (a.dim() > 1 and a.shape[-2] != 1)):
                raise Unsupported("a tensor that varies over the image combined with a whole-image map")

    def need(self, node: Lazy, inp: Lazy, box: Box) -> Spans:
        return (box[0], box[1]), (box[2], box[3])

    def compute(self, node: Lazy, values, box: Box) -> torch.Tensor:
        spans = (box[0], box[1]), (box[2], box[3])
        cut = lambda a: values(a, spans)  # noqa: E731
        return node.func(*_swap(node.args, cut), **_swap(node.kwargs, cut))


def _pair(value) -> tuple[int, int]:
    if isinstance(value, (tuple, list)):
        return (int(value[0]), int(value[-1]))
    return int(value), int(value)


class Conv(Op):
    """conv2d(input, weight, bias, stride, padding, dilation, groups): zero padding added to each tile's window."""

    name = "conv2d"

    @staticmethod
    def params(node: Lazy):
        names = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
        p = dict(zip(names, node.args)) | node.kwargs
        weight = p["weight"]
        if isinstance(weight, Lazy) or isinstance(p.get("bias"), Lazy):
            raise Unsupported("a convolution whose weights are a whole-image map")
        k, d, s = weight.shape[-2:], _pair(p.get("dilation", 1)), _pair(p.get("stride", 1))
        pad = p.get("padding", 0)
        if pad == "valid":
            pad = (0, 0)
        elif pad == "same":
            pad = tuple(d[i] * (k[i] - 1) // 2 for i in range(2))
        return p, tuple(k), s, _pair(pad), d

    def check(self, node: Lazy) -> None:
        p, k, s, pad, d = self.params(node)
        if p.get("padding") == "same" and any(d[i] * (k[i] - 1) % 2 for i in range(2)):
            raise Unsupported("'same' padding of an even kernel")

    def need(self, node: Lazy, inp: Lazy, box: Box) -> Spans:
        _, k, s, pad, d = self.params(node)
        return tuple((a * s[i] - pad[i], (b - 1) * s[i] - pad[i] + d[i] * (k[i] - 1) + 1)
                     for i, (a, b) in enumerate(((box[0], box[1]), (box[2], box[3]))))

    def compute(self, node: Lazy, values, box: Box) -> torch.Tensor:
        p, *_ = self.params(node)
        x = p["input"]
        want = self.need(node, x, box)
        n = x.shape[-2:]
        inside = tuple((max(0, a), min(n[i], b)) for i, (a, b) in enumerate(want))
        if any(a >= b for a, b in inside):  # the tile lies wholly in the zero padding
            window = torch.zeros((x.shape[0], x.shape[1], want[0][1] - want[0][0], want[1][1] - want[1][0]),
                                 dtype=x.dtype, device=x.device)
        else:
            window = values(x, inside)
            zeros = (inside[1][0] - want[1][0], want[1][1] - inside[1][1], inside[0][0] - want[0][0],
                     want[0][1] - inside[0][1])
            if any(zeros):
                window = F.pad(window, zeros)
        return F.conv2d(window, p["weight"], p.get("bias"), p.get("stride", 1), 0, p.get("dilation", 1), p.get("groups", 1))


class Pad(Op):
    """pad(input, pad, mode, value) on the last two dims: each tile pads only where it meets the map's border."""

    name = "pad"

    @staticmethod
    def params(node: Lazy):
        p = dict(zip(("input", "pad", "mode", "value"), node.args)) | node.kwargs
        pads = [int(v) for v in p["pad"]] + [0, 0]
        return p, ((pads[2], pads[3]), (pads[0], pads[1])), p.get("mode", "constant")

    def check(self, node: Lazy) -> None:
        p, pads, mode = self.params(node)
        if len(p["pad"]) not in (2, 4) or min(min(pads)) < 0 or mode not in ("constant", "reflect", "replicate"):
            raise Unsupported(f"padding {tuple(p['pad'])} in mode {mode}")

    def need(self, node: Lazy, inp: Lazy, box: Box) -> Spans:
        _, pads, mode = self.params(node)
        spans = []
        for (a, b), (before, _), n in zip(((box[0], box[1]), (box[2], box[3])), pads, inp.shape[-2:]):
            j0, j1 = a - before, b - before
            lo, hi = max(0, j0), min(n, j1)
            if mode == "reflect":
                lo, hi = (0 if j0 < 0 else lo), (max(hi, min(n, 1 - j0)) if j0 < 0 else hi)
                lo, hi = (min(lo, max(0, 2 * n - j1 - 1)) if j1 > n else lo), (n if j1 > n else hi)
            elif mode == "replicate":
                lo, hi = (0 if j0 < 0 else lo), (max(hi, 1) if j0 < 0 else hi)
                lo, hi = (min(lo, n - 1) if j1 > n else lo), (n if j1 > n else hi)
            if lo >= hi:  # the box lies in constant padding only: read one real pixel, pad, cut
                lo, hi = (0, 1) if j1 <= 0 else (n - 1, n)
            spans.append((lo, hi))
        return tuple(spans)

    def compute(self, node: Lazy, values, box: Box) -> torch.Tensor:
        p, pads, mode = self.params(node)
        x = p["input"]
        have = self.need(node, x, box)
        window = values(x, have)
        amounts, cuts = [], []
        for (a, b), (before, _), (lo, hi), n in zip(((box[0], box[1]), (box[2], box[3])), pads, have, x.shape[-2:]):
            j0, j1 = a - before, b - before
            add0, add1 = max(0, lo - j0) if lo == 0 else 0, max(0, j1 - hi) if hi == n else 0
            start = lo - add0
            amounts.append((add0, add1))
            cuts.append((j0 - start, j1 - start))
        if any(sum(amounts, ())):
            extra = {"value": p["value"]} if mode == "constant" and p.get("value") is not None else {}
            window = F.pad(window, (*amounts[1], *amounts[0]), mode=mode, **extra)
        return window[..., cuts[0][0]:cuts[0][1], cuts[1][0]:cuts[1][1]]


class Enlarge(Op):
    """Whole-factor enlargements: nearest upsampling (interpolate, Upsample) and pixel_shuffle."""

    def __init__(self, name: str) -> None:
        self.name = name

    def factors(self, node: Lazy) -> tuple[int, int]:
        inp = node.args[0]
        return tuple(node.shape[-2 + i] // inp.shape[-2 + i] for i in range(2))

    def check(self, node: Lazy) -> None:
        inp = node.args[0]
        if len(node.args) != 1 + (self.name == "pixel_shuffle") or not isinstance(inp, Lazy):
            raise Unsupported(f"{self.name} called with keywords for its input")
        if self.name == "interpolate":
            mode = node.kwargs.get("mode", "nearest")
            factor = node.kwargs.get("scale_factor")
            factors = factor if isinstance(factor, (tuple, list)) else [factor] if factor is not None else []
            if mode not in ("nearest", "nearest-exact") or any(float(f) != int(f) for f in factors):
                raise Unsupported(f"{mode} interpolation by {factor or node.kwargs.get('size')}")
        f = self.factors(node)
        if any(f[i] < 1 or f[i] * inp.shape[-2 + i] != node.shape[-2 + i] for i in range(2)):
            raise Unsupported(f"{self.name} by a factor that is not a whole number")

    def need(self, node: Lazy, inp: Lazy, box: Box) -> Spans:
        f = self.factors(node)
        return tuple((a // f[i], -(-b // f[i])) for i, (a, b) in enumerate(((box[0], box[1]), (box[2], box[3]))))

    def compute(self, node: Lazy, values, box: Box) -> torch.Tensor:
        f, have = self.factors(node), self.need(node, node.args[0], box)
        window = values(node.args[0], have)
        if self.name == "interpolate":
            grown = F.interpolate(window, scale_factor=f, mode="nearest")
        else:
            grown = F.pixel_shuffle(window, f[0])
        (y0, _), (x0, _) = have
        oy, ox = box[0] - y0 * f[0], box[2] - x0 * f[1]
        return grown[..., oy:oy + box[1] - box[0], ox:ox + box[3] - box[2]]


class Slice(Op):
    """map[index]: any slices of batch and channels, step-1 slices of the two image axes."""

    name = "slicing"

    @staticmethod
    def parts(node: Lazy) -> tuple[tuple, tuple[int, int]]:
        """(the index without its image axes, the offsets (y, x) of the result in its input)."""
        inp, index = node.args
        index = index if isinstance(index, tuple) else (index,)
        if sum(i is Ellipsis for i in index) > 1 or any(not isinstance(i, slice) and i is not Ellipsis for i in index):
            raise Unsupported("indexing a whole-image map by anything but slices")
        if Ellipsis in index:
            at = index.index(Ellipsis)
            index = index[:at] + (slice(None),) * (4 - len(index) + 1) + index[at + 1:]
        index = index + (slice(None),) * (4 - len(index))
        offsets = []
        for s, n in zip(index[2:], inp.shape[-2:]):
            start, _, step = s.indices(n)
            if step != 1:
                raise Unsupported("a strided slice of a whole-image map")
            offsets.append(start)
        return index[:2], tuple(offsets)

    def check(self, node: Lazy) -> None:
        self.parts(node)

    def need(self, node: Lazy, inp: Lazy, box: Box) -> Spans:
        _, (oy, ox) = self.parts(node)
        return (box[0] + oy, box[1] + oy), (box[2] + ox, box[3] + ox)

    def compute(self, node: Lazy, values, box: Box) -> torch.Tensor:
        head, _ = self.parts(node)
        return values(node.args[0], self.need(node, node.args[0], box))[head]


class Cat(Op):
    name = "cat"

    def check(self, node: Lazy) -> None:
        dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0)
        if not node.args or dim not in (0, 1, -3, -4) or not all(isinstance(t, Lazy) for t in node.args[0]):
            raise Unsupported("concatenating whole-image maps along an image axis or with other tensors")
        super().check(node)


class Affine(Op):
    """x · scale + shift with per-channel SCALE and SHIFT (1, C, 1, 1): norms and the per-channel maths after them,
    folded into one step (see fuse_affine)."""

    name = "affine"

    def compute(self, node: Lazy, values, box: Box) -> torch.Tensor:
        x, scale, shift = node.args
        return torch.addcmul(shift, values(x, ((box[0], box[1]), (box[2], box[3]))), scale)


def affine(x: Lazy, scale, shift) -> Lazy:
    """The Lazy x · SCALE + SHIFT, with SCALE and SHIFT made (1, C, 1, 1) tensors on X's device."""
    c = x.shape[1]
    scale, shift = (torch.as_tensor(v, dtype=torch.float32, device=x.device).reshape(-1).expand(c).reshape(1, c, 1, 1)
                    .clone() for v in (scale, shift))
    node = Lazy(torch.empty(x.shape, dtype=torch.promote_types(x.dtype, scale.dtype), device="meta"), x.device, AFFINE,
                (x, scale, shift))
    node.func = torch.addcmul
    return node


def fuse_affine(func: Callable, args: tuple, kwargs: dict) -> Lazy | None:
    """FUNC(*ARGS) as one Affine step when it multiplies, divides, adds or subtracts a map that is stored or
    Affine and a per-channel constant (a number or a tensor of C or 1 values), else None."""
    if func not in (torch.add, torch.sub, torch.mul, torch.div) or len(args) != 2 or kwargs:
        return None
    lazy_first = isinstance(args[0], Lazy)
    m, other = args if lazy_first else args[::-1]
    if not isinstance(m, Lazy) or isinstance(other, Lazy) or not (m.stored is not None or m.op is AFFINE):
        return None
    if isinstance(other, torch.Tensor):
        if other.dim() > 4 or any(n != 1 for n in other.shape[-2:]) or (other.dim() >= 3 and other.shape[-3] not in (
                1, m.shape[1])) or (other.dim() == 4 and other.shape[0] != 1) or other.dtype.is_complex:
            return None
        other = other.reshape(-1) if other.numel() in (1, m.shape[1]) else None
        if other is None or (func is torch.div and bool((other == 0).any())):
            return None
    elif not isinstance(other, (int, float)) or (func is torch.div and other == 0):
        return None
    x, scale, shift = (m.args if m.op is AFFINE else (m, 1.0, 0.0))
    if func is torch.mul:
        scale, shift = _times(scale, other), _times(shift, other)
    elif func is torch.div:
        if not lazy_first:
            return None
        scale, shift = _times(scale, 1 / other), _times(shift, 1 / other)
    elif func is torch.add:
        shift = _plus(shift, other)
    elif lazy_first:
        shift = _plus(shift, _times(other, -1.0))
    else:
        scale, shift = _times(scale, -1.0), _plus(_times(shift, -1.0), other)
    return affine(x, scale, shift)


def _times(a, b):
    return _flat(a) * _flat(b)


def _plus(a, b):
    return _flat(a) + _flat(b)


def _flat(v):
    return v.reshape(-1).float() if isinstance(v, torch.Tensor) else float(v)


POINTWISE = (torch.add, torch.sub, torch.mul, torch.div, torch.neg, torch.pow, torch.rsqrt, torch.exp, torch.abs,
             torch.relu, torch.sigmoid, torch.tanh, torch.clamp, torch.clamp_min, torch.clamp_max, torch.where,
             F.relu, F.relu6, F.hardtanh, F.leaky_relu, F.elu, F.silu, F.gelu, F.hardswish, F.hardsigmoid, torch.addcmul,
             torch.zeros_like, torch.ones_like, torch.full_like, torch.gt, torch.ge, torch.lt, torch.le, torch.square,
             torch.sqrt, torch.log)
OPS: dict[Callable, Op] = {f: Op() for f in POINTWISE} | {
    F.conv2d: Conv(), F.pad: Pad(), torch._C._nn.pad: Pad(), F.interpolate: Enlarge("interpolate"),
    F.pixel_shuffle: Enlarge("pixel_shuffle"), torch.pixel_shuffle: Enlarge("pixel_shuffle"), torch.cat: Cat()}
T = torch.Tensor
OPERATORS = {T.__add__: (torch.add, False), T.__radd__: (torch.add, True), T.add: (torch.add, False),
             T.__sub__: (torch.sub, False), T.__rsub__: (torch.sub, True), T.sub: (torch.sub, False),
             T.__mul__: (torch.mul, False), T.__rmul__: (torch.mul, True), T.mul: (torch.mul, False),
             T.__truediv__: (torch.div, False), T.__rtruediv__: (torch.div, True), T.div: (torch.div, False)}
SLICE = Slice()
AFFINE = Affine()
RELUS = (torch.relu, F.relu)


# --- computing a map tile by tile --------------------------------------------------------------------------------------

def _order(target: Lazy, stops: frozenset[int] = frozenset()) -> list[Lazy]:
    """TARGET's recorded graph down to stored maps (and to the maps whose id is in STOPS), inputs before users."""
    order, seen, stack = [], set(), [(target, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
        elif id(node) not in seen:
            seen.add(id(node))
            stack.append((node, True))
            if node.stored is None and (node is target or id(node) not in stops):
                stack.extend((i, False) for i in node.inputs() if id(i) not in seen)
    return order


def _union(a: Spans | None, b: Spans) -> Spans:
    return b if a is None else tuple((min(p[0], q[0]), max(p[1], q[1])) for p, q in zip(a, b))


def compute_tile(target: Lazy, order: list[Lazy], box: Box) -> torch.Tensor:
    """TARGET on BOX of its grid (B, C, y1 - y0, x1 - x0), from the stored maps ORDER ends in."""
    spans: dict[int, Spans] = {id(target): ((box[0], box[1]), (box[2], box[3]))}
    for node in reversed(order):
        if node.stored is None and id(node) in spans:
            (y0, y1), (x0, x1) = spans[id(node)]
            for inp in node.inputs():  # what lies outside a map is padding its user adds (a convolution's zeros)
                need = node.op.need(node, inp, (y0, y1, x0, x1))
                need = tuple((max(0, a), min(n, b)) for (a, b), n in zip(need, inp.shape[-2:]))
                if all(a < b for a, b in need):  # (none: the box reads only a convolution's zero padding)
                    spans[id(inp)] = _union(spans.get(id(inp)), need)
    done: dict[int, torch.Tensor] = {}
    users = Counter(id(i) for n in order if n.stored is None and id(n) in spans for i in n.inputs() if id(i) in spans)
    sole = {key for key, count in users.items() if count == 1}  # read by one step only: it may overwrite them

    def values(inp: Lazy, want: Spans) -> torch.Tensor:
        (hy0, _), (hx0, _) = spans[id(inp)]
        (y0, y1), (x0, x1) = want
        return done[id(inp)][..., y0 - hy0:y1 - hy0, x0 - hx0:x1 - hx0]

    for node in order:
        if id(node) not in spans:
            continue
        (y0, y1), (x0, x1) = spans[id(node)]
        if node.stored is not None:
            done[id(node)] = node.stored[..., y0:y1, x0:x1].to(target.device, non_blocking=True)
            continue
        inputs = node.inputs()
        on, dtype = node.autocast
        with torch.autocast(node.device.type, dtype) if on else contextlib.nullcontext():
            if node.func in RELUS and len(node.args) == 1 and id(inputs[0]) in sole and (
                    inputs[0].op is AFFINE or isinstance(inputs[0].op, Conv)):  # its input is a fresh tensor of its own
                done[id(node)] = torch.relu_(done[id(inputs[0])])
            else:
                done[id(node)] = node.op.compute(node, values, (y0, y1, x0, x1))
        for inp in inputs:  # a tile's inputs are let go once their last user has them
            if id(inp) in users:
                users[id(inp)] -= 1
                if users[id(inp)] == 0:
                    del done[id(inp)]
    return done[id(target)]


class Moments:
    """Per-channel mean and variance over all tiles of a map: each tile's mean and sum of squared deviations
    (float32, centred, so a large mean costs no precision), merged in float64 (Chan et al.)."""

    def __init__(self) -> None:
        self.count, self.mean, self.m2 = 0, None, None

    def add(self, tile: torch.Tensor) -> None:
        t = tile.float()
        n = t.shape[0] * t.shape[2] * t.shape[3]
        mean = t.mean((0, 2, 3), keepdim=True)
        m2 = (t - mean).square_().sum((0, 2, 3)).double()
        mean = mean.flatten().double()
        if self.mean is None:
            self.count, self.mean, self.m2 = n, mean, m2
            return
        total = self.count + n
        delta = mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + m2 + delta.square() * (self.count * n / total)
        self.count = total

    def result(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, variance), each (1, C, 1, 1) float32."""
        return self.mean.float().view(1, -1, 1, 1), (self.m2 / self.count).float().view(1, -1, 1, 1)


def splits(n: int, parts: int) -> list[int]:
    """0 = b_0 < ... < b_k = N: at most PARTS near-equal parts of N."""
    return sorted({round(n * i / min(parts, n)) for i in range(min(parts, n) + 1)})


class Store:
    """Where whole maps are kept: on DEVICE (the CPU's memory for a CUDA run), or (FOLDER given) in files there,
    mapped into memory, so a print's maps need not fit in RAM. The files are nst's own, in a folder it made; each
    is unlinked once mapped where the system allows, and the folder goes with the run (nst.core.tiles.run_network)."""

    def __init__(self, device: torch.device, folder: str | None = None) -> None:
        self.device, self.folder, self.files = device, folder, 0

    def empty(self, shape: torch.Size, dtype: torch.dtype, channels_last: bool) -> torch.Tensor:
        """An uninitialised (B, C, H, W) map."""
        b, c, h, w = shape
        if self.folder is None:
            layout = torch.channels_last if channels_last else torch.contiguous_format
            return torch.empty(shape, dtype=dtype, device=self.device, memory_format=layout)
        self.files += 1
        path = os.path.join(self.folder, f"map-{self.files}.bin")
        flat = torch.from_file(path, shared=True, size=b * c * h * w, dtype=dtype)
        with contextlib.suppress(OSError):
            os.unlink(path)
        return flat.view(b, h, w, c).permute(0, 3, 1, 2) if channels_last else flat.view(b, c, h, w)


class Evaluator:
    """Computes Lazy maps tile by tile, keeping them whole in STORE. Tiles hold at most NUMBERS numbers of work
    each (cell² × the survey's density: the heaviest map's tiles cover CELL × CELL input pixels, lighter maps get
    larger tiles). KEEP: indices of maps to store when first computed, as later maps read them too (see survey).
    on_tile(done, total) after every tile, TOTAL the tiles the pass is expected to take (from STAGES)."""

    def __init__(self, numbers: float, store: Store, keep: frozenset[int], stages: tuple[tuple[int, int, float], ...],
                 on_tile: Callable[[int, int], None] | None = None) -> None:
        self.numbers, self.store, self.keep, self.on_tile = numbers, store, keep, on_tile
        self.done, self.total = 0, sum(math.prod(self.grid(h, w, e)) for h, w, e in stages)

    def grid(self, h: int, w: int, per_pixel: float) -> tuple[int, int]:
        """Rows and columns of tiles over an (H, W) map whose computation holds PER_PIXEL numbers per pixel."""
        side = max(MIN_SIDE, math.isqrt(int(self.numbers / max(per_pixel, 1.0))))
        return max(1, math.ceil(h / side)), max(1, math.ceil(w / side))

    def materialize(self, node: Lazy, moments: Moments | None = None, whole: bool = False) -> torch.Tensor:
        """NODE computed whole (and stored in place of its recording, so later users read it); MOMENTS gathers its
        statistics on the way; WHOLE: the result of the run. The maps to keep that it reads are computed first."""
        for inner in _order(node)[:-1]:
            if inner.stored is None and inner.index in self.keep:
                self.materialize(inner)
        order = _order(node)
        out = None
        grid = self.grid(node.shape[2], node.shape[3], numbers_per_pixel(order))
        rows, cols = splits(node.shape[2], grid[0]), splits(node.shape[3], grid[1])
        for y0, y1 in zip(rows, rows[1:]):
            for x0, x1 in zip(cols, cols[1:]):
                tile = compute_tile(node, order, (y0, y1, x0, x1))
                if out is None:  # in the tiles' layout (channels_last where the precision chose it)
                    last = not tile.is_contiguous() and tile.is_contiguous(memory_format=torch.channels_last)
                    out = torch.empty(node.shape, dtype=tile.dtype, device=tile.device, memory_format=torch.channels_last
                                      if last else torch.contiguous_format) if whole else \
                        self.store.empty(node.shape, tile.dtype, last)
                out[..., y0:y1, x0:x1] = tile
                if moments is not None:
                    moments.add(tile)
                self.done += 1
                if self.on_tile is not None:
                    self.total = max(self.total, self.done)
                    self.on_tile(self.done, self.total)
        node.op, node.args, node.kwargs, node.sources, node.stored = None, (), {}, [], out
        return out


class LazyNorms:
    """The norm layers' hook in a lazy pass (see nst.core.tiles.instance_norm): a norm's input is computed whole,
    tile by tile, with its statistics; the norm itself stays a recorded per-channel step on the stored map.
    Without an EVALUATOR it only records: TARGETS lists the maps a real pass would compute whole."""

    def __init__(self, evaluator: Evaluator | None) -> None:
        self.evaluator, self.targets = evaluator, []

    def __call__(self, x, eps: float):
        if not isinstance(x, Lazy):
            raise Unsupported("a norm layer given a computed tensor")
        if self.evaluator is None:
            self.targets.append(x)
            return affine(x, 1.0, 0.0)
        moments = Moments()
        self.evaluator.materialize(x, moments)
        mean, var = moments.result()
        rstd = torch.rsqrt(var + eps)
        return affine(x, rstd, -mean * rstd)


@dataclass(frozen=True)
class Survey:
    """What a recording-only pass found: KEEP, the indices of convolutions that more than one of the computed-whole
    maps would compute (kept when first computed instead); PEAK_BYTES, a guess of the stored maps' memory at once
    (the two largest); DENSITY, the most numbers any map's computation holds per input pixel (see Evaluator);
    STAGES, (h, w, numbers per pixel of its own) of each map computed whole."""

    keep: frozenset[int]
    peak_bytes: int
    density: float
    stages: tuple[tuple[int, int, float], ...]


def _forward_lazy(forward: Callable[[Lazy], Lazy], image: torch.Tensor) -> Lazy:
    _CREATED.count = 0
    out = forward(Lazy.leaf(image))
    if not isinstance(out, Lazy):
        raise Unsupported(f"the network returned a {type(out).__name__}, not a map")
    return out


def survey(forward: Callable[[Lazy], Lazy], image: torch.Tensor, norms: LazyNorms) -> Survey:
    """Record FORWARD on IMAGE (B, 3, H, W) with the norm layers hooked to NORMS (without an evaluator), computing
    nothing; raises Unsupported if the network does anything lazy maps cannot record."""
    if image.shape[0] != 1:
        raise Unsupported(f"a batch of {image.shape[0]} images (one-pass tiles take one)")
    out = _forward_lazy(forward, image)
    targets = [*norms.targets, out]
    stops = frozenset(id(t) for t in targets)
    orders = [_order(t, stops) for t in targets]
    uses = Counter(n.index for order in orders for n in order[:-1] if isinstance(n.op, Conv))
    keep = frozenset(i for i, n in uses.items() if n > 1)
    whole = list({id(n): n for order in orders for n in order if n.index in keep or n is order[-1]}.values())
    sizes = sorted((n.meta.numel() * 4 for n in whole), reverse=True)
    stops = frozenset(id(n) for n in whole)  # as the real pass will have them: each computed from the others
    stages = tuple((n.shape[2], n.shape[3], numbers_per_pixel(_order(n, stops))) for n in whole)
    pixels = image.shape[2] * image.shape[3]
    return Survey(keep, sum(sizes[:2]), max(h * w * e / pixels for h, w, e in stages), stages)


def numbers_per_pixel(order: list[Lazy]) -> float:
    """The numbers a tile of ORDER's last map holds at most while it is computed (every map of ORDER, cut to the
    tile and its margins), per pixel of that map."""
    target = order[-1]
    return sum(n.meta.numel() for n in order) / (target.shape[2] * target.shape[3])


def run(forward: Callable[[Lazy], Lazy], image: torch.Tensor, evaluator: Evaluator) -> torch.Tensor:
    """FORWARD(IMAGE) computed in the EVALUATOR's tiles, with the norm layers hooked to LazyNorms(EVALUATOR):
    (B, C', H', W') on the EVALUATOR's store."""
    return evaluator.materialize(_forward_lazy(forward, image), whole=True)

