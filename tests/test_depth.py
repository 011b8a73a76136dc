"""The `depth` plugin: MiDaS small architecture and key layout, strict loading, the loss, the CLI.

No pretrained depth weights exist here: a randomly initialised MiDaS small is saved to a temp file and
loaded through the same path users take (`--set depth.weights=PATH`).
"""
import pytest
import torch
from conftest import one_error_line

import nst
from nst.plugins import depth as D

# Key names and shapes of the official checkpoint midas_v21_small_256.pt, taken from the reference
# code (isl-org/MiDaS midas/midas_net_custom.py and midas/blocks_custom.py: pretrained.layer1 =
# Sequential(conv_stem, bn1, act1, blocks[0], blocks[1]), layer2 = blocks[2:3], layer3 = blocks[3:5],
# layer4 = blocks[5:9]; scratch.layer{i}_rn, scratch.refinenet{i}.{resConfUnit1,resConfUnit2,out_conv},
# scratch.output_conv.{0,2,4}) and facts.md (channels 32/48/136/384 -> 64/128/256/512).
OFFICIAL = {
    "pretrained.layer1.0.weight": (32, 3, 3, 3),
    "pretrained.layer1.1.running_var": (32,),
    "pretrained.layer1.3.0.conv_dw.weight": (32, 1, 3, 3),
    "pretrained.layer1.4.0.conv_pw.weight": (144, 24, 1, 1),
    "pretrained.layer2.0.0.conv_pwl.weight": (48, 192, 1, 1),
    "pretrained.layer3.1.0.bn3.weight": (136,),
    "pretrained.layer4.1.0.conv_pwl.weight": (384, 1392, 1, 1),
    "scratch.layer1_rn.weight": (64, 32, 3, 3),
    "scratch.layer2_rn.weight": (128, 48, 3, 3),
    "scratch.layer3_rn.weight": (256, 136, 3, 3),
    "scratch.layer4_rn.weight": (512, 384, 3, 3),
    "scratch.refinenet4.resConfUnit1.conv1.weight": (512, 512, 3, 3),
    "scratch.refinenet4.out_conv.weight": (256, 512, 1, 1),
    "scratch.refinenet1.out_conv.weight": (64, 64, 1, 1),
    "scratch.output_conv.0.weight": (32, 64, 3, 3),
    "scratch.output_conv.2.weight": (32, 32, 3, 3),
    "scratch.output_conv.4.weight": (1, 32, 1, 1),
}


@pytest.fixture(scope="module")
def midas_file(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("midas") / "midas_random.pt"
    torch.save(D.MidasSmall().state_dict(), path)
    return path


def test_architecture_matches_official_layout():
    state = D.MidasSmall().state_dict()
    for key, shape in OFFICIAL.items():
        assert key in state, key
        assert tuple(state[key].shape) == shape, key
    assert not any(k.startswith(("pretrained.layer1.2.", "scratch.activation")) for k in state)
    params = sum(v.numel() for k, v in state.items() if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))
    assert 20e6 < params < 22.5e6  # "~21M parameters"


def test_output_is_relative_inverse_depth_at_model_size():
    net = D.MidasSmall().eval()
    out = net(torch.rand(2, 3, 100, 150))
    assert out.shape == (2, 1, 96, 160) and (out >= 0).all()  # ReLU output, sides multiples of 32
    assert D.MidasSmall.input_size(1000, 500) == (256, 128)


def test_strict_load_through_file_and_wrong_files(midas_file, tmp_path):
    net = D.load_depth_model("midas-small", midas_file, torch.device("cpu"))
    assert not any(p.requires_grad for p in net.parameters()) and not net.training
    wrapped = tmp_path / "wrapped.pt"
    torch.save({"model": torch.load(midas_file, weights_only=True), "optimizer": {}}, wrapped)
    D.load_depth_model("midas-small", wrapped, torch.device("cpu"))  # the reference's training format
    other = tmp_path / "other.pt"
    state = torch.load(midas_file, weights_only=True)
    state.pop("scratch.layer1_rn.weight")
    torch.save(state, other)
    with pytest.raises(nst.NSTError, match="strict key check failed"):
        D.load_depth_model("midas-small", other, torch.device("cpu"))
    with pytest.raises(nst.UsageError, match="unknown depth model 'dpt'"):
        D.load_depth_model("dpt", midas_file, torch.device("cpu"))


def test_ssi_loss_ignores_scale_and_shift():
    d = torch.rand(1, 1, 8, 8)
    assert D.depth_loss(3 * d + 2, d).item() == pytest.approx(0.0, abs=1e-10)
    assert D.depth_loss(d.flip(-1), d).item() > 0.1


def test_gradients_reach_the_image(midas_file):
    net = D.load_depth_model("midas-small", midas_file, torch.device("cpu"))
    x = torch.rand(1, 3, 64, 64, requires_grad=True)
    D.depth_loss(net(x), net(torch.rand(1, 3, 64, 64))).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def _depth_error(result, content, net):
    with torch.no_grad():
        return D.depth_loss(net(result), net(content)).item()


def test_depth_loss_keeps_depth_closer_to_the_content(midas_file, content_path, style_path, tiny_weights):
    """Same seed, with and without the plugin: with it, D(output) ends closer to D(content)."""
    from nst.core.images import load_image, resize_long_side

    kw = dict(weights=str(tiny_weights), size=64, steps=15, note=lambda m: None, style_weight=5e-3)
    plain = nst.run(content_path, [style_path], **kw)
    with_depth = nst.run(content_path, [style_path], plugins=["depth"],
                         options={"depth": {"weights": str(midas_file), "weight": 1e8}}, **kw)
    net = D.load_depth_model("midas-small", midas_file, torch.device("cpu"))
    content = resize_long_side(load_image(content_path), 64)
    assert _depth_error(with_depth.image, content, net) < 0.7 * _depth_error(plain.image, content, net)
    assert "depth correlation (content vs result)" in with_depth.summary


def test_cli_run_saves_depth_maps_and_reports(run_cli, midas_file, content_path, style_path, tiny_weights, tmp_path):
    out, maps = tmp_path / "o.png", tmp_path / "maps"
    code, stdout, err = run_cli("run", content_path, style_path, "-o", out, "--weights", tiny_weights, "--size", "48",
                                "--steps", "2", "-q", "--plugin", "depth", "--set", f"depth.weights={midas_file}",
                                "--set", f"depth.save={maps}")
    assert code == 0, err
    assert "depth correlation (content vs result)" in stdout
    assert sorted(p.name for p in maps.iterdir()) == [".nst-written.jsonl", "depth_content.png", "depth_result.png"]
    wrote = [line for line in stdout.splitlines() if line.startswith("wrote ")]
    assert len(wrote) == 3 and wrote[0].startswith(f"wrote {out} (")  # the result once, then each side output
    assert {f"wrote {maps / 'depth_content.png'}", f"wrote {maps / 'depth_result.png'}"} == set(wrote[1:])


def test_nst_depth_command(run_cli, midas_file, content_path, tmp_path):
    from PIL import Image

    out = tmp_path / "depth.png"
    code, stdout, err = run_cli("depth", content_path, "-o", out, "--weights", midas_file)
    assert code == 0, err and "depth map" in stdout
    assert Image.open(out).size == (64, 64)  # 64x48 content -> model input 64x64 (multiples of 32)


def test_errors_are_one_line(run_cli, content_path, style_path, tiny_weights, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_hub"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None, raising=False)
    base = ["run", content_path, style_path, "-o", tmp_path / "o.png", "--weights", tiny_weights, "--size", "32",
            "--steps", "1", "-q", "--plugin", "depth"]
    code, _, err = run_cli(*base, "--set", "depth.model=dpt")
    assert code == 2 and "must be one of midas-small" in one_error_line(err)
    code, _, err = run_cli(*base, "--set", f"depth.weights={tiny_weights}")
    assert code == 1 and "not midas-small weights" in one_error_line(err)
    monkeypatch.setattr("urllib.request.urlopen", lambda *a, **k: (_ for _ in ()).throw(OSError("offline")))
    code, _, err = run_cli(*base)
    line = one_error_line(err)
    assert code == 1 and "midas_v21_small_256.pt" in line and "depth.weights=PATH" in line
    assert not (tmp_path / "o.png").exists()


def test_plugin_options_listed(run_cli):
    code, out, _ = run_cli("plugins", "show", "depth")
    assert code == 0
    for key in ("depth.weight", "depth.model", "depth.weights", "depth.save"):
        assert key in out


def test_depth_aware_training(midas_file, tmp_path, tiny_weights):
    """nst train --plugin depth: the depth term takes part in every training step."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from conftest import gradient_image, stripes_image

    data = tmp_path / "data"
    data.mkdir()
    for i in range(3):
        gradient_image(48, 40, seed=i).save(data / f"{i}.png")
    style = tmp_path / "s.png"
    stripes_image(48, 48).save(style)
    result = nst.train(style, data, tmp_path / "m.safetensors", plugins=["depth"], weights=str(tiny_weights),
                       options={"depth": {"weights": str(midas_file)}}, size=32, batch_size=2, steps=2, workers=0,
                       note=lambda m: None)
    assert all("depth" in row for row in result.losses)
