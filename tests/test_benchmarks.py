"""Every benchmark script still runs: one tiny configuration each, so a refactor cannot silently break them
(they are slow-ish, a fresh interpreter per row: marked slow, CI runs them)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.mark.slow
@pytest.mark.parametrize("script, args, expect", [
    ("gatys.py", ["--sizes", "32", "--steps", "2"], "| cpu | lbfgs | 32x"),
    ("analogy.py", ["--sizes", "80"], "| cpu | 80x"),
    ("johnson.py", ["--sizes", "32", "--widths", "8", "--runs", "1", "--steps", "2"], "| nst (torch) | johnson | 8 |"),
    ("johnson.py", ["--sizes", "32", "--archs", "light", "--runs", "1", "--steps", "0"], "| nst (ONNX export) | light | 32 |"),
    ("johnson.py", ["--stroke", "--sizes", "32", "--widths", "8", "--runs", "1"], "| nst StrokePyramid (torch) | 8 |"),
    ("light.py", ["--steps", "1", "--size", "32", "--batch-size", "1", "--run-size", "48", "--runs", "1", "--data",
                  str(BENCH.parent / "assets"), "--metric", "none"], "| light | "),
    ("fast.py", ["--sizes", "64", "--runs", "1", "--limit", "1", "--metric", "none"], "| 64 | nst arbitrary (onnx) |"),
    ("styles.py", ["--counts", "1", "2", "--steps", "2", "--size", "32"], "| 2 |"),
    ("nnst.py", ["--size", "48", "--steps", "2", "--repeats", "1", "--pairs", "1", "--metric", "none"],
     "| 1 | nnst | "),
    ("large.py", ["--methods", "gatys", "arbitrary", "--sizes", "64", "--steps", "2", "--tile", "32"], "| gatys | cpu | 64x42 | 4 | 32 |"),
    ("tiled.py", ["--sizes", "64", "--tiles", "32", "--repeats", "1", "--networks", "arbitrary"], "| arbitrary | "),
    ("video.py", ["--size", "64", "--frames", "3", "--gatys-size", "32", "--gatys-steps", "2", "--gatys-frames", "2"],
     "| johnson | 64 | 3 | yes |"),
    ("studio.py", ["--no-default", "--jobs", "gatys:32:2"], "| given | gatys | 32 | 2 | "),
    ("install_sizes.py", [], "| base (`pip install nst-suite`) | "),
    ("limit.py", ["--sizes", "32", "--steps", "1", "--repeats", "1", "--methods", "johnson", "--feed-forward-size", "32",
                  "--threads", "1"], "| johnson | 32 | "),
])
def test_benchmark_runs_one_tiny_configuration(tmp_path, script, args, expect):
    out = tmp_path / "result.md"
    done = subprocess.run([sys.executable, str(BENCH / script), *args, "--out", str(out)], capture_output=True,
                          text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert expect in out.read_text() and out.read_text() in done.stdout
