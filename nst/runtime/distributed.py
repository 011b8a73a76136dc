"""Processes started by torchrun: this process's rank and the world size, and its device."""
from __future__ import annotations

import os

import torch
import torch.distributed as dist

from nst.core.devices import pick_device


def rank_and_world() -> tuple[int, int]:
    """(rank, world size); joins the torchrun process group when WORLD_SIZE > 1 (nccl on CUDA, gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def process_device(name: str) -> torch.device:
    """The device NAME means for this process: under torchrun, CUDA means this rank's own GPU (LOCAL_RANK)."""
    device = pick_device(name)
    if device.type == "cuda" and "LOCAL_RANK" in os.environ:
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    return device


def shard_device(name: str) -> str:
    """The device a process of a torchrun batch computes on: CUDA (given or auto) means this rank's own GPU
    (LOCAL_RANK); outside torchrun, or on the CPU, NAME unchanged."""
    if "LOCAL_RANK" in os.environ and int(os.environ.get("WORLD_SIZE", "1")) > 1 and name in ("auto", "cuda") \
            and torch.cuda.is_available():
        return str(process_device("cuda"))
    return name


def total_over_ranks(counts: list[int], world: int) -> list[int]:
    """COUNTS summed over the torchrun processes (every process calls it); COUNTS itself with one process."""
    if world == 1:
        return counts
    values = torch.tensor(counts, dtype=torch.int64)
    dist.all_reduce(values)
    return values.tolist()


def wait_for_all(world: int) -> None:
    """A barrier of the torchrun processes (nothing with one process)."""
    if world > 1:
        dist.barrier()
