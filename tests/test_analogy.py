"""Deep image analogy: structure from A, appearance from B′, through the method registry and `nst analogy`."""
from __future__ import annotations

import numpy
import pytest
import torch
from conftest import gradient_image, one_error_line, stripes_image
from PIL import Image

from nst.core.patchmatch import identity_nnf
from nst.errors import UsageError
from nst.plugins.analogy.engine import AnalogyParams, flow_image, image_analogy, normalise_aspect, photo_refine

pytestmark = pytest.mark.usefixtures("one_thread")


def discs(h: int, w: int, background: torch.Tensor, colour, centres) -> tuple[torch.Tensor, torch.Tensor]:
    """(1, 3, H, W) image with filled discs of COLOUR on BACKGROUND (3, H, W), and the (H, W) disc mask."""
    y, x = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    mask = torch.zeros(h, w, dtype=torch.bool)
    for cy, cx, r in centres:
        mask |= (y - cy) ** 2 + (x - cx) ** 2 < r * r
    img = background.clone()
    img[:, mask] = torch.tensor(colour, dtype=torch.float)[:, None]
    return img[None], mask


def iou(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a & b).sum() / (a | b).sum()).item()


@pytest.fixture(scope="module")
def embedded_encoder():
    from nst.core.encoder import Encoder, load_vgg
    from nst.host import default_host

    return Encoder(load_vgg(default_host().weights(), "vgg19"), "max")


def test_a_prime_takes_b_primes_colours_where_a_has_its_shapes(embedded_encoder):
    y, x = torch.meshgrid(torch.arange(64), torch.arange(64), indexing="ij")
    grey = torch.full((3, 64, 64), 0.9)
    a, a_discs = discs(64, 64, grey, (0.1, 0.1, 0.1), [(20, 20, 10), (44, 40, 14)])
    texture = torch.stack([0.8 + 0.2 * torch.sin(x / 3.0), 0.6 + 0.3 * torch.sin(y / 4.0), 0.1 + 0 * x]).float()
    b_prime, b_disc = discs(64, 64, texture, (0.1, 0.2, 0.9), [(40, 16, 15)])
    r = image_analogy(embedded_encoder, a, b_prime, AnalogyParams(pm_iters=4, deconv_steps=10))
    # A′: B′'s blue disc colour exactly where A has discs, B′'s warm texture elsewhere
    blue = r.a_prime[0, 2] > r.a_prime[0, 0]
    assert iou(blue, a_discs) > 0.85
    palette = b_prime[0].reshape(3, -1).T
    assert torch.cdist(r.a_prime[0].reshape(3, -1).T, palette).min(1).values.mean() < 0.03
    # B: A's dark disc colour where B′ has its disc, A's light grey around it
    dark = r.b[0].mean(0) < 0.5
    assert iou(dark, b_disc) > 0.85
    assert r.nnf_ab.shape == (64, 64, 2) and r.nnf_ba.shape == (64, 64, 2)


def test_one_direction_skips_b(embedded_encoder):
    a = torch.rand(1, 3, 48, 40, generator=torch.Generator().manual_seed(0))
    b_prime = torch.rand(1, 3, 40, 48, generator=torch.Generator().manual_seed(1))
    r = image_analogy(embedded_encoder, a, b_prime, AnalogyParams(pm_iters=1, deconv_steps=2, both_directions=False))
    assert r.b is None and r.nnf_ba is None
    assert r.a_prime.shape == a.shape and r.nnf_ab[..., 0].max() < 40 and r.nnf_ab[..., 1].max() < 48


def test_photo_refinement_keeps_the_guides_edges():
    from kornia.filters import sobel

    guide = torch.from_numpy(numpy.array(gradient_image(64, 64))).permute(2, 0, 1)[None].float() / 255
    tinted = (guide * torch.tensor([0.6, 0.9, 1.2]).view(1, 3, 1, 1)).clamp(0, 1)  # the colours we want
    rough = torch.nn.functional.avg_pool2d(tinted, 5, 1, 2, count_include_pad=False)  # right colours, blurred edges
    refined = photo_refine(guide, rough)

    def edge_match(x: torch.Tensor) -> float:
        u, v = sobel(x).mean(1).flatten(), sobel(tinted).mean(1).flatten()
        return torch.corrcoef(torch.stack([u, v]))[0, 1].item()

    assert edge_match(rough) < 0.8 and edge_match(refined) > 0.95
    assert (refined - tinted).abs().mean() < 0.03  # colours stay the rough's


def test_flow_image_is_white_for_identity_and_coloured_for_a_shift():
    assert torch.allclose(flow_image(identity_nnf((8, 8)), (8, 8)), torch.ones(3, 8, 8))
    shifted = identity_nnf((8, 8)).flip(1)  # x reversed: strong horizontal offsets
    assert flow_image(shifted, (8, 8)).min() < 0.5


def test_aspect_ratios_far_apart_crop_b_prime_with_a_note():
    notes = []
    cropped = normalise_aspect(torch.rand(1, 3, 40, 40), torch.rand(1, 3, 30, 120), notes.append)
    assert cropped.shape[-2:] == (30, 30) and "aspect ratio" in notes[0]
    assert normalise_aspect(torch.rand(1, 3, 40, 40), torch.rand(1, 3, 30, 50), notes.append).shape[-2:] == (30, 50)


@pytest.mark.parametrize("params, message", [
    (dict(layers=("relu5_1", "relu9_9")), "not a VGG19 relu layer"),
    (dict(layers=("relu3_1", "relu4_1")), "deep to shallow"),
    (dict(alphas=(0.5,)), "one value per layer below the top"),
    (dict(alphas=(0.8, 0.7, 0.6, 1.5)), "lie in"),
    (dict(patch_sizes=(3, 3, 4, 5, 5)), "odd"),
    (dict(pm_iters=0), "^pm_iters: "),
])
def test_bad_parameters_are_named(params, message):
    with pytest.raises(UsageError, match=message):
        AnalogyParams(**params).validate()


@pytest.fixture
def pair(tmp_path):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    gradient_image(48, 40).save(a)
    stripes_image(40, 48).save(b)
    return a, b


def test_nst_analogy_writes_a_prime_b_and_both_fields(run_cli, pair, tiny_weights, tmp_path):
    out = tmp_path / "out"
    code, stdout, err = run_cli("analogy", *pair, "-o", out, "--size", 48, "--weights", tiny_weights,
                                "--pm-iters", 2, "--deconv-steps", 3, "-q")
    assert code == 0, err
    files = sorted(p.name for p in out.iterdir())
    assert files == [".nst-written.jsonl", "A_prime.png", "B.png", "nnf_A_to_B.png", "nnf_B_to_A.png"]
    assert Image.open(out / "A_prime.png").size == (48, 40) and Image.open(out / "B.png").size == (40, 48)
    assert "A_prime.png" in stdout
    before = (out / "A_prime.png").read_bytes()
    code, _, err = run_cli("analogy", *pair, "-o", out, "--size", 32, "--weights", tiny_weights, "-q")
    assert code == 2 and "--overwrite" in one_error_line(err) and (out / "A_prime.png").read_bytes() == before


def test_nst_analogy_one_direction_and_photo(run_cli, pair, tiny_weights, tmp_path):
    out = tmp_path / "out"
    code, _, err = run_cli("analogy", *pair, "-o", out, "--size", 48, "--weights", tiny_weights, "--one-direction",
                           "--photo", "--pm-iters", 1, "--deconv-steps", 0, "-q")
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == [".nst-written.jsonl", "A_prime.png", "nnf_A_to_B.png"]


def test_method_analogy_through_nst_run_with_snapshots_per_layer(run_cli, pair, tiny_weights, tmp_path):
    out = tmp_path / "a_prime.png"
    code, _, err = run_cli("run", *pair, "--method", "analogy", "-o", out, "--size", 48, "--weights", tiny_weights,
                           "--save-every", 1, "--set", "analogy.pm_iters=1", "--set", "analogy.deconv_steps=2", "-q")
    assert code == 0, err
    assert Image.open(out).size == (48, 40)
    assert len(list(tmp_path.glob("a_prime_step*.png"))) == 5  # one preview per layer


@pytest.mark.parametrize("args, message", [
    (["--alphas", "0.8,x"], "--alphas: expected a number (float), got 'x'"),
    (["--pm-iters", "0"], "--pm-iters: must be between 1 and 1000, got 0"),
    (["--alphas", "0.8,0.7,0.6,nan"], "--alphas: must be a finite number"),
    (["--layers", "relu5_1,conv4_1"], "--layers: 'conv4_1' is not a VGG19 relu layer"),
    (["--patch-sizes", "3,3"], "one value per layer"),
    (["--size", "24"], "too small for relu5_1"),
])
def test_bad_analogy_input_is_one_line(run_cli, pair, tiny_weights, tmp_path, args, message):
    code, _, err = run_cli("analogy", *pair, "-o", tmp_path / "out", "--weights", tiny_weights, "-q", *args)
    assert code == 2 and message in one_error_line(err)


def test_analogy_output_must_be_a_folder(run_cli, pair, tmp_path):
    existing = tmp_path / "file.png"
    existing.write_bytes(b"keep me")
    code, _, err = run_cli("analogy", *pair, "-o", existing)
    assert code == 2 and "must be a folder" in one_error_line(err)
    assert existing.read_bytes() == b"keep me"


def test_method_analogy_takes_one_appearance_image(run_cli, pair, tiny_weights, tmp_path):
    code, _, err = run_cli("run", pair[0], pair[1], pair[1], "--method", "analogy", "-o", tmp_path / "x.png",
                           "--weights", tiny_weights, "--size", 48, "-q")
    assert code == 2 and "exactly one appearance image" in one_error_line(err)


@pytest.mark.parametrize("hw", [(13, 96), (24, 96), (40, 20), (30, 30), (3, 200)])
def test_the_size_a_too_small_image_is_told_to_use_is_the_smallest_that_works(hw):
    """The message names the size that works for this image's aspect (not one computed from the wrong side)."""
    import re

    from nst.core.images import resize_long_side
    from nst.plugins.analogy.engine import check_size

    def at(side: int) -> tuple[int, int]:
        return tuple(resize_long_side(torch.zeros(1, 1, *hw), side).shape[-2:])

    with pytest.raises(UsageError) as info:
        check_size(hw, ("relu5_1",), (3,), "A")
    need = int(re.search(r"use a size of at least (\d+)", str(info.value)).group(1))
    check_size(at(need), ("relu5_1",), (3,), "A")  # fits
    with pytest.raises(UsageError):
        check_size(at(need - 1), ("relu5_1",), (3,), "A")
