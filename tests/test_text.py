"""The `text` plugin: glyph detection and guidance, text rendering, guided synthesis of a distance-defined
effect on a different glyph, background modes, font transfer, and `nst text` with its errors.

Images are at most 96 px; glyphs are drawn as exact shapes (no system fonts needed) or with Pillow's
built-in font."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

from nst.errors import NSTError
from nst.plugins.text import image_target, text_target
from nst.plugins.text.effects import EffectParams, plan_transfer, pooled_source, transfer
from nst.plugins.text.glyphs import Layout, distance_guide, glyph_mask, render_text

sys.path.insert(0, str(Path(__file__).parent))
from conftest import one_error_line  # noqa: E402

N = 96
ORANGE, RED, NAVY, CYAN, WHITE = (np.array(c, np.float32) for c in
                                  ([1, .6, .1], [.8, .1, .1], [.1, .1, .5], [.2, .8, .9], [1, 1, 1]))
# bands of the signed distance (px, negative inside) and the largest mean abs error allowed in each
# (measured on the transparent result composited over white: fill 0.0072, ring 0.0081, glow 0.0047, far 0.0078)
BANDS = {"fill": (-99, -3, 0.03), "ring": (-3, 1, 0.03), "glow": (1, 12, 0.02), "far": (12, 999, 0.02)}


pytestmark = pytest.mark.usefixtures("one_thread")


def ring_glyph() -> np.ndarray:
    """(N, N) bool: an 'O', a ring 12 px wide."""
    y, x = np.mgrid[0:N, 0:N] - (N - 1) / 2
    r = np.hypot(y, x)
    return (r >= 18) & (r < 30)


def cross_glyph() -> np.ndarray:
    """(N, N) bool: an 'L' and a bar, strokes 12 px wide (another glyph with the same stroke width)."""
    m = np.zeros((N, N), bool)
    m[18:78, 20:32] = True
    m[66:78, 20:60] = True
    m[18:30, 46:76] = True
    return m


def signed_distance(mask: np.ndarray) -> np.ndarray:
    """(H, W) px to the outline, negative inside."""
    return np.where(mask, -(ndimage.distance_transform_edt(mask) - 0.5), ndimage.distance_transform_edt(~mask) - 0.5)


def effect(sd: np.ndarray) -> np.ndarray:
    """(H, W, 3): an exact function of the signed distance: an orange-to-red gradient fill, a navy ring
    across the outline (-3..1 px) and a cyan glow fading into white outside."""
    t = np.clip((-sd - 3) / 3, 0, 1)[..., None]
    g = np.exp(-np.clip(sd - 1, 0, None) / 4)[..., None]
    fill, glow = ORANGE * (1 - t) + RED * t, WHITE * (1 - g) + CYAN * g
    return np.where((sd < -3)[..., None], fill, np.where((sd <= 1)[..., None], NAVY, glow)).astype(np.float32)


def as_tensor(arr: np.ndarray) -> torch.Tensor:
    """(H, W, 3) or (H, W) in [0, 1] -> (1, 3, H, W)."""
    arr = np.repeat(arr[..., None], 3, 2) if arr.ndim == 2 else arr
    return torch.from_numpy(np.ascontiguousarray(arr, np.float32)).permute(2, 0, 1)[None].contiguous()


def save(arr: np.ndarray, path: Path) -> Path:
    Image.fromarray((np.clip(arr, 0, 1) * 255 + 0.5).astype(np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def ring_transfer():
    """The ring's effect synthesised for the other glyph, in 'transparent' mode: (target mask, RGBA result)."""
    s_mask, t_mask = ring_glyph(), cross_glyph()
    examples = [(distance_guide(s_mask), as_tensor(effect(signed_distance(s_mask))))]
    target = distance_guide(t_mask)
    params = EffectParams()
    plan = plan_transfer(examples, target, "transparent", params)
    return t_mask, transfer(plan, target, "transparent", params)[0]


def test_glyph_mask_finds_dark_and_light_text_and_refuses_a_plain_image():
    mask = cross_glyph()
    assert (glyph_mask(as_tensor(np.where(mask, 0.1, 0.9)), "dark") == mask).all()
    assert (glyph_mask(as_tensor(np.where(mask, 0.8, 0.2)), "light") == mask).all()
    with pytest.raises(NSTError, match="no glyph"):
        glyph_mask(as_tensor(np.full((N, N), 0.5)), "plain")


def test_guidance_is_in_stroke_radii():
    """U runs from -1 on the centre line to 0 at the outline whatever the stroke width; outside it
    counts stroke radii; the radius of 12-px strokes is 6 px."""
    guide = distance_guide(cross_glyph())
    assert guide.radius == pytest.approx(6.0, abs=0.6)
    assert guide.u.min() == pytest.approx(-1.0, abs=0.05) and (guide.u[guide.mask] <= 0).all()
    outside = ~guide.mask
    assert np.allclose(guide.u[outside] * guide.radius, signed_distance(guide.mask)[outside], atol=1e-4)


def test_effect_defined_by_distance_is_reproduced_on_another_glyph(ring_transfer):
    """Fill, ring and glow come out as the same function of the distance to the outline, per band."""
    t_mask, rgba = ring_transfer
    sd = signed_distance(t_mask)
    alpha = rgba[3:].numpy()
    shown = (rgba[:3].numpy() * alpha + (1 - alpha) * WHITE[:, None, None]).transpose(1, 2, 0)  # over S′'s ground
    error = np.abs(shown - effect(sd)).mean(2)
    for name, (lo, hi, tol) in BANDS.items():
        band = (sd >= lo) & (sd < hi)
        assert band.sum() > 50, name
        assert error[band].mean() < tol, f"{name}: mean abs error {error[band].mean():.4f} >= {tol}"


def test_transparent_alpha_is_one_on_the_glyph_and_zero_far_away(ring_transfer):
    t_mask, rgba = ring_transfer
    alpha, sd = rgba[3].numpy(), signed_distance(t_mask)
    assert rgba.shape == (4, N, N)
    assert alpha[t_mask].min() > 0.95
    assert alpha[sd > 20].max() == 0.0
    near, outer = alpha[(sd > 2) & (sd < 4)].mean(), alpha[(sd > 7) & (sd < 11)].mean()
    assert near > outer and 0.05 < outer < 0.9  # the glow's tail fades out


def test_text_and_an_image_of_it_give_the_same_guidance(tmp_path):
    """A string rendered with the built-in font, and the same rendering saved as an image (also as
    light text on dark), give the same mask and distances."""
    image = text_target("Hi\nA", Layout(letter_spacing=0.05), 30.0, None, radius=2.0, margin_radii=2.0)
    rendered = distance_guide(glyph_mask(image, "text"))
    gray = image[0, 0].numpy()
    for name, arr in (("dark.png", gray), ("light.png", 1 - gray)):
        loaded = distance_guide(glyph_mask(image_target(save(arr, tmp_path / name), None, print), name))
        assert (loaded.mask == rendered.mask).all()
        assert np.allclose(loaded.u, rendered.u) and loaded.radius == pytest.approx(rendered.radius)


def test_text_layout_lines_and_spacing():
    """A second line adds height; letter spacing adds width; the automatic font size matches strokes."""
    one = render_text("Hi", Layout(), 30, 0)
    two = render_text("Hi\nHi", Layout(line_spacing=1.5), 30, 0)
    wide = render_text("Hi", Layout(letter_spacing=0.5), 30, 0)
    assert two.shape[-2] > 1.8 * one.shape[-2] and wide.shape[-1] >= one.shape[-1] + 14
    auto = text_target("Hi", Layout(), None, None, radius=3.0, margin_radii=1.0)
    assert distance_guide(glyph_mask(auto, "auto")).radius == pytest.approx(3.0, rel=0.2)


def test_pooled_source_keeps_every_example_and_marks_padding():
    g1, g2 = torch.zeros(3, 10, 8), torch.zeros(3, 6, 5)
    guide, styled = pooled_source([(g1, torch.rand(3, 10, 8)), (g2, torch.rand(3, 6, 5))], gap=2)
    assert guide.shape == (3, 10, 17) and styled.shape == (3, 10, 17)
    padding = guide[2]
    assert padding[:, :8].sum() == 0 and (padding[:, 8:10] == 1).all() and (padding[6:, 10:15] == 1).all()


@pytest.fixture
def pair(tmp_path):
    """A ring glyph S (dark on white) and its effect S′, as files."""
    mask = ring_glyph()
    return save(np.where(mask, 0.0, 1.0), tmp_path / "S.png"), save(effect(signed_distance(mask)), tmp_path / "S2.png")


def test_cli_renders_text_at_the_requested_size(run_cli, pair, tmp_path):
    out = tmp_path / "out.png"
    code, stdout, err = run_cli("text", "--source", pair[0], "--styled", pair[1], "--text", "Hi", "-o", out,
                                "--size", 96, "-q")
    assert code == 0, err
    assert max(Image.open(out).size) == 96 and Image.open(out).mode == "RGB"
    assert f"wrote {out}" in stdout


def test_cli_font_transfer_with_two_pairs_guides_and_backgrounds(run_cli, pair, tmp_path):
    """Two example pairs pool; guides written; a target image with --background synthesize and RGBA
    output with --background transparent."""
    cross = cross_glyph()
    s2 = save(np.where(cross, 0.0, 1.0), tmp_path / "S_b.png")
    s2_styled = save(effect(signed_distance(cross)), tmp_path / "S_b2.png")
    out, guides = tmp_path / "font.png", tmp_path / "guides"
    code, stdout, err = run_cli("text", "-s", pair[0], "--styled", pair[1], "-s", s2, "--styled", s2_styled,
                                "--text", "T", "-o", out, "--save-guides", guides, "-q")
    assert code == 0, err
    assert "2 example(s)" in stdout
    assert sorted(p.name for p in guides.iterdir()) == [".nst-written.jsonl", "source1_distance.png", "source2_distance.png",
                                                        "target_distance.png"]
    target = save(np.where(cross, 1.0, 0.0), tmp_path / "T.png")  # light on dark this time
    for mode, out_name, channels in (("synthesize", "syn.png", "RGB"), ("transparent", "alpha.png", "RGBA")):
        code, _, err = run_cli("text", "-s", pair[0], "--styled", pair[1], "--target", target, "-o",
                               tmp_path / out_name, "--background", mode, "-q", "--iterations", 3)
        assert code == 0, err
        picture = Image.open(tmp_path / out_name)
        assert picture.mode == channels and picture.size == (N, N)
    corner = np.asarray(Image.open(tmp_path / "syn.png"), np.float32)[:8, :8] / 255
    assert np.abs(corner - WHITE).max() < 0.1  # the synthesised ground is S′'s white ground


@pytest.mark.parametrize("case, message", [
    ("size", "differ in size"),
    ("plain", "no glyph found"),
    ("font", "font file not found"),
    ("empty", "empty text"),
    ("unpaired", "in pairs"),
    ("two_targets", "exactly one target"),
    ("jpeg_alpha", "no alpha channel"),
    ("bad_suffix", "unknown output format"),
    ("no_folder", "does not exist"),
])
def test_cli_errors_are_one_line(run_cli, pair, tmp_path, case, message):
    s, styled = pair
    out = tmp_path / "out.png"
    args = ["--source", s, "--styled", styled, "--text", "Hi", "-o", out, "-q"]
    if case == "size":
        args[3] = save(np.ones((N, N - 4, 3)), tmp_path / "small.png")
    elif case == "plain":
        args[1] = save(np.ones((N, N)), tmp_path / "plain.png")
    elif case == "font":
        args += ["--font", tmp_path / "missing.ttf"]
    elif case == "empty":
        args[5] = "  "
    elif case == "unpaired":
        args += ["--source", s]
    elif case == "two_targets":
        args += ["--target", s]
    elif case == "jpeg_alpha":
        args[7] = tmp_path / "out.jpg"
        args += ["--background", "transparent"]
    elif case == "bad_suffix":
        args[7] = tmp_path / "out.xyz"
    elif case == "no_folder":
        args[7] = tmp_path / "nope" / "out.png"
    code, _, err = run_cli("text", *args)
    assert code != 0
    assert message in one_error_line(err)
    assert not out.exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_synthesis_on_cuda_reproduces_the_effect(ring_transfer):
    s_mask, t_mask = ring_glyph(), cross_glyph()
    examples = [(distance_guide(s_mask), as_tensor(effect(signed_distance(s_mask))))]
    target = distance_guide(t_mask)
    params = EffectParams()
    plan = plan_transfer(examples, target, "keep", params)
    result = transfer(plan, target, "keep", params, device="cuda")[0]
    error = np.abs(result.numpy().transpose(1, 2, 0) - effect(signed_distance(t_mask))).mean(2)
    assert error.mean() < 0.03
