"""Output fit for print: 16-bit PNG and TIFF, the content's alpha and ICC profile, the run record (nst info,
nst run --config-from)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import gradient_image, one_error_line
from PIL import Image, ImageCms

from nst.runtime.run_record import read_run_record


@pytest.fixture
def rgba_content(tmp_path):
    """A 64x48 content with a left-to-right alpha ramp and an sRGB ICC profile; (path, alpha, icc)."""
    arr = np.array(gradient_image(64, 48).convert("RGBA"))
    arr[..., 3] = np.linspace(0, 255, 64).astype(np.uint8)[None, :]
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    path = tmp_path / "content.png"
    Image.fromarray(arr, "RGBA").save(path, icc_profile=icc)
    return path, arr[..., 3], icc


def gatys(tiny_weights):
    return dict(size=64, steps=2, weights=str(tiny_weights), seed=5)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_png16_keeps_alpha_icc_and_records_the_run(rgba_content, style_path, tiny_weights, tmp_path):
    from torchvision.io import ImageReadMode, decode_png, read_file

    import nst

    content, alpha, icc = rgba_content
    out = tmp_path / "out.png"
    result = nst.run(content, [style_path], output=out, bit_depth=16, **gatys(tiny_weights))
    data = decode_png(read_file(str(out)), mode=ImageReadMode.UNCHANGED)
    assert data.dtype == torch.uint16 and data.shape == (4, 48, 64)
    expected = (result.image[0] * 65535 + 0.5).floor()
    assert (data[:3].float() - expected).abs().max() <= 1  # 16 bits kept, not 8 bits scaled up
    assert len(torch.unique(data[:3])) > 256
    assert (data[3].float() / 65535 - torch.from_numpy(alpha / 255.0)).abs().max() < 0.01
    with Image.open(out) as img:
        assert img.info["icc_profile"] == icc
    record = read_run_record(out)
    assert record.seed == 5 and record.settings["steps"] == 2 and record.settings["bit_depth"] == 16
    assert record.content == str(content.resolve()) and record.version == nst.__version__


def test_tiff16_with_alpha_icc_and_record(rgba_content, style_path, tiny_weights, tmp_path):
    import tifffile

    import nst

    content, _, icc = rgba_content
    out = tmp_path / "out.tif"
    nst.run(content, [style_path], output=out, bit_depth=16, **gatys(tiny_weights))
    with tifffile.TiffFile(out) as tif:
        page = tif.pages[0]
        assert page.asarray().dtype == np.uint16 and page.asarray().shape == (48, 64, 4)
        assert page.tags[34675].value == icc
    assert read_run_record(out).seed == 5


def test_info_and_config_from_repeat_the_run(run_cli, content_path, style_path, tiny_weights, tmp_path):
    first, again = tmp_path / "first.png", tmp_path / "again.png"
    code, _, err = run_cli("run", content_path, style_path, "-o", first, "--size", 48, "--steps", 2, "--seed", 7,
                           "--weights", tiny_weights, "--style-weight", 0.02, "-q")
    assert code == 0, err
    code, out, _ = run_cli("info", first)
    assert code == 0 and "seed 7" in out and "style_weight = 0.02" in out and f"content: {content_path.resolve()}" in out
    code, _, err = run_cli("run", "--config-from", first, "-o", again, "-q")
    assert code == 2 and "names files its run read" in one_error_line(err) and str(content_path.resolve()) in err
    code, _, err = run_cli("run", "--config-from", first, "-o", again, "-q", "--recorded-files")
    assert code == 0, err
    assert f"note: from {first}: CONTENT {content_path.resolve()}" in err and "--seed 7" in err
    assert np.array_equal(np.asarray(Image.open(first)), np.asarray(Image.open(again)))  # CPU runs are reproducible
    code, out, _ = run_cli("info", again)
    assert "seed 7" in out and "style_weight = 0.02" in out


def test_bad_print_requests_are_one_line(run_cli, content_path, style_path, tmp_path):
    code, _, err = run_cli("run", content_path, style_path, "-o", tmp_path / "o.jpg", "--bit-depth", 16)
    assert code == 1 and "16-bit output needs a .png or .tif" in one_error_line(err)
    plain = tmp_path / "plain.png"
    gradient_image(32, 32).save(plain)
    code, _, err = run_cli("info", plain)
    assert code == 1 and "holds no nst run record" in one_error_line(err)
    code, _, err = run_cli("run", "--config-from", plain, "-o", tmp_path / "x.png")
    assert code == 1 and "holds no nst run record" in one_error_line(err)
