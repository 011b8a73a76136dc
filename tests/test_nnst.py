"""--method nnst (Neural Neighbor Style Transfer): its parts against brute force and closed forms, its tiles against
the whole image, and its composition with semantic, stroke, --style-blend, --preserve-colors, print-size plans and
nst video; on tiny random VGG19 weights (test_cli has real-weight runs)."""

import numpy as np
import pytest
import torch
from PIL import Image

import nst
from nst.core.encoder import Encoder, VGGWeights
from nst.core.tiled_gatys import TiledLoss
from nst.errors import FieldError, UsageError
from nst.plugins.nnst import colour, search
from nst.plugins.nnst.engine import Guidance, Params, Targets, match, neighbour_term, positions, style_bank, tile_halo
from nst.plugins.nnst.features import (
    LAYERS,
    Crop,
    Padded,
    cell_sizes,
    cells,
    channels,
    grid_shape,
    hypercolumns,
)
from nst.plugins.nnst.pyramid import decompose, level_shapes, synthesise

pytestmark = pytest.mark.usefixtures("one_thread")
quiet = lambda m: None  # noqa: E731


@pytest.fixture(scope="module")
def encoder():
    from conftest import tiny_vgg_state

    return Encoder(VGGWeights(tiny_vgg_state(), "caffe"), "avg")


@pytest.fixture
def fast(tiny_weights):
    return dict(method="nnst", weights=str(tiny_weights), size=48, steps=6, note=quiet,
                options={"nnst": {"coarsest": 24}})


def flat_image(w: int, h: int, rgb) -> Image.Image:
    return Image.new("RGB", (w, h), tuple(rgb))


def halves(w: int, h: int, left, right, vertical: bool = True) -> Image.Image:
    arr = np.zeros((h, w, 3), np.uint8)
    if vertical:
        arr[:, : w // 2], arr[:, w // 2:] = left, right
    else:
        arr[: h // 2], arr[h // 2:] = left, right
    return Image.fromarray(arr, "RGB")


class Recorder:
    name = "nnst-recorder"

    def __init__(self):
        self.losses, self.styles = [], []

    @nst.hookimpl
    def nst_on_step(self, ctx, losses):
        self.losses.append(losses)
        self.styles.append(tuple(ctx.scale.styles[0].shape[-2:]))


# --- parts -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("hw", [(64, 48), (37, 53)])
def test_pyramid_round_trip_and_level_sizes(hw):
    x = torch.rand(1, 3, *hw, generator=torch.Generator().manual_seed(0))
    pyramid = decompose(x)
    assert [tuple(p.shape[-2:]) for p in pyramid] == level_shapes(hw)
    assert torch.allclose(synthesise(pyramid), x, atol=1e-6)
    assert torch.allclose(synthesise(pyramid[2:]), synthesise(decompose(synthesise(pyramid[2:]))), atol=1e-6)
    assert level_shapes(hw)[1] == (-(-hw[0] // 2), -(-hw[1] // 2))


def test_hypercolumns_stack_every_layer_on_the_quarter_grid(encoder):
    x = torch.rand(1, 3, 50, 38)
    feats = encoder(x, LAYERS)
    columns = hypercolumns(feats, LAYERS, grid_shape((50, 38)))
    channels = [feats[l].shape[1] for l in LAYERS]
    assert columns.shape == (1, sum(channels), 13, 10)
    at = sum(channels[: LAYERS.index("relu3_1")])  # relu3_1 is on the grid already: divided by its channel count
    assert torch.allclose(columns[:, at:at + channels[4]], feats["relu3_1"] / channels[4])
    at = 0  # relu1_1 (stride 1): the mean of each 4x4 cell, divided by its channel count
    assert torch.allclose(columns[0, :channels[0], 1, 2], feats["relu1_1"][0, :, 4:8, 8:12].mean((1, 2)) / channels[0])


def test_cells_stack_each_fine_layers_blocks(encoder):
    x = torch.rand(1, 3, 22, 17)
    feats = encoder(x, LAYERS)
    blocks = cells(feats, LAYERS, grid_shape((22, 17)))
    assert blocks.shape == (1, sum(cell_sizes(encoder, LAYERS)), 6, 5)
    c = feats["relu1_1"].shape[1]
    assert torch.allclose(blocks[0, :c * 16, 1, 2].view(c, 4, 4), feats["relu1_1"][0, :, 4:8, 8:12] / c)
    assert torch.allclose(blocks[0, :c * 16, 5, 4].view(c, 4, 4)[:, 1, 0], feats["relu1_1"][0, :, 21, 16] / c)  # edge


def test_padding_changes_only_the_border(encoder):
    x = torch.rand(1, 3, 64, 48)
    plain, padded = encoder(x, ["relu2_1"])["relu2_1"], Padded(encoder)(x, ["relu2_1"])["relu2_1"]
    assert padded.shape == plain.shape
    assert torch.allclose(padded[..., 8:-8, 8:-8], plain[..., 8:-8, 8:-8], rtol=1e-5, atol=1e-3)
    assert not torch.allclose(padded[..., 0, :], plain[..., 0, :])


def test_crop_passes_the_gradient_back_as_slicing_does():
    """Padded's crop: the same values and the same gradient as plain slicing, on NCHW and channels_last maps."""
    g = torch.Generator().manual_seed(3)
    for layout in (torch.contiguous_format, torch.channels_last):
        x = torch.rand(1, 5, 12, 10, generator=g).contiguous(memory_format=layout).requires_grad_(True)
        weight = torch.rand(1, 5, 7, 6, generator=g)
        (Crop.apply(x, (2, 9, 3, 9)) * weight).sum().backward()
        mine, x.grad = x.grad, None
        (x[..., 2:9, 3:9] * weight).sum().backward()
        assert torch.equal(mine, x.grad)


def test_nearest_is_the_brute_force_centred_cosine_argmax_in_any_chunking():
    g = torch.Generator().manual_seed(1)
    rows, queries = torch.rand(300, 8, generator=g), torch.rand(70, 8, generator=g)
    bank = search.make_bank([(0, 0, rows, None, None)], torch.float32)
    source = bank.sources[0]
    q = search.centre_queries(queries, queries.mean(0))
    centred = torch.nn.functional.normalize(bank.rows - source.mean, dim=1)
    expected = (q @ centred.t()).max(1)
    for chunk in (search.CHUNK_BYTES, 4 * 70 * 16):  # one chunk, and 16 bank rows at a time
        value, index = search.nearest(q, bank, 0, 300, source.mean, chunk)
        assert torch.equal(index, expected.indices) and torch.allclose(value, expected.values, atol=1e-5)


def test_balance_meets_the_shares_and_gives_each_query_where_it_fits():
    g = torch.Generator().manual_seed(2)
    scores = torch.rand(1000, 2, generator=g)
    choice = search.balance(scores, [0.7, 0.3])
    assert abs(float((choice == 0).float().mean()) - 0.7) < 0.01
    margin = scores[:, 0] - scores[:, 1]  # the queries given to painting 0 are those that prefer it most
    assert margin[choice == 0].min() >= margin[choice == 1].max() - 1e-6


def test_semantic_regions_draw_neighbours_only_from_their_partner(encoder):
    style = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    style_labels = torch.zeros(32, 32, dtype=torch.long)
    style_labels[:, 16:] = 1
    content_labels = torch.zeros(40, 40, dtype=torch.long)
    content_labels[20:] = 1
    guide = Guidance([1.0], content_labels, [style_labels], [[1, 0]])
    params = Params(rotate=True)
    bank = style_bank(encoder, [[style]], guide, params, torch.float32, 10 ** 6)
    where = positions(guide, (40, 40), "cpu", 0)
    index = match(encoder, torch.rand(1, 3, 40, 40), bank, where, guide, params).flatten()
    source = bank.sources[0]
    for region, partner in ((0, 1), (1, 0)):
        start, end = source.runs[partner]
        rows = index[where.region == region]
        assert len(rows) and ((rows >= start) & (rows < end)).all()


def test_blend_draws_neighbours_in_proportion(encoder):
    g = torch.Generator().manual_seed(4)
    styles = [torch.rand(1, 3, 32, 32, generator=g), torch.rand(1, 3, 32, 32, generator=g)]
    guide = Guidance([0.75, 0.25])
    params = Params(rotate=False)
    bank = style_bank(encoder, [styles], guide, params, torch.float32, 10 ** 6)
    index = match(encoder, torch.rand(1, 3, 64, 64, generator=g), bank, positions(guide, (64, 64), "cpu", 0),
                  guide, params)
    first = bank.sources[0]
    share = float(((index >= first.start) & (index < first.end)).float().mean())
    assert abs(share - 0.75) < 0.02


def test_stroke_levels_are_dithered_in_proportion():
    levels = torch.zeros(1, 2, 64, 64)
    levels[:, 0, :, :32], levels[:, 1, :, 32:] = 1, 1  # left: level 0, right: level 1
    levels[:, :, :32, :] = 0.5  # top half: an even mix
    where = positions(Guidance([1.0], levels=levels), (64, 64), "cpu", 0)
    level = where.level.view(16, 16).float()
    assert level[8:, :8].sum() == 0 and level[8:, 8:].mean() == 1
    assert 0.35 < level[:8].mean() < 0.65


def test_neighbour_term_in_tiles_equals_the_whole_image(encoder):
    """Loss and gradient of the neighbour term through TiledLoss equal one pass over the whole image."""
    g = torch.Generator().manual_seed(5)
    bank = style_bank(encoder, [[torch.rand(1, 3, 48, 48, generator=g)]], Guidance([1.0]), Params(), torch.float32,
                      10 ** 6)
    x = torch.rand(1, 3, 96, 80, generator=g)
    targets = Targets(torch.randint(0, len(bank.rows), grid_shape((96, 80)), generator=g))
    weight = torch.rand(grid_shape((96, 80)), generator=g)
    term = neighbour_term(bank, targets, LAYERS, weight, channels(encoder, LAYERS), cell_sizes(encoder, LAYERS))
    image = x.clone().requires_grad_(True)
    whole = term(encoder(image, LAYERS), image)
    whole.backward()
    total, _, grad = TiledLoss([term], encoder, (96, 80), 32, halo=tile_halo(LAYERS))(x)
    assert total.item() == pytest.approx(whole.item(), rel=1e-5)
    assert torch.allclose(grad, image.grad, atol=1e-5 * image.grad.abs().max())


def test_neighbour_term_is_the_cosine_of_hypercolumns_and_cells(encoder):
    """The term computed layer by layer equals its definition on the stacked hypercolumns and cells (a size that
    leaves partial edge blocks), with per-position weights."""
    g = torch.Generator().manual_seed(9)
    bank = style_bank(encoder, [[torch.rand(1, 3, 40, 44, generator=g)]], Guidance([1.0]), Params(), torch.float32,
                      10 ** 6)
    hw = (62, 53)
    x = torch.rand(1, 3, *hw, generator=g)
    targets = Targets(torch.randint(0, len(bank.rows), grid_shape(hw), generator=g))
    weight = torch.rand(grid_shape(hw), generator=g)
    sizes = cell_sizes(encoder, LAYERS)
    term = neighbour_term(bank, targets, LAYERS, weight, channels(encoder, LAYERS), sizes)
    feats = encoder(x, LAYERS)
    at = targets.index.flatten()
    columns = hypercolumns(feats, LAYERS, grid_shape(hw))[0].flatten(1).t()
    blocks = cells(feats, LAYERS, grid_shape(hw))[0].flatten(1).t()
    cost = 1 - torch.nn.functional.cosine_similarity(columns, bank.rows[at], dim=1)
    fine = sum(1 - torch.nn.functional.cosine_similarity(a, b.float(), dim=1)
               for a, b in zip(blocks.split(sizes, 1), bank.cells[at].split(sizes, 1))) / len(sizes)
    want = (weight.flatten() * 0.5 * (cost + fine)).sum() / weight.sum()
    assert term.fn(feats, x).item() == pytest.approx(want.item(), rel=1e-5)


def test_matching_in_tiles_equals_the_whole_image(encoder):
    g = torch.Generator().manual_seed(6)
    guide, params = Guidance([1.0]), Params(rotate=False)
    bank = style_bank(encoder, [[torch.rand(1, 3, 40, 40, generator=g)]], guide, params, torch.float32, 10 ** 6)
    query = torch.rand(1, 3, 96, 80, generator=g)
    where = positions(guide, (96, 80), "cpu", 0)
    whole = match(encoder, query, bank, where, guide, params)
    tiled = match(encoder, query, bank, where, guide, params, cell=32, halo=tile_halo(LAYERS))
    assert (whole == tiled).float().mean() > 0.999  # equal up to float ties


def test_bank_thins_a_large_painting_to_its_row_budget(encoder):
    style = torch.rand(1, 3, 64, 64)
    bank = style_bank(encoder, [[style]], Guidance([1.0]), Params(rotate=False), torch.float32, 64)
    assert 16 <= len(bank.rows) <= 64  # 256 grid positions, every 2nd row and column kept


def test_oklab_round_trip_and_known_values():
    x = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(7))
    assert torch.allclose(colour.from_oklab(colour.to_oklab(x)), x, atol=1e-4)
    white = colour.to_oklab(torch.ones(1, 3, 1, 1))[0, :, 0, 0]
    assert torch.allclose(white, torch.tensor([1.0, 0.0, 0.0]), atol=1e-3)  # OkLab: white is L 1, a = b = 0


def test_moment_matching_gives_the_target_mean_and_covariance():
    g = torch.Generator().manual_seed(8)
    x = torch.rand(1, 2, 20, 20, generator=g)
    target = torch.randn(1, 2, 10, 10, generator=g) * torch.tensor([0.3, 0.1]).view(1, 2, 1, 1) + 0.2
    out = colour.match_moments(x, target)
    flat, t = out[0].flatten(1).double(), target[0].flatten(1).double()
    assert torch.allclose(flat.mean(1), t.mean(1), atol=1e-5)
    assert torch.allclose(torch.cov(flat, correction=0), torch.cov(t, correction=0), atol=2e-4)


def test_guided_smoothing_keeps_lightness_edges():
    guide = torch.zeros(1, 1, 16, 16)
    guide[..., 8:] = 1.0  # a lightness edge down the middle
    values = torch.rand(1, 2, 16, 16, generator=torch.Generator().manual_seed(9))
    values[:, :, :, 8:] += 5
    out = colour.guided_smooth(values, guide)
    assert out[..., :8].max() < 1.1 and out[..., 8:].min() > 4.9  # nothing leaks across the edge
    assert out[..., :8].std() < 0.5 * values[..., :8].std()  # but each side is smoothed


# --- runs --------------------------------------------------------------------------------------------------------

def test_nnst_run_stylises_reports_every_step_and_lowers_its_loss(content_path, style_path, fast):
    rec = Recorder()
    result = nst.run(content_path, [style_path], plugins=[rec], **fast)
    image = result.image
    assert image.shape == (1, 3, 36, 48) and torch.isfinite(image).all()
    assert len(rec.losses) == 2 * 6  # two scales (24 and 48 px) of 6 steps
    first_scale = [l["style"] for l in rec.losses[:6]]
    assert first_scale[-1] < first_scale[0]
    again = nst.run(content_path, [style_path], **fast).image
    assert torch.equal(image, again)  # reproducible


def test_steps_go_to_the_first_scale_and_fewer_to_each_finer_one(content_path, style_path, fast):
    """--scales 0: --steps at the coarsest scale, half at each finer one (at least 20, or --steps when fewer);
    --scales N: --steps at each scale."""
    def per_scale(**settings):
        rec = Recorder()
        nst.run(content_path, [style_path], plugins=[rec], **{**fast, "size": 96, **settings})
        return len(rec.losses)

    assert per_scale(steps=44) == 44 + 22 + 20  # 24, 48 and 96 px
    assert per_scale(steps=6) == 3 * 6
    assert per_scale(steps=22, scales=3) == 3 * 22


def test_rematch_sets_how_often_the_neighbours_are_searched(content_path, style_path, fast):
    def matchings(rematch):
        options = {"nnst": {"coarsest": 48, "rematch": rematch}}
        summary = nst.run(content_path, [style_path], **{**fast, "steps": 7, "options": options}).summary
        return int(summary["nnst matching"].split()[0])

    assert matchings(0) == 1  # one scale, matched once
    assert matchings(2) in (3, 4)  # at steps 1, 3, 5 and 7, or 1, 3 and 7 when the neighbours settled


def test_alpha_one_keeps_more_of_the_content_than_alpha_zero(content_path, style_path, fast):
    from nst.core.images import load_image, resize

    content = resize(load_image(content_path), (36, 48))
    far = [float((nst.run(content_path, [style_path], **{**fast, "steps": 10, "options": {
        "nnst": {"coarsest": 24, "alpha": a, "colors": "none"}}}).image - content).abs().mean()) for a in (1.0, 0.0)]
    assert far[0] < far[1]


@pytest.mark.parametrize("which", ["content", "result"])
def test_colour_correction_gives_the_style_palette(content_path, style_path, fast, which):
    from nst.core.images import load_image

    result = nst.run(content_path, [style_path], **{**fast, "options": {"nnst": {"coarsest": 24, "colors": which}}})
    lab, style_lab = colour.to_oklab(result.image), colour.to_oklab(load_image(style_path))
    assert (lab[:, 1:].mean((2, 3)) - style_lab[:, 1:].mean((2, 3))).abs().max() < 0.03


def test_preserve_colors_luminance_keeps_the_content_chroma(content_path, style_path, fast):
    from kornia.color import rgb_to_ycbcr

    from nst.core.images import load_image, resize

    out = nst.run(content_path, [style_path], preserve_colors="luminance", **fast).image
    chroma = rgb_to_ycbcr(resize(load_image(content_path), tuple(out.shape[-2:])))[:, 1:]
    assert (rgb_to_ycbcr(out)[:, 1:] - chroma).abs().mean() < 0.02


def test_semantic_masks_pair_regions(tmp_path, fast):
    """Top half of the photo paired with the red half of the painting, bottom with the blue: the result follows."""
    red, blue = (220, 30, 30), (30, 30, 220)
    content, style = tmp_path / "c.png", tmp_path / "s.png"
    gradient = np.linspace(60, 200, 48, dtype=np.uint8)[None, :, None].repeat(48, 0).repeat(3, 2)
    Image.fromarray(gradient, "RGB").save(content)
    arr = np.asarray(halves(48, 48, red, blue)).copy()
    arr[::4] //= 2  # some texture
    Image.fromarray(arr).save(style)
    halves(48, 48, red, blue, vertical=False).save(tmp_path / "cm.png")
    halves(48, 48, red, blue).save(tmp_path / "sm.png")
    options = {"nnst": {"coarsest": 24, "colors": "none"},
               "semantic": {"content_mask": tmp_path / "cm.png", "style_mask": [tmp_path / "sm.png"]}}
    image = nst.run(content, [style], plugins=["semantic"], **{**fast, "steps": 20, "options": options}).image
    top, bottom = image[0, :, :24].mean((1, 2)), image[0, :, 24:].mean((1, 2))
    assert top[0] - top[2] > bottom[0] - bottom[2] + 0.2


def test_stroke_size_and_style_scale_size_the_painting(content_path, style_path, fast):
    rec = Recorder()
    nst.run(content_path, [style_path], plugins=[rec, "stroke"], **{**fast, "options": {
        "nnst": {"coarsest": 24}, "stroke": {"size": 32}}})
    assert max(rec.styles[0]) == 16 and max(rec.styles[-1]) == 32  # 32 px at 48 px, half of it at 24 px
    rec = Recorder()
    nst.run(content_path, [style_path], plugins=[rec], style_scale=0.5, **fast)
    assert max(rec.styles[-1]) == 24


def test_stroke_map_runs_with_two_sizes(content_path, style_path, fast, tmp_path):
    halves(48, 36, (0, 0, 0), (255, 255, 255)).save(tmp_path / "map.png")
    result = nst.run(content_path, [style_path], plugins=["stroke"], **{**fast, "options": {
        "nnst": {"coarsest": 24}, "stroke": {"map": tmp_path / "map.png", "sizes": [24, 64]}}})
    assert torch.isfinite(result.image).all()


def test_style_blend_moves_the_result_to_the_heavier_painting(content_path, tmp_path, fast):
    red, blue = tmp_path / "r.png", tmp_path / "b.png"
    halves(48, 48, (230, 40, 30), (160, 20, 20)).save(red)
    halves(48, 48, (30, 40, 230), (20, 20, 160)).save(blue)
    options = {"nnst": {"coarsest": 24, "colors": "none"}}

    def redness(blend):
        image = nst.run(content_path, [red, blue], style_blend=blend, **{**fast, "steps": 15, "options": options}).image
        return float(image[0, 0].mean() - image[0, 2].mean())

    assert redness([0.9, 0.1]) > redness([0.1, 0.9]) + 0.1


def test_plan_tiles_and_a_tiled_run_matches_the_untiled_one(content_path, style_path, fast):
    plan = nst.run(content_path, [style_path], plan=True, tile=16, **fast).plan
    assert plan.method == "nnst" and plan.scales[-1].cell == 16 and plan.scales[-1].tiles == 9
    whole = nst.run(content_path, [style_path], **fast).image
    tiled = nst.run(content_path, [style_path], tile=16, **fast).image
    assert (tiled - whole).abs().mean() < 2e-3


def test_a_plugin_start_image_and_loss_terms_join_nnst(content_path, style_path, fast):
    """nst video's temporal plugin: the warped previous frame as the start image and its loss term."""
    from nst.plugins.video.temporal import TemporalGatys

    warped = torch.full((1, 3, 36, 48), 0.5)
    rec = Recorder()
    plugin = TemporalGatys(warped, torch.ones(36, 48), torch.zeros(1, 3, 36, 48), 1e9)
    image = nst.run(content_path, [style_path], plugins=[plugin, rec], **{**fast, "options": {
        "nnst": {"coarsest": 24, "colors": "none"}}}).image
    assert "temporal" in rec.losses[-1]
    assert (image - 0.5).abs().mean() < 0.02  # the start image, held by an overwhelming temporal weight


def test_video_with_nnst_uses_the_temporal_start_and_loss(tmp_path, tiny_weights):
    from test_video import make_video, views

    from nst.plugins.video.engine import stylize_video

    clip = make_video(tmp_path / "c.mp4", views(48, 32, frames=2, noise=0), audio=False)
    style = tmp_path / "s.png"
    halves(32, 32, (200, 40, 40), (40, 40, 200)).save(style)
    rec = Recorder()
    out = stylize_video(clip, [style], tmp_path / "out", method="nnst", weights=str(tiny_weights), steps=3,
                        note=quiet, device="cpu", plugins=[rec], options={"nnst": {"coarsest": 24}})
    assert out.frames == 2 and "temporal" not in rec.losses[0] and "temporal" in rec.losses[-1]


@pytest.mark.parametrize("options, fragment", [
    ({"layers": ["conv1_1"]}, "nnst.layers"),
    ({"alpha": 1.5}, "nnst.alpha"),
    ({"colors": "sepia"}, "nnst.colors"),
])
def test_bad_options_are_named(content_path, style_path, fast, options, fragment):
    with pytest.raises((FieldError, UsageError), match=fragment.replace(".", r"\.")):
        nst.run(content_path, [style_path], **{**fast, "options": {"nnst": options}})


def test_cli_runs_nnst_and_lists_its_options(run_cli, content_path, style_path, tiny_weights, tmp_path):
    code, out, err = run_cli("run", content_path, style_path, "--method", "nnst", "--size", "32", "--steps", "2",
                             "--weights", tiny_weights, "--set", "nnst.coarsest=16", "-q", "-o", tmp_path / "o.png")
    assert code == 0 and (tmp_path / "o.png").is_file(), err
    code, out, _ = run_cli("plugins", "show", "nnst")
    assert code == 0 and all(k in out for k in ("alpha", "colors", "rematch", "rotate", "coarsest"))
    code, _, err = run_cli("run", content_path, style_path, "--method", "nnst", "--set", "nnst.alpha=2",
                           "-o", tmp_path / "p.png")
    from conftest import one_error_line

    assert code == 2 and "nnst.alpha" in one_error_line(err)

