"""Regions for the `semantic` plugin and `nst masks`: colour-coded label maps (read, made by k-means on colour and
position or by Segment Anything), colour names, and the pairing of content regions with style regions (by colour,
or by the similarity of their mean features)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from nst.core.files import check_input_file
from nst.core.losses import resize_masks
from nst.core.weights import read_tensors
from nst.errors import NSTError, UsageError

MAX_LABELS = 16
MIN_SHARE = 0.02  # colours covering less of a label map than this are JPEG noise / antialiased edges
MERGE_DISTANCE = 40  # RGB distance under which two label colours are one
PALETTE = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
           (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (220, 190, 255),
           (170, 110, 40), (255, 250, 200), (128, 0, 0), (170, 255, 195)]
PALETTE_NAMES = ["red", "green", "yellow", "blue", "orange", "purple", "cyan", "magenta", "lime", "pink", "teal",
                 "lavender", "brown", "beige", "maroon", "mint"]
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


def colour_name(rgb: tuple[int, int, int]) -> str:
    """A palette colour's name ('red'), any other colour as #rrggbb."""
    rgb = tuple(int(v) for v in rgb)
    return PALETTE_NAMES[PALETTE.index(rgb)] if rgb in PALETTE else "#{:02x}{:02x}{:02x}".format(*rgb)


def read_label_map(path: Path, hw: tuple[int, int], note) -> LabelMap:
    """A colour-coded label map, resized (nearest) to HW, each pixel snapped to the nearest major colour."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    check_input_file(path, "a label map")
    try:
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img).convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
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


def as_option(key: str, value: str) -> str:
    """How a run spells the semantic option KEY set to VALUE: semantic.KEY=VALUE."""
    return f"semantic.{key}={value}"


def load_sam(checkpoint: Path, model_type: str, device: torch.device, spell: Callable[[str, str], str] = as_option):
    """A Segment Anything model of MODEL_TYPE with the weights of CHECKPOINT (strict). SPELL(key, value) names an
    option as the user gives it (a run's semantic.KEY=VALUE, or a command's --key VALUE)."""
    try:
        from segment_anything import sam_model_registry
    except ImportError:
        raise NSTError(f"{spell('segmenter', 'sam')} needs segment-anything: pip install 'nst-suite[sam]'") from None
    if model_type not in SAM_URLS:
        raise UsageError(f"unknown SAM model '{model_type}' (vit_b, vit_l, vit_h)")
    sam = sam_model_registry[model_type]()
    try:
        sam.load_state_dict(read_tensors(Path(checkpoint)), strict=True)
    except RuntimeError:
        raise NSTError(f"{checkpoint}: not a SAM {model_type} checkpoint (keys or shapes differ; check "
                       f"{spell('sam_model', model_type)})") from None
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


def region_similarity(content_feats: torch.Tensor, cmasks: torch.Tensor, style_feats: torch.Tensor,
                      smasks: torch.Tensor) -> np.ndarray:
    """(Kc, Ks) cosine similarity of the regions' mean features: features (1, C, h, w), masks (1, K, H, W)."""
    def means(f, m):
        m = resize_masks(m, tuple(f.shape[-2:]))[0]
        return torch.stack([(f[0] * r).sum((1, 2)) / r.sum().clamp_min(1e-8) for r in m])

    a, b = F.normalize(means(content_feats, cmasks), dim=1), F.normalize(means(style_feats, smasks), dim=1)
    return (a @ b.t()).numpy()


def pair_by_features(content_feats: torch.Tensor, cmasks: torch.Tensor, style_feats: torch.Tensor,
                     smasks: torch.Tensor) -> list[int]:
    """Optimal assignment of content regions to style regions by cosine similarity of their mean
    features; content regions left over (more regions than the style has) take their most similar."""
    from scipy.optimize import linear_sum_assignment

    sim = region_similarity(content_feats, cmasks, style_feats, smasks)
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


def segment(opts, image: torch.Tensor, device, spell: Callable[[str, str], str] = as_option) -> LabelMap:
    """The label map of IMAGE (1, 3, H, W) made by opts["segmenter"] (auto: k-means, or sam); SPELL as for load_sam."""
    if opts["segmenter"] == "sam":
        if opts["sam_checkpoint"] is None:
            raise UsageError(f"{spell('segmenter', 'sam')} needs {spell('sam_checkpoint', 'PATH')} (e.g. "
                             "sam_vit_b_01ec64.pth; see `nst weights`)")
        sam = load_sam(opts["sam_checkpoint"], opts["sam_model"], device, spell)
        return sam_label_map(sam, image, opts["regions"])
    return kmeans_label_map(image, opts["regions"])
