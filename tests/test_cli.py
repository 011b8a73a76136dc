"""The `nst` CLI as users run it: exit codes, one-line errors, no partial output, real weights end to end."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import one_error_line
from PIL import Image


@pytest.fixture
def tiny(tiny_weights):
    return ["--weights", tiny_weights, "--size", "32", "--steps", "2", "-q"]


def test_run_writes_output_and_reports(run_cli, content_path, style_path, tiny, tmp_path):
    out = tmp_path / "out.jpg"
    code, stdout, err = run_cli("run", content_path, style_path, "-o", out, *tiny)
    assert code == 0, err
    assert f"wrote {out} (32x24" in stdout
    with Image.open(out) as img:
        assert img.format == "JPEG" and img.size == (32, 24)


@pytest.mark.parametrize("data,msg", [
    (None, "no such file"),
    (b"", "empty file"),
    (b"hi, I am text", "not an image"),
    (b"\x89PNG\r\n\x1a\n\0\0", "cannot read|not an image"),
])
def test_bad_content_inputs(run_cli, style_path, tiny, tmp_path, data, msg):
    import re

    bad = tmp_path / "bad.png"
    if data is not None:
        bad.write_bytes(data)
    out = tmp_path / "out.png"
    code, _, err = run_cli("run", bad, style_path, "-o", out, *tiny)
    assert code == 1 and re.search(msg, one_error_line(err))
    assert not out.exists() and not list(tmp_path.glob("*.part*"))


@pytest.mark.parametrize("args,code,msg", [
    (["--size", "100000"], 2, "--size: must be between 16 and 16384, got 100000"),
    (["--size", "-3"], 2, "--size: must be between 16 and 16384, got -3"),
    (["--style-loss", "fancy"], 2, "--style-loss: must be one of gram, mmd, mrf"),
    (["--device", "cuda"], 1, "no CUDA GPU|out of memory"),
    (["--plugin", "nope"], 2, "unknown plugin 'nope'"),
    (["--set", "gatys"], 2, "--set expects PLUGIN.KEY=VALUE"),
    (["--method", "nope"], 2, "unknown method 'nope'"),
    (["--weights", "nope"], 1, "unknown weights 'nope'"),
    (["--style-blend", "1,x"], 2, "style-blend: expected"),
])
def test_bad_options(run_cli, content_path, style_path, tiny, tmp_path, args, code, msg):
    import re

    if "cuda" in args:
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has a GPU")
    out = tmp_path / "out.png"
    got, _, err = run_cli("run", content_path, style_path, "-o", out, *tiny, *args)
    assert got == code and re.search(msg, one_error_line(err))
    assert not out.exists()


def test_output_folder_missing(run_cli, content_path, style_path, tiny, tmp_path):
    code, _, err = run_cli("run", content_path, style_path, "-o", tmp_path / "no" / "out.png", *tiny)
    assert code == 1 and "does not exist" in one_error_line(err)


def test_existing_output_untouched_on_failure(run_cli, content_path, tiny, tmp_path):
    out = tmp_path / "keep.png"
    out.write_bytes(b"precious")
    code, _, err = run_cli("run", content_path, tmp_path / "missing.png", "-o", out, *tiny)
    assert code == 1 and out.read_bytes() == b"precious"


def test_usage_error_exit_2_without_traceback(run_cli, content_path, tmp_path):
    code, _, err = run_cli("run", content_path, "--size", "abc", "-o", tmp_path / "o.png")
    assert code == 2 and "Traceback" not in err


def test_config_file_sets_options_and_flags_win(run_cli, content_path, style_path, tiny, tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('size = 40\nstyle-weight = 0.5\nsteps = 1\n[set.gatys]\n')
    out = tmp_path / "o.png"
    code, stdout, err = run_cli("run", content_path, style_path, "-o", out, "--config", cfg, "--weights", tiny[1], "-q")
    assert code == 0, err and "40x30" in stdout
    code, stdout, err = run_cli("run", content_path, style_path, "-o", out, "--config", cfg, *tiny)
    assert code == 0 and "32x24" in stdout  # --size 32 on the command line wins
    bad = tmp_path / "bad.toml"
    bad.write_text("colour = 3\n")
    code, _, err = run_cli("run", content_path, style_path, "-o", out, "--config", bad, *tiny)
    assert code == 2 and "unknown setting 'colour'" in one_error_line(err)
    broken = tmp_path / "broken.toml"
    broken.write_text("size = = 3\n")
    code, _, err = run_cli("run", content_path, style_path, "-o", out, "--config", broken, *tiny)
    assert code == 2 and "not valid TOML" in one_error_line(err)


def test_save_every(run_cli, content_path, style_path, tiny, tmp_path):
    out = tmp_path / "o.png"
    code, _, err = run_cli("run", content_path, style_path, "-o", out, *tiny, "--save-every", "1")
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.glob("o_step*.png")) == ["o_step0001.png", "o_step0002.png"]


def test_plugins_weights_version(run_cli):
    code, out, _ = run_cli("plugins")
    assert code == 0 and "gatys" in out and "nst-suite" in out and "ok" in out
    code, out, _ = run_cli("plugins", "show", "gatys")
    assert code == 0 and "method gatys" in out
    code, _, err = run_cli("plugins", "show", "ghost")
    assert code == 2 and "unknown plugin 'ghost'" in one_error_line(err)
    code, out, _ = run_cli("weights")
    assert code == 0 and "vgg19  embedded  20.1 MB" in out and "vgg19-torchvision" in out
    assert "c34748d2a8b1ad0a651c18a3addff1b0189af7f070cdaaa0dced0db6150b6af6" in out
    code, out, _ = run_cli("--version")
    assert code == 0 and out.startswith("nst ")


def test_help_documents_every_run_option(run_cli):
    code, out, _ = run_cli("run", "--help")
    assert code == 0
    for flag in ["--method", "--size", "--steps", "--content-weight", "--style-weight", "--tv-weight", "--style-loss",
                 "--style-blend", "--style-scale", "--optimizer", "--init", "--seed", "--scales", "--preserve-colors",
                 "--pooling", "--weights", "--device", "--save-every", "--plugin", "--set", "--config"]:
        assert flag in out, flag


def _stats(path: Path):
    arr = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255
    return arr


def test_end_to_end_real_weights_subprocess(tmp_path):
    """The real CLI in a fresh process on the embedded VGG19: the result moves towards the style."""
    sys.path.insert(0, str(Path(__file__).parent))
    from conftest import gradient_image, stripes_image

    content, style, out = tmp_path / "c.png", tmp_path / "s.png", tmp_path / "out.png"
    gradient_image(96, 72).save(content)
    stripes_image(96, 96, period=12).save(style)
    proc = subprocess.run([sys.executable, "-m", "nst.cli", "run", content, style, "-o", out, "--size", "64",
                           "--steps", "30", "-q"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    o = _stats(out)
    assert o.shape == (48, 64, 3)
    # stripes are saturated red/blue with strong edges: the output gains contrast between neighbours
    edges = lambda a: np.abs(np.diff(a, axis=1)).mean()
    c_small = np.asarray(Image.open(content).resize((64, 48), Image.BICUBIC), dtype=np.float32) / 255
    assert edges(o) > 1.5 * edges(c_small)


def test_progress_in_a_log_is_plain_lines_with_rate_and_time_left(tmp_path, tiny_weights, content_path, style_path):
    """With stderr a pipe (a log, CI), progress is plain lines: step/total, rate, elapsed and time left, no escape
    codes; NST_PROGRESS_SECONDS sets their interval (0: every step); the default interval prints the first and the
    last state of a short run; -q prints none."""
    import os
    import re

    def run(*extra, seconds=None):
        env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE", "NST_PROGRESS_SECONDS")}
        env["OMP_NUM_THREADS"] = "1"
        if seconds is not None:
            env["NST_PROGRESS_SECONDS"] = str(seconds)
        proc = subprocess.run([sys.executable, "-m", "nst.cli", "run", content_path, style_path, "-o", tmp_path / "o.png",
                               "--weights", tiny_weights, "--size", "32", "--steps", "6", *extra],
                              capture_output=True, text=True, env=env, timeout=300)  # stderr a pipe
        assert proc.returncode == 0, proc.stderr
        assert "\x1b" not in proc.stderr and "━" not in proc.stderr  # no bar drawn into the log
        return [l for l in proc.stderr.splitlines() if l.startswith("gatys")]

    line = re.compile(r"gatys 32px: (\d)/6 \(\d+%\), (\? steps/s|[\d.]+ steps/s|[\d.]+ s/step), \d:\d\d elapsed, "
                      r"(\?|\d:\d\d) left, content \S+  style \S+  tv \S+  total \S+$")
    every = run(seconds=0)
    assert [int(line.match(l).group(1)) for l in every] == [1, 2, 3, 4, 5, 6], every
    assert all(line.match(l).group(2) != "? steps/s" for l in every[1:])  # a rate from the second step on
    assert line.match(every[-1]).group(3) == "0:00"
    assert [int(line.match(l).group(1)) for l in run()] == [1, 6]
    assert run("-q") == []


def test_progress_rates_read_as_plain_numbers():
    """A fast run's rate is a whole number of steps per second, never '1.3e+02' (a log line failed its pattern)."""
    from nst.core.progress import rate_text

    assert [rate_text(r) for r in (125.3, 99.6, 32.4, 3.24, 0.5, None)] == [
        "125 steps/s", "100 steps/s", "32 steps/s", "3.2 steps/s", "2 s/step", "? steps/s"]


@pytest.mark.parametrize("command, needs", [("info", "IMAGE"), ("run", "INPUTS..., --output"),
                                            ("masks", "IMAGES..., --output"), ("export", "MODEL, --onnx")])
def test_a_command_without_its_arguments_is_a_usage_error(run_cli, command, needs):
    """`nst info` alone is a mistake, not a request for help: one line naming what is missing, exit 2."""
    code, stdout, err = run_cli(command)
    assert code == 2 and stdout == ""
    assert one_error_line(err) == f"error: `nst {command}` needs {needs} (see `nst {command} --help`)"


def test_nst_alone_lists_the_commands(run_cli):
    code, stdout, _ = run_cli()
    assert code == 0 and "run" in stdout and "info" in stdout
