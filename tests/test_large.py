"""Large output: tiles, whole-image instance norm, the memory planner, --plan, replanning after CUDA OOM."""
from __future__ import annotations

import pytest
import torch

from nst.core import planner, tiles
from nst.core.johnson import MultiStyleNet, TransformerNet
from nst.plugins.arbitrary.network import StyleTransformer
from nst.plugins.stroke.network import StrokePyramidNet


def perturbed(net: torch.nn.Module) -> torch.nn.Module:
    """NET in eval mode with its norm scales and shifts moved off their identity start (so they matter)."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.1)
    return net.eval()


FAMILIES = {
    "johnson": (lambda: TransformerNet(8, 1), {}),
    "multistyle": (lambda: MultiStyleNet(2, (8, 8, 8), 1, (8, 4)), {"style": torch.tensor([0.3, 0.7])}),
    "stroke": (lambda: StrokePyramidNet(8, 1, (64, 128)), {"stroke": 100.0}),
    "arbitrary": (StyleTransformer, {"style": torch.randn(1, 100, generator=torch.Generator().manual_seed(0))}),
}


@pytest.mark.parametrize("family", FAMILIES)
def test_tiled_network_equals_the_whole_image(family, one_thread):
    """Tiles with a halo of the receptive radius + the blend overlap and whole-image norm statistics give the
    untiled output (measured max difference ~2e-6 for every family); statistics per tile would not."""
    build, inputs = FAMILIES[family]
    torch.manual_seed(0)
    net, x = perturbed(build()), torch.rand(1, 3, 70, 98)
    with torch.no_grad():
        whole = net(x, **inputs)
    halo = tiles.receptive_radius(net) + 16
    seen = []
    out = tiles.run_network(net, lambda window, _t: net(window, **inputs), x, 48, halo, 16,
                            on_tile=lambda done, total: seen.append((done, total)))
    assert out.shape == whole.shape
    assert (out - whole).abs().max() < 1e-4
    assert len(tiles.grid(72, 100, 48, halo, 4)) == 6 and seen[-1][0] == seen[-1][1]
    per_tile = torch.cat([net(x[..., :, :48], **inputs), net(x[..., :, 48:], **inputs)], -1)
    assert (per_tile - whole).abs().max() > 1e-2  # what whole-image statistics prevent


def test_feathered_weights_sum_to_one():
    for h, w, cell, halo, overlap in [(72, 100, 32, 20, 16), (37, 61, 16, 8, 8), (64, 64, 64, 10, 16)]:
        total = torch.zeros(h, w)
        grid = tiles.grid(h, w, cell, halo, 4)
        for t in grid:
            y0, y1, x0, x1 = t.window
            total[y0:y1, x0:x1] += tiles.feather(t, h, w, tiles.blend_width(grid, overlap, halo))[0, 0]
        assert torch.allclose(total, torch.ones(h, w), atol=1e-6)


def test_parse_bytes():
    assert planner.parse_bytes("8GB") == 8 * 2 ** 30
    assert planner.parse_bytes("512 mb") == 512 * 2 ** 20
    for bad in ("8XB", "lots", "-1GB", "1KB"):
        with pytest.raises(Exception, match="max_memory"):
            planner.parse_bytes(bad)


def test_planner_tiles_what_does_not_fit_and_stays_in_budget():
    costs = planner.Costs(base=300e6, image=100, window=4000, work=1e6)
    small = planner.plan_scale(512, 512, 10, costs, 4e9, 96, 16, 1e9)
    assert small.cell == 0 and small.tiles == 1
    big = planner.plan_scale(4096, 4096, 10, costs, 4e9, 96, 16, 1e9)
    assert big.cell and big.tiles > 1 and big.peak <= 4e9 and big.cell % 16 == 0
    forced = planner.plan_scale(512, 512, 10, costs, 4e9, 96, 16, 1e9, tile=200)
    assert forced.cell == 192 and forced.tiles == 9
    with pytest.raises(Exception, match="needs about .* GB for its whole-image buffers"):
        planner.plan_scale(16384, 16384, 10, costs, 1e9, 96, 16, 1e9)


def test_arbitrary_run_in_tiles_equals_one_pass(content_path, style_path, one_thread):
    """The method end to end: --tile 64 on a 96 px content gives the one-pass image (torch backend)."""
    import nst

    whole = nst.run(content_path, [style_path], method="arbitrary", size=96, backend="torch")
    tiled = nst.run(content_path, [style_path], method="arbitrary", size=96, backend="torch", tile=64)
    assert tiled.plan.scales[0].tiles == 4 and tiled.plan.scales[0].cell == 64
    assert (whole.image - tiled.image).abs().max() < 1e-4


def test_plan_prints_and_writes_nothing(run_cli, content_path, style_path, tmp_path):
    out = tmp_path / "out.png"
    code, stdout, _ = run_cli("run", content_path, style_path, "-o", out, "--method", "arbitrary", "--size", "96",
                              "--tile", "64", "--plan")
    assert code == 0 and not out.exists()
    assert "plan for arbitrary on cpu" in stdout and "tiles of 64 px" in stdout and "peak ~" in stdout


def test_bad_large_options_are_one_line(run_cli, content_path, style_path, tmp_path):
    from conftest import one_error_line

    for args, field in [(["--max-memory", "lots"], "--max-memory"), (["--tile", "8"], "--tile"),
                        (["--bit-depth", "12"], "--bit-depth")]:
        code, _, err = run_cli("run", content_path, style_path, "-o", tmp_path / "o.png", *args)
        assert code == 2 and field in one_error_line(err)


def test_cuda_out_of_memory_replans_with_smaller_tiles(monkeypatch, content_path, style_path):
    """A CUDA OOM in the tiled pass (simulated) halves the tiles and the run continues to the same image."""
    import nst
    from nst.core import tiles as core_tiles

    real, calls, notes = core_tiles.run_network, [], []

    def flaky(net, forward, image, cell, *args, **kwargs):
        calls.append(cell)
        if len(calls) == 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(net, forward, image, cell, *args, **kwargs)

    monkeypatch.setattr(core_tiles, "run_network", flaky)
    whole = nst.run(content_path, [style_path], method="arbitrary", size=144, backend="torch")
    tiled = nst.run(content_path, [style_path], method="arbitrary", size=144, backend="torch", tile=128,
                    note=notes.append)
    assert calls == [128, 64]
    assert any("continuing with" in n for n in notes)
    assert (whole.image - tiled.image).abs().max() < 1e-4


# --- gatys in tiles --------------------------------------------------------------------------------------------------

LAYERS5 = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]


@pytest.fixture(scope="module")
def tiny_encoder():
    from conftest import tiny_vgg_state

    from nst.core.encoder import Encoder, VGGWeights

    return Encoder(VGGWeights(tiny_vgg_state(), "caffe"), "avg")


def test_tiled_loss_and_gradient_equal_the_whole_image(tiny_encoder, one_thread):
    """Content (relu4_2), Gram style (relu1_1..relu5_1), TV and a region-guided Gram, tile by tile with a halo
    of VGG's receptive radius: loss and gradient equal one pass (measured: terms within 5e-7, gradient 2e-6 of its
    largest value)."""
    from nst.core.gatys import evaluate
    from nst.core.losses import content_term, gram_matrix, guided_style_term, style_term, tv_term
    from nst.core.tiled_gatys import TiledLoss, tiled_features, tiled_grams

    torch.manual_seed(0)
    enc, x, content, style = tiny_encoder, torch.rand(1, 3, 120, 150), torch.rand(1, 3, 120, 150), torch.rand(1, 3, 70, 90)
    with torch.no_grad():
        target, style_feats = enc(content, ["relu4_2"]), enc(style, LAYERS5)
    assert (tiled_features(enc, content, ["relu4_2"], 48)["relu4_2"] - target["relu4_2"]).abs().max() < 1e-4
    grams = tiled_grams(enc, style, LAYERS5, 32)
    for l in LAYERS5:
        assert torch.allclose(grams[l], gram_matrix(style_feats[l]), rtol=1e-4, atol=1e-6)
    masks = torch.zeros(1, 2, 120, 150)
    masks[:, 0, :, :70], masks[:, 1, :, 70:] = 1, 1
    layer_masks = {l: torch.nn.functional.interpolate(masks, size=enc(x, [l])[l].shape[-2:], mode="area") for l in LAYERS5}
    region_targets = [[{l: grams[l] for l in LAYERS5}, {l: 0.5 * grams[l] for l in LAYERS5}]]
    terms = [content_term(target, ["relu4_2"], 1.0), style_term("gram", [], [1.0], LAYERS5, 5e-3, grams=[grams]),
             tv_term(1e3), guided_style_term(region_targets, layer_masks, [0.5, 0.5], [1.0], LAYERS5, 1e-3, "regions")]
    xr = x.clone().requires_grad_(True)
    total, parts = evaluate(terms, enc, xr)
    total.backward()
    parts = {k: v.detach() for k, v in parts.items()}
    tiled = TiledLoss(terms, enc, (120, 150), 48)
    assert len(tiled.tiles) == 12 and tiled.halo == 96
    t_total, t_parts, grad = tiled(x)
    for name in parts:
        assert abs(float(t_parts[name]) - float(parts[name])) <= 2e-5 * abs(float(parts[name])) + 1e-6, name
    assert (grad - xr.grad).abs().max() <= 1e-4 * xr.grad.abs().max()


def test_gatys_run_in_tiles_follows_the_untiled_run(tiny_weights, content_path, style_path, monkeypatch, one_thread):
    """Same seed and steps, two scales, 32 px tiles (halo 16 px for layers to relu3_1), Adam: the same losses at
    every step (4 digits) and the same image (max difference < 1e-3; measured ~2e-5). (L-BFGS follows too, but
    its line search can branch differently on float-rounding differences after a few steps.)"""
    import nst
    from nst.core import tiled_gatys

    calls = []
    real = tiled_gatys.TiledLoss.__call__
    monkeypatch.setattr(tiled_gatys.TiledLoss, "__call__", lambda self, x: calls.append(len(self.tiles)) or real(self, x))

    class Losses:
        name = "losses"

        def __init__(self):
            self.seen = []

        @nst.hookimpl
        def nst_on_step(self, losses):
            self.seen.append(losses["total"])

    kw = dict(size=128, steps=4, scales=2, weights=str(tiny_weights), style_layers=["relu1_1", "relu2_1", "relu3_1"],
              content_layers=["relu2_2"], optimizer="adam", lr=0.05, precision="fp32")  # float32 on every machine
    whole, tiled = Losses(), Losses()
    a = nst.run(content_path, [style_path], plugins=[whole], **kw)
    assert not calls
    b = nst.run(content_path, [style_path], plugins=[tiled], tile=32, **kw)
    assert calls and max(calls) == 12 and b.plan.scales[-1].tiles == 12
    assert whole.seen == pytest.approx(tiled.seen, rel=2e-4)  # (channels_last sums in another order: ~5e-5)
    assert (a.image - b.image).abs().max() < 1e-3


def test_terms_that_need_the_whole_image_are_refused_in_tiles(tiny_weights, content_path, style_path):
    import nst
    from nst.core.losses import LossTerm
    from nst.errors import UsageError

    class Whole:
        name = "whole"

        @nst.hookimpl
        def nst_losses(self):
            return [LossTerm("mean-colour", 1.0, lambda _f, img: img.mean())]

    kw = dict(size=64, steps=1, weights=str(tiny_weights), tile=32)
    with pytest.raises(UsageError, match="loss term 'mean-colour' \\(plugin 'whole'\\) needs the whole image"):
        nst.run(content_path, [style_path], plugins=[Whole()], **kw)
    with pytest.raises(UsageError, match="style loss 'mmd' \\(gaussian\\) cannot be computed in tiles"):
        nst.run(content_path, [style_path], style_loss="mmd", **kw)


def test_progress_counts_tiles_within_steps():
    """The bar advances by fractions of a step as tiles finish (so its time estimate counts tiles)."""
    from types import SimpleNamespace

    from nst.runtime.observers import ProgressBar

    bar = ProgressBar()
    ctx = SimpleNamespace(total_steps=10, settings=SimpleNamespace(method="gatys"), scale=SimpleNamespace(size=2048),
                          mode="run")
    try:
        bar.nst_on_step(ctx, 3, {"total": 1.0})
        bar.tile(ctx, 5, 20)
        task = bar._bar.tasks[0]
        assert task.completed == pytest.approx(3.25) and task.total == 10 and "tile 5/20" in task.description
        ctx.total_steps = None  # a network: the bar counts tiles of all passes
        bar.close()
        bar.tile(ctx, 7, 28)
        assert bar._bar.tasks[0].completed == 7 and bar._bar.tasks[0].total == 28
    finally:
        bar.close()


def test_progress_weighs_steps_by_their_work():
    """Coarse to fine, a fine step costs more: the bar counts work (its time left is then right), the label the
    steps."""
    from types import SimpleNamespace

    from nst.runtime.observers import ProgressBar

    bar = ProgressBar()
    ctx = SimpleNamespace(total_steps=4, step_work=[1.0, 1.0, 4.0, 4.0], settings=SimpleNamespace(method="gatys"),
                          scale=SimpleNamespace(size=512), mode="run")
    try:
        bar.nst_on_step(ctx, 2, {"total": 1.0})
        task = bar._bar.tasks[0]
        assert task.total == 10 and task.completed == 2 and "step 2/4" in task.description
        bar.tile(ctx, 1, 2)
        assert bar._bar.tasks[0].completed == pytest.approx(4.0) and "step 2/4 tile 1/2" in bar._bar.tasks[0].description
        bar.nst_on_step(ctx, 3, {"total": 1.0})
        assert bar._bar.tasks[0].completed == 6
    finally:
        bar.close()


def test_semantic_region_grams_run_in_tiles(tiny_weights, content_path, style_path, one_thread):
    """A plugin's region-guided Gram term composes with tiling: the same image as untiled (measured 3e-8)."""
    import nst

    kw = dict(size=96, steps=2, weights=str(tiny_weights), optimizer="adam", plugins=["semantic"], note=lambda m: None)
    whole = nst.run(content_path, [style_path], **kw)
    tiled = nst.run(content_path, [style_path], tile=32, **kw)
    assert tiled.plan.scales[-1].tiles > 1
    assert (whole.image - tiled.image).abs().max() < 1e-4
