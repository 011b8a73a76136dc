"""CPU threads: one number for torch and onnxruntime together (--threads, else NST_THREADS, else OMP_NUM_THREADS,
else the physical cores this process may use), so engines that run side by side do not oversubscribe the cores
(two threads per core made a run four times slower under load)."""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from nst.errors import FieldError

MAX_THREADS = 1024


def physical_cores() -> int:
    """Cores (not hardware threads) among the CPUs this process may run on; the CPU count where the topology
    cannot be read."""
    cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else range(os.cpu_count() or 1)
    cores = set()
    for cpu in cpus:
        topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            cores.add(((topology / "physical_package_id").read_text().strip(), (topology / "core_id").read_text().strip()))
        except OSError:
            cores.add(("cpu", str(cpu)))
    return max(1, len(cores))


def from_environment(name: str) -> int | None:
    """A positive thread count from environment variable NAME, None when unset; FieldError when malformed."""
    text = os.environ.get(name, "").strip()
    if not text:
        return None
    if not text.isdigit() or not 1 <= int(text) <= MAX_THREADS:
        raise FieldError("threads", f"environment variable {name} must be a whole number from 1 to {MAX_THREADS}, "
                                    f"got '{text}'")
    return int(text)


def resolve(threads: int = 0) -> int:
    """THREADS when given (> 0), else NST_THREADS, else OMP_NUM_THREADS, else the physical cores."""
    if threads > 0:
        return threads
    return from_environment("NST_THREADS") or from_environment("OMP_NUM_THREADS") or physical_cores()


@contextmanager
def using(threads: int) -> Iterator[int]:
    """Inside: torch computes on THREADS threads (and onnxruntime sessions made inside take the same number);
    the caller's setting is back on exit."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield threads
    finally:
        torch.set_num_threads(before)
