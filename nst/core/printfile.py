"""Output fit for print: 8- or 16-bit PNG and TIFF, the content's alpha channel and ICC profile carried over,
and the run's record (settings, nst version, seed, inputs) embedded in the file, readable back.

Where the record goes: PNG a tEXt chunk "nst"; TIFF the ImageDescription tag; JPEG the comment segment;
WebP and BMP carry none. 16-bit PNG is encoded here (Pillow writes 16 bits only for grey); TIFF goes through
tifffile when installed (16-bit needs it; 8-bit falls back to Pillow).
"""
from __future__ import annotations

import json
import os
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, PngImagePlugin

from nst.core.files import check_input_file
from nst.core.images import SAVE_FORMATS, resize, shrink_factor
from nst.errors import NSTError

KEY = "nst"  # PNG text keyword / the record's top-level key
DEEP_FORMATS = ("PNG", "TIFF")


@dataclass
class Extras:
    """What a content file carries besides its colours: ALPHA (1, 1, H, W) in [0, 1] or None, ICC profile bytes."""

    alpha: torch.Tensor | None = None
    icc: bytes | None = None


def read_extras(source, note: Callable[[str], None] = lambda _: None) -> Extras:
    """The alpha channel and ICC profile of SOURCE (a path or a PIL image; anything else has none). A profile
    that is not a valid ICC profile is left out, with a NOTE."""
    import warnings

    if not isinstance(source, (str, os.PathLike, Image.Image)):
        return Extras()
    limit = Image.MAX_IMAGE_PIXELS
    try:
        Image.MAX_IMAGE_PIXELS = None  # load_image's limits applied already
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = Image.open(source) if not isinstance(source, Image.Image) else source
            icc = img.info.get("icc_profile") or None
            alpha = None
            if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
                factor = shrink_factor(img.width * img.height)  # as load_image shrinks huge images
                band = ImageOps.exif_transpose(img).convert("RGBA").getchannel("A")
                band = band.reduce(factor) if factor > 1 else band
                alpha = torch.from_numpy(np.asarray(band, dtype=np.float32) / 255.0)[None, None]
    except Exception:
        return Extras()
    finally:
        Image.MAX_IMAGE_PIXELS = limit
    if icc is not None and not valid_icc(icc):
        name = Path(source).name if isinstance(source, (str, os.PathLike)) else "the content image"
        note(f"{name}: its embedded colour profile is not a valid ICC profile; the output is written without it")
        icc = None
    return Extras(alpha, icc)


def valid_icc(data: bytes) -> bool:
    """Whether DATA parses as an ICC profile (little CMS, through Pillow)."""
    from io import BytesIO

    from PIL import ImageCms

    try:
        ImageCms.ImageCmsProfile(BytesIO(data))
    except Exception:  # PyCMSError, OSError, TypeError: not a profile
        return False
    return True


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def encode_png16(pixels: np.ndarray, icc: bytes | None, text: str | None) -> bytes:
    """A 16-bit PNG of PIXELS (H, W, 3 or 4) uint16: RGB or RGBA, with an iCCP chunk and a tEXt 'nst' chunk."""
    h, w, c = pixels.shape
    raw = np.zeros((h, 1 + w * c * 2), dtype=np.uint8)  # filter byte 0 (none) per row
    raw[:, 1:] = pixels.astype(">u2").view(np.uint8).reshape(h, -1)
    out = [b"\x89PNG\r\n\x1a\n", _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 6 if c == 4 else 2, 0, 0, 0))]
    if icc:
        out.append(_chunk(b"iCCP", b"icc\x00\x00" + zlib.compress(icc)))
    if text is not None:
        out.append(_chunk(b"tEXt", KEY.encode() + b"\x00" + text.encode("latin-1")))
    out += [_chunk(b"IDAT", zlib.compress(raw.tobytes(), 6)), _chunk(b"IEND", b"")]
    return b"".join(out)


def _pixels(image: torch.Tensor, alpha: torch.Tensor | None, bits: int) -> np.ndarray:
    """(1, 3, H, W) in [0, 1] (+ alpha (1, 1, h, w), resized to H, W) -> (H, W, 3|4) uint8 or uint16."""
    t = image.detach().float().cpu()[0]
    if alpha is not None:
        t = torch.cat([t, resize(alpha.float(), tuple(t.shape[-2:]))[0]])
    top = 65535.0 if bits == 16 else 255.0
    arr = (t.clamp(0, 1) * top + 0.5).permute(1, 2, 0).numpy()  # new tensors: the caller's image stays as it is
    return np.ascontiguousarray(arr.astype(np.uint16 if bits == 16 else np.uint8))


def print_writer(image: torch.Tensor, path: str | Path, bits: int = 8, extras: Extras | None = None,
                 record: dict | None = None):
    """write(tmp) that encodes IMAGE (1, 3, H, W) in [0, 1] in PATH's format at BITS per channel (16: PNG, TIFF
    only), with EXTRAS (alpha where the format has it, ICC profile) and RECORD (JSON) embedded."""
    path = Path(path)
    fmt = SAVE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise NSTError(f"{path}: unknown output format '{path.suffix}' (use one of {', '.join(sorted(SAVE_FORMATS))})")
    check_depth(path, bits)
    extras = extras or Extras()
    alpha = extras.alpha if fmt in ("PNG", "TIFF", "WEBP") else None
    pixels = _pixels(image, alpha, bits)
    text = json.dumps({KEY: record}, default=str, ensure_ascii=True) if record is not None else None

    def write(tmp: Path) -> None:
        if fmt == "PNG" and bits == 16:
            tmp.write_bytes(encode_png16(pixels, extras.icc, text))
        elif fmt == "TIFF" and _has_tifffile():
            import tifffile

            tags = [(34675, "B", len(extras.icc), extras.icc, True)] if extras.icc else []
            tifffile.imwrite(tmp, pixels, photometric="rgb", compression="zlib", description=text, metadata=None,
                             extrasamples=["unassalpha"] if pixels.shape[2] == 4 else None, extratags=tags)
        else:
            pil = Image.fromarray(pixels, "RGBA" if pixels.shape[2] == 4 else "RGB")
            options: dict = {"icc_profile": extras.icc} if extras.icc else {}
            if fmt == "PNG" and text is not None:
                info = PngImagePlugin.PngInfo()
                info.add_text(KEY, text)
                options["pnginfo"] = info
            elif fmt == "TIFF" and text is not None:
                options["description"] = text
            elif fmt == "JPEG" and text is not None:
                options["comment"] = text
            if fmt in ("JPEG", "WEBP"):
                options["quality"] = 95
            pil.save(tmp, format=fmt, **options)

    return write


def _has_tifffile() -> bool:
    try:
        import tifffile  # noqa: F401
    except ImportError:
        return False
    return True


def check_depth(path: Path, bits: int) -> None:
    """Refuse a bit depth PATH's format cannot hold (before any work)."""
    fmt = SAVE_FORMATS.get(Path(path).suffix.lower())
    if bits == 16 and fmt not in DEEP_FORMATS:
        raise NSTError(f"{path}: 16-bit output needs a .png or .tif file, not {Path(path).suffix}")
    if bits == 16 and fmt == "TIFF" and not _has_tifffile():
        raise NSTError("16-bit TIFF output needs tifffile: pip install 'nst-suite[print]'")


def read_record(path: str | Path) -> dict | None:
    """The run record embedded in an image written by nst (None when it has none); one NSTError for a file
    that is not an image."""
    path = Path(path)
    check_input_file(path, "an image written by nst")
    if SAVE_FORMATS.get(path.suffix.lower()) == "TIFF" and _has_tifffile():
        import tifffile

        try:
            with tifffile.TiffFile(path) as tif:
                return _parse(tif.pages[0].description)
        except Exception:
            raise NSTError(f"{path}: not a TIFF file nst can read") from None
    try:
        with Image.open(path) as img:
            text = img.info.get(KEY) if img.format == "PNG" else None
            if img.format == "TIFF":
                text = img.tag_v2.get(270)
            elif img.format == "JPEG":
                comment = img.info.get("comment")
                text = comment.decode("latin-1") if isinstance(comment, bytes) else comment
    except Exception:
        raise NSTError(f"{path}: not an image file nst can read") from None
    return _parse(text)


def _parse(text: str | None) -> dict | None:
    """The record inside an embedded JSON TEXT, or None."""
    if not text:
        return None
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):  # not JSON, or nested beyond the parser's depth
        return None
    return data.get(KEY) if isinstance(data, dict) and isinstance(data.get(KEY), dict) else None
