"""The `semantic` plugin: label maps, pairing, segmenters (k-means, a tiny Segment Anything) and the
region-wise style loss, which must give each content region its partner's statistics."""
import re

import numpy as np
import pytest
import torch
from conftest import one_error_line
from PIL import Image

import nst
from nst.core.losses import gram_matrix, guided_gram
from nst.plugins.semantic import regions as S

H, W = 48, 64
RED, BLUE, GREEN = (255, 0, 0), (0, 0, 255), (0, 255, 0)


@pytest.fixture
def scene(tmp_path):
    """Content: two grey-green halves with a little texture; style: a red top and a blue bottom (with
    white lines); label maps pairing content left <-> style top (red), right <-> bottom (blue)."""
    yy, xx = np.mgrid[0:H, 0:W]
    c = np.zeros((H, W, 3), np.float32)
    c[:] = (130, 150, 130)  # both halves alike: only the masks can tell them apart
    c = (c + 12 * np.sin(xx / 3)[..., None]).clip(0, 255).astype(np.uint8)
    s = np.zeros((64, 64, 3), np.uint8)
    s[:32], s[32:] = (230, 30, 30), (30, 30, 230)
    s[::4] = 255
    cm = np.zeros((H, W, 3), np.uint8)
    cm[:, :32], cm[:, 32:] = RED, BLUE
    sm = np.zeros((64, 64, 3), np.uint8)
    sm[:32], sm[32:] = RED, BLUE
    paths = {n: tmp_path / f"{n}.png" for n in ("content", "style", "cmask")}
    Image.fromarray(c).save(paths["content"])
    Image.fromarray(s).save(paths["style"])
    Image.fromarray(cm).save(paths["cmask"])
    paths["smask"] = tmp_path / "smask.jpg"
    Image.fromarray(sm).save(paths["smask"], quality=60)  # JPEG noise on purpose
    return paths


def redness(img: torch.Tensor, cols: slice) -> float:
    region = img[0, :, :, cols]
    return float(region[0].mean() - region[2].mean())


def run(scene, tiny_weights, **options):
    opts = {"content_mask": str(scene["cmask"]), "style_mask": [scene["smask"]], **options}
    return nst.run(scene["content"], [scene["style"]], plugins=["semantic"], options={"semantic": opts},
                   weights=str(tiny_weights), size=64, steps=40, content_weight=0.0, note=lambda m: None)


def test_regions_take_their_partners_statistics_and_swapping_swaps(scene, tiny_weights):
    plain = nst.run(scene["content"], [scene["style"]], weights=str(tiny_weights), size=64, steps=40,
                    content_weight=0.0, note=lambda m: None).image
    paired = run(scene, tiny_weights)
    swapped = run(scene, tiny_weights, pairs=["0:1", "1:0"]).image
    left, right = slice(0, 30), slice(34, 64)
    # the plain Gram cannot tell the alike halves apart; the semantic run gives each its partner's colour
    assert redness(paired.image, left) > 0.15 and redness(paired.image, right) < -0.15
    # (where a plain run ends depends on L-BFGS's path, which the memory layout's rounding changes: it may lean to
    # one colour, but it never splits the halves the way the masks ask)
    assert not (redness(plain, left) > 0.15 and redness(plain, right) < -0.15)
    assert redness(swapped, left) < -0.15 and redness(swapped, right) > 0.15
    assert paired.summary["semantic pairing"] == "style 1: 0 #0000ff->0, 1 #ff0000->1"  # content regions named by colour


def test_label_maps_tolerate_jpeg_noise_and_resize_with_a_note(scene):
    notes = []
    lm = S.read_label_map(scene["smask"], (32, 32), notes.append)
    assert len(lm.colours) == 2 and lm.labels.shape == (32, 32)
    assert notes and "resized (nearest neighbour)" in notes[0]
    content = S.read_label_map(scene["cmask"], (H, W), notes.append)
    assert S.pair_by_colour(content, lm) == [0, 1]


def test_label_map_errors(tmp_path, scene):
    many = tmp_path / "many.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)).save(many)
    with pytest.raises(nst.NSTError, match="colours"):
        S.read_label_map(many, (64, 64), print)
    text = tmp_path / "m.png"
    text.write_text("not an image")
    with pytest.raises(nst.NSTError, match="not an image"):
        S.read_label_map(text, (8, 8), print)


def test_unpaired_region_falls_back_or_errors(scene, tiny_weights, tmp_path, run_cli):
    cm = np.zeros((H, W, 3), np.uint8)
    cm[:, :32], cm[:, 32:] = RED, GREEN  # green has no partner in the style map
    scene["cmask"] = tmp_path / "green.png"
    Image.fromarray(cm).save(scene["cmask"])
    summary = run(scene, tiny_weights).summary["semantic pairing"]
    assert summary.count("->whole style") == 1 and summary.count("->") == 2
    code, _, err = run_cli("run", scene["content"], scene["style"], "-o", tmp_path / "o.png", "--weights", tiny_weights,
                           "--size", "64", "--steps", "1", "-q", "--plugin", "semantic",
                           "--set", f"semantic.content_mask={scene['cmask']}", "--set", f"semantic.style_mask={scene['smask']}",
                           "--set", "semantic.unpaired=error")
    assert code == 1 and "has no partner" in one_error_line(err)


def test_guided_gram_is_the_region_statistic():
    f = torch.rand(1, 3, 4, 4)
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., :2] = 1
    assert torch.allclose(guided_gram(f, mask), gram_matrix(f[..., :2]), atol=1e-6)
    assert torch.allclose(guided_gram(f, torch.ones(1, 1, 4, 4)), gram_matrix(f), atol=1e-6)


def test_kmeans_segmenter_finds_the_halves():
    img = torch.zeros(1, 3, 40, 60)
    img[:, 0, :, :30], img[:, 2, :, 30:] = 1, 1
    lm = S.kmeans_label_map(img, 2)
    assert len(lm.colours) == 2
    assert lm.labels[:, :28].unique().numel() == 1 and lm.labels[:, 32:].unique().numel() == 1
    assert lm.labels[0, 0] != lm.labels[0, -1]


def test_automatic_pairing_picks_the_obvious_partner():
    content = torch.zeros(1, 3, 8, 8)
    content[:, 0, :, :4], content[:, 2, :, 4:] = 1, 1  # left red, right blue
    style = torch.zeros(1, 3, 8, 8)
    style[:, 2, :4], style[:, 0, 4:] = 1, 1  # top blue, bottom red
    cm = torch.zeros(1, 2, 8, 8)
    cm[:, 0, :, :4], cm[:, 1, :, 4:] = 1, 1
    sm = torch.zeros(1, 2, 8, 8)
    sm[:, 0, :4], sm[:, 1, 4:] = 1, 1
    assert S.pair_by_features(content, cm, style, sm) == [1, 0]


def tiny_sam():
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    torch.manual_seed(0)
    img, patch, dim = 64, 16, 32
    return Sam(
        image_encoder=ImageEncoderViT(img_size=img, patch_size=patch, embed_dim=dim, depth=2, num_heads=2, out_chans=dim,
                                      global_attn_indexes=(1,), window_size=2),
        prompt_encoder=PromptEncoder(embed_dim=dim, image_embedding_size=(img // patch, img // patch),
                                     input_image_size=(img, img), mask_in_chans=8),
        mask_decoder=MaskDecoder(num_multimask_outputs=3, transformer_dim=dim, iou_head_depth=2, iou_head_hidden_dim=16,
                                 transformer=TwoWayTransformer(depth=1, embedding_dim=dim, mlp_dim=64, num_heads=2)),
    ).eval()


def test_sam_mask_generator_path_with_a_tiny_model():
    pytest.importorskip("segment_anything")
    img = torch.rand(1, 3, 48, 64)
    lm = S.sam_label_map(tiny_sam(), img, max_regions=4, points_per_side=4, pred_iou_thresh=0.0,
                         stability_score_thresh=0.0, points_per_batch=16)
    assert lm.labels.shape == (48, 64)
    assert 1 <= len(lm.colours) <= 4 and set(lm.labels.unique().tolist()) == set(range(len(lm.colours)))


def test_sam_checkpoint_for_another_model_type_is_one_line(tmp_path):
    pytest.importorskip("segment_anything")
    path = tmp_path / "tiny_sam.pth"
    torch.save(tiny_sam().state_dict(), path)
    with pytest.raises(nst.NSTError, match="not a SAM vit_b checkpoint"):
        S.load_sam(path, "vit_b", torch.device("cpu"))


def test_save_masks_overlays_share_colours_for_pairs(scene, tiny_weights, tmp_path):
    out = tmp_path / "masks"
    run(scene, tiny_weights, save_masks=str(out))
    assert sorted(p.name for p in out.glob("*.png")) == ["content_regions.png", "style1_regions.png"]


def test_masks_command_and_options(run_cli, scene, tmp_path):
    out = tmp_path / "labels.png"
    code, stdout, err = run_cli("masks", scene["content"], "-o", out, "--regions", "2", "--size", "64")
    assert code == 0, err
    lm = S.read_label_map(out, (H, W), print)
    assert len(lm.colours) == 2
    code, shown, _ = run_cli("plugins", "show", "semantic")
    for key in ("semantic.content_mask", "semantic.style_mask", "semantic.segmenter", "semantic.sam_checkpoint",
                "semantic.pairs", "semantic.save_masks"):
        assert key in shown
    code, _, err = run_cli("run", scene["content"], scene["style"], "-o", tmp_path / "o.png", "--size", "32", "--steps",
                           "1", "-q", "--plugin", "semantic", "--set", "semantic.segmenter=sam")
    assert code == 2 and "sam_checkpoint" in one_error_line(err)


def test_masks_of_a_content_and_its_style_pair_by_colour(run_cli, tiny_weights, tmp_path):
    """`nst masks CONTENT STYLE` colours each style region as its content partner, so a run pairs them by colour."""
    content = np.zeros((48, 64, 3), np.uint8)
    content[:, :32], content[:, 32:] = (200, 30, 30), (30, 30, 200)  # left red, right blue
    style = np.zeros((64, 64, 3), np.uint8)
    style[:32], style[32:] = (30, 30, 200), (200, 30, 30)  # top blue, bottom red
    paths = {n: tmp_path / f"{n}.png" for n in ("content", "style")}
    Image.fromarray(content).save(paths["content"])
    Image.fromarray(style).save(paths["style"])
    out = tmp_path / "maps"
    code, stdout, err = run_cli("masks", paths["content"], paths["style"], "-o", out, "--regions", "2", "--size", "64",
                                "--weights", tiny_weights)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == [".nst-written.jsonl", "content_labels.png", "legend.png",
                                                      "style_labels.png"]  # with the manifest of what nst wrote
    cmap, smap = (np.asarray(Image.open(out / n).convert("RGB")) for n in ("content_labels.png", "style_labels.png"))
    assert tuple(cmap[24, 5]) == tuple(smap[60, 32]) and tuple(cmap[24, 60]) == tuple(smap[5, 32])  # red-red, blue-blue
    assert tuple(cmap[24, 5]) != tuple(cmap[24, 60])
    names = {S.colour_name(tuple(int(v) for v in cmap[24, x])) for x in (5, 60)}
    for name in names:  # the pairing printed by colour, one line per colour
        assert re.search(rf"^\s+{name}\s+content 50%\s+style 50%\s+\(paired\)$", stdout, re.M), stdout
    assert "--set semantic.content_mask=" in stdout
    legend = Image.open(out / "legend.png")
    assert legend.width > 2 * 200 and legend.height > 200
    # a run reads the pair of maps and pairs every region by colour: left with the style's bottom, right with its top
    lc, ls = S.read_label_map(out / "content_labels.png", (48, 64), print), S.read_label_map(out / "style_labels.png", (64, 64), print)
    pairing = S.pair_by_colour(lc, ls)
    assert pairing[int(lc.labels[24, 5])] == int(ls.labels[60, 32]) and pairing[int(lc.labels[24, 60])] == int(ls.labels[5, 32])
    # maps already in the folder are kept unless --overwrite; a file name for -o is refused
    code, _, err = run_cli("masks", paths["content"], paths["style"], "-o", out, "--size", "64", "--weights", tiny_weights)
    assert code == 2 and "--overwrite" in one_error_line(err)
    code, _, err = run_cli("masks", paths["content"], paths["style"], "-o", out, "--size", "64", "--weights", tiny_weights,
                           "--overwrite", "--regions", "3")
    assert code == 0, err
    code, _, err = run_cli("masks", paths["content"], paths["style"], "-o", tmp_path / "pair.png", "--weights", tiny_weights)
    assert code == 2 and "names a folder" in one_error_line(err)


def test_fewer_style_regions_leave_content_regions_unpaired():
    content = S.LabelMap(torch.tensor([[0, 1, 2]]), S.PALETTE[:3])
    style = S.LabelMap(torch.tensor([[0, 1]]), S.PALETTE[:2])
    sim = np.array([[0.1, 0.9], [0.8, 0.2], [0.7, 0.6]])
    from nst.plugins.semantic.masks import UNUSED, pair_one_to_one, recolour

    pairing = pair_one_to_one(sim)
    assert pairing == [1, 0, None]
    assert recolour(style, content, pairing).colours == [S.PALETTE[1], S.PALETTE[0]]
    assert recolour(style, content, [None, None, None]).colours == [UNUSED, UNUSED]


def test_sam_messages_name_the_flag_the_user_has(run_cli, scene, tmp_path):
    pytest.importorskip("segment_anything")
    code, _, err = run_cli("masks", scene["content"], "-o", tmp_path / "m.png", "--segmenter", "sam")
    assert code == 2 and "--segmenter sam needs --sam-checkpoint PATH" in one_error_line(err)
    code, _, err = run_cli("masks", scene["content"], "-o", tmp_path / "m.png", "--segmenter", "sam",
                           "--sam-checkpoint", tmp_path / "missing.pth")
    assert code == 1 and one_error_line(err) == f"error: {tmp_path / 'missing.pth'}: no such file"
