"""Johnson fast style transfer: the network, model files, training (loss, corrupt photos, resume, loss curves,
plugins, DDP), inference through `nst run --method johnson`, ONNX export, and the errors users can hit.

Everything runs on tiny data: 32-64 px images, the tiny random VGG19 from conftest, narrow networks, few steps.
"""
from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import nst
from nst import cli
from nst.api import train
from nst.api.checkpoints import checkpoint_path
from nst.core.files import Manifest
from nst.core.images import load_image, resize_long_side
from nst.core.johnson import TransformerNet, blend, load_model, read_model_meta, save_model
from nst.core.photos import PhotoCrops, collate, find_photos
from nst.errors import NSTError, UsageError
from nst.host import PluginHost

sys.path.insert(0, str(Path(__file__).parent))
from conftest import archs, gradient_image, one_error_line, stripes_image  # noqa: E402

TOL8 = 1 / 255 + 1e-6  # one step of 8-bit quantisation


# --- helpers and fixtures ------------------------------------------------------------------------------------------

pytestmark = pytest.mark.usefixtures("one_thread")


def make_photos(folder: Path, count: int = 6) -> Path:
    """COUNT gradient photos of varied sizes, every other one in a subfolder."""
    (folder / "sub").mkdir(parents=True, exist_ok=True)
    for i in range(count):
        where = folder / "sub" if i % 2 else folder
        gradient_image(48 + 8 * i, 40 + 4 * i, seed=i).save(where / f"photo{i}.png")
    return folder


class Recorder:
    """In-process observer: every step's losses."""

    name = "recorder"

    def __init__(self):
        self.steps, self.losses = [], []

    @nst.hookimpl
    def nst_on_step(self, step, losses):
        self.steps.append(step)
        self.losses.append(dict(losses))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return make_photos(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def style_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("style") / "style.png"
    stripes_image(64, 64).save(path)
    return path


@pytest.fixture(scope="module")
def fast(tiny_weights):
    """Small, quick, reproducible training settings."""
    return dict(weights=str(tiny_weights), size=32, batch_size=2, width=8, workers=0, device="cpu", note=lambda m: None)


TRAINED_STEPS = 8


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_dir, style_file, fast):
    """(model path, TrainResult) of one short training run shared by the inference/export/file tests."""
    out = tmp_path_factory.mktemp("model") / "stripes.safetensors"
    result = train(style_file, data_dir, out, steps=TRAINED_STEPS, host=PluginHost(), **fast)
    return out, result


def cli_train_args(style, data, out, tiny_weights, *extra):
    return ["train", style, "--data", data, "-o", out, "--weights", tiny_weights, "--size", "32", "--batch-size", "2",
            "--width", "8", "--workers", "0", "--device", "cpu", "-q", *extra]


def read_png(path: Path) -> torch.Tensor:
    with Image.open(path) as img:
        assert img.format == "PNG"
        arr = np.asarray(img.convert("RGB"), dtype=np.float32) / 255
    return torch.from_numpy(arr).permute(2, 0, 1)[None]


def states_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --- 1. the network ------------------------------------------------------------------------------------------------

def test_transformer_net_shape_range_and_width():
    torch.manual_seed(0)
    net = TransformerNet(width=8, blocks=2).eval()
    with torch.no_grad():
        for shape in [(3, 3, 37, 50), (1, 3, 32, 32), (2, 3, 17, 63)]:
            x = torch.rand(shape)
            y = net(x)
            assert y.shape == x.shape
            assert y.min() >= 0 and y.max() <= 1 and y.std() > 0
        for x in (torch.zeros(1, 3, 21, 22), torch.ones(1, 3, 21, 22)):  # extremes stay in range
            y = net(x)
            assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1
        net.train()  # instance norm, also in training mode: each image is processed on its own
        x = torch.rand(3, 3, 37, 50)
        y = net(x)
        for i in range(3):
            assert torch.allclose(y[i:i + 1], net(x[i:i + 1]), atol=1e-5)
    count = lambda n: sum(p.numel() for p in n.parameters())
    ratio = count(TransformerNet()) / count(TransformerNet(width=16))
    assert 3.5 < ratio < 4.5
    assert TransformerNet().config == {"arch": "johnson", "width": 32, "blocks": 5}
    assert TransformerNet(16, 3).config == {"arch": "johnson", "width": 16, "blocks": 3}


def test_blend():
    a, b = torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8)
    assert torch.equal(blend(a, b, 1.0), a) and torch.equal(blend(a, b, 0.0), b)
    assert torch.allclose(blend(a, b, 0.25), 0.25 * a + 0.75 * b)


# --- 2. training makes the loss fall -------------------------------------------------------------------------------

def test_training_loss_falls(tmp_path, data_dir, style_file, fast):
    rec = Recorder()
    out = tmp_path / "m.safetensors"
    result = train(style_file, data_dir, out, steps=30, plugins=[rec], host=PluginHost(), **fast)
    assert rec.steps == list(range(1, 31)) and result.steps == 30 and result.model == out and out.is_file()
    assert [{k: v for k, v in row.items() if k != "step"} for row in result.losses] == rec.losses
    totals = [l["total"] for l in rec.losses]
    assert all(np.isfinite(totals))
    assert np.mean(totals[-5:]) < 0.5 * np.mean(totals[:5]), totals
    for l in rec.losses:  # total is the sum of the weighted terms
        assert l["total"] == pytest.approx(l["content"] + l["style"] + l["tv"], rel=1e-4)
    assert load_model(out, archs())[1]["photos"] == 6  # the photos in the subfolder count too
    assert not checkpoint_path(out).exists()  # the checkpoint goes once the model is written


# --- 3. corrupt photos are skipped and counted ---------------------------------------------------------------------

def test_corrupt_photos_skipped_and_counted(tmp_path, style_file, fast, run_cli, tiny_weights):
    data = make_photos(tmp_path / "data")
    bad = data / "sub" / "broken.jpg"
    bad.write_text("I am not a JPEG")
    # 4 steps x 2 photos = 8 stream positions > 7 files: the whole first epoch, so the broken file is drawn
    result = train(style_file, data, tmp_path / "m.safetensors", steps=4, host=PluginHost(), **fast)
    assert result.skipped == [str(bad)] and result.steps == 4 and (tmp_path / "m.safetensors").is_file()
    out = tmp_path / "cli.safetensors"
    code, stdout, err = run_cli(*cli_train_args(style_file, data, out, tiny_weights, "--steps", "4"))
    assert code == 0, err
    assert "note: 1 unreadable training image(s) skipped" in err and "broken.jpg" in err
    assert f"wrote {out} (4 steps" in stdout and out.is_file()


def test_no_readable_photo_is_one_error_line_workers_0(tmp_path, style_file, run_cli, tiny_weights):
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.jpg").write_text("text")
    (data / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n\0\0")
    out = tmp_path / "m.safetensors"
    code, _, err = run_cli(*cli_train_args(style_file, data, out, tiny_weights, "--steps", "2"))
    assert code == 1 and "training images can be read" in one_error_line(err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_no_readable_photo_is_one_error_line_with_workers(tmp_path, style_file, run_cli, tiny_weights):
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.jpg").write_text("text")
    out = tmp_path / "m.safetensors"
    code, _, err = run_cli(*cli_train_args(style_file, data, out, tiny_weights, "--steps", "2", "--workers", "2"))
    assert code == 1 and "training images can be read" in one_error_line(err)


# --- 4. model files ------------------------------------------------------------------------------------------------

def test_save_load_roundtrip_identical(tmp_path):
    torch.manual_seed(3)
    net = TransformerNet(width=8, blocks=2).eval()
    path = save_model(net, tmp_path / "m.safetensors", {"style": "x.png", "steps": 7})
    loaded, info = load_model(path, archs())
    assert isinstance(loaded, TransformerNet) and not loaded.training and loaded.config == {"arch": "johnson", "width": 8, "blocks": 2}
    assert info == {"style": "x.png", "steps": 7}
    assert states_equal(net.state_dict(), loaded.state_dict())
    x = torch.rand(2, 3, 37, 41)
    with torch.no_grad():
        assert torch.equal(net(x), loaded(x))
    assert read_model_meta(path)["format"] == "nst-johnson" and read_model_meta(path)["arch_version"] == "1"
    assert not list(tmp_path.glob("*.part*"))


def test_trained_model_info(trained, style_file):
    path, result = trained
    net, info = load_model(path, archs())
    assert info["style"] == style_file.name and info["steps"] == TRAINED_STEPS == result.steps
    assert info["version"] == nst.__version__ and info["world_size"] == 1 and info["photos"] == 6
    settings = info["settings"]
    assert settings["size"] == 32 and settings["batch_size"] == 2 and settings["width"] == 8
    assert settings["steps"] == TRAINED_STEPS and settings["style_size"] == 48 and settings["lr"] == 1e-3
    assert net.config["width"] == 8
    assert states_equal(net.state_dict(), result.state)  # TrainResult.state is what was saved


# --- 5. resume ----------------------------------------------------------------------------------------------------

def test_resume_equals_uninterrupted(tmp_path, data_dir, style_file, fast, run_cli, tiny_weights):
    kw = dict(fast, checkpoint_every=3)
    a = tmp_path / "a.safetensors"
    result_a = train(style_file, data_dir, a, steps=6, host=PluginHost(), **kw)

    class StopAt4:
        name = "stop"

        @nst.hookimpl
        def nst_on_step(self, step):
            if step == 4:
                raise KeyboardInterrupt

    b = tmp_path / "b.safetensors"
    notes = []
    with pytest.raises(KeyboardInterrupt):
        train(style_file, data_dir, b, steps=6, plugins=[StopAt4()], host=PluginHost(), **{**kw, "note": notes.append})
    assert not b.exists() and checkpoint_path(b).is_file()
    assert any("interrupted at step 4" in n for n in notes)

    # a checkpoint only resumes with the options it was made with
    with pytest.raises(UsageError, match=r"other options \(lr\)"):
        train(style_file, data_dir, b, steps=6, resume=True, host=PluginHost(), **{**kw, "lr": 2e-3})
    with pytest.raises(UsageError, match=r"other options \(width\)"):
        train(style_file, data_dir, b, steps=6, resume=True, host=PluginHost(), **{**kw, "width": 16})
    with pytest.raises(UsageError, match="nothing left to do"):
        train(style_file, data_dir, b, steps=4, resume=True, host=PluginHost(), **kw)
    code, _, err = run_cli(*cli_train_args(style_file, data_dir, b, tiny_weights, "--steps", "6", "--resume",
                                           "--checkpoint-every", "3", "--tv-weight", "5"))
    assert code == 2 and "tv_weight" in one_error_line(err) and not b.exists()
    assert checkpoint_path(b).is_file()  # refused resumes leave the checkpoint alone

    notes.clear()
    result_b = train(style_file, data_dir, b, steps=6, resume=True, host=PluginHost(), **{**kw, "note": notes.append})
    assert any("resuming from" in n and "at step 4" in n for n in notes)
    assert result_b.steps == 6 and not checkpoint_path(b).exists()
    assert states_equal(load_model(a, archs())[0].state_dict(), load_model(b, archs())[0].state_dict())
    assert states_equal(result_a.state, result_b.state)
    assert result_a.losses == result_b.losses  # the history survives the interruption
    assert (tmp_path / "a.safetensors.losses.csv").read_text() == (tmp_path / "b.safetensors.losses.csv").read_text()


def test_resume_without_checkpoint(tmp_path, data_dir, style_file, fast, run_cli, tiny_weights):
    out = tmp_path / "m.safetensors"
    with pytest.raises(NSTError, match="no checkpoint"):
        train(style_file, data_dir, out, steps=2, resume=True, host=PluginHost(), **fast)
    code, _, err = run_cli(*cli_train_args(style_file, data_dir, out, tiny_weights, "--steps", "2", "--resume"))
    assert code == 1 and "no checkpoint" in one_error_line(err)
    assert list(tmp_path.iterdir()) == []


# --- 6. loss curves ------------------------------------------------------------------------------------------------

def test_loss_curves(trained):
    path, result = trained
    csv_path = path.with_name(path.name + ".losses.csv")
    png_path = path.with_name(path.name + ".losses.png")
    with open(csv_path, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["step", "content", "style", "tv", "total"]
    assert [int(r[0]) for r in rows[1:]] == list(range(1, TRAINED_STEPS + 1))
    for row, losses in zip(rows[1:], result.losses):
        assert [float(v) for v in row[1:]] == pytest.approx([losses[k] for k in rows[0][1:]], rel=1e-5)
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(png_path) as img:
        img.verify()
    with Image.open(png_path) as img:
        assert img.format == "PNG" and img.size[0] > 100 and img.size[1] > 100
    assert not checkpoint_path(path).exists() and not list(path.parent.glob("*.part*"))


# --- 7. inference through the CLI ----------------------------------------------------------------------------------

def test_cli_run_johnson_matches_the_network(trained, content_path, tmp_path, run_cli):
    model, _ = trained
    net, _ = load_model(model, archs())
    x = resize_long_side(load_image(content_path), 48)
    with torch.no_grad():
        y = net(x)
    outs = {}
    for strength, backend in (("1", "torch"), ("1", "onnx"), ("0", "auto"), ("0.5", "auto")):
        out = tmp_path / f"out{strength}{backend}.png"
        code, stdout, err = run_cli("run", content_path, "--method", "johnson", "--model", model, "-o", out,
                                    "--size", "48", "--strength", strength, "-q", "--backend", backend)
        assert code == 0, err
        assert f"wrote {out} (48x36" in stdout and "model: stripes.safetensors (style style.png, 8 steps)" in stdout
        assert "backend: " + ("torch" if backend == "torch" else "onnx") in stdout  # auto: onnxruntime on the CPU
        outs[strength if backend != "torch" else "torch"] = read_png(out)
        assert read_png(out).shape == (1, 3, 36, 48)
    assert (outs["1"] - y).abs().max() <= TOL8 and (outs["torch"] - y).abs().max() <= TOL8
    assert (outs["0"] - x).abs().max() <= TOL8
    assert (outs["0.5"] - (y + x) / 2).abs().max() <= TOL8
    assert (y - x).abs().mean() > 0.02  # the comparisons above tell the three apart


def test_cli_run_johnson_sees_a_rewritten_model(content_path, tmp_path, run_cli):
    """The loaded network is cached between runs; writing a new model to the same path must not reuse the old one."""
    model = tmp_path / "m.safetensors"
    outs = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        net = TransformerNet(width=8, blocks=1).eval()
        save_model(net, model, {"style": f"s{seed}.png"})
        out = tmp_path / f"o{seed}.png"
        code, stdout, err = run_cli("run", content_path, "--method", "johnson", "--model", model, "-o", out, "--size", "32", "-q")
        assert code == 0, err
        assert f"style s{seed}.png" in stdout
        with torch.no_grad():
            want = net(resize_long_side(load_image(content_path), 32))
        outs.append(read_png(out))
        assert (outs[-1] - want).abs().max() <= TOL8


def test_cli_run_johnson_needs_model(content_path, tmp_path, run_cli):
    out = tmp_path / "o.png"
    code, _, err = run_cli("run", content_path, "--method", "johnson", "-o", out, "-q")
    assert code == 2 and "--model" in one_error_line(err) and not out.exists()


# --- 8. folders and globs ------------------------------------------------------------------------------------------

def test_cli_run_folder_and_glob(trained, tmp_path, run_cli):
    model, _ = trained
    photos = tmp_path / "photos"
    photos.mkdir()
    sizes = {"a": (64, 48), "b": (40, 60), "c": (50, 50)}
    for i, (name, wh) in enumerate(sizes.items()):
        gradient_image(*wh, seed=i).save(photos / f"{name}.{'jpg' if name == 'c' else 'png'}")
    expect = {"a": (48, 36), "b": (32, 48), "c": (48, 48)}

    out_dir = tmp_path / "styled"
    code, stdout, err = run_cli("run", photos, "--method", "johnson", "--model", model, "-o", out_dir, "--size", "48", "-q")
    assert code == 0, err
    assert f"wrote 3 image(s) to {out_dir}" in stdout
    assert sorted(p.name for p in out_dir.iterdir()) == [".nst-written.jsonl", "a.png", "b.png", "c.png"]
    for name, wh in expect.items():
        with Image.open(out_dir / f"{name}.png") as img:
            assert img.format == "PNG" and img.size == wh
    net, _ = load_model(model, archs())
    with torch.no_grad():
        y = net(resize_long_side(load_image(photos / "b.png"), 48))
    assert (read_png(out_dir / "b.png") - y).abs().max() <= TOL8

    globbed = tmp_path / "globbed"
    code, stdout, err = run_cli("run", str(photos / "*.png"), "--method", "johnson", "--model", model, "-o", globbed,
                                "--size", "48", "-q")
    assert code == 0, err
    assert sorted(p.name for p in globbed.glob("*.png")) == ["a.png", "b.png"]
    assert (read_png(globbed / "b.png") - read_png(out_dir / "b.png")).abs().max() == 0


def test_cli_run_folder_with_a_broken_image(trained, tmp_path, run_cli):
    model, _ = trained
    photos = tmp_path / "photos"
    photos.mkdir()
    gradient_image(40, 30).save(photos / "good.png")
    (photos / "broken.png").write_text("not a png")
    out_dir = tmp_path / "styled"
    code, stdout, err = run_cli("run", photos, "--method", "johnson", "--model", model, "-o", out_dir, "-q", "--size", "32")
    assert code == 1
    assert [p.name for p in out_dir.glob("*.png")] == ["good.png"] and "wrote 1 image(s)" in stdout
    lines = err.strip().splitlines()
    assert "broken.png" in lines[0] and lines[-1].startswith("error: 1 image(s) could not be stylised")
    assert "Traceback" not in err


@pytest.mark.slow
def test_cli_run_folder_shared_out_under_torchrun(trained, tmp_path, run_cli):
    """Two gloo processes split a folder of 5 photos (3 + 2): every result written once and equal to a
    one-process run's; one report line, from process 0, counting all five."""
    model, _ = trained
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(5):
        gradient_image(40 + 4 * i, 32, seed=i).save(photos / f"p{i}.png")
    single = tmp_path / "single"
    code, _, err = run_cli("run", photos, "--method", "johnson", "--model", model, "-o", single, "--size", "32", "-q")
    assert code == 0, err
    shared = tmp_path / "shared"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--standalone",
                           "-m", "nst.cli", "run", str(photos), "--method", "johnson", "--model", str(model), "-o",
                           str(shared), "--size", "32", "--device", "cpu", "-q"],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("wrote ") == 1 and f"wrote 5 image(s) to {shared} by 2 processes" in proc.stdout
    assert proc.stdout.count(" -> ") == 5
    assert sorted(p.name for p in shared.iterdir()) == [".nst-written.jsonl"] + [f"p{i}.png" for i in range(5)]
    assert sorted(Manifest(shared).entries()) == [f"p{i}.png" for i in range(5)]  # both processes recorded theirs
    for i in range(5):
        assert (read_png(shared / f"p{i}.png") - read_png(single / f"p{i}.png")).abs().max() == 0


def test_cli_run_empty_folder(trained, tmp_path, run_cli):
    model, _ = trained
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli("run", tmp_path / "empty", "--method", "johnson", "--model", model, "-o", tmp_path / "o", "-q")
    assert code == 1 and "no images to stylise" in one_error_line(err) and not (tmp_path / "o").exists()


# --- 9. ONNX --------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def onnx_file(trained, tmp_path_factory):
    model, _ = trained
    out = tmp_path_factory.mktemp("onnx") / "stripes.onnx"
    mp = pytest.MonkeyPatch()
    try:
        mp.setattr(sys, "argv", ["nst", "export", str(model), "--onnx", str(out)])
        try:
            cli.main()
        except SystemExit as exc:
            assert exc.code in (0, None)
    finally:
        mp.undo()
    return out


def test_onnx_export_matches_pytorch(trained, onnx_file):
    ort = pytest.importorskip("onnxruntime")
    net, _ = load_model(trained[0], archs())
    sess = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["image"] and [o.name for o in sess.get_outputs()] == ["stylised"]
    torch.manual_seed(0)
    for shape in [(1, 3, 40, 56), (2, 3, 64, 64)]:
        x = torch.rand(shape)
        with torch.no_grad():
            want = net(x).numpy()
        got = sess.run(None, {"image": x.numpy()})[0]
        assert got.shape == shape
        assert np.abs(got - want).max() < 1e-4


def test_onnx_export_odd_sizes(trained, onnx_file):
    ort = pytest.importorskip("onnxruntime")
    net, _ = load_model(trained[0], archs())
    sess = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    x = torch.rand(1, 3, 37, 50)
    with torch.no_grad():
        want = net(x).numpy()
    got = sess.run(None, {"image": x.numpy()})[0]
    assert got.shape == want.shape and np.abs(got - want).max() < 1e-4


def test_cli_export_reports(trained, tmp_path, run_cli):
    out = tmp_path / "m.onnx"
    code, stdout, err = run_cli("export", trained[0], "--onnx", out)
    assert code == 0, err
    assert f"wrote {out} (style style.png, opset 17)" in stdout and out.stat().st_size > 1000
    assert not list(tmp_path.glob("*.part*"))


# --- 10. errors ----------------------------------------------------------------------------------------------------

def test_train_empty_data_folder(tmp_path, style_file, run_cli, tiny_weights):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "notes.txt").write_text("no photos here")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    code, _, err = run_cli(*cli_train_args(style_file, tmp_path / "empty", out_dir / "m.safetensors", tiny_weights,
                                           "--steps", "2"))
    assert code == 1 and "no training images" in one_error_line(err)
    assert list(out_dir.iterdir()) == []
    code, _, err = run_cli(*cli_train_args(style_file, tmp_path / "missing", out_dir / "m.safetensors", tiny_weights))
    assert code == 1 and "no such folder" in one_error_line(err)
    assert list(out_dir.iterdir()) == []


def test_train_unreadable_style(tmp_path, data_dir, run_cli, tiny_weights):
    style = tmp_path / "style.png"
    style.write_text("not an image")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    code, _, err = run_cli(*cli_train_args(style, data_dir, out_dir / "m.safetensors", tiny_weights, "--steps", "2"))
    assert code == 1 and "style.png" in one_error_line(err) and "not an image" in err
    assert list(out_dir.iterdir()) == []


@pytest.mark.parametrize("name", ["m.pt", "m.safetensors.png", "m"])
def test_train_output_must_be_safetensors(tmp_path, data_dir, style_file, run_cli, tiny_weights, name):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    code, _, err = run_cli(*cli_train_args(style_file, data_dir, out_dir / name, tiny_weights, "--steps", "2"))
    assert code == 2 and ".safetensors" in one_error_line(err)
    assert list(out_dir.iterdir()) == []


def test_train_output_folder_missing(tmp_path, data_dir, style_file, run_cli, tiny_weights):
    code, _, err = run_cli(*cli_train_args(style_file, data_dir, tmp_path / "no" / "m.safetensors", tiny_weights,
                                           "--steps", "2"))
    assert code == 1 and "does not exist" in one_error_line(err)  # found before any training
    assert list(tmp_path.iterdir()) == []


def _bad_model(kind: str, folder: Path, tiny_weights: Path, good: Path) -> tuple[Path, str]:
    from safetensors.torch import save_file

    path = folder / f"{kind}.safetensors"
    state = {k: v.contiguous() for k, v in TransformerNet(width=8, blocks=2).state_dict().items()}
    meta = {"format": "nst-johnson", "config": json.dumps({"width": 8, "blocks": 2}), "info": "{}"}
    if kind == "png":
        gradient_image(16, 16).save(path, format="PNG")
        return path, "not an nst model file"
    if kind == "foreign":  # a real safetensors file (VGG weights) without our metadata
        path.write_bytes(tiny_weights.read_bytes())
        return path, "not an nst Johnson model"
    if kind == "truncated":
        data = good.read_bytes()
        path.write_bytes(data[:len(data) // 2])
        return path, "not an nst model file|damaged"
    if kind == "arch":
        save_file(state, str(path), metadata={**meta, "arch_version": "999"})
        return path, "architecture version 999"
    if kind == "mismatch":  # our metadata, but the tensors are not those the config describes
        save_file(state, str(path), metadata={**meta, "arch_version": "1", "config": json.dumps({"width": 16, "blocks": 2})})
        return path, "damaged nst model file"
    if kind == "missing":
        return path, "no such file"
    raise AssertionError(kind)


BAD_MODELS = ["png", "foreign", "truncated", "arch", "mismatch", "missing"]


@pytest.mark.parametrize("kind", BAD_MODELS)
def test_bad_model_files_run_and_export(kind, trained, content_path, tmp_path, run_cli, tiny_weights):
    model, msg = _bad_model(kind, tmp_path, tiny_weights, trained[0])
    before = model.read_bytes() if model.exists() else None
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    code, _, err = run_cli("run", content_path, "--method", "johnson", "--model", model, "-o", out_dir / "o.png", "-q")
    assert code == 1 and re.search(msg, one_error_line(err)), err
    code, _, err = run_cli("export", model, "--onnx", out_dir / "m.onnx")
    assert code == 1 and re.search(msg, one_error_line(err)), err
    with pytest.raises(NSTError, match=msg):
        load_model(model, archs())
    assert list(out_dir.iterdir()) == []
    assert (model.read_bytes() if model.exists() else None) == before


# --- 11. plugins in training ---------------------------------------------------------------------------------------

def test_plugin_loss_terms_take_part_in_training(tmp_path, data_dir, style_file, fast):
    steps = 8

    class Bright:
        name = "bright"

        def __init__(self):
            self.calls = []

        @nst.hookimpl
        def nst_losses(self, ctx, encoder):
            assert ctx.mode == "train" and ctx.scale is None and ctx.content is None and ctx.current_content is ctx.batch.content
            self.calls.append((ctx.batch.index, ctx.batch.content.shape[-1], ctx.batch.content.clone()))
            return [nst.LossTerm("bright", 1e6, lambda feats, img: (1 - img.mean()) ** 2)]

    bright = Bright()
    plain = train(style_file, data_dir, tmp_path / "plain.safetensors", steps=steps, host=PluginHost(), **fast)
    lit = train(style_file, data_dir, tmp_path / "lit.safetensors", steps=steps, plugins=[bright], host=PluginHost(), **fast)

    # called once per step, with that step's batch of training crops as content
    assert [c[0] for c in bright.calls] == list(range(steps)) and all(c[1] == 32 for c in bright.calls)
    crops = PhotoCrops(find_photos(data_dir), 32, 0)
    for i, (_, _, content) in enumerate(bright.calls):
        assert content.shape == (2, 3, 32, 32)
        assert torch.equal(content, collate([crops[p] for p in (2 * i, 2 * i + 1)])[0])
    assert all("bright" in row for row in lit.losses) and not any("bright" in row for row in plain.losses)
    assert load_model(tmp_path / "lit.safetensors", archs())[1]["plugins"] == ["bright"]
    header = (tmp_path / "lit.safetensors.losses.csv").read_text().splitlines()[0]
    assert header == "step,content,style,tv,bright,total"

    x = resize_long_side(load_image(make_content(tmp_path)), 48)
    with torch.no_grad():
        plain_out = load_model(tmp_path / "plain.safetensors", archs())[0](x)
        lit_out = load_model(tmp_path / "lit.safetensors", archs())[0](x)
    assert lit_out.mean() > plain_out.mean() + 0.08  # about 0.56 -> 0.68


def make_content(folder: Path) -> Path:
    path = folder / "content.png"
    gradient_image(64, 48, seed=7).save(path)
    return path


def test_named_plugin_unknown_in_training(tmp_path, data_dir, style_file, fast):
    with pytest.raises(UsageError, match="unknown plugin 'ghost'"):
        train(style_file, data_dir, tmp_path / "m.safetensors", steps=2, plugins=["ghost"], host=PluginHost(), **fast)
    assert list(tmp_path.iterdir()) == []


# --- 12. data-parallel training ------------------------------------------------------------------------------------

def test_ddp_training_two_ranks_agree(tmp_path, data_dir, style_file, tiny_weights, fast):
    from safetensors.torch import load_file

    out = tmp_path / "ddp"
    out.mkdir()
    worker = Path(__file__).with_name("ddp_worker.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--standalone",
                           str(worker), str(out), str(data_dir), str(tiny_weights), str(style_file)],
                          capture_output=True, text=True, timeout=180, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    model = out / "model.safetensors"
    assert model.is_file() and (out / "model.safetensors.losses.csv").is_file()
    rank0, rank1 = load_file(str(out / "rank0.safetensors")), load_file(str(out / "rank1.safetensors"))
    assert states_equal(rank0, rank1)  # DDP keeps the replicas identical
    net, info = load_model(model, archs())
    assert info["world_size"] == 2 and info["steps"] == 4
    assert states_equal(net.state_dict(), rank0)
    seen = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [s["world"] for s in seen] == [2, 2] and [s["steps"] for s in seen] == [4, 4]
    assert seen[0]["model"] == str(model) and seen[1]["model"] is None
    # reported losses are averaged over the ranks, so both ranks report the same figures ...
    assert seen[0]["losses"] == seen[1]["losses"]
    # ... and the two halves are one batch of 4 from the same stream: the same as batch 4 in one process
    single = train(style_file, data_dir, tmp_path / "single.safetensors", steps=4, host=PluginHost(),
                   **{**fast, "batch_size": 4})
    for r0, one in zip(seen[0]["losses"], single.losses):
        assert r0["total"] == pytest.approx(one["total"], rel=1e-4)
    x = torch.rand(1, 3, 40, 40)
    with torch.no_grad():
        assert torch.allclose(net(x), load_model(tmp_path / "single.safetensors", archs())[0](x), atol=1e-4)


def test_output_layers_in_blocks_equal_the_plain_convolution():
    """The 9×9 layers to RGB run R×R pixels at a time on the CPU (nst/core/blockconv.py): same values, same
    gradients; sides that are not multiples of R fall back to the plain convolution."""
    from nst.core.blockconv import conv_in_blocks, output_conv

    torch.manual_seed(0)
    for k, r, c_in, c_out, h, w in ((9, 4, 8, 3, 20, 36), (9, 2, 2, 5, 6, 10), (3, 4, 4, 2, 8, 4)):
        conv = torch.nn.Conv2d(c_in, c_out, k, bias=c_in != 2)
        x = torch.rand(1, c_in, h + k - 1, w + k - 1, requires_grad=True)
        blocks = conv_in_blocks(x, conv, r)
        assert blocks.shape == (1, c_out, h, w) and (blocks - conv(x)).abs().max() < 1e-5
        (g_blocks,) = torch.autograd.grad(blocks.square().sum(), conv.weight)
        (g_plain,) = torch.autograd.grad(conv(x).square().sum(), conv.weight)
        assert (g_blocks - g_plain).abs().max() < 1e-3 * g_plain.abs().max()
    conv = torch.nn.Conv2d(4, 3, 9)
    odd = torch.rand(1, 4, 8 + 13, 8 + 10)
    assert torch.equal(output_conv(odd, conv), conv(odd))
