"""Image loading (formats, EXIF, alpha, grayscale, 16-bit), resizing and atomic saving."""
import os

import numpy as np
import pytest
import torch
from PIL import Image

from nst.core import images as I
from nst.errors import NSTError


def write_png16(path, arr):
    """A minimal 16-bit RGB PNG writer (Pillow cannot write one)."""
    import struct
    import zlib

    h, w, _ = arr.shape
    chunk = lambda tag, data: struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))
    raw = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))
    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def rgb(w=20, h=10, color=(200, 100, 50)):
    return Image.new("RGB", (w, h), color)


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".tif", ".webp"])
def test_formats_load_as_rgb_float(tmp_path, suffix):
    path = tmp_path / f"x{suffix}"
    rgb().save(path)
    t = I.load_image(path)
    assert t.shape == (1, 3, 10, 20) and t.dtype == torch.float32
    assert t[0, 0].mean().item() == pytest.approx(200 / 255, abs=0.03)


def test_exif_orientation_is_honoured(tmp_path):
    img = rgb(20, 10)
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    path = tmp_path / "rot.jpg"
    img.save(path, exif=exif)
    assert I.load_image(path).shape == (1, 3, 20, 10)


def test_alpha_dropped_with_note(tmp_path):
    path = tmp_path / "a.png"
    Image.new("RGBA", (4, 4), (0, 0, 0, 0)).save(path)
    notes = []
    t = I.load_image(path, notes.append)
    assert t.shape == (1, 3, 4, 4) and t.min().item() == 1.0  # transparent -> white
    assert notes and "transparency" in notes[0]


def test_grayscale_becomes_rgb(tmp_path):
    path = tmp_path / "g.png"
    Image.new("L", (5, 3), 128).save(path)
    t = I.load_image(path)
    assert t.shape == (1, 3, 3, 5) and torch.allclose(t[0, 0], t[0, 2])


def test_16bit_grayscale_and_rgb_keep_precision(tmp_path):
    arr = np.full((4, 4), 40000, dtype=np.uint16)
    path = tmp_path / "g16.png"
    Image.fromarray(arr).save(path)
    assert I.load_image(path)[0, 0, 0, 0].item() == pytest.approx(40000 / 65535, abs=1e-4)
    rgb16 = np.full((4, 4, 3), 1000, dtype=np.uint16)
    rgb16[..., 0] = 65535
    path16 = tmp_path / "c16.png"
    write_png16(path16, rgb16)
    t = I.load_image(path16)
    assert t[0, 1, 0, 0].item() == pytest.approx(1000 / 65535, abs=1e-5)  # 8-bit would give 0 or 1/255
    assert t[0, 0, 0, 0].item() == pytest.approx(1.0)


@pytest.mark.parametrize("make,msg", [
    (lambda p: None, "no such file"),
    (lambda p: p.write_bytes(b""), "empty file"),
    (lambda p: p.write_text("hello, not an image"), "not an image"),
    (lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 30), "cannot read|not an image"),
])
def test_bad_inputs_give_one_line(tmp_path, make, msg):
    path = tmp_path / "bad.png"
    make(path)
    with pytest.raises(NSTError, match=msg) as err:
        I.load_image(path)
    assert "\n" not in str(err.value)


def test_truncated_jpeg(tmp_path):
    path = tmp_path / "t.jpg"
    rgb(64, 64).save(path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(NSTError):
        I.load_image(path)


def test_folder_is_not_an_image(tmp_path):
    with pytest.raises(NSTError, match="folder"):
        I.load_image(tmp_path)


def test_resize_long_side_keeps_aspect():
    t = torch.rand(1, 3, 30, 60)
    out = I.resize_long_side(t, 20)
    assert out.shape == (1, 3, 10, 20) and out.min() >= 0 and out.max() <= 1


def test_as_tensor_accepts_pil_tensor_path(tmp_path):
    path = tmp_path / "p.png"
    rgb().save(path)
    from_path = I.as_tensor(path)
    assert torch.allclose(I.as_tensor(rgb()), from_path)
    assert torch.equal(I.as_tensor(from_path[0]), from_path)
    with pytest.raises(NSTError, match="shape"):
        I.as_tensor(torch.rand(2, 3, 4, 4))
    with pytest.raises(NSTError, match="cannot use int"):
        I.as_tensor(5)


def test_save_roundtrip_and_format_from_suffix(tmp_path):
    t = torch.rand(1, 3, 8, 12)
    for suffix, fmt in [(".png", "PNG"), (".jpg", "JPEG"), (".webp", "WEBP"), (".tiff", "TIFF")]:
        out = I.save_image(t, tmp_path / f"o{suffix}")
        with Image.open(out) as img:
            assert img.format == fmt and img.size == (12, 8)
    png = I.load_image(tmp_path / "o.png")
    assert (png - t).abs().max() < 1 / 255 + 1e-6
    assert not list(tmp_path.glob("*.part*"))


@pytest.mark.parametrize("name,msg", [("o.xyz", "unknown output format"), ("missing/o.png", "does not exist")])
def test_bad_output_paths(tmp_path, name, msg):
    with pytest.raises(NSTError, match=msg):
        I.save_image(torch.rand(1, 3, 4, 4), tmp_path / name)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write to read-only folders")
def test_read_only_folder(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(NSTError, match="not writable"):
            I.save_image(torch.rand(1, 3, 4, 4), ro / "o.png")
    finally:
        ro.chmod(0o700)


def test_failed_save_leaves_old_file_and_no_temp(tmp_path, monkeypatch):
    out = tmp_path / "keep.png"
    out.write_bytes(b"old")

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", boom)
    with pytest.raises(NSTError, match="No space left"):
        I.save_image(torch.rand(1, 3, 4, 4), out)
    assert out.read_bytes() == b"old" and not list(tmp_path.glob("*.part*"))
