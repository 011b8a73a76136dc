"""Numeric precision and memory layout, chosen in one place per device.

Convolutions run in bfloat16 (autocast) where the hardware computes it natively: CPUs with AVX512-BF16 or AMX,
CUDA GPUs from Ampere (compute capability 8.0) on, which also get TF32 for the float32 work left inside the
network. Everything the result's precision depends on stays float32: the image and its gradient, the features
the encoder hands back (so Gram matrices, statistics and loss sums are float32), optimiser state, network
weights. Activations use channels_last (NHWC) where it is faster: every CPU measured (1.3-2x in float32;
bfloat16 convolutions in NCHW fall off oneDNN's fast path entirely) and CUDA with tensor cores.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import torch
from torch import nn

from nst.errors import FieldError

PRECISIONS = ("auto", "fp32", "bf16")


def bf16_hardware(device: torch.device) -> str | None:
    """What makes bfloat16 fast on DEVICE ('AMX', 'AVX512-BF16', 'sm_80' ...), or None where it is emulated."""
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        return f"sm_{major}{minor}" if major >= 8 else None
    if device.type == "cpu":
        for name, probe in (("AMX", "_is_amx_tile_supported"), ("AVX512-BF16", "_is_avx512_bf16_supported")):
            if getattr(torch.cpu, probe, lambda: False)():
                return name
    return None


@dataclass(frozen=True)
class Precision:
    """How tensors are computed on one device: DTYPE of the convolutions (float32 or bfloat16), CHANNELS_LAST
    activations, TF32 for float32 work on CUDA; WHY says how it was chosen."""

    device_type: str
    dtype: torch.dtype = torch.float32
    channels_last: bool = False
    tf32: bool = False
    why: str = ""

    @property
    def name(self) -> str:
        return "bf16" if self.dtype == torch.bfloat16 else "fp32"

    def describe(self) -> str:
        """'bf16, channels_last (auto: AVX512-BF16)' and the like."""
        parts = [self.name] + ["channels_last"] * self.channels_last + ["TF32"] * self.tf32
        return ", ".join(parts) + (f" ({self.why})" if self.why else "")

    @contextmanager
    def compute(self) -> Iterator[None]:
        """Inside: bfloat16 autocast when chosen, and TF32 on CUDA when chosen (restored on exit)."""
        cast = torch.autocast(self.device_type, dtype=torch.bfloat16) if self.name == "bf16" else nullcontext()
        if self.device_type != "cuda":
            with cast:
                yield
            return
        flags = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = self.tf32
        try:
            with cast:
                yield
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = flags

    def layout(self, x: torch.Tensor) -> torch.Tensor:
        """X (B, C, H, W) in the chosen memory layout (the same values)."""
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.dim() == 4 else x

    def prepare(self, module: nn.Module) -> nn.Module:
        """MODULE's 4-d weights in the chosen layout (in place); returns it."""
        return module.to(memory_format=torch.channels_last) if self.channels_last else module

    def network(self, forward: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        """FORWARD(image (B, 3, H, W), *rest) run in this precision and layout; the output (B, C, H, W) float32,
        contiguous."""
        def run(x: torch.Tensor, *rest, **kwargs) -> torch.Tensor:
            with self.compute():
                y = forward(self.layout(x), *rest, **kwargs)
            return y.float().contiguous()

        return run


PLAIN = Precision("cpu")  # float32, NCHW, torch's global flags untouched: what a module does by default


def choose(name: str, device: torch.device) -> Precision:
    """The Precision that NAME ('auto' | 'fp32' | 'bf16') means on DEVICE. auto: bf16 where the hardware has it
    (see bf16_hardware), else fp32; channels_last on CPUs, and on CUDA GPUs with tensor cores (sm_80 on)."""
    if name not in PRECISIONS:
        raise FieldError("precision", f"must be one of {', '.join(PRECISIONS)}, got '{name}'")
    fast = bf16_hardware(device)
    if name == "auto":
        name, why = ("bf16", f"auto: {fast}") if fast else ("fp32", f"auto: no native bf16 on this {device.type}")
    elif name == "bf16" and not fast:
        why = f"emulated on this {device.type}: slower than fp32"
    else:
        why = ""
    dtype = torch.bfloat16 if name == "bf16" else torch.float32
    tensor_cores = device.type == "cuda" and fast is not None
    return Precision(device.type, dtype, device.type == "cpu" or tensor_cores, tensor_cores and name == "bf16", why)
