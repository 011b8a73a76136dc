"""What the benchmark scripts share: the asset images, a step clock, memory and machine readings, child runs.

The scripts import it as a sibling module (`python benchmarks/NAME.py` puts this folder on sys.path).
"""
from __future__ import annotations

import importlib.util
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
from PIL import Image

import nst

ROOT = Path(__file__).resolve().parent.parent
CONTENT, STYLE = ROOT / "assets" / "content.jpg", ROOT / "assets" / "style.jpg"
MB = 2 ** 20


class StepClock:
    """Run-hook plugin: perf_counter() at every step, after the device has finished that step."""

    name = "bench-clock"

    def __init__(self, sync):
        self.sync, self.times = sync, []

    @nst.hookimpl
    def nst_on_step(self, step):
        self.sync()
        self.times.append(time.perf_counter())


def proc_field(path: str, key: str) -> str:
    """The value of the first 'KEY: value' line of a /proc file (Linux)."""
    return next(l.split(":", 1)[1].strip() for l in Path(path).read_text().splitlines() if l.startswith(key))


def synchroniser(device: str):
    """sync() that waits for DEVICE to finish its queued work (nothing to wait for on the CPU)."""
    return (lambda: torch.cuda.synchronize(device)) if device.startswith("cuda") else (lambda: None)


def memory_now(device: str) -> int:
    """Bytes in use now: CUDA allocated memory, or the process's resident set on the CPU."""
    if device.startswith("cuda"):
        return torch.cuda.memory_allocated(device)
    return int(proc_field("/proc/self/status", "VmRSS").split()[0]) * 1024


def memory_peak(device: str) -> int:
    """Peak bytes so far: torch.cuda.max_memory_allocated, or the process's peak RSS on the CPU."""
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated(device)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def machine(device: str) -> str:
    """The GPU's name or the CPU model."""
    return torch.cuda.get_device_name(device) if device.startswith("cuda") else proc_field("/proc/cpuinfo", "model name")


def devices(names: list[str]) -> list[str]:
    """'auto' expanded to cpu (+ cuda when present), duplicates dropped."""
    auto = ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]
    return list(dict.fromkeys(d for name in names for d in (auto if name == "auto" else [name])))


def run_child(script: str, args: list[str]) -> dict:
    """Run SCRIPT --child ARGS in a fresh interpreter (its peak memory is its own) and parse the JSON line it
    prints last; exits with its stderr when it fails."""
    cmd = [sys.executable, script, "--child", *args]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"child failed: {' '.join(cmd)}\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def write_report(text: str, out: Path | None) -> None:
    """Print the markdown report, and write it to OUT too when given."""
    print(text)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)


def sample_photos(folder: Path, names) -> list[Path]:
    """scikit-image's sample photos NAMES saved as PNGs in FOLDER (those this version has; none without it)."""
    if importlib.util.find_spec("skimage") is None:
        return []
    from skimage import data

    paths = []
    for name in names:
        if hasattr(data, name):
            image = getattr(data, name)()
            if image.ndim == 3 and image.shape[2] == 3:
                Image.fromarray(image).save(folder / f"{name}.png")
                paths.append(folder / f"{name}.png")
    return paths
