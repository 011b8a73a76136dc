"""Hostile input, class by class: every command line below gives one `error:` line with the right exit code
and message, no traceback, no raw warning, no partial output, and leaves every file the user had unchanged.

The table runs the CLI in-process (tiny random VGG19, 32 px); a few classes need their own set-up (Ctrl-C in a
real process, training checkpoints, write failures) and follow the table.
"""
from __future__ import annotations

import hashlib
import os
import re
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import nst
from nst.core.johnson import TransformerNet, save_model
from nst.host import PluginHost

sys.path.insert(0, str(Path(__file__).parent))
from conftest import ctrl_c_reaches_it, error_after_notes, gradient_image, one_error_line, stripes_image  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


def glyph(path: Path, styled: bool = False) -> Path:
    """A ring glyph (dark on white), or its effect (a red ring on a pale ground)."""
    y, x = np.mgrid[0:64, 0:64] - 31.5
    ring = (np.hypot(y, x) > 12) & (np.hypot(y, x) < 22)
    arr = np.where(ring[..., None], [200, 30, 30] if styled else [0, 0, 0], [250, 245, 230] if styled else [255, 255, 255])
    Image.fromarray(arr.astype(np.uint8)).save(path)
    return path


def huge_png_header(path: Path, w: int, h: int) -> Path:
    """A PNG whose header claims W x H pixels (its data is a 1x1 image): tests refuse it before decoding."""
    raw = zlib.compress(b"\x00\x00\x00\x00")

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", raw) + chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="module")
def ws(tmp_path_factory, tiny_weights):
    """A user's folder: photos, paintings, a model, glyphs, links, odd files. Returns {name: path}."""
    root = tmp_path_factory.mktemp("ws")
    w = {"root": root, "weights": tiny_weights}
    gradient_image(48, 36).save(w.setdefault("content", root / "content.png"))
    stripes_image(48, 48).save(w.setdefault("style", root / "style.png"))
    (root / "photos").mkdir()
    gradient_image(40, 30, seed=1).save(root / "photos" / "a.jpg")
    gradient_image(40, 30, seed=2).save(root / "photos" / "a.png")
    gradient_image(40, 30, seed=3).save(root / "photos" / "b.png")
    w["photos"] = root / "photos"
    (root / "sub").mkdir()
    w["link"] = root / "link.png"
    w["link"].symlink_to(w["content"])
    w["hardlink"] = root / "hard.png"
    os.link(w["content"], w["hardlink"])
    w["model"] = save_model(TransformerNet(8, 1), root / "model.safetensors", {"style": "style.png"})
    nan_net = TransformerNet(8, 1)
    with torch.no_grad():
        nan_net.out[1].weight.fill_(float("nan"))
    w["nan_model"] = save_model(nan_net, root / "nan.safetensors", {"style": "x"})
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(1)}, str(root / "badmeta.safetensors"),
              metadata={"format": "nst-johnson", "arch_version": "1", "config": "{not json", "info": "{}"})
    w["badmeta"] = root / "badmeta.safetensors"
    w["source"], w["styled"] = glyph(root / "S.png"), glyph(root / "S2.png", styled=True)
    Image.new("RGB", (3, 600), (90, 120, 200)).save(w.setdefault("thin", root / "thin.png"))
    Image.new("RGB", (1, 1), (200, 60, 60)).save(w.setdefault("dot", root / "dot.png"))
    w["huge"] = huge_png_header(root / "huge.png", 20000, 20000)
    (root / "notes.txt").write_text("a user's file")
    w["file"] = root / "notes.txt"
    (root / "depthdir").mkdir()
    gradient_image(48, 36).save(w.setdefault("depth_content", root / "depthdir" / "depth_content.png"))
    (root / "out").mkdir()
    gradient_image(48, 36).save(w.setdefault("a_prime", root / "out" / "A_prime.png"))
    for name, text in {"nan.toml": "style_weight = nan\n", "clash.toml": 'output = "x.png"\n',
                       "host.toml": 'host = "x"\n', "plugstr.toml": 'plugins = "depth"\n', "table.toml": "[depth]\nweight = 1\n",
                       "text.toml": 'size = "64"\n'}.items():
        (root / name).write_text(text)
    w.update(crafted_records(root, tiny_weights, w["content"], w["style"]))
    return w


def record_image(path: Path, record) -> Path:
    """A PNG carrying RECORD (any JSON value) where nst keeps a run record."""
    import json

    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("nst", record if isinstance(record, str) else json.dumps({"nst": record}))
    gradient_image(40, 30, seed=5).save(path, pnginfo=info)
    return path


def crafted_records(root: Path, weights: Path, content: Path, style: Path) -> dict[str, Path]:
    """Images whose embedded run record a hostile user crafted: {name: path}. Each starts from a real record."""
    from nst.runtime.run_record import run_record
    from nst.settings import make_settings

    def made(**settings):
        values = {"size": 32, "steps": 1, "weights": str(weights), "device": "cpu", **settings}
        return run_record(make_settings(values), content, [style], [], {})

    def edited(change):
        record = made()
        change(record)
        return record

    records = {
        "rec_plain": made(weights="vgg19"),
        "rec_output": edited(lambda r: r["settings"].update(output="x.png")),
        "rec_host": edited(lambda r: r["settings"].update(host="y")),
        "rec_plugstr": edited(lambda r: r.update(plugins="semantic")),
        "rec_steps": edited(lambda r: r["settings"].update(steps=10 ** 9)),
        "rec_text": edited(lambda r: r["settings"].update(size="64")),
        "rec_list": edited(lambda r: r["settings"].update(size=[[1]])),
        "rec_opts": edited(lambda r: r.update(plugins=["semantic"], options={"semantic": "regions=4"})),
        "rec_optval": edited(lambda r: r.update(plugins=["semantic"], options={"semantic": {"regions": "many"}})),
        "rec_plugin": edited(lambda r: r.update(plugins=["nope"])),
        "rec_notdict": edited(lambda r: r.update(settings=[1, 2])),
        "rec_paths": edited(lambda r: r.update(plugins=["semantic"], options={"semantic": {
            "content_mask": str(root / "photos" / "a.png"), "style_mask": [str(root / "photos" / "b.png")]}})),
        "rec_escape": edited(lambda r: r.update(content=f"{root}/\x1b[2J\x1b]0;owned\x07[ab].png")),
    }
    found = {name: record_image(root / f"{name}.png", record) for name, record in records.items()}
    found["rec_deep"] = record_image(root / "rec_deep.png", '{"nst": ' + "[" * 100_000 + "]" * 100_000 + "}")
    return found


def digest(root: Path) -> dict[str, str]:
    """sha256 of every file under ROOT (symlinks by their target's content)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


RUN = ["--weights", "{weights}", "--size", "32", "--steps", "1", "-q", "--device", "cpu"]
OUT = "{root}/result.png"

# (case, class, command line ({name} from ws), exit code, fragment of the one error line)
CASES = [
    # an output that is an input
    ("run -o content", "output is input", ["run", "{content}", "{style}", "-o", "{content}", *RUN], 2, "is also an input"),
    ("run -o style", "output is input", ["run", "{content}", "{style}", "-o", "{style}", *RUN], 2, "is also an input"),
    ("run -o via ..", "output is input", ["run", "{content}", "{style}", "-o", "{root}/sub/../content.png", *RUN], 2, "is also an input"),
    ("run -o symlink", "output is input", ["run", "{content}", "{style}", "-o", "{link}", *RUN], 2, "is also an input"),
    ("run -o hard link", "output is input", ["run", "{content}", "{style}", "-o", "{hardlink}", *RUN], 2, "is also an input"),
    ("batch into its input folder", "output is input", ["run", "{photos}", "{style}", "-o", "{photos}", *RUN], 2, "is the folder of the input"),
    ("glob into its input folder", "output is input", ["run", "{photos}/*.jpg", "{style}", "-o", "{photos}", *RUN], 2, "is the folder of the input a.jpg"),
    ("analogy into A's folder", "output is input", ["analogy", "{a_prime}", "{style}", "-o", "{root}/out", "--weights", "{weights}",
                                                     "--size", "80", "-q"], 2, "is also an input"),
    ("side output is the content", "output is input", ["run", "{depth_content}", "{style}", "-o", OUT, "--plugin", "depth",
                                                       "--set", "depth.save={root}/depthdir", *RUN], 2, "is also an input"),
    ("masks -o image", "output is input", ["masks", "{content}", "-o", "{content}", "--size", "32"], 2, "is also an input"),
    ("depth -o image", "output is input", ["depth", "{content}", "-o", "{content}"], 2, "is also an input"),
    ("text -o styled", "output is input", ["text", "-s", "{source}", "--styled", "{styled}", "--text", "o", "-o", "{styled}", "-q"], 2, "is also an input"),
    ("text -o source", "output is input", ["text", "-s", "{source}", "--styled", "{styled}", "--text", "o", "-o", "{source}", "-q"], 2, "is also an input"),
    ("export onto the model", "output is input", ["export", "{model}", "--onnx", "{model}"], 2, "is also an input"),
    # numbers
    ("style weight nan", "numbers", ["run", "{content}", "{style}", "-o", OUT, *RUN, "--style-weight", "nan"], 2, "--style-weight: must be a finite number"),
    ("style weight inf", "numbers", ["run", "{content}", "{style}", "-o", OUT, *RUN, "--style-weight", "inf"], 2, "--style-weight: must be a finite number"),
    ("style weight negative", "numbers", ["run", "{content}", "{style}", "-o", OUT, *RUN, "--style-weight", "-1"], 2, "--style-weight: must be between 0 and"),
    ("content weight absurd", "numbers", ["run", "{content}", "{style}", "-o", OUT, *RUN, "--content-weight", "1e300"], 2, "--content-weight: must be between 0 and"),
    ("tv weight negative", "numbers", ["run", "{content}", "{style}", "-o", OUT, *RUN, "--tv-weight", "-5"], 2, "--tv-weight"),
    ("lr zero", "numbers", ["run", "{content}", "{style}", "-o", OUT, *RUN, "--lr", "0"], 2, "--lr: must be positive"),
    ("lr nan", "numbers", ["run", "{content}", "{style}", "-o", OUT, *RUN, "--lr", "nan"], 2, "--lr: must be a finite number"),
    ("seed negative", "numbers", ["run", "{content}", "{style}", "-o", OUT, *RUN, "--seed", "-1"], 2, "--seed: must be between 0 and"),
    ("seed overflow", "numbers", ["run", "{content}", "{style}", "-o", OUT, *RUN, "--seed", "99999999999999999999"], 2, "--seed"),
    ("steps zero", "numbers", ["run", "{content}", "{style}", "-o", OUT, *RUN, "--steps", "0"], 2, "--steps: must be between 1 and"),
    ("steps absurd", "numbers", ["run", "{content}", "{style}", "-o", OUT, *RUN, "--steps", "1000000000"], 2, "--steps: must be between 1 and"),
    ("size zero", "numbers", ["run", "{content}", "{style}", "-o", OUT, *RUN, "--size", "0"], 2, "--size: must be between 16 and 16384, got 0"),
    ("style scale nan", "numbers", ["run", "{content}", "{style}", "-o", OUT, *RUN, "--style-scale", "nan"], 2, "--style-scale: must be a finite number"),
    ("strength 2", "numbers", ["run", "{content}", "{style}", "-o", OUT, *RUN, "--strength", "2"], 2, "--strength: must be between 0 and 1"),
    ("blend nan", "numbers", ["run", "{content}", "{style}", "-o", OUT, *RUN, "--style-blend", "nan"], 2, "--style-blend: must be a finite number"),
    ("blend negative", "numbers", ["run", "{content}", "{style}", "{style}", "-o", OUT, *RUN, "--style-blend", "-1,2"], 2, "--style-blend: must be between 0 and"),
    ("blend text", "numbers", ["run", "{content}", "{style}", "-o", OUT, *RUN, "--style-blend", "1,x"], 2, "--style-blend: expected a number"),
    ("scales absurd", "numbers", ["run", "{content}", "{style}", "-o", OUT, *RUN, "--scales", "40"], 2, "--scales"),
    ("save every negative", "numbers", ["run", "{content}", "{style}", "-o", OUT, *RUN, "--save-every", "-1"], 2, "--save-every"),
    ("config nan", "numbers", ["run", "{content}", "{style}", "-o", OUT, *RUN, "--config", "{root}/nan.toml"], 2, "nan.toml: style_weight: must be a finite number"),
    ("config string for an int", "numbers", ["run", "{content}", "{style}", "-o", OUT, "--config", "{root}/text.toml", "-q"], 2, "text.toml: size: expected an integer"),
    ("plugin option nan", "numbers", ["run", "{content}", "{style}", "-o", OUT, *RUN, "--plugin", "depth", "--set", "depth.weight=nan"], 2, "depth.weight: must be a finite number"),
    ("plugin option negative", "numbers", ["run", "{content}", "{style}", "-o", OUT, *RUN, "--plugin", "stroke", "--set", "stroke.size=-5"], 2, "stroke.size: must be between 0 and"),
    ("train epochs nan", "numbers", ["train", "{style}", "--data", "{photos}", "-o", "{root}/m.safetensors", "--epochs", "nan"], 2, "--epochs: must be a finite number"),
    ("train epochs negative", "numbers", ["train", "{style}", "--data", "{photos}", "-o", "{root}/m.safetensors", "--epochs", "-1"], 2, "--epochs: must be between"),
    ("train style size", "numbers", ["train", "{style}", "--data", "{photos}", "-o", "{root}/m.safetensors", "--style-size", "100000"], 2, "--style-size: must be between 16 and"),
    ("train width", "numbers", ["train", "{style}", "--data", "{photos}", "-o", "{root}/m.safetensors", "--width", "100000"], 2, "--width: must be between 1 and"),
    ("train lr", "numbers", ["train", "{style}", "--data", "{photos}", "-o", "{root}/m.safetensors", "--lr", "-1"], 2, "--lr: must be positive"),
    ("train batch", "numbers", ["train", "{style}", "--data", "{photos}", "-o", "{root}/m.safetensors", "--batch-size", "0"], 2, "--batch-size: must be between 1"),
    ("text font size", "numbers", ["text", "-s", "{source}", "--styled", "{styled}", "--text", "o", "-o", OUT, "--font-size", "nan"], 2, "--font-size: must be a finite number"),
    ("text line spacing", "numbers", ["text", "-s", "{source}", "--styled", "{styled}", "--text", "o", "-o", OUT, "--line-spacing", "0"], 2, "--line-spacing: must be between"),
    ("text letter spacing", "numbers", ["text", "-s", "{source}", "--styled", "{styled}", "--text", "o", "-o", OUT, "--letter-spacing", "1e6"], 2, "--letter-spacing: must be between"),
    ("text patch size", "numbers", ["text", "-s", "{source}", "--styled", "{styled}", "--text", "o", "-o", OUT, "--patch-size", "4"], 2, "--patch-size: must be an odd number"),
    ("masks size", "numbers", ["masks", "{content}", "-o", OUT, "--size", "100000"], 2, "--size must be between 16 and"),
    ("masks regions", "numbers", ["masks", "{content}", "-o", OUT, "--regions", "0"], 2, "--regions must be between 1 and"),
    ("analogy pm iters", "numbers", ["analogy", "{content}", "{style}", "-o", "{root}/an", "--pm-iters", "0"], 2, "--pm-iters: must be between 1 and"),
    ("analogy alphas nan", "numbers", ["analogy", "{content}", "{style}", "-o", "{root}/an", "--alphas", "nan,1,1,1"], 2, "--alphas: must be a finite number"),
    ("analogy size", "numbers", ["analogy", "{content}", "{style}", "-o", "{root}/an", "--size", "0"], 2, "--size: must be between 16 and 16384, got 0"),
    ("export opset", "numbers", ["export", "{model}", "--onnx", "{root}/m.onnx", "--opset", "99"], 2, "--opset must be between"),
    # memory, before allocation
    ("gatys at 16384 px", "memory", ["run", "{content}", "{style}", "-o", OUT, "--weights", "{weights}", "--size", "16384", "-q", "--device", "cpu"], 1, "needs about"),
    ("analogy at 16384 px", "memory", ["analogy", "{content}", "{style}", "-o", "{root}/an", "--size", "16384", "--weights", "{weights}", "-q"], 1, "needs about"),
    ("training batch too large", "memory", ["train", "{style}", "--data", "{photos}", "-o", "{root}/m.safetensors", "--size", "2048",
                                            "--batch-size", "1024", "--weights", "{weights}", "-q", "--device", "cpu"], 1, "needs about"),
    ("text canvas too large", "memory", ["text", "-s", "{source}", "--styled", "{styled}", "--text", "o" * 400, "-o", OUT,
                                         "--font-size", "2000", "-q"], 1, "canvas"),
    ("image header over the limit", "memory", ["run", "{huge}", "{style}", "-o", OUT, *RUN], 1, "over nst's reading limit"),
    # degenerate images
    ("thin content", "degenerate", ["run", "{thin}", "{style}", "-o", OUT, *RUN], 1, "under the 16 px minimum"),
    ("thin style", "degenerate", ["run", "{content}", "{thin}", "-o", OUT, *RUN], 1, "under the 4 px minimum"),
    # the argument parser
    ("size not a number", "parser", ["run", "{content}", "{style}", "-o", OUT, "--size", "abc"], 2, "Invalid value for '--size'"),
    ("missing -o", "parser", ["run", "{content}", "{style}"], 2, "Missing option '--output'"),
    ("unknown command", "parser", ["fly"], 2, "No such command 'fly'"),
    ("unknown option", "parser", ["run", "{content}", "{style}", "-o", OUT, "--colour", "red"], 2, "No such option: --colour"),
    ("train without --data", "parser", ["train", "{style}", "-o", "{root}/m.safetensors"], 2, "Missing option '--data'"),
    # what reached "unexpected failure" before
    ("side folder names a file", "unexpected", ["text", "-s", "{source}", "--styled", "{styled}", "--text", "o", "-o", OUT,
                                                "--save-guides", "{file}", "-q"], 2, "--save-guides must be a folder"),
    ("side folder under a file", "unexpected", ["run", "{content}", "{style}", "-o", OUT, *RUN, "--plugin", "semantic",
                                                "--set", "semantic.save_masks={file}"], 1, "is a file, not a folder"),
    ("file name over 255 bytes", "unexpected", ["run", "{content}", "{style}", "-o", "{root}/" + "x" * 300 + ".png", *RUN], 1, "longer than 255 bytes"),
    ("model metadata not JSON", "unexpected", ["run", "{content}", "-o", OUT, "--method", "johnson", "--model", "{badmeta}", "-q"], 1, "damaged nst model file"),
    ("model with NaN weights", "unexpected", ["run", "{content}", "-o", OUT, "--method", "johnson", "--model", "{nan_model}", "-q"], 1, "not finite"),
    ("config key output", "unexpected", ["run", "{content}", "{style}", "-o", OUT, "--config", "{root}/clash.toml", "-q"], 2, "unknown setting 'output'"),
    ("config key host", "unexpected", ["run", "{content}", "{style}", "-o", OUT, "--config", "{root}/host.toml", "-q"], 2, "unknown setting 'host'"),
    ("config plugins as a string", "unexpected", ["run", "{content}", "{style}", "-o", OUT, "--config", "{root}/plugstr.toml", "-q"], 2, "plugins must be a list"),
    ("config unknown table", "unexpected", ["run", "{content}", "{style}", "-o", OUT, "--config", "{root}/table.toml", "-q"], 2, "unknown table [depth]"),
    ("train resume without checkpoint", "unexpected", ["train", "{style}", "--data", "{photos}", "-o", "{root}/m.safetensors", "--resume", "--weights", "{weights}", "-q"], 1, "no checkpoint"),
    # a run record read back: data, checked as the flags are, naming the file and the field
    ("record key output", "records", ["run", "--config-from", "{rec_output}", "-o", OUT, "-q"], 2, "rec_output.png: unknown setting 'output'"),
    ("record key host", "records", ["run", "--config-from", "{rec_host}", "-o", OUT, "-q"], 2, "rec_host.png: unknown setting 'host'"),
    ("record plugins a string", "records", ["run", "--config-from", "{rec_plugstr}", "-o", OUT, "-q"], 2, "rec_plugstr.png: plugins: expected a list of plugin names"),
    ("record steps absurd", "records", ["run", "--config-from", "{rec_steps}", "-o", OUT, "-q"], 2, "rec_steps.png: steps: must be between 1 and 1000000, got 1000000000"),
    ("record size as text", "records", ["run", "--config-from", "{rec_text}", "-o", OUT, "-q"], 2, "rec_text.png: size: expected an integer"),
    ("record size a nested list", "records", ["run", "--config-from", "{rec_list}", "-o", OUT, "-q"], 2, "rec_list.png: size: expected a number"),
    ("record options not tables", "records", ["run", "--config-from", "{rec_opts}", "-o", OUT, "-q"], 2, "rec_opts.png: options: expected one table"),
    ("record option value", "records", ["run", "--config-from", "{rec_optval}", "-o", OUT, "-q"], 2, "rec_optval.png: semantic.regions: expected an integer"),
    ("record unknown plugin", "records", ["run", "--config-from", "{rec_plugin}", "-o", OUT, "-q"], 2, "rec_plugin.png: unknown plugin 'nope'"),
    ("record settings a list", "records", ["run", "--config-from", "{rec_notdict}", "-o", OUT, "-q"], 1, "holds no nst run record"),
    ("record nested past the parser", "records", ["run", "--config-from", "{rec_deep}", "-o", OUT, "-q"], 1, "holds no nst run record"),
    ("record names files", "records", ["run", "{content}", "{style}", "--config-from", "{rec_paths}", "-o", OUT, "-q"], 2, "names files its run read (--weights"),
    ("record paths escaped", "records", ["run", "--config-from", "{rec_escape}", "-o", OUT, "-q"], 2, "CONTENT /"),
    ("record onto itself", "records", ["run", "--config-from", "{rec_plain}", "-o", "{rec_plain}", "-q"], 2, "is also an input"),
    ("info of a damaged record", "records", ["info", "{rec_plugstr}"], 2, "rec_plugstr.png: plugins: expected a list"),
    ("recorded files alone", "records", ["run", "{content}", "{style}", "-o", OUT, "--recorded-files", *RUN], 2, "--recorded-files goes with --config-from"),
    # messages: the flag as typed, the real value, the real limit
    ("strength just over 1", "messages", ["run", "{content}", "{style}", "-o", OUT, *RUN, "--strength", "1.0000001"], 2, "--strength: must be between 0 and 1, got 1.0000001"),
    ("blend weights per style", "messages", ["run", "{content}", "{style}", "-o", OUT, *RUN, "--style-blend", "1,1,1"], 2, "--style-blend: has 3 weight(s) for 1 style image(s)"),
    ("memory over 1PB", "messages", ["run", "{content}", "{style}", "-o", OUT, *RUN, "--max-memory", "2PB"], 2, "2PB is out of range (64MB to 1PB"),
    ("a folder as the model", "messages", ["run", "{content}", "-o", OUT, "--method", "johnson", "--model", "{photos}", "-q"], 1, "photos: is a folder, not a model file"),
    ("a folder as the weights", "messages", ["run", "{content}", "{style}", "-o", OUT, "--size", "32", "--weights", "{photos}", "-q"], 1, "photos: is a folder, not a weights file"),
    ("a folder replayed", "messages", ["run", "--config-from", "{photos}", "-o", OUT], 1, "photos: is a folder, not an image written by nst"),
    ("a folder as training data file", "messages", ["train", "{style}", "--data", "{file}", "-o", "{root}/m.safetensors"], 1, "notes.txt: is a file, not a folder of training photos"),
    ("control characters in a path", "messages", ["run", "{root}/\x1b[2Jx.png", "{style}", "-o", OUT, *RUN], 1, "\\x1b[2Jx.png"),
    # text
    ("emoji in the default font", "text", ["text", "-s", "{source}", "--styled", "{styled}", "--text", "hi \U0001F600", "-o", OUT, "-q"], 1, "has no glyph for '\U0001F600'"),
    ("CJK in the default font", "text", ["text", "-s", "{source}", "--styled", "{styled}", "--text", "\u6f22\u5b57", "-o", OUT, "-q"], 1, "has no glyph for"),
]


@pytest.mark.parametrize("case, kind, argv, code, fragment", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gives_one_line_and_changes_nothing(ws, run_cli, case, kind, argv, code, fragment):
    before = digest(ws["root"])
    args = [a.format(**ws) for a in argv]
    got, _, err = run_cli(*args)
    line = one_error_line(err.replace("\n\n", "\n"))  # only that line (notes are allowed before it)
    assert got == code and fragment in line, (case, got, err)
    assert "Warning" not in err, err
    assert "\x1b" not in err and "\x07" not in err, err  # text from files and paths reaches the terminal escaped
    assert digest(ws["root"]) == before, f"{case}: files changed"
    assert not list(ws["root"].rglob("*.part*")) and not (ws["root"] / "result.png").exists()


def test_table_covers_every_class():
    counts = {}
    for _, kind, *_ in CASES:
        counts[kind] = counts.get(kind, 0) + 1
    assert set(counts) == {"output is input", "numbers", "memory", "degenerate", "parser", "unexpected", "text", "records",
                           "messages"}


# --- images that decode huge, or are tiny ----------------------------------------------------------------------------

def test_a_decompression_bomb_is_shrunk_on_reading_without_a_warning(ws, run_cli, tmp_path):
    bomb = tmp_path / "bomb.png"
    Image.new("L", (10000, 10000), 128).save(bomb)  # 100 Mpx, a few hundred KB on disk
    assert bomb.stat().st_size < 1_000_000
    out = tmp_path / "o.png"
    code, _, err = run_cli("run", bomb, ws["style"], "-o", out, *[a.format(**ws) for a in RUN])
    assert code == 0, err
    assert "read at 5000x5000" in err and "Warning" not in err and "Decompression" not in err


def test_a_one_pixel_content_works(ws, run_cli, tmp_path):
    out = tmp_path / "dot.png"
    code, _, err = run_cli("run", ws["dot"], ws["style"], "-o", out, *[a.format(**ws) for a in RUN])
    assert code == 0, err
    assert Image.open(out).size == (32, 32)


# --- batches: names that cannot clash, existing results kept -------------------------------------------------------

def test_batch_names_cannot_clash_and_are_reported(ws, run_cli, tmp_path, tiny_weights):
    out = tmp_path / "styled"
    model = ws["model"]
    code, stdout, err = run_cli("run", ws["photos"], "-o", out, "--method", "johnson", "--model", model, "--size", 32, "-q")
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == [".nst-written.jsonl", "a_jpg.png", "a_png.png", "b.png"]
    for src, dst in (("a.jpg", "a_jpg.png"), ("a.png", "a_png.png"), ("b.png", "b.png")):
        assert f"{ws['photos'] / src} -> {out / dst}" in stdout
    before = digest(out)
    code, _, err = run_cli("run", ws["photos"], "-o", out, "--method", "johnson", "--model", model, "--size", 32, "-q")
    assert code == 2 and "3 result(s) already exist" in one_error_line(err) and digest(out) == before
    code, _, err = run_cli("run", ws["photos"], "-o", out, "--method", "johnson", "--model", model, "--size", 32, "-q",
                           "--overwrite")
    assert code == 0, err
    (out / "b.png").write_bytes(b"the user's own b.png")  # not what nst wrote: --overwrite leaves it alone
    code, _, err = run_cli("run", ws["photos"], "-o", out, "--method", "johnson", "--model", model, "--size", 32, "-q",
                           "--overwrite")
    assert code == 2 and "was not written there by nst" in one_error_line(err)
    assert (out / "b.png").read_bytes() == b"the user's own b.png"


# --- a run record replays settings only; what it names is shown, what writes files is never taken -------------------

def test_a_record_replays_settings_only(ws, run_cli, tmp_path):
    from nst.runtime.run_record import run_record
    from nst.settings import make_settings

    evil, snaps = tmp_path / "evil", tmp_path / "o_step0001.png"
    settings = make_settings({"size": 32, "steps": 1000000, "weights": str(ws["weights"]), "device": "cpu", "save_every": 1})
    record = run_record(settings, ws["content"], [ws["style"]], ["semantic"],
                        {"semantic": {"save_masks": str(evil), "regions": 2}})
    crafted = record_image(tmp_path / "crafted.png", record)
    before = digest(ws["root"])
    code, _, err = run_cli("run", "--config-from", crafted, "-o", tmp_path / "o.png", "-q")  # inputs and weights asked for
    line = one_error_line(err)
    assert code == 2 and f"CONTENT {ws['content'].resolve()}" in line and f"--weights {ws['weights'].resolve()}" in line
    assert not (tmp_path / "o.png").exists()
    code, out, err = run_cli("run", "--config-from", crafted, "-o", tmp_path / "o.png", "-q", "--recorded-files", "--plan")
    assert code == 0, err
    notes = [line for line in err.splitlines() if line.startswith("note: ")]
    assert f"note: from {crafted}: CONTENT {ws['content'].resolve()}" in notes  # each file is shown before it is used
    assert f"note: from {crafted}: --weights {ws['weights'].resolve()}" in notes
    assert any("not replayed, as they write files: --save-every 1, semantic.save_masks" in n for n in notes)
    assert any(n.startswith(f"note: replaying {crafted}: --size 32, --steps 1000000") for n in notes)  # seen before it starts
    code, out, err = run_cli("run", ws["content"], ws["style"], "--config-from", crafted, "-o", tmp_path / "o.png", "-q",
                             "--weights", ws["weights"], "--steps", "1")  # the user names the files: no confirmation needed
    assert code == 0, err
    assert "semantic pairing" in out  # the record's plugin took part
    assert not evil.exists() and not snaps.exists() and digest(ws["root"]) == before


def test_recorded_paths_are_used_as_written_never_as_patterns(ws, run_cli, tmp_path):
    from nst.runtime.run_record import run_record
    from nst.settings import make_settings

    record = run_record(make_settings({"size": 32, "steps": 1, "device": "cpu"}), ws["photos"] / "[ab].png", [ws["style"]],
                        [], {})
    crafted = record_image(tmp_path / "glob.png", record)
    code, _, err = run_cli("run", "--config-from", crafted, "-o", tmp_path / "out.png", "-q", "--recorded-files")
    assert code == 1 and error_after_notes(err) == f"error: {ws['photos'] / '[ab].png'}: no such file"
    assert not (tmp_path / "out.png").exists()
    code, out, _ = run_cli("info", crafted)
    assert code == 0 and f"content: {ws['photos'] / '[ab].png'}" in out


def test_info_prints_text_from_the_file_escaped(ws, run_cli):
    code, out, err = run_cli("info", ws["rec_escape"])
    assert code == 0, err
    assert "\x1b" not in out and "\x07" not in out and "\\x1b[2J\\x1b]0;owned\\x07[ab].png" in out


# --- nst deletes or replaces only what it made ------------------------------------------------------------------------

def test_overwrite_removes_and_replaces_only_what_nst_wrote(ws, run_cli, tmp_path):
    from nst.bench import bench
    from nst.core.files import Manifest

    # a folder nst wrote into, then tampered with: a crafted manifest naming files outside, above and changed
    folder, outside = tmp_path / "report", tmp_path / "keep.txt"
    (folder / "images").mkdir(parents=True)
    outside.write_text("the user's")
    (folder / "images" / "holiday.jpg").write_bytes(b"the user's photo")
    (folder / "results.json").write_text("{}")
    (folder / "link.txt").symlink_to(outside)
    lines = [{"file": "../keep.txt", "sha256": "0" * 64}, {"file": str(outside), "sha256": "0" * 64},
             {"file": "link.txt", "sha256": __import__("hashlib").sha256(b"the user's").hexdigest()},
             {"file": "images/holiday.jpg", "sha256": "f" * 64}, "not an entry", {"file": 5}]
    (folder / ".nst-written.jsonl").write_text("\n".join(__import__("json").dumps(x) for x in lines) + "\n{broken")
    before, around = digest(folder), digest(tmp_path)
    assert Manifest(folder).remove_written() and digest(tmp_path) == around  # nothing it lists is nst's
    kw = dict(quick=True, device="cpu", methods=["gatys"], sizes=[32], steps=2, weights=str(ws["weights"]), progress=False,
              note=lambda m: None)
    for extra, fragment in ((dict(overwrite=True), "holds files nst did not write"),
                            (dict(resume=True), "holds files nst did not write"),
                            (dict(overwrite=True, photos=folder / "images"), "inside the report folder")):
        with pytest.raises(nst.UsageError, match=fragment):
            bench(folder, **kw, **extra)
        assert digest(folder) == before and outside.read_text() == "the user's"
    (folder / ".nst-written.jsonl").unlink()
    (folder / ".nst-written.jsonl").symlink_to(outside)  # nst must never append its list to another file
    with pytest.raises(nst.UsageError, match="not such a list"):
        bench(folder, **kw, overwrite=True)
    assert outside.read_text() == "the user's"

    # side outputs in a folder the user gave: a file of that name is the user's unless nst wrote it there
    masks = tmp_path / "masks"
    masks.mkdir()
    (masks / "content_regions.png").write_bytes(b"the user's drawing")
    run = ["run", ws["content"], ws["style"], "-o", tmp_path / "o.png", "--weights", ws["weights"], "--size", "32",
           "--steps", "1", "-q", "--device", "cpu", "--plugin", "semantic", "--set", f"semantic.save_masks={masks}"]
    for flags, fragment in (([], "exists; add --overwrite"), (["--overwrite"], "was not written there by nst")):
        code, _, err = run_cli(*run, *flags)
        assert code == 2 and fragment in one_error_line(err)
        assert (masks / "content_regions.png").read_bytes() == b"the user's drawing" and not (tmp_path / "o.png").exists()
    (masks / "content_regions.png").unlink()
    assert run_cli(*run)[0] == 0 and run_cli(*run)[0] == 2 and run_cli(*run, "--overwrite")[0] == 0  # nst's own: replaced


# --- what the API returns is what it wrote ---------------------------------------------------------------------------

class Post:
    """A plugin whose nst_postprocess returns VALUE."""

    def __init__(self, value):
        self.value, self.name = value, f"post{id(self)}"

    @nst.hookimpl
    def nst_postprocess(self):
        return self.value


def decoded(path: Path) -> torch.Tensor:
    """The image in PATH as (1, 3, H, W) in [0, 1], 16-bit TIFF through tifffile."""
    from nst.core.images import load_image

    if path.suffix != ".tif":
        return load_image(path)
    import tifffile

    return torch.from_numpy(tifffile.imread(path).astype(np.float32) / 65535).permute(2, 0, 1)[None]


@pytest.mark.parametrize("suffix, bits", [(".png", 8), (".png", 16), (".jpg", 8), (".tif", 16)])
def test_what_the_api_returns_is_what_it_wrote(ws, tmp_path, suffix, bits):
    from nst.core.printfile import print_writer

    def differ(a: torch.Tensor, b: torch.Tensor) -> float:  # JPEG: on average; lossless files: everywhere
        return float((a - b).abs().mean() if suffix == ".jpg" else (a - b).abs().max())

    tolerance = 0.05 if suffix == ".jpg" else 1 / 255  # JPEG subsamples colour: a 32 px result differs by ~0.02

    kw = dict(weights=str(ws["weights"]), size=32, steps=2, device="cpu", note=lambda m: None, bit_depth=bits)
    out = tmp_path / f"o{suffix}"
    result = nst.run(ws["content"], [ws["style"]], output=out, **kw)
    assert 0 <= result.image.min() and result.image.max() <= 1
    assert differ(result.image, decoded(out)) <= tolerance
    image = nst.stylize(ws["content"], [ws["style"]], output=tmp_path / f"p{suffix}", **kw)
    assert differ(torch.from_numpy(np.asarray(image, np.float32) / 255).permute(2, 0, 1)[None],
                  decoded(tmp_path / f"p{suffix}")) <= tolerance
    picture = torch.rand(1, 3, 8, 8)
    kept = picture.clone()
    print_writer(picture, tmp_path / f"w{suffix}", bits)(tmp_path / f"w{suffix}")
    assert torch.equal(picture, kept)  # a writer never changes the tensor it is given


@pytest.mark.parametrize("value, fragment", [
    (torch.full((1, 3, 24, 32), float("nan")), "nst_postprocess returned NaN or inf pixels"),
    (torch.zeros(3, 24, 32), "nst_postprocess returned (3, 24, 32), not a (1, 3, H, W) image"),
    (torch.zeros(1, 4, 24, 32), "nst_postprocess returned (1, 4, 24, 32), not a (1, 3, H, W) image"),
    ("an image", "nst_postprocess returned str, not a (1, 3, H, W) image"),
])
def test_postprocess_results_are_checked_after_every_plugin(ws, tmp_path, value, fragment):
    plugin = Post(value)
    out = tmp_path / "o.png"
    with pytest.raises(nst.NSTError) as info:
        nst.run(ws["content"], [ws["style"]], output=out, plugins=[plugin], weights=str(ws["weights"]), size=32, steps=1,
                device="cpu", note=lambda m: None)
    assert str(info.value) == f"plugin '{plugin.name}': {fragment}" and not out.exists()


# --- files read back: checkpoints and model files are data ------------------------------------------------------------

def test_model_files_are_checked_before_a_network_is_built(ws, run_cli, tmp_path):
    import json

    from safetensors.torch import save_file

    state = {k: v.contiguous() for k, v in TransformerNet(8, 1).state_dict().items()}
    meta = {"format": "nst-johnson", "arch_version": "1"}
    cases = {"width": ({"width": 10 ** 9, "blocks": 1}, {}, "config.width"),
             "blocks": ({"width": 8, "blocks": "5"}, {}, "config.blocks"),
             "arch": ({"arch": ["johnson"]}, {}, "config.arch"),
             "contract": ({"arch": "multistyle", "contract": [8, 8]}, {}, "config.contract"),
             "styles": ({"width": 8, "blocks": 1}, {"styles": 5}, "info.styles"),
             "style": ({"width": 8, "blocks": 1}, {"style": ["x"]}, "info.style")}
    for name, (config, info, fragment) in cases.items():
        path = tmp_path / f"{name}.safetensors"
        save_file(state, str(path), metadata={**meta, "config": json.dumps(config), "info": json.dumps(info)})
        code, _, err = run_cli("run", ws["content"], "-o", tmp_path / "o.png", "--method", "johnson", "--model", path, "-q")
        assert code == 1 and "damaged nst model file" in one_error_line(err) and fragment in err, (name, err)
    assert not (tmp_path / "o.png").exists()


@pytest.mark.parametrize("change, fragment", [
    (dict(step=-5), "step -5"),
    (dict(step=True), "step True"),
    (dict(history="lots"), "loss history"),
    (dict(history=[{"step": 1, "total": "x"}]), "loss history"),
    (dict(skipped=[1, 2]), "skipped photos"),
    (dict(world=0), "world 0"),
    (dict(net_config=[1]), "settings"),
])
def test_damaged_checkpoints_are_refused_by_name(ws, tmp_path, train_kw, change, fragment):
    model = tmp_path / "m.safetensors"
    with pytest.raises(KeyboardInterrupt):
        nst.train(ws["style"], ws["photos"], model, steps=6, plugins=[StopAt(interrupt=2)], **train_kw)
    ckpt = tmp_path / "m.safetensors.ckpt"
    state = torch.load(ckpt, weights_only=True)
    torch.save({**state, **change, "plugins": {}}, ckpt)
    before = ckpt.read_bytes()
    with pytest.raises(nst.NSTError, match=f"damaged checkpoint \\({re.escape(fragment)}"):
        nst.train(ws["style"], ws["photos"], model, steps=6, resume=True, **train_kw)
    assert ckpt.read_bytes() == before and not model.exists()


def test_train_arguments_of_the_wrong_kind_are_named(ws, tmp_path, train_kw):
    with pytest.raises(nst.UsageError, match="data must be the path of a folder of training photos, got 42"):
        nst.train(ws["style"], 42, tmp_path / "m.safetensors", **train_kw)
    with pytest.raises(nst.NSTError, match="is a file, not a folder of training photos"):
        nst.train(ws["style"], ws["file"], tmp_path / "m.safetensors", **train_kw)


# --- training: checkpoints, curves and non-finite losses -------------------------------------------------------------

@pytest.fixture
def train_kw(ws):
    return dict(weights=str(ws["weights"]), size=32, batch_size=2, width=8, blocks=1, workers=0, device="cpu",
                host=PluginHost(), note=lambda m: None)


class StopAt:
    """Raises KeyboardInterrupt (Ctrl-C) at one step, or returns a NaN loss term from another."""

    name = "stopper"

    def __init__(self, interrupt: int = 0, nan: int = 0):
        self.interrupt, self.nan = interrupt, nan

    @nst.hookimpl
    def nst_on_step(self, step):
        if step == self.interrupt:
            raise KeyboardInterrupt

    @nst.hookimpl
    def nst_losses(self, ctx):
        bad = ctx.batch.index + 1 == self.nan
        return [nst.LossTerm("probe", 1.0, lambda f, x: x.sum() * (float("nan") if bad else 0.0))]


def test_interrupted_training_keeps_the_old_model_curves_and_a_checkpoint_is_not_deleted(ws, tmp_path, train_kw):
    model = tmp_path / "m.safetensors"
    model.write_bytes(b"an earlier model")
    curves = [tmp_path / "m.safetensors.losses.csv", tmp_path / "m.safetensors.losses.png"]
    for c in curves:
        c.write_bytes(b"the earlier model's curves")
    with pytest.raises(KeyboardInterrupt):
        nst.train(ws["style"], ws["photos"], model, steps=6, plugins=[StopAt(interrupt=3)], **train_kw)
    assert model.read_bytes() == b"an earlier model" and all(c.read_bytes() == b"the earlier model's curves" for c in curves)
    ckpt = tmp_path / "m.safetensors.ckpt"
    assert ckpt.is_file() and (tmp_path / "m.safetensors.ckpt.losses.csv").is_file()
    with pytest.raises(nst.UsageError, match="left from an interrupted training: continue it with --resume"):
        nst.train(ws["style"], ws["photos"], model, steps=6, **train_kw)
    assert ckpt.is_file()
    with pytest.raises(nst.UsageError, match="made with other options \\(plugins stopper"):
        nst.train(ws["style"], ws["photos"], model, steps=6, resume=True, **train_kw)
    result = nst.train(ws["style"], ws["photos"], model, steps=6, resume=True, plugins=[StopAt(interrupt=3)], **train_kw)
    assert result.steps == 6 and not ckpt.exists() and curves[0].read_text().startswith("step,")


def test_ctrl_c_while_the_first_checkpoint_is_drawn_ends_as_ctrl_c(ws, tmp_path, run_cli, monkeypatch):
    import nst.api.curves as curves

    calls = []

    def interrupted(*_args):  # Ctrl-C arrives while matplotlib draws the checkpoint's curves, which leaves it broken
        calls.append(1)
        raise KeyboardInterrupt if len(calls) == 1 else RuntimeError("a plot interrupted before")

    monkeypatch.setattr(curves, "write_plot", interrupted)
    model = tmp_path / "m.safetensors"
    code, _, err = run_cli("train", ws["style"], "--data", ws["photos"], "-o", model, "--weights", ws["weights"], "--size", 32,
                           "--batch-size", 2, "--width", 8, "--blocks", 1, "--workers", 0, "--device", "cpu", "--steps", 6,
                           "--checkpoint-every", 2, "-q")
    assert code == 130 and error_after_notes(err) == "error: interrupted"
    assert torch.load(tmp_path / "m.safetensors.ckpt", weights_only=True)["step"] == 2 and not model.exists()


def test_overwrite_starts_over(ws, tmp_path, train_kw):
    model = tmp_path / "m.safetensors"
    with pytest.raises(KeyboardInterrupt):
        nst.train(ws["style"], ws["photos"], model, steps=6, plugins=[StopAt(interrupt=2)], **train_kw)
    result = nst.train(ws["style"], ws["photos"], model, steps=3, overwrite=True, **train_kw)
    assert result.steps == 3 and model.is_file()


def test_a_non_finite_loss_stops_training_and_keeps_the_last_checkpoint(ws, tmp_path, train_kw):
    model = tmp_path / "m.safetensors"
    with pytest.raises(nst.NSTError, match="training diverged at step 5 .*the checkpoint of step 4 is kept"):
        nst.train(ws["style"], ws["photos"], model, steps=8, checkpoint_every=2, plugins=[StopAt(nan=5)], **train_kw)
    assert not model.exists()
    assert torch.load(tmp_path / "m.safetensors.ckpt", weights_only=True)["step"] == 4


def test_training_with_a_damaged_checkpoint_entry(ws, tmp_path, train_kw):
    model = tmp_path / "m.safetensors"
    torch.save({"config": {}, "step": 1}, tmp_path / "m.safetensors.ckpt")
    with pytest.raises(nst.NSTError, match="damaged checkpoint \\(no 'net_config' entry\\)"):
        nst.train(ws["style"], ws["photos"], model, steps=3, resume=True, **train_kw)


# --- writing fails: nothing is half-written ---------------------------------------------------------------------------

def test_a_failed_write_leaves_no_output_of_the_set(ws, run_cli, tmp_path, monkeypatch):
    """A full disk at the last rename of nst analogy: neither A_prime.png nor B.png nor the fields appear."""
    import nst.core.files as files

    real = os.replace
    calls = []

    def replace(src, dst):
        calls.append(dst)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(files.os, "replace", replace)
    out = tmp_path / "an"
    code, _, err = run_cli("analogy", ws["content"], ws["style"], "-o", out, "--size", 80, "--weights", ws["weights"],
                           "--pm-iters", 1, "--deconv-steps", 0, "-q")
    assert code == 1 and "No space left on device" in one_error_line(err) and len(calls) >= 3
    assert not out.exists()  # the files renamed before the failure were taken back, the folder it made removed


def test_an_output_that_cannot_be_replaced_stays_and_leaves_no_part_file(ws, run_cli, tmp_path, monkeypatch):
    import nst.core.files as files

    out = tmp_path / "o.png"
    out.write_bytes(b"the earlier result")
    real = os.replace

    def replace(src, dst):
        if Path(src) == out:  # moving the existing file aside fails (another owner's file in a sticky folder, say)
            raise PermissionError(1, "Operation not permitted")
        return real(src, dst)

    monkeypatch.setattr(files.os, "replace", replace)
    code, _, err = run_cli("run", ws["content"], ws["style"], "-o", out, *[a.format(**ws) for a in RUN])
    assert code == 1 and "Operation not permitted" in one_error_line(err)
    assert out.read_bytes() == b"the earlier result" and sorted(p.name for p in tmp_path.iterdir()) == ["o.png"]


def test_a_broken_model_stops_a_folder_run_at_once(ws, run_cli, tmp_path):
    data = ws["model"].read_bytes()
    truncated = tmp_path / "cut.safetensors"
    truncated.write_bytes(data[: len(data) // 2])
    code, out, err = run_cli("run", ws["photos"], "-o", tmp_path / "styled", "--method", "johnson", "--model", truncated,
                             "-q")
    assert code == 1 and "cut.safetensors: not an nst model file" in one_error_line(err)  # one line, not one per image
    assert "wrote" not in out and not list((tmp_path / "styled").glob("*.png"))


def test_a_damaged_colour_profile_is_left_out_with_a_note(ws, run_cli, tmp_path):
    content = tmp_path / "icc.png"
    Image.open(ws["content"]).save(content, icc_profile=os.urandom(600))
    out = tmp_path / "o.png"
    code, _, err = run_cli("run", content, ws["style"], "-o", out, *[a.format(**ws) for a in RUN])
    assert code == 0 and "icc.png: its embedded colour profile is not a valid ICC profile" in err, err
    assert "icc_profile" not in Image.open(out).info


def test_export_without_onnx_says_how_to_install(ws, run_cli, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # as if it were not installed
    code, _, err = run_cli("export", ws["model"], "--onnx", tmp_path / "m.onnx")
    assert code == 1 and "pip install 'nst-suite[onnx]'" in one_error_line(err)
    assert not (tmp_path / "m.onnx").exists()


# --- the Python API ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("call, error, fragment", [
    (dict(styles=42), nst.NSTError, "styles must be an image"),
    (dict(plugins="depth"), nst.UsageError, "plugins must be a list"),
    (dict(plugins=[42]), nst.UsageError, "is neither a plugin name nor a plugin object"),
    (dict(options={"depth": 5}), nst.UsageError, "options for plugin 'depth' must be a dict"),
    (dict(options=[1]), nst.UsageError, "options must be a dict"),
    (dict(size="abc"), nst.UsageError, "size: expected an integer"),
    (dict(steps=True), nst.UsageError, "steps: expected an integer"),
    (dict(style_blend="1,2"), nst.UsageError, "style_blend: expected a list"),
    (dict(output=5), nst.UsageError, "output must be a file path"),
    (dict(content=torch.zeros(3, 0, 8)), nst.NSTError, "empty"),
    (dict(content=torch.empty(3, 8, 8, device="meta")), nst.NSTError, "meta device"),
    (dict(content=torch.full((3, 8, 8), float("nan"))), nst.NSTError, "NaN"),
    (dict(content=torch.full((3, 8, 8), 255.0)), nst.NSTError, "nst expects [0, 1]"),
    (dict(content=torch.ones(3, 8, 8, dtype=torch.int64)), nst.NSTError, "dtype torch.int64"),
    (dict(content=None), nst.NSTError, "cannot use NoneType as an image"),
])
def test_api_arguments_of_the_wrong_kind_are_named(ws, call, error, fragment):
    call = dict(call)
    content = call.pop("content", ws["content"])
    styles = call.pop("styles", [ws["style"]])
    with pytest.raises(error) as info:
        nst.run(content, styles, **{"weights": str(ws["weights"]), "size": 32, "steps": 1, "note": lambda m: None, **call})
    assert fragment in str(info.value)


def test_api_uint8_tensors_are_scaled_not_clamped(ws):
    grey = torch.full((3, 16, 16), 64, dtype=torch.uint8)
    from nst.core.images import as_tensor

    assert torch.allclose(as_tensor(grey), torch.full((1, 3, 16, 16), 64 / 255))


# --- Ctrl-C, in a real process -------------------------------------------------------------------------------------

@pytest.mark.parametrize("after", [1.5, 6.0])
def test_ctrl_c_is_one_line_and_exit_130(ws, tmp_path, after):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("NST_DEBUG", None)
    proc = subprocess.Popen([sys.executable, "-m", "nst.cli", "run", ws["content"], ws["style"], "-o", tmp_path / "o.png",
                             "--weights", ws["weights"], "--size", "256", "--steps", "100000", "--device", "cpu"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=ctrl_c_reaches_it)
    time.sleep(after)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "error: interrupted" and "Traceback" not in err
    assert not (tmp_path / "o.png").exists()
