"""Image I/O and resizing. Images are float tensors of shape (1, 3, H, W), RGB in [0, 1]."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image, ImageOps, UnidentifiedImageError

from nst.core.files import atomic_path
from nst.errors import NSTError

SAVE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF", ".webp": "WEBP", ".bmp": "BMP"}
MAX_SIDE = 16384

Note = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


def _pil_to_array(img: Image.Image, name: str, note: Note) -> np.ndarray:
    """PIL image in any mode -> float32 array (H, W, 3) in [0, 1]."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float32)
        scale = 65535.0 if arr.max(initial=0) > 255 or img.mode.startswith("I;16") else 255.0
        arr = np.clip(arr / scale, 0, 1)
        return np.repeat(arr[..., None], 3, axis=2)
    if img.mode == "F":
        arr = np.clip(np.asarray(img, dtype=np.float32), 0, 1)
        return np.repeat(arr[..., None], 3, axis=2)
    has_alpha = img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)
    if has_alpha:
        note(f"{name}: transparency dropped (composited on white)")
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba)
    return np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0


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


def load_image(path: str | os.PathLike, note: Note = _quiet) -> torch.Tensor:
    """Read an image file. Returns (1, 3, H, W) float32 RGB in [0, 1].

    Honours EXIF orientation, turns grayscale into RGB, drops alpha (with a note) and keeps 16-bit
    precision. Raises NSTError with one clear line for anything that is not a readable image.
    """
    path = Path(path)
    if not path.exists():
        raise NSTError(f"{path}: no such file")
    if path.is_dir():
        raise NSTError(f"{path}: is a folder, not an image")
    if path.stat().st_size == 0:
        raise NSTError(f"{path}: empty file (0 bytes)")
    try:
        with Image.open(path) as raw:
            is_png16 = raw.format == "PNG" and raw.mode in ("RGB", "RGBA") and _png_bit_depth(path) == 16
            img = ImageOps.exif_transpose(raw)
            img.load()
            arr = _pil_to_array(img, path.name, note)
    except UnidentifiedImageError:
        raise NSTError(f"{path}: not an image file (or a format Pillow cannot read)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise NSTError(f"{path}: cannot read image ({exc})") from None
    except Image.DecompressionBombError as exc:
        raise NSTError(f"{path}: image too large ({exc})") from None
    if is_png16:
        deep = _decode_png16(path)
        if deep is not None:
            arr = deep
    return torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1)[None].contiguous()


def _png_bit_depth(path: Path) -> int:
    """Bit depth from the PNG IHDR chunk (byte 24)."""
    with open(path, "rb") as f:
        head = f.read(25)
    return head[24] if len(head) == 25 and head[:8] == b"\x89PNG\r\n\x1a\n" else 8


def as_tensor(image, note: Note = _quiet) -> torch.Tensor:
    """Path, PIL image or tensor ((3, H, W) or (1, 3, H, W) in [0, 1]) -> (1, 3, H, W) float32."""
    if isinstance(image, (str, os.PathLike)):
        return load_image(image, note)
    if isinstance(image, Image.Image):
        return torch.from_numpy(_pil_to_array(ImageOps.exif_transpose(image), "image", note)).permute(2, 0, 1)[None].contiguous()
    if isinstance(image, torch.Tensor):
        t = image.detach().to(torch.float32)
        if t.dim() == 3:
            t = t[None]
        if t.dim() != 4 or t.shape[0] != 1 or t.shape[1] not in (1, 3):
            raise NSTError(f"image tensor must have shape (3, H, W) or (1, 3, H, W), got {tuple(image.shape)}")
        return t.expand(1, 3, *t.shape[2:]).clamp(0, 1).contiguous()
    raise NSTError(f"cannot use {type(image).__name__} as an image (give a path, a PIL image or a tensor)")


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
    return TF.resize(image, list(hw), interpolation=TF.InterpolationMode.BICUBIC, antialias=True).clamp(0, 1)


def to_pil(image: torch.Tensor) -> Image.Image:
    """(1, 3, H, W) or (3, H, W) in [0, 1] -> 8-bit RGB PIL image."""
    t = image.detach().float().cpu().clamp(0, 1)
    if t.dim() == 4:
        t = t[0]
    arr = (t.permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)
    return Image.fromarray(arr, "RGB")


def check_writable(path: str | os.PathLike) -> Path:
    """Fail early (before any work) if PATH cannot be written: missing or read-only folder, a folder."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise NSTError(f"{path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise NSTError(f"{path}: folder {folder} is not writable")
    if path.is_dir():
        raise NSTError(f"{path}: is a folder")
    return path


def check_output_path(path: str | os.PathLike) -> Path:
    """check_writable, and the suffix must name an image format we can save."""
    path = Path(path)
    if SAVE_FORMATS.get(path.suffix.lower()) is None:
        raise NSTError(f"{path}: unknown output format '{path.suffix}' (use one of {', '.join(sorted(SAVE_FORMATS))})")
    return check_writable(path)


def save_image(image: torch.Tensor | Image.Image, path: str | os.PathLike) -> Path:
    """Write atomically: a temp file in the target folder, then rename. Format from the suffix."""
    path = check_output_path(path)
    pil = image if isinstance(image, Image.Image) else to_pil(image)
    fmt = SAVE_FORMATS[path.suffix.lower()]
    if fmt == "JPEG" and pil.mode != "RGB":
        pil = pil.convert("RGB")
    try:
        with atomic_path(path) as tmp:
            pil.save(tmp, format=fmt, **({"quality": 95} if fmt in ("JPEG", "WEBP") else {}))
    except OSError as exc:
        raise NSTError(f"{path}: cannot write ({exc.strerror or exc})") from None
    return path
