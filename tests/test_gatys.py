"""The Gatys engine through the Python API, on tiny random weights (real weights in test_cli)."""
from pathlib import Path

import pytest
import torch
from PIL import Image

import nst
from nst.core.gatys import scale_sizes
from nst.core.images import load_image
from nst.errors import NSTError, UsageError


@pytest.fixture
def fast(tiny_weights):
    """Keyword arguments for a quick run on the tiny encoder."""
    return dict(weights=str(tiny_weights), size=32, steps=4, note=lambda m: None)


class Recorder:
    """An in-process plugin recording every on_step call."""

    name = "recorder"

    def __init__(self):
        self.steps = []

    @nst.hookimpl
    def nst_on_step(self, step, losses):
        self.steps.append((step, losses))


def test_stylize_returns_pil_of_requested_size(content_path, style_path, fast):
    img = nst.stylize(content_path, [style_path], **fast)
    assert isinstance(img, Image.Image) and img.size == (32, 24)


def test_accepts_pil_and_tensors(content_path, style_path, fast):
    a = nst.run(Image.open(content_path), [load_image(style_path)[0]], **fast).image
    b = nst.run(content_path, style_path, **fast).image
    assert torch.allclose(a, b, atol=1e-5)


def test_weights_given_as_a_path_object(content_path, style_path, fast, tiny_weights):
    a = nst.run(content_path, style_path, **fast).image
    b = nst.run(content_path, style_path, **{**fast, "weights": Path(tiny_weights)}).image
    assert torch.equal(a, b)


def test_style_loss_falls_a_lot_and_content_stays_bounded(content_path, style_path, tiny_weights):
    rec = Recorder()
    nst.run(content_path, [style_path], weights=str(tiny_weights), size=48, steps=40, plugins=[rec], note=lambda m: None)
    first, last = rec.steps[0][1], rec.steps[-1][1]
    assert [s for s, _ in rec.steps] == list(range(1, 41))
    assert last["style"] < 0.2 * first["style"]
    assert last["total"] < first["total"]


def test_deterministic_under_seed(content_path, style_path, fast):
    a = nst.run(content_path, [style_path], init="noise", seed=3, **fast).image
    b = nst.run(content_path, [style_path], init="noise", seed=3, **fast).image
    c = nst.run(content_path, [style_path], init="noise", seed=4, **fast).image
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("loss", ["gram", "mmd", "mrf", "ot", "w2"])
@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_every_style_loss_and_optimizer_reduce_the_loss(content_path, style_path, tiny_weights, loss, optimizer):
    rec = Recorder()
    nst.run(content_path, [style_path], weights=str(tiny_weights), size=32, steps=12, style_loss=loss,
            optimizer=optimizer, lr=0.05, plugins=[rec], note=lambda m: None)
    assert rec.steps[-1][1]["total"] < rec.steps[0][1]["total"]


@pytest.mark.parametrize("init", ["content", "noise", "style"])
def test_init_choices_start_where_they_say(content_path, style_path, fast, init):
    out = nst.run(content_path, [style_path], init=init, **{**fast, "steps": 1}, content_weight=0, style_weight=0, tv_weight=0)
    content = nst.run(content_path, [style_path], **{**fast, "steps": 1}, content_weight=0, style_weight=0, tv_weight=0)
    # with all weights 0 nothing moves, so the result is the initial image
    if init == "content":
        assert torch.allclose(out.image, content.image)
    else:
        assert (out.image - content.image).abs().mean() > 0.05


def test_scales_run_coarse_to_fine(content_path, style_path, fast):
    rec = Recorder()
    sizes = []

    class Sizes:
        name = "sizes"

        @nst.hookimpl
        def nst_on_step(self, ctx, image):
            sizes.append(max(image.shape[-2:]))

    nst.run(content_path, [style_path], scales=3, plugins=[rec, Sizes()], **{**fast, "size": 64, "steps": 2})
    assert sizes == [16, 16, 32, 32, 64, 64]
    assert scale_sizes(512, 3) == [128, 256, 512]


def test_style_blend_moves_result_towards_the_heavier_style(content_path, tmp_path, tiny_weights):
    red, blue = tmp_path / "red.png", tmp_path / "blue.png"
    Image.new("RGB", (32, 32), (250, 10, 10)).save(red)
    Image.new("RGB", (32, 32), (10, 10, 250)).save(blue)
    kw = dict(weights=str(tiny_weights), size=32, steps=30, content_weight=0, note=lambda m: None)
    towards_red = nst.run(content_path, [red, blue], style_blend=[0.9, 0.1], **kw).image
    towards_blue = nst.run(content_path, [red, blue], style_blend=[0.1, 0.9], **kw).image
    r = lambda t: (t[0, 0] - t[0, 2]).mean().item()
    assert r(towards_red) > r(towards_blue)


def test_preserve_colors_luminance_keeps_content_chroma(content_path, style_path, fast):
    from kornia.color import rgb_to_ycbcr

    from nst.core.images import resize_long_side

    strong = {**fast, "steps": 20, "content_weight": 0.0}
    out = nst.run(content_path, [style_path], preserve_colors="luminance", **strong).image
    content = resize_long_side(load_image(content_path), 32)
    plain = nst.run(content_path, [style_path], **strong).image
    chroma = lambda t: rgb_to_ycbcr(t)[:, 1:]
    kept = (chroma(out) - chroma(content)).abs().mean()  # only out-of-gamut clamping differs
    assert kept < 0.01 and kept < 0.3 * (chroma(plain) - chroma(content)).abs().mean()


def test_histogram_matching_gives_style_the_content_palette():
    from nst.core.colors import match_histogram

    torch.manual_seed(0)
    src = torch.rand(1, 3, 16, 16)
    ref = torch.rand(1, 3, 8, 8) * 0.2 + 0.7
    out = match_histogram(src, ref)
    assert out.min() >= 0.69 and out.max() <= 0.91
    ranked = out[0, 0].flatten()[src[0, 0].flatten().argsort()]
    assert (ranked[1:] >= ranked[:-1]).all()  # the order of values is kept


def test_save_every_writes_snapshots(content_path, style_path, fast, tmp_path):
    out = tmp_path / "out.png"
    result = nst.run(content_path, [style_path], save_every=2, output=out, **fast)
    assert [p.name for p in result.snapshots] == ["out_step0002.png", "out_step0004.png"]
    assert all(p.is_file() for p in result.snapshots)


@pytest.mark.parametrize("kwargs,msg", [
    (dict(size=5), "^size: must be between 16 and 16384, got 5$"),
    (dict(style_loss="foo"), "^style_loss: must be one of"),
    (dict(style_blend=[1, 2, 3]), "3 weight"),
    (dict(steps=0), "^steps: must be between 1 and"),
    (dict(device="tpu"), "^device: must be auto, cpu, cuda or cuda:N"),
    (dict(colour="x"), "unknown setting 'colour'"),
    (dict(style_weight=float("nan")), "^style_weight: must be a finite number"),
    (dict(style_blend="1,2"), "^style_blend: expected a list"),
    (dict(style_layers=["relu9_9"]), "^style_layers: must be one of conv1_1, .* got 'relu9_9'$"),
])
def test_bad_settings_are_usage_errors(content_path, style_path, fast, kwargs, msg):
    with pytest.raises(UsageError, match=msg):
        nst.run(content_path, [style_path], **{**fast, **kwargs})


def test_cuda_without_gpu_is_a_clear_error(content_path, style_path, fast, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(NSTError, match="no CUDA GPU"):
        nst.run(content_path, [style_path], device="cuda", **fast)


def test_missing_style_is_an_error(content_path, fast):
    with pytest.raises(UsageError, match="needs at least one style"):
        nst.run(content_path, [], **fast)


def _style_distance(encoder, x, s):
    """Mean over relu1_1..relu5_1 of ‖G(x) − G(s)‖² / ‖G(s)‖², features at 128 px."""
    from nst.core.images import resize_long_side
    from nst.core.losses import gram_matrix

    layers = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]
    fx, fs = encoder(resize_long_side(x, 128), layers), encoder(resize_long_side(s, 128), layers)
    return sum(((gram_matrix(fx[l]) - gram_matrix(fs[l])) ** 2).sum() / (gram_matrix(fs[l]) ** 2).sum() for l in layers) / 5


def test_real_weights_quick_start_is_a_recognisable_transfer():
    """The README's example images on the embedded VGG19: style statistics move most of the way to the
    style while the coarse layout of the content stays (correlation of blurred luminance)."""
    from pathlib import Path

    import torch.nn.functional as F

    from nst.core.encoder import Encoder, load_vgg
    from nst.core.images import resize

    assets = Path(__file__).parent.parent / "assets"
    content, style = load_image(assets / "content.jpg"), load_image(assets / "style.jpg")
    out = nst.run(content, [style], size=128, steps=80, note=lambda m: None).image
    encoder = Encoder(load_vgg(nst.default_host().weights(), "vgg19", progress=False), "avg")
    with torch.no_grad():
        before, after = _style_distance(encoder, content, style), _style_distance(encoder, out, style)
    assert after < 0.35 * before
    luma = lambda t: F.avg_pool2d(resize(t, tuple(out.shape[-2:])).mean(1, keepdim=True), 8).flatten()
    corr = torch.corrcoef(torch.stack([luma(out), luma(content)]))[0, 1]
    assert corr > 0.8
