"""Image I/O and resizing. Images are float tensors of shape (1, 3, H, W), RGB in [0, 1]."""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

from nst.core.files import atomic_path, check_input_file, check_writable
from nst.errors import NSTError

SAVE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF", ".webp": "WEBP", ".bmp": "BMP"}
MAX_SIDE = 16384
MIN_SIDE = 16  # a content under 16 px on a side has nothing left at the deep layers
MIN_SCALE_SIDE = 4  # coarse scales and style images may be smaller, down to this
WORK_PIXELS = 1 << 26  # images above 64 Mpx are shrunk by an integer factor on reading (with a note)
READ_PIXELS = 1 << 28  # ... and above 268 Mpx refused (unless JPEG, which decodes shrunk)
ORIENTATION = 0x0112  # the EXIF tag
RANGE_SLACK = 0.05  # tensor values this far outside [0, 1] are clamped; further is refused

Note = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


def _pil_to_tensor(img: Image.Image, name: str, note: Note) -> torch.Tensor:
    """PIL image in any mode -> float32 tensor (1, 3, H, W) in [0, 1]."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float32)
        scale = 65535.0 if arr.max(initial=0) > 255 or img.mode.startswith("I;16") else 255.0
        return torch.from_numpy(np.clip(arr / scale, 0, 1)).expand(1, 3, *arr.shape).contiguous()
    if img.mode == "F":
        arr = np.clip(np.asarray(img, dtype=np.float32), 0, 1)
        return torch.from_numpy(arr).expand(1, 3, *arr.shape).contiguous()
    has_alpha = img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)
    if has_alpha:
        note(f"{name}: transparency composited on white for the transfer (a content's alpha is put back on PNG, TIFF "
             "and WebP output)")
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba)
    rgb = torch.from_numpy(np.asarray(img if img.mode == "RGB" else img.convert("RGB")))  # (H, W, 3) uint8
    return rgb.permute(2, 0, 1)[None].contiguous().float().div_(255)


def _decode_png16(path: Path) -> np.ndarray | None:
    """(H, W, 3) in [0, 1] from a 16-bit RGB(A) PNG via torchvision (Pillow cuts RGB to 8 bits);
    alpha is composited on white. None if torchvision cannot decode it."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from torchvision.io import ImageReadMode, decode_png, read_file

        try:
            data = decode_png(read_file(str(path)), mode=ImageReadMode.UNCHANGED)
        except RuntimeError:
            return None
    if data.dtype != torch.uint16 or data.shape[0] not in (3, 4):
        return None
    arr = data.to(torch.float32).numpy().transpose(1, 2, 0) / 65535.0
    if arr.shape[2] == 4:
        alpha = arr[..., 3:]
        arr = arr[..., :3] * alpha + (1 - alpha)
    return arr


def shrink_factor(pixels: int) -> int:
    """The smallest power of two f with PIXELS / f² <= WORK_PIXELS."""
    f = 1
    while pixels / (f * f) > WORK_PIXELS:
        f *= 2
    return f


def _open_bounded(raw: Image.Image, path: Path, note: Note) -> Image.Image:
    """RAW decoded, shrunk on decode (JPEG draft) or right after (reduce) to at most WORK_PIXELS."""
    w, h = raw.size
    factor = shrink_factor(w * h)
    if factor > 1 and raw.format == "JPEG":
        raw.draft(raw.mode, (max(1, w // factor), max(1, h // factor)))
    elif w * h > READ_PIXELS:
        raise NSTError(f"{path}: image is {w}x{h} ({w * h / 1e6:.0f} Mpx), over nst's reading limit of "
                       f"{READ_PIXELS / 1e6:.0f} Mpx; shrink it first")
    img = ImageOps.exif_transpose(raw) if raw.getexif().get(ORIENTATION, 1) != 1 else raw
    img.load()
    factor = shrink_factor(img.width * img.height)
    if factor > 1:
        img = img.reduce(factor)
    if img.size != (w, h) and img.size != (h, w):
        note(f"{path.name}: {w}x{h} is over {WORK_PIXELS / 1e6:.0f} Mpx; read at {img.width}x{img.height}")
    return img


def load_image(path: str | os.PathLike, note: Note = _quiet) -> torch.Tensor:
    """Read an image file. Returns (1, 3, H, W) float32 RGB in [0, 1].

    Honours EXIF orientation, turns grayscale into RGB, drops alpha (with a note) and keeps 16-bit
    precision. Images over WORK_PIXELS are shrunk on reading (with a note), over READ_PIXELS refused.
    Raises NSTError with one clear line for anything that is not a readable image.
    """
    import warnings

    path = check_input_file(path, "an image")
    if path.stat().st_size == 0:
        raise NSTError(f"{path}: empty file (0 bytes)")
    limit = Image.MAX_IMAGE_PIXELS
    try:
        Image.MAX_IMAGE_PIXELS = None  # our own limits apply (above); Pillow's would warn or refuse first
        with warnings.catch_warnings(), Image.open(path) as raw:
            warnings.simplefilter("ignore")
            is_png16 = raw.format == "PNG" and raw.mode in ("RGB", "RGBA") and _png_bit_depth(path) == 16
            img = _open_bounded(raw, path, note)
            image = _pil_to_tensor(img, path.name, note)
            deep = _decode_png16(path) if is_png16 and img.size == raw.size else None
    except UnidentifiedImageError:
        raise NSTError(f"{path}: not an image file (or a format Pillow cannot read)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise NSTError(f"{path}: cannot read image ({exc})") from None
    except MemoryError:
        raise NSTError(f"{path}: not enough memory to decode this image") from None
    finally:
        Image.MAX_IMAGE_PIXELS = limit
    if deep is not None and deep.shape[:2] == image.shape[-2:]:
        image = torch.from_numpy(np.ascontiguousarray(deep)).permute(2, 0, 1)[None].contiguous()
    return image


def _png_bit_depth(path: Path) -> int:
    """Bit depth from the PNG IHDR chunk (byte 24)."""
    with open(path, "rb") as f:
        head = f.read(25)
    return head[24] if len(head) == 25 and head[:8] == b"\x89PNG\r\n\x1a\n" else 8


def _tensor_image(image: torch.Tensor) -> torch.Tensor:
    """A user's tensor -> (1, 3, H, W) float32 in [0, 1], or one clear NSTError."""
    shape = tuple(image.shape)
    if image.is_meta:
        raise NSTError(f"image tensor {shape} is on the meta device (it holds no data)")
    if image.dtype == torch.bool or (not image.is_floating_point() and image.dtype != torch.uint8):
        raise NSTError(f"image tensor of dtype {image.dtype}: give floats in [0, 1] or uint8 in 0..255")
    t = image.detach()
    t = t.float() / 255 if t.dtype == torch.uint8 else t.float()
    t = t.cpu()
    if t.dim() == 3:
        t = t[None]
    if t.dim() != 4 or t.shape[0] != 1 or t.shape[1] not in (1, 3):
        raise NSTError(f"image tensor must have shape (3, H, W) or (1, 3, H, W) (1 channel for grey), got {shape}")
    if t.numel() == 0:
        raise NSTError(f"image tensor is empty (shape {shape})")
    if not torch.isfinite(t).all():
        raise NSTError(f"image tensor {shape} contains NaN or inf values")
    lo, hi = float(t.min()), float(t.max())
    if lo < -RANGE_SLACK or hi > 1 + RANGE_SLACK:
        raise NSTError(f"image tensor values lie in [{lo:.3g}, {hi:.3g}]; nst expects [0, 1] (divide 0..255 values by "
                       "255, "
                       "or pass a uint8 tensor)")
    return t.expand(1, 3, *t.shape[2:]).clamp(0, 1).contiguous()


def as_tensor(image, note: Note = _quiet) -> torch.Tensor:
    """Path, PIL image or tensor ((3, H, W) or (1, 3, H, W) floats in [0, 1], or uint8 in 0..255)
    -> (1, 3, H, W) float32 on the CPU."""
    if isinstance(image, (str, os.PathLike)):
        return load_image(image, note)
    if isinstance(image, Image.Image):
        if image.width * image.height == 0:
            raise NSTError(f"PIL image is empty ({image.width}x{image.height})")
        return _pil_to_tensor(ImageOps.exif_transpose(image), "image", note)
    if isinstance(image, torch.Tensor):
        return _tensor_image(image)
    raise NSTError(f"cannot use {type(image).__name__} as an image (give a path, a PIL image or a tensor)")


def check_min_side(image: torch.Tensor, what: str, hint: str, minimum: int = MIN_SIDE) -> torch.Tensor:
    """IMAGE (.., H, W) unless a side is under MINIMUM px: then one NSTError naming WHAT, with HINT."""
    h, w = image.shape[-2:]
    if min(h, w) < minimum:
        raise NSTError(f"{what} would be {w}x{h} px, under the {minimum} px minimum on each side; {hint}")
    return image


def check_size(size: int) -> int:
    if not isinstance(size, int) or size < 16 or size > MAX_SIDE:
        raise NSTError(f"size {size} is out of range (16 to {MAX_SIDE} pixels on the long side)")
    return size


def resize_long_side(image: torch.Tensor, size: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, h, w) with max(h, w) == size, aspect kept, antialiased bicubic."""
    h, w = image.shape[-2:]
    scale = size / max(h, w)
    new = (max(1, round(h * scale)), max(1, round(w * scale)))
    return resize(image, new)


def resize(image: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, *hw), antialiased bicubic, values clamped to [0, 1]."""
    if tuple(image.shape[-2:]) == tuple(hw):
        return image
    planes = image.reshape(-1, 1, *image.shape[-2:])  # bicubic is per plane; torchvision's resize is this, slower to import
    out = F.interpolate(planes, size=tuple(hw), mode="bicubic", antialias=True, align_corners=False)
    return out.reshape(*image.shape[:-2], *out.shape[-2:]).clamp(0, 1)


def to_pil(image: torch.Tensor) -> Image.Image:
    """(1, 3, H, W) or (3, H, W) in [0, 1] -> 8-bit RGB PIL image."""
    t = image.detach().float().cpu().clamp(0, 1)
    if t.dim() == 4:
        t = t[0]
    arr = (t.permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)
    return Image.fromarray(arr, "RGB")


def check_output_path(path: str | os.PathLike, make_folder: bool = False) -> Path:
    """check_writable, and the suffix must name an image format we can save."""
    path = Path(path)
    if SAVE_FORMATS.get(path.suffix.lower()) is None:
        raise NSTError(f"{path}: unknown output format '{path.suffix}' (use one of {', '.join(sorted(SAVE_FORMATS))})")
    return check_writable(path, make_folder)


def image_writer(image: torch.Tensor | Image.Image, path: str | os.PathLike):
    """write(tmp) that encodes IMAGE ((1, 3, H, W) in [0, 1], or a PIL image) in the format of PATH's suffix."""
    path = Path(path)
    if SAVE_FORMATS.get(path.suffix.lower()) is None:
        raise NSTError(f"{path}: unknown output format '{path.suffix}' (use one of {', '.join(sorted(SAVE_FORMATS))})")
    pil = image if isinstance(image, Image.Image) else to_pil(image)
    fmt = SAVE_FORMATS[path.suffix.lower()]
    if fmt == "JPEG" and pil.mode != "RGB":
        pil = pil.convert("RGB")

    def write(tmp: Path) -> None:
        pil.save(tmp, format=fmt, **({"quality": 95} if fmt in ("JPEG", "WEBP") else {}))

    return write


def save_image(image: torch.Tensor | Image.Image, path: str | os.PathLike) -> Path:
    """Write atomically: a temp file in the target folder, then rename. Format from the suffix."""
    path = check_output_path(path)
    write = image_writer(image, path)
    try:
        with atomic_path(path) as tmp:
            write(tmp)
    except OSError as exc:
        raise NSTError(f"{path}: cannot write ({exc.strerror or exc})") from None
    return path
