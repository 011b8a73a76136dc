"""Choosing the torch device from a user's 'auto' | 'cpu' | 'cuda' | 'cuda:N'."""
from __future__ import annotations

from contextlib import contextmanager

import torch

from nst.errors import FieldError, NSTError


def pick_device(name: str) -> torch.device:
    """'auto' | 'cpu' | 'cuda' | 'cuda:i' -> torch.device, with a clear error when CUDA is absent."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or (name.startswith("cuda:") and name[5:].isdigit()):
        if not torch.cuda.is_available():
            raise NSTError(f"device '{name}' requested but no CUDA GPU is available; use device cpu")
        index = int(name[5:]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise NSTError(f"device '{name}' does not exist (this machine has {torch.cuda.device_count()} GPU(s))")
        return torch.device(name)
    raise FieldError("device", f"must be auto, cpu, cuda or cuda:N, got '{name}'")


def _flushing_denormals() -> bool:
    """Whether the CPU currently flushes denormal floats to zero (torch has no getter for it)."""
    return float(torch.tensor([1e-40]) * torch.tensor([1.0])) == 0.0


@contextmanager
def torch_state_kept(device: torch.device):
    """Inside: seeding and denormal flushing are the caller's to change; on exit the global RNG states
    (CPU and DEVICE's CUDA) and the flush-denormal mode are as they were, so a run has no side effects."""
    flushing = _flushing_denormals()
    devices = [device] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        torch.set_flush_denormal(flushing)


def available_memory(device: torch.device) -> int | None:
    """Bytes free for a new allocation on DEVICE: the GPU's free memory, or the system's MemAvailable
    (Linux); None when it cannot be read."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:
            return next(int(l.split()[1]) * 1024 for l in f if l.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):
        return None


def check_memory(needed: float, what: str, device: torch.device, hint: str) -> None:
    """Refuse, before allocating, work that needs clearly more memory (NEEDED bytes, an estimate) than DEVICE
    has free: one NSTError naming WHAT, both figures and HINT."""
    free = available_memory(device)
    if free is not None and needed > free:
        raise NSTError(f"{what} needs about {needed / 2 ** 30:.1f} GB of memory, {free / 2 ** 30:.1f} GB are free "
                       f"on {device.type}; {hint}")
