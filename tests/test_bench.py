"""`nst bench`: the five sections of the review's evaluation, results.json, contact sheets, resume, refusals,
and the quality measures it reports (with hand-checkable values). Runs use the tiny random VGG19 at 32-48 px."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from conftest import nst_main, one_error_line  # noqa: E402

from nst.bench import bench, measures  # noqa: E402
from nst.bench.plan import SECTIONS, make_plan  # noqa: E402
from nst.bench.report import growth  # noqa: E402
from nst.errors import UsageError  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(tiny_weights, **kw):
    return dict(quick=True, device="cpu", methods=["gatys", "johnson"], sizes=[32, 48], steps=3, train_steps=3,
                weights=str(tiny_weights), progress=False, note=lambda m: None, **kw)


@pytest.fixture(scope="module")
def report(tmp_path_factory, tiny_weights):
    folder = tmp_path_factory.mktemp("bench") / "report"
    return folder, bench(folder, **tiny(tiny_weights))


def test_report_has_the_five_sections_plots_and_sheets(report):
    folder, results = report
    md = (folder / "report.md").read_text()
    for title in SECTIONS.values():
        assert f"## {title}" in md
    html = (folder / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 4  # time, curves, scale, one sheet per method
    for name in ("plots/time.png", "plots/curves.png", "plots/scale.png", "sheets/gatys.png", "sheets/johnson.png"):
        assert Image.open(folder / name).size[0] > 100, name
    sheet = Image.open(folder / "sheets" / "gatys.png")
    assert sheet.size == (3 * 160, 3 * 160 + 16)  # 2 styles + label column, 2 photos + label row
    assert not [k for k, v in results["cells"].items() if "error" in v], results["cells"]


def test_results_json_holds_every_figure(report):
    folder, results = report
    on_disk = json.loads((folder / "results.json").read_text())
    assert on_disk["meta"]["torch"] == torch.__version__ and on_disk["plan"]["device"] == "cpu"
    cells = on_disk["cells"]
    assert {f"time/{m}/{s}" for m in ("gatys", "johnson") for s in (32, 48)} <= set(cells)
    gatys = cells["time/gatys/32"]
    assert gatys["seconds"] > 0 and gatys["s_per_step"] > 0 and gatys["peak_mb"] > 0
    train = cells["train/johnson/1"]
    assert train["images_per_s"] > 0 and train["model_mb"] > 0 and len(train["curve"]["step"]) == 3
    assert {"content", "style", "tv", "total"} <= set(train["curve"])
    grid = [v for k, v in cells.items() if k.startswith("grid/johnson/")]
    assert len(grid) == 4 and all(0 < g["edges"] <= 1 and g["colour"] >= 0 for g in grid)
    assert Path(grid[0]["image"]).is_file()
    assert cells["train/johnson/2"]["steps"] == 6  # train steps are per style
    assert {"scale/gatys/1", "scale/gatys/2"} <= set(cells)


def test_nnst_is_in_every_section(tmp_path, tiny_weights):
    folder = tmp_path / "report"
    results = bench(folder, **{**tiny(tiny_weights), "methods": ["nnst"], "sizes": [32]})
    cells = results["cells"]
    assert not [k for k, v in cells.items() if "error" in v], cells
    assert cells["time/nnst/32"]["s_per_step"] > 0 and cells["time/nnst/32"]["steps"] == 3
    assert len([k for k in cells if k.startswith("grid/nnst/")]) == 4 and {"scale/nnst/1", "scale/nnst/2"} <= set(cells)
    md = (folder / "report.md").read_text()
    sections = md.split("## ")
    for title in SECTIONS.values():
        assert "nnst" in next(s for s in sections if s.startswith(title)), title
    assert Image.open(folder / "sheets" / "nnst.png").size[0] > 100


def test_resume_keeps_finished_cells_and_redoes_missing_ones(report, tiny_weights):
    folder, _ = report
    path = folder / "results.json"
    data = json.loads(path.read_text())
    data["cells"]["time/gatys/32"]["seconds"] = 12345.0  # a finished cell: must be kept as it is
    del data["cells"]["time/gatys/48"]  # an unfinished one: must be measured
    path.write_text(json.dumps(data))
    results = bench(folder, resume=True, **tiny(tiny_weights))
    assert results["cells"]["time/gatys/32"]["seconds"] == 12345.0
    assert 0 < results["cells"]["time/gatys/48"]["seconds"] < 1000
    assert "12345" in (folder / "report.md").read_text()


def test_resume_checks_what_it_reads_back(report, tiny_weights):
    folder = report[0]
    path = folder / "results.json"
    data = json.loads(path.read_text())
    for text in ("{not json", "[1, 2]", '{"cells": [], "plan": {}}', "[" * 100_000 + "]" * 100_000):
        path.write_text(text)
        with pytest.raises(UsageError, match="not the results of a bench nst wrote"):
            bench(folder, resume=True, **tiny(tiny_weights))
    data["cells"]["time/gatys/32"]["seconds"] = "fast"
    grid = next(k for k in data["cells"] if k.startswith("grid/gatys/"))
    data["cells"][grid]["image"] = "/etc/passwd"  # a path from the file: never opened
    data["cells"]["time/gatys/48"] = ["not", "a", "cell"]
    path.write_text(json.dumps(data))
    notes = []
    results = bench(folder, resume=True, **{**tiny(tiny_weights), "note": notes.append})
    assert len([n for n in notes if "is damaged" in n and "measured again" in n]) == 3, notes
    cells = results["cells"]
    assert cells["time/gatys/32"]["seconds"] > 0 and cells["time/gatys/48"]["seconds"] > 0
    assert Path(cells[grid]["image"]).is_relative_to(folder / "images")


def test_a_grid_cell_that_failed_is_read_back(tmp_path):
    """A grid cell recorded as an error (a method that failed on one pair) has no image: reading the report back
    (--resume, or the refusal to write over it) keeps it instead of failing with KeyError 'image'."""
    from nst.bench import _read_results

    path = tmp_path / "results.json"
    cells = {"grid/text/p0/s0": {"error": "the glyph is too small"}, "grid/gatys/p0/s0": {"skipped": "not installed"}}
    path.write_text(json.dumps({"cells": cells, "plan": {}}))
    notes = []
    assert _read_results(path, tmp_path, notes.append)["cells"] == cells and notes == []


def test_refusals(report, tiny_weights, tmp_path):
    folder, _ = report
    with pytest.raises(UsageError, match="--resume"):
        bench(folder, **tiny(tiny_weights))
    with pytest.raises(UsageError, match="another plan"):
        bench(folder, resume=True, **{**tiny(tiny_weights), "sizes": [40]})
    with pytest.raises(UsageError, match="unknown method"):
        make_plan("cpu", True, ["gatys", "nope"], None)
    (tmp_path / "mine.txt").write_text("user data")
    with pytest.raises(UsageError, match="not empty"):
        bench(tmp_path, **tiny(tiny_weights))
    assert (tmp_path / "mine.txt").read_text() == "user data"


@pytest.mark.parametrize("args, fragment", [
    (["--methods", "gatys,warp"], "unknown method warp"),
    (["--sizes", "64,abc"], "--sizes"),
    (["--sizes", "4"], "between 16 and 8192"),
    (["--steps", "0"], "--steps must be between"),
    (["--photos", "/nonexistent/folder"], "is not a folder"),
])
def test_bad_options_give_one_line(capsys, monkeypatch, tmp_path, args, fragment):
    code, _, err = nst_main(capsys, monkeypatch, "bench", "--quick", "-o", tmp_path / "r", "-q", *args)
    assert code == 2 and fragment in one_error_line(err)
    assert not (tmp_path / "r" / "results.json").exists()


def test_growth_fits_only_a_power_law_it_can_stand_behind():
    pixels = [s * s for s in (64, 128, 256)]
    b, text = growth(pixels, [2e-6 * p ** 0.75 for p in pixels])
    assert b == pytest.approx(0.75) and text == "pixels^0.75 (R² 1.000 over 3 sizes)"
    assert growth([64 * 64], [1.0]) == (None, "–")
    # two sizes (the quick plan's): the measured ratio, no exponent
    assert growth(pixels[:2], [1.73, 2.73]) == (None, "×1.58 time for ×4 pixels (2 sizes: too few to fit an exponent)")
    # fixed costs and noise (the time falls, then rises): no exponent, and why
    b, text = growth(pixels, [1.73, 1.52, 2.10])
    assert b is None and "no power law (R² " in text


def test_measures_on_known_images():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 64, 80, generator=g)
    smooth = torch.nn.functional.avg_pool2d(x, 5, 1, 2)
    assert measures.ssim(x, x) == pytest.approx(1.0, abs=1e-5)
    assert measures.edges(smooth, smooth) == pytest.approx(1.0, abs=1e-5)
    assert measures.ssim(x, torch.rand(1, 3, 64, 80, generator=g)) < 0.2
    assert measures.colour(x, x) == 0
    shifted = (x * 0.5 + 0.5)  # every pixel moved towards white: the distributions differ by about 0.25 on average
    assert 0.1 < measures.colour(shifted, x) < 0.5
    red, blue = torch.zeros(1, 3, 32, 32), torch.zeros(1, 3, 32, 32)
    red[:, 0], blue[:, 2] = 1, 1
    assert measures.colour(red, blue) > measures.colour(red, red * 0.9)


def test_builtin_images_are_the_same_everywhere(tmp_path):
    from nst.bench.samples import builtin_photos, builtin_styles

    a = builtin_photos(tmp_path, 2) + builtin_styles(tmp_path, 2)
    arrays = [np.asarray(Image.open(p)) for p in a]
    again = builtin_photos(tmp_path / ".." / tmp_path.name, 2)
    assert np.array_equal(arrays[0], np.asarray(Image.open(again[0])))
    assert len({p.name for p in a}) == 4 and all(arr.std() > 10 for arr in arrays)


@pytest.mark.slow
def test_gpu_script_runs_on_the_cpu(tmp_path):
    """benchmarks/gpu.sh with --device cpu: machine description, a test selection, and a quick bench report."""
    import os
    import subprocess

    root = Path(__file__).resolve().parent.parent
    out = tmp_path / "gpu"
    done = subprocess.run(["bash", str(root / "benchmarks" / "gpu.sh"), str(out), "--device", "cpu", "--no-install",
                           "--tests", "tests/test_losses.py"], capture_output=True, text=True, timeout=1200, cwd=root,
                          env={**os.environ, "PYTHON": sys.executable})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "torch" in (out / "env.txt").read_text()
    assert " passed" in (out / "tests.log").read_text()
    results = json.loads((out / "bench" / "results.json").read_text())
    assert results["cells"]["time/gatys/32"]["seconds"] > 0
    assert (out / "bench" / "report.html").stat().st_size > 1000
    refused = subprocess.run(["bash", str(root / "benchmarks" / "gpu.sh"), str(out), "--device", "cpu"],
                             capture_output=True, text=True, cwd=root)
    assert refused.returncode == 2 and "not empty" in refused.stderr


@pytest.mark.slow
def test_gatys_cuda_variants_script_runs(tmp_path):
    import subprocess

    root = Path(__file__).resolve().parent.parent
    out = tmp_path / "variants.md"
    done = subprocess.run([sys.executable, str(root / "benchmarks" / "gatys_cuda.py"), "--device", "cpu", "--size", "32",
                           "--steps", "3", "--variants", "fp32", "tf32", "--out", str(out)], capture_output=True,
                          text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "| tf32 |" in out.read_text() and "| 1.0000 |" in out.read_text()  # fp32 against itself
