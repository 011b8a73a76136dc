"""Built-in plugin `semantic`: region-to-region style transfer (Gatys et al. 2017 spatial control).

Regions come from colour-coded label maps (the same colour pairs a content region with a style
region), from an offline segmenter (k-means on colour + position) or from Segment Anything. Each
content region is matched to the Gram statistics of its partner region in each style; the term
replaces the global style term.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import torch
import torch.nn.functional as F
import typer

from nst.contract.hookspecs import hookimpl
from nst.core.images import image_writer
from nst.core.losses import guided_gram, guided_style_term, resize_masks
from nst.core.weights import WeightSource, read_tensors
from nst.errors import NSTError, UsageError

MAX_LABELS = 16
MIN_SHARE = 0.02  # colours covering less of a label map than this are JPEG noise / antialiased edges
MERGE_DISTANCE = 40  # RGB distance under which two label colours are one
PALETTE = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
           (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (220, 190, 255),
           (170, 110, 40), (255, 250, 200), (128, 0, 0), (170, 255, 195)]
MASK_BYTES_PER_PIXEL = 64  # the image, its labels and one-hot masks while a label map is made
SAM_URLS = {"vit_b": "sam_vit_b_01ec64.pth", "vit_l": "sam_vit_l_0b3195.pth", "vit_h": "sam_vit_h_4b8939.pth"}


@dataclass
class LabelMap:
    """labels: (H, W) long in [0, K); colours: the K RGB colours, in label order."""

    labels: torch.Tensor
    colours: list[tuple[int, int, int]]

    def masks(self) -> torch.Tensor:
        """(1, K, H, W) one-hot float masks."""
        return F.one_hot(self.labels, len(self.colours)).permute(2, 0, 1)[None].float()

    def image(self) -> np.ndarray:
        return np.asarray(self.colours, dtype=np.uint8)[self.labels.numpy()]


def read_label_map(path: Path, hw: tuple[int, int], note) -> LabelMap:
    """A colour-coded label map, resized (nearest) to HW, each pixel snapped to the nearest major colour."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img).convert("RGB")
    except FileNotFoundError:
        raise NSTError(f"{path}: mask file not found") from None
    except (UnidentifiedImageError, OSError):
        raise NSTError(f"{path}: the mask is not an image") from None
    arr = np.asarray(img).reshape(-1, 3).astype(np.int32)
    colours, counts = np.unique(arr, axis=0, return_counts=True)
    kept: list[np.ndarray] = []  # most frequent first; near-duplicates (JPEG noise) fold into them
    for i in np.argsort(-counts):
        if counts[i] < MIN_SHARE * len(arr):
            break
        if all(((colours[i] - k) ** 2).sum() > MERGE_DISTANCE ** 2 for k in kept):
            kept.append(colours[i])
    if not kept or len(kept) > MAX_LABELS:
        raise NSTError(f"{path}: label map has {len(colours)} colours and {len(kept)} regions (1 to {MAX_LABELS} "
                       "allowed); "
                       "paint regions in flat colours")
    major = np.asarray(kept)
    labels = ((arr[:, None, :] - major[None]) ** 2).sum(-1).argmin(1).reshape(img.height, img.width)
    labels = torch.from_numpy(labels).long()
    if img.size != (hw[1], hw[0]):
        note(f"{path.name}: mask is {img.width}x{img.height}, its image {hw[1]}x{hw[0]}; resized (nearest neighbour)")
        labels = F.interpolate(labels[None, None].float(), size=hw, mode="nearest")[0, 0].long()
    present = labels.unique()
    if len(present) < len(major):  # a region too small to survive the resize
        lost = [tuple(int(v) for v in major[i]) for i in range(len(major)) if i not in present]
        raise NSTError(f"{path}: region of colour {lost[0]} is empty at the image's size; enlarge it or remove it")
    return LabelMap(labels, [tuple(int(v) for v in c) for c in major])


def kmeans_label_map(image: torch.Tensor, k: int, seed: int = 0, iters: int = 20) -> LabelMap:
    """Offline segmenter: k-means on (Lab colour, position) at ≤ 64 px, labels upsampled (nearest)."""
    from kornia.color import rgb_to_lab

    from nst.core.images import resize_long_side

    small = resize_long_side(image.cpu(), min(64, max(image.shape[-2:])))
    h, w = small.shape[-2:]
    lab = rgb_to_lab(small)[0] / torch.tensor([100.0, 128.0, 128.0]).view(3, 1, 1)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    pts = torch.cat([lab, 0.5 * yy[None], 0.5 * xx[None]]).reshape(5, -1).t()
    g = torch.Generator().manual_seed(seed)
    centres = pts[torch.randperm(len(pts), generator=g)[:k]].clone()
    for _ in range(iters):
        assign = torch.cdist(pts, centres).argmin(1)
        for j in range(len(centres)):
            if (assign == j).any():
                centres[j] = pts[assign == j].mean(0)
    labels = torch.cdist(pts, centres).argmin(1).reshape(1, 1, h, w).float()
    labels = F.interpolate(labels, size=image.shape[-2:], mode="nearest")[0, 0].long()
    used = labels.unique()
    remap = torch.full((len(centres),), -1, dtype=torch.long)
    remap[used] = torch.arange(len(used))
    return LabelMap(remap[labels], PALETTE[: len(used)])


def load_sam(checkpoint: Path, model_type: str, device: torch.device):
    """A Segment Anything model of MODEL_TYPE with the weights of CHECKPOINT (strict)."""
    try:
        from segment_anything import sam_model_registry
    except ImportError:
        raise NSTError("semantic.segmenter=sam needs segment-anything: pip install segment-anything") from None
    if model_type not in SAM_URLS:
        raise UsageError(f"unknown SAM model '{model_type}' (vit_b, vit_l, vit_h)")
    sam = sam_model_registry[model_type]()
    try:
        sam.load_state_dict(read_tensors(Path(checkpoint)), strict=True)
    except RuntimeError:
        raise NSTError(f"{checkpoint}: not a SAM {model_type} checkpoint (keys or shapes differ; check "
                       "semantic.sam_model)") from None
    return sam.to(device).eval()


def sam_label_map(sam, image: torch.Tensor, max_regions: int, **generator_options) -> LabelMap:
    """Segment Anything's automatic masks, largest first, painted into at most MAX_REGIONS labels;
    pixels no mask covers form one more region."""
    from segment_anything import SamAutomaticMaskGenerator

    arr = (image[0].permute(1, 2, 0).clamp(0, 1).cpu().numpy() * 255).astype(np.uint8)
    found = SamAutomaticMaskGenerator(sam, **generator_options).generate(arr)
    labels = torch.full(arr.shape[:2], -1, dtype=torch.long)
    for i, m in enumerate(sorted(found, key=lambda d: -d["area"])[: max_regions - 1]):
        seg = torch.from_numpy(m["segmentation"]) & (labels < 0)
        labels[seg] = i
    rest = labels < 0
    labels[rest] = labels.max() + 1 if rest.any() else 0
    used = labels.unique()
    remap = torch.zeros(int(labels.max()) + 1, dtype=torch.long)
    remap[used] = torch.arange(len(used))
    return LabelMap(remap[labels], PALETTE[: len(used)])


def pair_by_colour(content: LabelMap, style: LabelMap, tolerance: int = MERGE_DISTANCE) -> list[int | None]:
    """For each content label, the style label of the nearest colour within TOLERANCE, else None."""
    out = []
    for c in content.colours:
        d = [sum((a - b) ** 2 for a, b in zip(c, s)) ** 0.5 for s in style.colours]
        best = int(np.argmin(d))
        out.append(best if d[best] <= tolerance else None)
    return out


def pair_by_features(content_feats: torch.Tensor, cmasks: torch.Tensor, style_feats: torch.Tensor,
                     smasks: torch.Tensor) -> list[int]:
    """Optimal assignment of content regions to style regions by cosine similarity of their mean
    features; content regions left over (more regions than the style has) take their most similar."""
    from scipy.optimize import linear_sum_assignment

    def means(f, m):
        m = resize_masks(m, tuple(f.shape[-2:]))[0]
        return torch.stack([(f[0] * r).sum((1, 2)) / r.sum().clamp_min(1e-8) for r in m])

    a, b = F.normalize(means(content_feats, cmasks), dim=1), F.normalize(means(style_feats, smasks), dim=1)
    sim = (a @ b.t()).numpy()
    rows, cols = linear_sum_assignment(-sim)
    pairs = [int(sim[i].argmax()) for i in range(len(sim))]
    for r, c in zip(rows, cols):
        pairs[r] = int(c)
    return pairs


def parse_pairs(items: list[str], kc: int, ks: int) -> dict[int, int]:
    """['0:1', '1:0'] -> {0: 1, 1: 0}, checked against KC content and KS style regions."""
    out = {}
    for item in items:
        try:
            c, s = (int(v) for v in item.split(":"))
        except ValueError:
            raise UsageError(f"semantic.pairs: expected CONTENT:STYLE region numbers like 0:1,1:0, got '{item}'") from None
        if not (0 <= c < kc and 0 <= s < ks):
            raise UsageError(f"semantic.pairs: {c}:{s} is out of range ({kc} content and {ks} style regions)")
        out[c] = s
    return out


def overlay(image: torch.Tensor, lm: LabelMap, colours: list[tuple[int, int, int]]):
    """Half the image, half the region colours (COLOURS indexed by label)."""
    from PIL import Image

    img = (image[0].permute(1, 2, 0).cpu().numpy() * 255).astype(np.float32)
    paint = np.asarray(colours, dtype=np.float32)[lm.labels.numpy()]
    return Image.fromarray((0.5 * img + 0.5 * paint).astype(np.uint8), "RGB")


def _segment(opts, image: torch.Tensor, device, note) -> LabelMap:
    if opts["segmenter"] == "sam":
        if opts["sam_checkpoint"] is None:
            raise UsageError("semantic.segmenter=sam needs semantic.sam_checkpoint=PATH (e.g. sam_vit_b_01ec64.pth; "
                             "see `nst weights`)")
        return sam_label_map(load_sam(opts["sam_checkpoint"], opts["sam_model"], device), image, opts["regions"])
    return kmeans_label_map(image, opts["regions"])


@hookimpl
def nst_plugin_options(register) -> None:
    register("content_mask", Path, None, "colour-coded label map of the content (same colour = paired region)")
    register("style_mask", list[Path], None, "label map(s) of the style image(s), comma-separated, one per style")
    register("segmenter", str, "auto", "without masks: auto (k-means on colour + position, offline) or sam", choices=("auto",
                                                                                                                      "sam"))
    register("regions", int, 3, "number of regions for the automatic segmenters", min=1, max=MAX_LABELS)
    register("sam_checkpoint", Path, None, "Segment Anything checkpoint file (.pth)")
    register("sam_model", str, "vit_b", "Segment Anything model type of the checkpoint", choices=tuple(SAM_URLS))
    register("pairs", list[str], [], "override the pairing: CONTENT:STYLE region numbers, e.g. 0:1,1:0")
    register("unpaired", str, "style", "a content region with no partner takes the whole style, or is an error",
             choices=("style", "error"))
    register("region_weights", list[float], None, "style weight per content region, comma-separated (default all 1)",
             min=0, max=1e6)
    register("save_masks", Path, None, "folder for overlays of the regions (paired regions share a colour)")


@hookimpl
def nst_register_weights(register) -> None:
    for model, name in SAM_URLS.items():
        register(WeightSource(name=f"sam-{model.replace('_', '-')}", kind="url", filename=name,
                              url=f"https://dl.fbaipublicfiles.com/segment_anything/{name}", sha256=None,
                              local_hint="--set semantic.sam_checkpoint=PATH",
                              description=f"Segment Anything {model} (Apache-2.0); only an MD5 prefix is published, so "
                                          "unpinned"))


@hookimpl
def nst_prepare(ctx, options):
    if ctx.mode != "run":
        raise UsageError("the semantic plugin works in runs (gatys), not in training")
    opts = options
    if opts["save_masks"] is not None:
        names = ["content_regions.png"] + [f"style{j + 1}_regions.png" for j in range(len(ctx.styles))]
        for name in names:
            ctx.outputs.reserve(opts["save_masks"] / name, make_folder=True)
    hw = tuple(ctx.content.shape[-2:])
    style_paths = opts["style_mask"] or []
    if (opts["content_mask"] is None) != (not style_paths):
        raise UsageError("give both semantic.content_mask and semantic.style_mask, or neither (automatic segmentation)")
    if style_paths and len(style_paths) != len(ctx.styles):
        raise UsageError(f"semantic.style_mask lists {len(style_paths)} file(s) for {len(ctx.styles)} style image(s)")
    if opts["content_mask"] is not None:
        content = read_label_map(opts["content_mask"], hw, ctx.note)
        styles = [read_label_map(p, tuple(s.shape[-2:]), ctx.note) for p, s in zip(style_paths, ctx.styles)]
        pairings = [pair_by_colour(content, s) for s in styles]
    else:
        content = _segment(opts, ctx.content, ctx.device, ctx.note)
        styles = [_segment(opts, s, ctx.device, ctx.note) for s in ctx.styles]
        enc = ctx.encoder()
        with torch.no_grad():
            cf = enc(ctx.content, ["relu3_1"])["relu3_1"].cpu()
            pairings = [pair_by_features(cf, content.masks(), enc(s, ["relu3_1"])["relu3_1"].cpu(), lm.masks())
                        for s, lm in zip(ctx.styles, styles)]
    for j, (lm, pairing) in enumerate(zip(styles, pairings)):
        for c, s in parse_pairs(opts["pairs"], len(content.colours), len(lm.colours)).items():
            pairing[c] = s
        for region, empty in enumerate(lm.masks()[0].sum((1, 2)) == 0):
            if empty:
                raise NSTError(f"style {j + 1}: region {region} is empty")
        if None in pairing and opts["unpaired"] == "error":
            raise NSTError(f"content region {pairing.index(None)} (colour {content.colours[pairing.index(None)]}) has "
                           f"no partner in style {j + 1}")
    weights = opts["region_weights"] or [1.0] * len(content.colours)
    if len(weights) != len(content.colours):
        raise UsageError(f"semantic.region_weights has {len(weights)} value(s) for {len(content.colours)} content "
                         "regions")
    ctx.summary["semantic pairing"] = "; ".join(
        f"style {j + 1}: " + ", ".join(f"{c}->{'whole style' if s is None else s}" for c, s in enumerate(p))
        for j, p in enumerate(pairings))
    if opts["save_masks"] is not None:
        _queue_overlays(opts["save_masks"], ctx, content, styles, pairings)
        ctx.summary["semantic masks"] = str(opts["save_masks"])
    return {"semantic.content": content, "semantic.styles": styles, "semantic.pairings": pairings,
            "semantic.weights": weights}


def _queue_overlays(folder: Path, ctx, content: LabelMap, styles: list[LabelMap], pairings) -> None:
    """Overlays of the regions, queued in ctx.outputs (written with the result)."""
    def queue(picture, name: str) -> None:
        ctx.outputs.add(folder / name, image_writer(picture, folder / name))

    queue(overlay(ctx.content, content, content.colours), "content_regions.png")
    for j, (img, lm, pairing) in enumerate(zip(ctx.styles, styles, pairings)):
        colours = [(128, 128, 128)] * len(lm.colours)  # style regions no content region uses stay grey
        for c, s in enumerate(pairing):
            if s is not None:
                colours[s] = content.colours[c]
        queue(overlay(img, lm, colours), f"style{j + 1}_regions.png")


@hookimpl
def nst_losses(ctx, encoder):
    """A 'style' term replacing the global one: a Gram per (content region, paired style region). nnst has no
    Gram term: it searches each region's neighbours in its partner region, from ctx.guides."""
    g, s = ctx.guides, ctx.settings
    if s.method == "nnst":
        return None
    layers = s.style_layers
    cmasks = g["semantic.content"].masks().to(ctx.device)
    targets = []  # per style: per content region: {layer: Gram}
    with torch.no_grad():
        for img, lm, pairing in zip(ctx.scale.styles, g["semantic.styles"], g["semantic.pairings"]):
            feats = encoder(img, layers)
            smasks = lm.masks().to(ctx.device)
            whole = torch.ones_like(smasks[:, :1])
            targets.append([{l: guided_gram(feats[l], resize_masks(whole if p is None else smasks[:, p:p + 1],
                                                                   tuple(feats[l].shape[-2:])))
                             for l in layers} for p in pairing])
    # the image keeps the scale's content size, so its layer masks are fixed for the whole scale
    hw = tuple(ctx.scale.content.shape[-2:])
    layer_masks = {l: resize_masks(cmasks, encoder.feature_size(hw, l)) for l in layers}
    return [guided_style_term(targets, layer_masks, g["semantic.weights"], ctx.style_weights, layers, s.style_weight)]


@hookimpl
def nst_register_commands(app) -> None:
    @app.command("masks", no_args_is_help=True)
    def masks_command(
        image: Annotated[Path, typer.Argument(help="Image to segment.", show_default=False)],
        output: Annotated[Path, typer.Option("--output", "-o", help="Colour-coded label map (PNG), editable and usable "
                                                                    "as semantic.content_mask / style_mask.",
                                                                    show_default=False)],
        segmenter: Annotated[str, typer.Option(help="auto (offline k-means) or sam.")] = "auto",
        regions: Annotated[int, typer.Option(help="Number of regions.")] = 3,
        sam_checkpoint: Annotated[Optional[Path], typer.Option(help="Segment Anything checkpoint, for --segmenter "
                                                                    "sam.")] = None,
        sam_model: Annotated[str, typer.Option(help="vit_b, vit_l or vit_h.")] = "vit_b",
        size: Annotated[int, typer.Option(help="Long side to work at (the label map has this size).")] = 512,
    ) -> None:
        """Make a label map of IMAGE to inspect or edit, then pass it to the semantic plugin."""
        from PIL import Image

        from nst.core.devices import check_memory, pick_device
        from nst.core.files import Outputs
        from nst.core.images import MAX_SIDE, check_output_path, load_image, resize_long_side
        from nst.errors import note_line

        if segmenter not in ("auto", "sam"):
            raise UsageError(f"--segmenter must be auto or sam, got '{segmenter}'")
        if not 1 <= regions <= MAX_LABELS:
            raise UsageError(f"--regions must be between 1 and {MAX_LABELS}, got {regions}")
        if not 16 <= size <= MAX_SIDE:
            raise UsageError(f"--size must be between 16 and {MAX_SIDE}, got {size}")
        check_memory(MASK_BYTES_PER_PIXEL * size * size, f"a {size} px label map", torch.device("cpu"), "use a smaller --size")
        outputs = Outputs([image, sam_checkpoint])
        outputs.reserve(check_output_path(output))
        img = resize_long_side(load_image(image, note_line), size)
        opts = {"segmenter": segmenter, "regions": regions, "sam_checkpoint": sam_checkpoint, "sam_model": sam_model}
        lm = _segment(opts, img, pick_device("auto"), note_line)
        outputs.add(output, image_writer(Image.fromarray(lm.image(), "RGB"), output))
        outputs.commit()
        typer.echo(f"wrote {output} ({len(lm.colours)} regions)")
