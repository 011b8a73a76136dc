"""Third-party plugins for real: pip-install packages into a temporary target and drive the CLI in a
subprocess, so plugins are found through their `nst` entry points (importlib.metadata).

The example package is examples/nst-example-plugin (hooks nst_plugin_options and nst_losses), the one the docs use;
a second, generated package fails at import and must be reported, never fatal.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from conftest import pip_install, write_package  # noqa: E402

FIXTURE = Path(__file__).parent.parent / "examples" / "nst-example-plugin"
BROKEN_MESSAGE = "nst-broken-plugin needs the frobnicate library"


@pytest.fixture(scope="module")
def example_target(tmp_path_factory) -> Path:
    """The fixture package, installed (built from a copy, so no build/ or egg-info lands in tests/)."""
    root = tmp_path_factory.mktemp("example")
    source = root / "src"
    shutil.copytree(FIXTURE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    pip_install(source, root / "site")
    return root / "site"


@pytest.fixture(scope="module")
def broken_target(tmp_path_factory) -> Path:
    """A generated package whose entry point `broken` raises ImportError when loaded."""
    root = tmp_path_factory.mktemp("broken")
    source = write_package(root / "src", "nst-broken-plugin", "0.0.1", {"broken": "nst_broken"},
                           {"nst_broken": f"raise ImportError({BROKEN_MESSAGE!r})\n"})
    pip_install(source, root / "site")
    return root / "site"


@pytest.fixture(scope="module")
def nst(example_target, broken_target, tmp_path_factory):
    """Run `python -m nst.cli ARGS` with both packages on PYTHONPATH; returns the CompletedProcess."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(example_target), str(broken_target)]
                                        + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env["COLUMNS"] = "300"  # rich tables: no wrapping of long cells
    env["NO_COLOR"] = "1"
    env["OMP_NUM_THREADS"] = "1"  # tiny tensors: thread start-up and contention cost seconds per run
    for key in ("FORCE_COLOR", "NST_DEBUG"):
        env.pop(key, None)
    cwd = tmp_path_factory.mktemp("cwd")  # not the repository root: no stray metadata on sys.path[0]

    def call(*args: object) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "nst.cli", *map(str, args)], capture_output=True,
                              text=True, env=env, cwd=cwd, timeout=120)

    return call


@pytest.fixture(scope="module")
def listing(nst) -> dict[str, str]:
    """`nst plugins`, as {plugin name: its table row}."""
    done = nst("plugins")
    assert done.returncode == 0, done.stderr
    rows = {}
    for line in done.stdout.splitlines():
        cells = [c.strip() for c in line.strip("│┃ ").split("│")]
        if len(cells) >= 4 and cells[0]:
            rows[cells[0]] = line
    return rows


def cells(row: str) -> list[str]:
    return [c.strip() for c in row.strip("│ ").split("│")]


def mean_pixel(path: Path) -> float:
    return float(np.asarray(Image.open(path).convert("RGB"), dtype=np.float64).mean() / 255)


# --- (a) discovery -----------------------------------------------------------------------------

def test_installed_plugin_is_listed(listing):
    assert "example" in listing
    name, version, package, status = cells(listing["example"])[:4]
    assert (name, version, package, status) == ("example", "0.3.0", "nst-example-plugin", "ok")
    assert "2 option(s)" in listing["example"]
    assert cells(listing["gatys"])[3] == "ok"  # the built-in comes through the same entry-point group


# --- (b) options (nst_plugin_options) -------------------------------------------------------------

def test_show_lists_options_with_defaults(nst):
    done = nst("plugins", "show", "example")
    assert done.returncode == 0, done.stderr
    assert "example 0.3.0 from nst-example-plugin" in done.stdout
    rows = {cells(line)[0]: cells(line) for line in done.stdout.splitlines() if "│" in line}
    assert rows["example.brightness"][1:3] == ["float", "0.8"]
    assert "target mean brightness of the output, 0..1" in rows["example.brightness"][3]
    assert rows["example.weight"][1:3] == ["float", "100.0"]


# --- (c) a broken plugin is reported, not fatal -------------------------------------------------

def test_broken_plugin_is_reported(listing):
    row = cells(listing["broken"])
    assert row[1:3] == ["0.0.1", "nst-broken-plugin"]
    assert row[3] == f"error: ImportError: {BROKEN_MESSAGE}"
    assert cells(listing["example"])[3] == "ok"


def test_broken_plugin_does_not_break_the_cli(nst, tiny_weights, content_path, style_path, tmp_path):
    done = nst("--help")
    assert done.returncode == 0, done.stderr
    assert "run" in done.stdout
    out = tmp_path / "plain.png"
    done = nst("run", content_path, style_path, "-o", out, "--weights", tiny_weights, "--size", 32,
               "--steps", 1, "-q", "--device", "cpu")
    assert done.returncode == 0, done.stderr
    assert out.is_file() and Image.open(out).size == (32, 24)
    done = nst("run", content_path, style_path, "-o", tmp_path / "x.png", "--plugin", "broken")
    assert done.returncode == 1
    assert done.stderr.strip() == f"error: plugin 'broken' could not be loaded: ImportError: {BROKEN_MESSAGE}"


# --- (d) the installed plugin's nst_losses term changes the result ---------------------------------

def test_loss_term_changes_the_result(nst, tiny_weights, content_path, style_path, tmp_path):
    # The tiny random VGG's Gram loss is ~1e11 at the default --style-weight, which would swamp any
    # modest extra term; a small style weight keeps the style term active but lets brightness show.
    common = [content_path, style_path, "--weights", tiny_weights, "--size", 32, "--steps", 5, "-q",
              "--device", "cpu", "--seed", 0, "--style-weight", 0.01]
    plain, bright = tmp_path / "plain.png", tmp_path / "bright.png"
    done = nst("run", *common, "-o", plain)
    assert done.returncode == 0, done.stderr
    done = nst("run", *common, "-o", bright, "--plugin", "example",
               "--set", "example.brightness=1.0", "--set", "example.weight=1e9")
    assert done.returncode == 0, done.stderr
    assert mean_pixel(bright) > mean_pixel(plain) + 0.2


# --- (e) option errors: exit 2, one line ------------------------------------------------------------

def test_unknown_option_is_a_usage_error(nst, content_path, style_path, tmp_path):
    done = nst("run", content_path, style_path, "-o", tmp_path / "o.png", "--plugin", "example",
               "--set", "example.nope=1")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:")
    assert "'nope'" in lines[0] and "brightness, weight" in lines[0]
    assert not (tmp_path / "o.png").exists()


def test_badly_typed_option_is_a_usage_error(nst, content_path, style_path, tmp_path):
    done = nst("run", content_path, style_path, "-o", tmp_path / "o.png", "--plugin", "example",
               "--set", "example.weight=abc")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:")
    assert "example.weight" in lines[0] and "float" in lines[0] and "'abc'" in lines[0]
