"""Shared fixtures: tiny random VGG19-shaped weights saved to a file, small generated images."""
from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nst.core.encoder import CONVS

TINY_WIDTHS = (4, 8, 8, 8, 8)  # channels per block: a VGG19 with the real topology, tiny widths


def tiny_vgg_state(seed: int = 0, widths=TINY_WIDTHS) -> dict[str, torch.Tensor]:
    """Random VGG19 conv weights in our layout ('conv{b}_{i}.weight'), He-initialised."""
    g = torch.Generator().manual_seed(seed)
    state, c_in = {}, 3
    for name in CONVS:
        b = int(name[4]) - 1
        c_out = widths[b]
        state[f"{name}.weight"] = torch.randn(c_out, c_in, 3, 3, generator=g) * (2.0 / (9 * c_in)) ** 0.5
        state[f"{name}.bias"] = torch.zeros(c_out)
        c_in = c_out
    return state


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """Downloads and exported ONNX graphs go to a temporary torch hub folder, not the user's cache."""
    import os

    folder = tmp_path_factory.mktemp("torch-home")
    before = os.environ.get("TORCH_HOME")
    os.environ["TORCH_HOME"] = str(folder)
    torch.hub.set_dir(str(folder / "hub"))
    yield folder
    if before is None:
        os.environ.pop("TORCH_HOME", None)
    else:
        os.environ["TORCH_HOME"] = before


def archs():
    """The network architectures installed plugins register (johnson, stroke)."""
    from nst.host import default_host

    return default_host().architectures()


@pytest.fixture(scope="module")
def one_thread():
    """Torch on one thread for the module (tiny convolutions and PatchMatch's many small operations run
    fastest so on a shared 2-core machine); the thread count is restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    """Path of a .safetensors file with tiny random VGG19 weights (loads through --weights PATH)."""
    from safetensors.torch import save_file

    path = tmp_path_factory.mktemp("weights") / "tiny_vgg19.safetensors"
    save_file(tiny_vgg_state(), str(path))
    return path


def gradient_image(w: int, h: int, seed: int = 0) -> Image.Image:
    """A smooth colourful RGB image with a few shapes (structure for content tests)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(w, h)
    arr = np.stack([x, y, 0.5 + 0.5 * np.sin(6 * x + 3 * y)], axis=2)
    for _ in range(3):
        cx, cy, r = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.08, 0.2)
        arr[(x - cx) ** 2 + (y - cy) ** 2 < r * r] = rng.uniform(0, 1, 3)
    return Image.fromarray((arr * 255).astype(np.uint8), "RGB")


def stripes_image(w: int, h: int, period: int = 8) -> Image.Image:
    """High-contrast diagonal stripes in two saturated colours (a strong, simple style)."""
    y, x = np.mgrid[0:h, 0:w]
    on = ((x + y) // (period // 2)) % 2 == 0
    arr = np.where(on[..., None], np.array([230, 40, 30]), np.array([20, 40, 200]))
    return Image.fromarray(arr.astype(np.uint8), "RGB")


@pytest.fixture
def content_path(tmp_path) -> Path:
    path = tmp_path / "content.png"
    gradient_image(64, 48).save(path)
    return path


@pytest.fixture
def style_path(tmp_path) -> Path:
    path = tmp_path / "style.png"
    stripes_image(64, 64).save(path)
    return path


def pip_install(source: Path, target: Path) -> None:
    """Install SOURCE (a project folder) into TARGET, offline, without dependencies."""
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
           "--disable-pip-version-check", "--quiet", "--target", str(target), str(source)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, f"pip install {source.name} failed:\n{done.stdout}\n{done.stderr}"


def write_package(src: Path, dist: str, version: str, points: dict[str, str], modules: dict[str, str]) -> Path:
    """A plugin package in SRC: pyproject.toml with the entry points POINTS {plugin: module} of group `nst`,
    and one file per module {name: code}."""
    import textwrap

    src.mkdir(parents=True, exist_ok=True)
    eps = "\n".join(f'{k} = "{v}"' for k, v in points.items())
    mods = ", ".join(f'"{m}"' for m in modules)
    (src / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=64"]\nbuild-backend = "setuptools.build_meta"\n\n'
        f'[project]\nname = "{dist}"\nversion = "{version}"\n\n[project.entry-points.nst]\n{eps}\n\n'
        f"[tool.setuptools]\npy-modules = [{mods}]\n")
    for module, code in modules.items():
        (src / f"{module}.py").write_text(textwrap.dedent(code))
    return src


def nst_main(capsys, monkeypatch, *args):
    """Run `nst ARGS` in-process; returns (exit code, stdout, stderr)."""
    from nst import cli

    monkeypatch.setattr(sys, "argv", ["nst", *map(str, args)])
    try:
        cli.main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def run_cli(capsys, monkeypatch):
    """run_cli(*args) -> (exit code, stdout, stderr) of `nst ARGS`, in-process."""
    return lambda *args: nst_main(capsys, monkeypatch, *args)


def ctrl_c_reaches_it() -> None:
    """Popen's preexec_fn for a child that is sent Ctrl-C: SIGINT as at a terminal (a test suite started in the
    background by a shell has SIGINT ignored, and a child inherits that)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def one_error_line(err: str) -> str:
    """Assert ERR is exactly one `error: ...` line with no traceback; return it."""
    lines = [l for l in err.strip().splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


def error_after_notes(err: str) -> str:
    """Assert ERR is `note: ...` lines, then exactly one `error: ...` line, with no traceback; return that line."""
    lines = [l for l in err.strip().splitlines() if l.strip()]
    assert lines and lines[-1].startswith("error: ") and all(l.startswith("note: ") for l in lines[:-1]), err
    assert "Traceback" not in err
    return lines[-1]
