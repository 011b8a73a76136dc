"""Every command printed in README.md and docs/*.md works as printed.

The shell commands of their fenced code blocks (```bash, ```sh, ```console and plain ones; `\\` continuations,
trailing `# comments`, `a && b` chains, `NAME=VALUE` prefixes) are extracted: `nst ...`, `python -m nst.cli ...`,
`torchrun ... -m nst.cli ...` and `pip install ./examples/...`. Usage synopses (`[--size 256]`, `[--segmenter
auto|sam]`, `[--steps N | --epochs N]`) are expanded into every variant they allow.

1. Parse: every command (every variant) is parsed by the real click command behind `nst` (plugin commands
   included), so an unknown or renamed flag or a bad value fails; for run, train and video also the settings
   (ranges, choices), the method, the plugins and their --set options, as the command checks them before work.
2. Run: each code block runs end to end, command after command in one folder (so `nst train -o m.safetensors`
   feeds the next line's `--model m.safetensors`), at a tiny size: the placeholder files (photo.jpg,
   painting.jpg, clip.mp4, PHOTOS/, ...) are small generated files, and `--size`, `--steps`, `--weights` (tiny
   random VGG19 weights), `-q` and `--device cpu` are added after the printed arguments (the last value of a flag
   wins). Each must exit 0 and write what the docs say it writes; a command whose weights are a download
   (MiDaS, Segment Anything) must, offline, end with one `error:` line naming the missing file and how to give
   a local copy. A ```console block's documented output (an `error:` line, a table) must be what nst prints.
   The other variants of a synopsis run on their own. Commands that need the example plugin run in one
   subprocess, with it installed from examples/nst-example-plugin by the documented line.
3. Python: every ```python block compiles; the API examples and the config files run against tiny inputs; the
   guide's hook examples register as a working plugin.
4. Prose: every `nst ...` quoted inline names a real command and only flags it has.

Lines that are not run are listed in PARSE_ONLY / NOT_NST with the reason.
"""
from __future__ import annotations

import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from conftest import gradient_image, one_error_line, stripes_image  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL_LANGS = {"bash", "sh", "shell", "console", ""}
# a bare word in a synopsis that stands for a value
VALUES = {"N": "2", "PX": "32", "NAME": "semantic"}


# --- extraction -------------------------------------------------------------------------------------

@dataclass
class Block:
    file: str
    line: int  # the opening fence's line
    lang: str
    lines: list[tuple[int, str]]


@dataclass
class Command:
    file: str
    line: int
    block: int  # the line of the block's opening fence
    lang: str
    text: str  # as printed, continuation lines joined, comment removed
    program: str  # nst, torchrun, pip
    env: dict[str, str]
    variants: list[list[str]]  # argument lists: variants[0] = every optional group, first choice
    prefix: list[str] = field(default_factory=list)  # torchrun's own arguments
    expected: list[str] = field(default_factory=list)  # a console block's output lines

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    @property
    def argv(self) -> list[str]:
        return self.variants[0]

    @property
    def name(self) -> str:
        """The sub-command (`run`, `plugins show`, ...), or '' for `nst --version`."""
        if self.program != "nst":
            return self.program
        words = [a for a in self.argv[:2] if not a.startswith("-")]
        if words[:1] == ["plugins"] and words[1:2] == ["show"]:
            return "plugins show"
        return words[0] if words else ""


def blocks(path: Path) -> list[Block]:
    """The fenced code blocks of PATH (fences may be indented, as inside a list item)."""
    out, current = [], None
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        fence = re.match(r"^\s*```\s*([\w+-]*)\s*$", line)
        if current is None and fence:
            current = Block(str(path.relative_to(ROOT)), number, fence.group(1).lower(), [])
        elif current is not None and re.match(r"^\s*```\s*$", line):
            out.append(current)
            current = None
        elif current is not None:
            current.lines.append((number, line))
    assert current is None, f"{path.name}: a code block opened at line {current.line} is never closed"
    return out


def _outside_quotes(text: str):
    """(index, char, quoted) for each character of TEXT, shell quoting followed."""
    quote = None
    for i, ch in enumerate(text):
        if quote is None and ch in "'\"":
            quote = ch
        elif ch == quote:
            quote = None
        yield i, ch, quote is not None


def strip_comment(text: str) -> str:
    for i, ch, quoted in _outside_quotes(text):
        if ch == "#" and not quoted and (i == 0 or text[i - 1].isspace()):
            return text[:i].rstrip()
    return text.rstrip()


def split_chain(text: str) -> list[str]:
    """`a && b; c` -> [a, b, c]."""
    parts, start, skip = [], 0, 0
    for i, ch, quoted in _outside_quotes(text):
        if skip:
            skip -= 1
            continue
        if not quoted and (text.startswith("&&", i) or ch == ";"):
            parts.append(text[start:i].strip())
            skip = 1 if ch == "&" else 0
            start = i + 1 + skip
    parts.append(text[start:].strip())
    return [p for p in parts if p]


def synopsis_variants(text: str) -> list[str]:
    """The commands a usage synopsis allows: [A] optional, [A | B] alternatives, `a|b|c` alternative values,
    `[X ...]` one X, `[options]` dropped. First: every group with its first choice; then each other choice of
    each group alone; last: no optional group."""
    groups, out, depth, start = [], [], 0, 0
    for i, ch, quoted in _outside_quotes(text):
        if quoted:
            continue
        if ch == "[":
            if depth == 0:
                out.append(text[start:i])
                start = i + 1
            depth += 1
        elif ch == "]" and depth:
            depth -= 1
            if depth == 0:
                groups.append(len(out))
                out.append(text[start:i])
                start = i + 1
    out.append(text[start:])
    if not groups:
        return [text]

    def choices(group: str) -> list[str]:
        if group.strip() == "options":  # `[options]`: any other flags
            return [""]
        result = []
        for alternative in re.split(r"\s+\|\s+", group.strip()):
            words = [w for w in alternative.split() if w != "..."]
            multi = [i for i, w in enumerate(words) if "|" in w]
            if not multi:
                result.append(" ".join(words))
            for i in multi[:1]:
                for value in words[i].split("|"):
                    result.append(" ".join(words[:i] + [value] + words[i + 1:]))
        return result

    options = {g: choices(out[g]) for g in groups}

    def build(pick: dict[int, str | None]) -> str:
        parts = [(pick.get(i, options[i][0]) or "") if i in options else piece for i, piece in enumerate(out)]
        return re.sub(r"\s+", " ", " ".join(parts)).strip()

    variants = [build({})]
    for g in groups:
        for choice in options[g][1:]:
            variants.append(build({g: choice}))
    variants.append(build(dict.fromkeys(groups, None)))
    return list(dict.fromkeys(variants))


PROGRAM = re.compile(r"^((?:[A-Z_][A-Z0-9_]*=\S*\s+)*)(nst|torchrun|python3? -m nst(?:\.cli)?|pip install)(?=\s|$)")


def commands_of(block: Block) -> tuple[list[Command], list[tuple[str, int, str]]]:
    """The nst commands of BLOCK, and its other command lines (file, line, text)."""
    console = block.lang == "console"
    logical: list[tuple[int, str]] = []  # (line, text) with continuations joined
    for number, raw in block.lines:
        if console:
            if raw.startswith("$ "):
                logical.append((number, raw[2:]))
            elif logical:
                logical[-1] = (logical[-1][0], logical[-1][1] + "\n" + raw)  # output, kept apart below
            continue
        if not raw.strip():
            continue
        continues = logical and (logical[-1][1].endswith("\\") or (raw[:1].isspace() and raw.strip().startswith("[")))
        if continues:
            head = logical[-1][1][:-1] if logical[-1][1].endswith("\\") else logical[-1][1]
            logical[-1] = (logical[-1][0], head.rstrip() + " " + strip_comment(raw.strip()))
        else:
            logical.append((number, strip_comment(raw)))
    found, others, previous = [], [], {}
    for number, text in logical:
        text, *expected = text.split("\n")
        text = strip_comment(text)
        if not text:
            continue
        if block.lang == "" and not PROGRAM.match(text):
            continue  # a plain block's other lines are output or a listing
        for part in split_chain(text):
            match = PROGRAM.match(part)
            if not match or (match.group(2) == "pip install" and "./examples/" not in part):
                others.append((block.file, number, part))
                continue
            env = dict(a.split("=", 1) for a in shlex.split(match.group(1)))
            program = "nst" if match.group(2).startswith(("nst", "python")) else match.group(2)
            variants, prefix = [], []
            for variant in synopsis_variants(part[match.end():]):
                args = [VALUES.get(a, a) for a in shlex.split(variant)]
                if program == "torchrun":
                    cut = args.index("-m")
                    assert args[cut + 1] in ("nst", "nst.cli"), part
                    prefix, args = args[:cut], args[cut + 2:]
                if "..." in args:  # `nst bench ... --resume`: the previous such command's arguments
                    at = args.index("...")
                    earlier = previous.get(args[0] if at else "")
                    assert earlier is not None, f"{block.file}:{number}: '...' with no earlier command to stand for"
                    args = args[:at] + earlier[at:] + args[at + 1:]
                variants.append(args)
            command = Command(block.file, number, block.line, block.lang, part, program, env, variants, prefix,
                              [e for e in expected if e.strip()])
            if program == "nst" and command.argv:
                previous[command.argv[0]] = command.argv
            found.append(command)
    return found, others


def extract() -> tuple[list[Command], list[tuple[str, int, str]]]:
    commands, others = [], []
    for path in DOC_FILES:
        for block in blocks(path):
            if block.lang in SHELL_LANGS:
                c, o = commands_of(block)
                commands += c
                others += o
    return commands, others


COMMANDS, OTHER_LINES = extract()


def counts() -> dict[str, int]:
    out: dict[str, int] = {}
    for c in COMMANDS:
        out[c.file] = out.get(c.file, 0) + 1
    return out


# --- what cannot run here, and why -------------------------------------------------------------------

# Command lines of the docs that are not nst's (checked: every other line of a shell block is an nst command).
NOT_NST = {
    r"^python3? -m venv \.venv$": "makes the virtual environment (.ci/run installs from a clean clone as README says)",
    r"^\. \.venv/bin/activate$": "activates it",
    r"^pip install -c constraints\.txt -e \"\.\[(all|test)\]\"$": "installs nst itself (.ci/run does, offline here)",
    r"^pip install torch==\S+ torchvision==\S+ --index-url https://download\.pytorch\.org/whl/cpu$":
        "PyTorch's CPU wheels, from PyTorch's index (network)",
    r"^python -m pytest$": "this test suite",
    r"^curl ": "the studio's HTTP API: tests/test_serve.py sends these requests through FastAPI's test client",
}
# nst commands that are parsed but not run, and why.
PARSE_ONLY = {
    r"^torchrun ": "starts one process per GPU; tests/test_johnson.py::test_ddp_training_two_ranks_agree and "
                   "tests/test_video.py::test_torchrun_two_ranks_split_the_frames run two ranks (slow)",
    r"(--plugin|--method) (edgy|edges)\b": "the guide's hypothetical broken packages; tests/test_entrypoints.py installs "
                                           "a broken package and checks these lines",
}
# Commands whose weights are a download: offline they end with one error line naming what to fetch and the
# flag or option that takes a local copy. (predicate on the command's text, fragments of the line)
OFFLINE = [
    (lambda t: "--plugin depth" in t and "depth.weights=" not in t, ["midas_v21_small_256.pt", "depth.weights=PATH"]),
    (lambda t: t.startswith("nst depth ") and "--weights" not in t, ["midas_v21_small_256.pt", "--weights PATH"]),
    (lambda t: "semantic.sam_checkpoint=sam_vit_b_01ec64.pth" in t, ["sam_vit_b_01ec64.pth"]),
    (lambda t: "--segmenter sam" in t and "--sam-checkpoint" not in t, ["--sam-checkpoint", "sam_vit_b_01ec64.pth"]),
]
# Run in a separate slow test (minutes at full size; tiny here, but still the heaviest): by the block's fence line.
SLOW_BLOCKS = {"README.md:752"}


def parse_only(command: Command) -> str | None:
    return next((why for pattern, why in PARSE_ONLY.items() if re.search(pattern, command.text)), None)


def offline_fragments(command: Command) -> list[str] | None:
    return next((fragments for test, fragments in OFFLINE if test(command.text)), None)


def needs_example(command: Command) -> bool:
    """Commands about the worked example plugin (installed from examples/ in a subprocess)."""
    return bool(re.search(r"\bexample\b", " ".join([command.text, *command.expected])))


# --- parsing with the real command line ---------------------------------------------------------------

def click_app():
    """The click group behind `nst`, with the installed plugins' commands attached (as main() does)."""
    import typer

    from nst.cli.app import app
    from nst.host import default_host

    default_host().attach_commands(app)
    return typer.main.get_command(app)


def parse(args: list[str]):
    """Parse ARGS as `nst ARGS` would, down to the sub-command; returns (command, its context). Unknown
    options, wrong choices and bad values raise click's UsageError / BadParameter."""
    import typer
    from click.exceptions import Exit as ClickExit

    command, name, parent = click_app(), "nst", None
    try:
        while True:
            ctx = command.make_context(name, list(args), parent=parent, resilient_parsing=False)
            if not hasattr(command, "resolve_command"):  # not a group
                return command, ctx
            rest = [*getattr(ctx, "_protected_args", getattr(ctx, "protected_args", [])), *ctx.args]
            if not rest:
                return command, ctx
            name, command, args = command.resolve_command(ctx, rest)
            parent = ctx
    except (typer.Exit, ClickExit) as exc:  # --version, --help
        assert exc.exit_code == 0, exc
        return command, None


def check_values(name: str, params: dict) -> None:
    """What click leaves as text, checked as the command checks it before any work: the settings (types,
    ranges, choices), the method, the plugins and their --set options."""
    from nst.host import default_host
    from nst.settings import Settings, TrainSettings, make_settings
    from nst.settings.declare import declared
    from nst.settings.train import make_train_settings
    from nst.settings.values import parse_sets, texts

    cls = {"run": Settings, "video": Settings, "train": TrainSettings}.get(name)
    if cls is None:
        return
    given = texts({key: params[key] for key in declared(cls) if key in params})
    host = default_host()
    plugins = list(params.get("plugin") or [])
    for plugin in plugins:
        host.check_plugin(plugin)
    if cls is Settings:
        method = params.get("method") if name == "video" else make_settings(given).method
        plugins.insert(0, host.method(method).plugin)
    else:
        make_train_settings(given)
    host.resolve_options(list(dict.fromkeys(plugins)), parse_sets(params.get("set_") or []))


# --- the files the docs name --------------------------------------------------------------------------

def _content(path: Path, seed: int = 0, fmt: str | None = None) -> None:
    gradient_image(64, 48, seed).save(path, format=fmt)


def _style(path: Path, period: int = 8, fmt: str | None = None) -> None:
    stripes_image(64, 64, period).save(path, format=fmt)


def _folder(make, count: int, suffix: str):
    def write(path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            make(path / f"img{i}{suffix}", i)
    return write


def _glob_folder(make, suffix: str):
    """`holiday/*.jpg`: the folder, with a few images the glob matches."""
    def write(path: Path) -> None:
        _folder(make, 2, suffix)(path.parent)
    return write


def _labels(path: Path, size=(64, 48)) -> None:
    """A label map in two flat colours (left red, right blue)."""
    import numpy as np
    from PIL import Image

    w, h = size
    arr = np.zeros((h, w, 3), np.uint8)
    arr[:, : w // 2] = (220, 30, 30)
    arr[:, w // 2:] = (30, 30, 220)
    Image.fromarray(arr).save(path)


def _grey_map(path: Path) -> None:
    import numpy as np
    from PIL import Image

    Image.fromarray(np.tile(np.linspace(0, 255, 64, dtype=np.uint8), (48, 1))).save(path)


def _model(path: Path) -> None:
    """A tiny random johnson network, as `nst train` writes one."""
    import torch

    from nst.core.johnson import TransformerNet, save_model

    torch.manual_seed(3)
    save_model(TransformerNet(width=8, blocks=1).eval(), path, {"style": "random.png"})


def _glyph(styled: bool):
    def write(path: Path) -> None:
        import shutil

        from nst.bench.samples import text_example

        made = text_example(path.parent, 40)
        shutil.move(made[1 if styled else 0], path)
        for other in made:
            other.unlink(missing_ok=True)
    return write


def _font(path: Path) -> None:
    import shutil

    from matplotlib import font_manager

    shutil.copy(font_manager.findfont("DejaVu Sans", fallback_to_default=False), path)


def _clip(path: Path, frames: int = 4) -> None:
    """A tiny H.264 clip: the content image panned by 2 px a frame."""
    from fractions import Fraction

    import av
    import numpy as np

    big = np.asarray(gradient_image(64, 48))
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=Fraction(12))
        s.width, s.height, s.pix_fmt = 48, 32, "yuv420p"
        for i in range(frames):
            frame = np.ascontiguousarray(big[4:36, 2 * i: 2 * i + 48])
            for p in s.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)


def _asset(name: str):
    def write(path: Path) -> None:
        import shutil

        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / "assets" / name, path)
    return write


def _png(make):
    return lambda path: make(path, fmt="PNG")


# Placeholder names in the docs -> how to make a small stand-in. Only inputs: a name a command writes is never made.
FILES = {
    **dict.fromkeys(["photo.jpg", "content.png", "c.png", "A.jpg"], _content),
    **dict.fromkeys(["painting.jpg", "style.jpg", "style.png", "s.png", "STYLE.jpg", "B_PRIME.jpg"], _style),
    "a.jpg": lambda p: _style(p, 8), "b.jpg": lambda p: _style(p, 16), "c.jpg": lambda p: _style(p, 4),
    "CONTENT": _png(_content), "STYLE": _png(_style),
    "assets/content.jpg": _asset("content.jpg"), "assets/style.jpg": _asset("style.jpg"),
    "PHOTOS/": _folder(lambda p, i: _content(p, i), 3, ".jpg"),
    "photos/": _folder(lambda p, i: _content(p, i), 2, ".jpg"),
    "paintings/": _folder(lambda p, i: _style(p, 8 * (i + 1)), 2, ".jpg"),
    "holiday/*.jpg": _glob_folder(lambda p, i: _content(p, i), ".jpg"),
    "shots/*.png": _glob_folder(lambda p, i: _content(p, i), ".png"),
    "clip.mp4": _clip,
    "photo_labels.png": _labels, "style_labels.png": lambda p: _labels(p, (64, 64)), "map.png": _grey_map,
    **dict.fromkeys(["m.safetensors", "starry.safetensors"], _model),
    **dict.fromkeys(["S.png", "A.png", "B.png", "T.png"], _glyph(False)),
    **dict.fromkeys(["S_STYLED.png", "A_fx.png", "B_fx.png"], _glyph(True)),
    "FONT.ttf": _font,
}


# --- running a command at a tiny size -------------------------------------------------------------------

def tiny_args(command: Command, argv: list[str], weights: Path) -> list[str]:
    """Flags added after the printed ones (the last value of a flag wins): a tiny size, few steps, the tiny
    random VGG19 weights, the CPU, no progress bar."""
    w, name = str(weights), command.name
    method = next((argv[i + 1] for i in range(len(argv) - 1)[::-1] if argv[i] == "--method"), "")
    extra = {
        "run": ["--size", "32", "--steps", "2", "--weights", w, "--device", "cpu", "-q"],
        "train": ["--size", "32", "--steps", "2", "--batch-size", "1", "--workers", "0", "--weights", w,
                  "--device", "cpu", "-q"],
        "video": ["--size", "32", "--steps", "2", "--weights", w, "--device", "cpu", "-q"],
        "masks": ["--size", "32", "--weights", w],
        "presets": ["--size", "32", "--device", "cpu", "-q"],
        "analogy": ["--size", "64", "--pm-iters", "1", "--deconv-steps", "2", "--weights", w, "--device", "cpu", "-q"],
        "text": ["--size", "32", "--iterations", "2", "--device", "cpu", "-q"],
        "depth": ["--device", "cpu"],
        "bench": ["--sizes", "32,48", "--steps", "2", "--train-steps", "2", "--weights", w, "--device", "cpu", "-q",
                  "--max-time", "20"],  # cells not started by then are listed as skipped (the next --resume does them)
        "serve": ["--port", "0", "--device", "cpu"],
    }.get(name, [])
    if name == "train" and "--epochs" in argv:  # instead of --steps
        extra = [a for a in extra if a not in ("--steps", "2")] + ["--batch-size", "2"]
    if name == "run" and method == "analogy":  # relu5_1's patches need about 48 px on the short side
        extra += ["--size", "64", "--set", "analogy.pm_iters=1", "--set", "analogy.deconv_steps=2"]
    return extra


def output_params(params: dict) -> set[Path]:
    """The paths a command writes (as given), from its parsed parameters and --set options."""
    out = {Path(params[k]) for k in ("output", "onnx", "save_guides") if params.get(k) is not None}
    for item in params.get("set_") or []:
        key, _, value = item.partition("=")
        if key.split(".")[-1] in ("save", "save_masks") and value:
            out.add(Path(value))
    return out


def make_inputs(argv: list[str], outputs: set[Path], folder: Path) -> None:
    """Make the placeholder files ARGV names (values of KEY=VALUE too) that are not there yet and not written by it."""
    for arg in argv:
        for token in (arg, arg.partition("=")[2]):
            if token in FILES and Path(token) not in outputs and not (folder / token.split("*")[0]).exists():
                (folder / token).parent.mkdir(parents=True, exist_ok=True)
                FILES[token](folder / token)


def check_outputs(command: Command, params: dict, argv: list[str], stdout: str, folder: Path) -> None:
    """What the docs say the command writes or prints is there."""
    name, out = command.name, params.get("output")
    out = folder / out if out is not None else None
    where = f"{command.where}: `{command.text}`"
    if name == "run" and params.get("plan"):
        assert "plan" in stdout.lower() and not out.exists(), f"{where}: --plan prints the plan and writes nothing\n{stdout}"
        return
    if out is not None:
        assert out.exists() and (out.is_file() or any(out.iterdir())), f"{where}: {out.name} was not written\n{stdout}"
    expected = []
    if name == "train":
        expected += [out.with_name(out.name + ".losses.csv"), out.with_name(out.name + ".losses.png")]
    if name == "export":
        expected.append(folder / params["onnx"])
    if name == "analogy":
        expected += [out / "A_prime.png", out / "nnf_A_to_B.png"]
        if params.get("both_directions", True):
            expected += [out / "B.png", out / "nnf_B_to_A.png"]
    if name == "masks" and len(params["images"]) > 1:
        expected += [out / "content_labels.png", out / "style_labels.png", out / "legend.png"]
        for line in MASKS_PRINTS:  # the README shows what it prints: its heading and the command using the maps
            assert line in stdout.splitlines(), f"{where}: the README says it prints {line!r}; it printed\n{stdout}"
    if name == "text" and params.get("save_guides"):
        expected += [folder / params["save_guides"] / "target_distance.png"]
    if name == "bench":
        expected += [out / "report.md", out / "report.html", out / "results.json"]
    if name == "video" and not out.suffix:
        expected.append(out / "frame_000000.png")
    if name == "run" and any("analogy.save=" in a for a in argv):
        save = folder / next(a for a in argv if "analogy.save=" in a).split("=", 1)[1]
        expected += [save / "B.png", save / "nnf_A_to_B.png"]
    missing = [str(p.relative_to(folder)) for p in expected if not p.exists()]
    assert not missing, f"{where}: the documented outputs {missing} are missing\n{stdout}"
    if name == "serve":
        assert "nst studio: http://" in stdout, f"{where}: no URL printed\n{stdout}"
        if "--host 0.0.0.0" in command.text:
            token = params.get("token")
            pattern = re.escape(token) if token else "[A-Za-z0-9_-]{16,}"
            assert re.search(rf"\?token={pattern}\s", stdout), f"{where}: no token in the URL\n{stdout}"
    if name == "":
        assert stdout.startswith("nst "), f"{where}: {stdout!r}"
    if name == "info":
        assert "seed" in stdout, f"{where}: {stdout}"


# What `nst masks photo.jpg style.jpg -o masks/` prints, as README.md shows it (the lines that do not depend on the
# images: the heading of the pairing and the command that uses the maps)
MASKS_PRINTS = [line.strip() for b in blocks(ROOT / "README.md") if b.lang == "" for _, line in b.lines
                if line.startswith(("pairing by colour", "use them with: "))]


def check_console(command: Command, code: int, stdout: str, stderr: str) -> None:
    """A ```console block's output under the command is what nst prints: its `error:` lines exactly, a table's rows
    for the plugins installed here (others illustrate packages that are not) cell by cell."""
    where = f"{command.where}: `{command.text}`"
    if not command.expected:
        return
    if all(line.startswith("error: ") for line in command.expected):
        got = [line for line in stderr.strip().splitlines() if line.strip()]
        assert code != 0 and got == command.expected, f"{where}: the docs say\n{command.expected}\nnst printed\n{got}"
        return
    assert code == 0, f"{where}: exit {code}\n{stderr}"

    def rows(lines):
        return [[c.strip() for c in line.strip().strip("│").split("│")] for line in lines if line.strip().startswith("│")]

    got = rows(stdout.splitlines())
    documented = rows(command.expected)
    assert documented, f"{where}: no table rows in the documented output"
    for row in documented:
        if len(row) >= 3 and not any(r[0] == row[0] and r[2] == row[2] for r in got) and command.name == "plugins":
            continue  # a package that is not installed here (the guide's broken examples)
        assert row in got, f"{where}: the documented row {row} is not in nst's output:\n{stdout}"
    headings = [line for line in command.expected if line.strip() and line.strip()[0] not in "┏┃┡│└"]
    for line in headings:
        assert line.strip() in stdout, f"{where}: {line.strip()!r} is not in nst's output:\n{stdout}"


def interrupt_after(monkeypatch, calls: int) -> None:
    """Ctrl-C (KeyboardInterrupt) once nst.api.run has run CALLS times (a video: after CALLS frames)."""
    import nst.api

    real, done = nst.api.run, []

    def run(*args, **kwargs):
        if len(done) >= calls:
            raise KeyboardInterrupt
        done.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(nst.api, "run", run)


def serve_once(monkeypatch) -> None:
    """`nst serve` checks its flags, binds, prints its URL and, instead of serving until Ctrl-C, stops."""
    import types

    import uvicorn

    import nst.serve.server as server

    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=(): [s.close() for s in sockets])
    monkeypatch.setattr(server, "threading", types.SimpleNamespace(Timer=lambda *a, **k: types.SimpleNamespace(
        start=lambda: None)))


def offline(monkeypatch, folder: Path) -> None:
    """No network and an empty download cache, as for a new user offline."""
    import torch

    monkeypatch.setenv("TORCH_HOME", str(folder / ".torch-home"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None, raising=False)

    def refuse(*_args, **_kwargs):
        raise OSError("no network in this test")

    monkeypatch.setattr("urllib.request.urlopen", refuse)


def prepare(command: Command, folder: Path, weights: Path, monkeypatch=None) -> tuple[list[str], dict]:
    """COMMAND's first variant with the tiny flags, its parsed parameters (and under "_before" its output's state);
    its input files made in FOLDER."""
    argv = command.argv + tiny_args(command, command.argv, weights)
    if command.name == "serve":
        home = folder / "home"
        home.mkdir(exist_ok=True)
        monkeypatch.setenv("HOME", str(home))
        monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
        argv = [str(Path(a).expanduser()) if a.startswith("~") else SHELL.get(a, a) for a in argv]
        serve_once(monkeypatch)
    _, ctx = parse(argv)
    params = dict(ctx.params) if ctx is not None else {}
    make_inputs(argv, output_params(params), folder)
    params["_before"] = state(folder, params.get("output"))
    return argv, params


def state(folder: Path, path) -> tuple | None:
    """(size, mtime) of FOLDER / PATH, or None when it is not there."""
    if path is None or not (folder / path).exists():
        return None
    st = (folder / path).stat()
    return st.st_size, st.st_mtime_ns


def verify(command: Command, argv: list[str], params: dict, folder: Path, code: int, stdout: str, stderr: str) -> None:
    """COMMAND ran as the docs say: exit 0 and its outputs, its documented console output, or offline, the one
    line that names the download."""
    fragments = offline_fragments(command)
    where = f"{command.where}: `{command.text}`"
    if fragments is not None:
        line = one_error_line(stderr)
        assert code in (1, 2) and all(f in line for f in fragments), f"{where}: offline, expected one line naming {fragments}: {line}"
        out = params.get("output")
        assert state(folder, out) == params["_before"], f"{where}: {out} written although the run failed"
        return
    check_console(command, code, stdout, stderr)
    if command.expected and code != 0:
        return  # a documented error
    assert code == 0, f"{where} exited {code}:\n{stderr}"
    assert "Traceback" not in stderr, stderr
    check_outputs(command, params, argv, stdout, folder)


# shell words the docs use and what the shell would make of them
SHELL = {"$(openssl rand -hex 16)": "9f86d081884c7d659a2feaa0c55ad015"}


# --- the worked example plugin: installed by the documented line, driven in one fresh process -----------

DRIVER = r'''
"""Run jobs (nst command lines, Python code) in this process, which has the example plugin on its path; write
each one's exit code, stdout and stderr as JSON. Python jobs get the tiny settings on nst.run / nst.stylize."""
import contextlib, io, json, os, sys, traceback

jobs_path, results_path = sys.argv[1:3]
jobs = json.load(open(jobs_path))
tiny = json.loads(os.environ["NST_DOC_TINY"])
import nst
from nst import cli

real_run, real_stylize = nst.run, nst.stylize
nst.run = lambda *a, **k: real_run(*a, **{**k, **tiny})
nst.stylize = lambda *a, **k: real_stylize(*a, **{**k, **tiny})
results = []
for job in jobs:
    os.chdir(job["cwd"])
    out, err, code = io.StringIO(), io.StringIO(), 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            if "argv" in job:
                sys.argv = ["nst", *job["argv"]]
                cli.main()
            else:
                exec(compile(job["python"], job["name"], "exec"), {"__name__": "__main__"})
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:
            traceback.print_exc()
            code = 1
    results.append({"code": code, "out": out.getvalue(), "err": err.getvalue()})
json.dump(results, open(results_path, "w"))
'''


def python_blocks(path: Path) -> list[Block]:
    return [b for b in blocks(path) if b.lang == "python"]


def code_of(block: Block) -> str:
    import textwrap

    return textwrap.dedent("\n".join(line for _, line in block.lines)) + "\n"


def runs_nst(block: Block) -> bool:
    """A Python example that calls the API (the rest are hook implementations)."""
    return bool(re.search(r"^\S.*\bnst\.(run|stylize)\(", code_of(block), re.M))


@pytest.fixture(scope="module")
def example_site(tmp_path_factory) -> Path:
    """examples/nst-example-plugin installed by the documented line (`pip install ./examples/nst-example-plugin`),
    from a copy of the repository's examples/ (so no build files land in it), offline, into a folder of its own."""
    import shutil
    import subprocess

    (line,) = [c for c in COMMANDS if c.program == "pip install"]
    root = tmp_path_factory.mktemp("clone")
    shutil.copytree(ROOT / "examples", root / "examples", ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    site = root / "site"
    done = subprocess.run([sys.executable, "-m", "pip", "install", *line.argv, "--no-deps", "--no-build-isolation",
                           "--no-index", "--disable-pip-version-check", "--quiet", "--target", str(site)],
                          cwd=root, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{line.where}: `{line.text}` failed:\n{done.stdout}\n{done.stderr}"
    return site


def run_jobs(jobs: list[dict], site: Path, weights: Path, folder: Path) -> list[dict]:
    import json
    import os
    import subprocess

    env = {k: v for k, v in os.environ.items() if k not in ("NST_DEBUG", "FORCE_COLOR", "NST_DISABLE_PLUGINS")}
    env.update(PYTHONPATH=os.pathsep.join([str(site), str(ROOT)]), COLUMNS="300", NO_COLOR="1", NST_THREADS="1",
               OMP_NUM_THREADS="1", TORCH_HOME=str(folder / ".torch-home"),
               NST_DOC_TINY=json.dumps({"size": 32, "steps": 2, "weights": str(weights), "device": "cpu"}))
    (folder / "jobs.json").write_text(json.dumps(jobs))
    (folder / "driver.py").write_text(DRIVER)
    done = subprocess.run([sys.executable, str(folder / "driver.py"), str(folder / "jobs.json"), str(folder / "out.json")],
                          capture_output=True, text=True, env=env, cwd=folder, timeout=600)
    assert done.returncode == 0, done.stderr
    return json.loads((folder / "out.json").read_text())


# --- the tests ----------------------------------------------------------------------------------------------

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_docs_have_their_commands():
    """The extraction finds the commands (a broken fence or a new block syntax would lose them silently)."""
    found = counts()
    assert found.get("README.md", 0) >= 70 and found.get("docs/plugins.md", 0) >= 10, found
    assert found.get("docs/http-api.md", 0) >= 4, found
    names = {c.name for c in COMMANDS}
    assert {"run", "train", "video", "masks", "analogy", "text", "depth", "presets", "export", "info", "bench", "serve",
            "plugins", "plugins show", "weights", "", "torchrun", "pip install"} <= names, names
    assert len(MASKS_PRINTS) == 2, MASKS_PRINTS
    _, ctx = parse(shlex.split(MASKS_PRINTS[1].partition(": ")[2])[1:])  # the command `nst masks` prints parses
    check_values("run", ctx.params)


@pytest.mark.parametrize("line", OTHER_LINES, ids=[f"{f}:{n}" for f, n, _ in OTHER_LINES])
def test_every_other_command_line_is_accounted_for(line):
    file, number, text = line
    assert any(re.search(pattern, text) for pattern in NOT_NST), (
        f"{file}:{number}: `{text}` is neither an nst command nor listed in NOT_NST (with why it is not run)")


@pytest.mark.parametrize("command", COMMANDS, ids=[c.where for c in COMMANDS])
def test_command_parses(command):
    """Every variant of the command is accepted by nst's own command line: flags, choices, values, and (for run,
    train and video) the settings, the method, the plugins and their --set options."""
    if command.program == "pip install":
        (path,) = [a for a in command.argv if not a.startswith("-")]
        assert (ROOT / path / "pyproject.toml").is_file(), f"{command.where}: no package at {path}"
        return
    if command.program == "torchrun":
        from torch.distributed.run import get_args_parser

        args = get_args_parser().parse_args([*command.prefix, "-m", "nst.cli", *command.argv])
        assert args.module and args.training_script == "nst.cli", command.text
    hypothetical = parse_only(command) and command.program != "torchrun"
    for variant in command.variants:
        try:
            _, ctx = parse(variant)
            if ctx is not None and not hypothetical and not needs_example(command):
                check_values(command.name, ctx.params)
        except Exception as exc:
            message = exc.format_message() if hasattr(exc, "format_message") else f"{type(exc).__name__}: {exc}"
            pytest.fail(f"{command.where}: `nst {' '.join(variant)}`: {message}")


def run_blocks() -> list:
    """(file:fence line, commands) of the shell blocks with commands to run here."""
    grouped: dict[str, list[Command]] = {}
    for c in COMMANDS:
        if c.program == "nst" and not parse_only(c) and not needs_example(c):
            grouped.setdefault(f"{c.file}:{c.block}", []).append(c)
    return [pytest.param(key, cmds, id=key, marks=[pytest.mark.slow] if key in SLOW_BLOCKS else [])
            for key, cmds in grouped.items()]


@pytest.mark.parametrize("key, commands", run_blocks())
def test_block_runs(key, commands, tmp_path, tiny_weights, run_cli, monkeypatch):
    """The block's commands, one after the other in one folder, at a tiny size: each exits 0 and writes what
    the docs say (or, for a download, gives the one-line offline error)."""
    offline(monkeypatch, tmp_path)
    monkeypatch.chdir(tmp_path)
    for command in commands:
        argv, params = prepare(command, tmp_path, tiny_weights, monkeypatch)
        if command.name == "video" and "--resume" in argv:  # "after Ctrl-C: continue": first, a run stopped by Ctrl-C
            with monkeypatch.context() as ctrl_c:
                interrupt_after(ctrl_c, 1)
                code, _, stderr = run_cli(*[a for a in argv if a != "--resume"])
            assert code == 130 and stderr.strip().endswith("error: interrupted"), stderr
        with monkeypatch.context() as env:
            for name, value in command.env.items():
                env.setenv(name, value)
            code, stdout, stderr = run_cli(*argv)
        verify(command, argv, params, tmp_path, code, stdout, stderr)


def other_variants() -> list:
    """The other commands a synopsis allows ([--steps N | --epochs N], [--segmenter auto|sam], the bare command)."""
    import dataclasses

    out = []
    for c in COMMANDS:
        if c.program == "nst" and not parse_only(c) and not needs_example(c):
            for i, variant in enumerate(c.variants[1:], 1):
                text = "nst " + shlex.join(variant)
                out.append(pytest.param(dataclasses.replace(c, variants=[variant], text=text), id=f"{c.where}#{i}"))
    return out


@pytest.mark.parametrize("command", other_variants())
def test_other_synopsis_variants_run(command, tmp_path, tiny_weights, run_cli, monkeypatch):
    """Each other variant of a usage synopsis, on its own in a fresh folder, at a tiny size."""
    offline(monkeypatch, tmp_path)
    monkeypatch.chdir(tmp_path)
    argv, params = prepare(command, tmp_path, tiny_weights, monkeypatch)
    code, stdout, stderr = run_cli(*argv)
    verify(command, argv, params, tmp_path, code, stdout, stderr)


def config_blocks() -> list[tuple[str, str]]:
    """(file:line, text) of the TOML blocks that are run configs (they set run settings or plugins)."""
    out = []
    for path in DOC_FILES:
        for b in blocks(path):
            text = code_of(b)
            if b.lang == "toml" and re.search(r"^(plugins|size)\s*=", text, re.M):
                out.append((f"{b.file}:{b.line}", text))
    return out


def test_example_plugin_commands_config_and_api(example_site, tiny_weights, tmp_path):
    """With the worked example installed by its documented line: the commands about it (their documented output
    included), the config files that use it, and the Python API examples, at a tiny size."""
    jobs, checks = [], []
    for i, command in enumerate(c for c in COMMANDS if c.program == "nst" and needs_example(c) and not parse_only(c)):
        folder = tmp_path / f"command{i}"
        folder.mkdir()
        argv, params = prepare(command, folder, tiny_weights)
        jobs.append({"argv": argv, "cwd": str(folder)})
        checks.append(lambda r, c=command, a=argv, p=params, f=folder: verify(c, a, p, f, r["code"], r["out"], r["err"]))
    for i, (where, text) in enumerate(config_blocks()):
        folder = tmp_path / f"config{i}"
        folder.mkdir()
        (folder / "run.toml").write_text(text)
        make_inputs(["photo.jpg", "painting.jpg"], set(), folder)
        argv = ["run", "photo.jpg", "painting.jpg", "-o", "out.png", "--config", "run.toml", "--size", "32", "--steps",
                "2", "--weights", str(tiny_weights), "--device", "cpu", "-q"]
        jobs.append({"argv": argv, "cwd": str(folder)})
        checks.append(lambda r, w=where, f=folder: _ran(w, r, f / "out.png"))
    for i, block in enumerate(b for path in DOC_FILES for b in python_blocks(path) if runs_nst(b)):
        folder = tmp_path / f"python{i}"
        folder.mkdir()
        code = code_of(block)
        make_inputs(re.findall(r"[\"']([\w./*-]+)[\"']", code), set(), folder)
        where = f"{block.file}:{block.line}"
        jobs.append({"python": code, "name": where, "cwd": str(folder)})
        checks.append(lambda r, w=where, f=folder: _ran(w, r, f / "out.png"))
    assert len(checks) >= 10
    failures = []
    for check, result in zip(checks, run_jobs(jobs, example_site, tiny_weights, tmp_path)):
        try:
            check(result)
        except AssertionError as exc:
            failures.append(str(exc))
    assert not failures, "\n\n".join(failures)


def _ran(where: str, result: dict, output: Path) -> None:
    assert result["code"] == 0, f"{where}: exit {result['code']}\n{result['err']}"
    assert output.is_file(), f"{where}: {output.name} was not written\n{result['out']}"


@pytest.mark.parametrize("path", DOC_FILES, ids=[p.name for p in DOC_FILES])
def test_python_blocks_compile(path):
    for block in python_blocks(path):
        compile(code_of(block), f"{block.file}:{block.line}", "exec")


def inline_commands() -> list[tuple[str, str]]:
    """(file, text) of the `nst ...` code spans in the prose (fragments such as `nst train -o model.safetensors`)."""
    out = []
    for path in DOC_FILES:
        prose = re.sub(r"^\s*```.*?^\s*```", "", path.read_text(encoding="utf-8"), flags=re.S | re.M)
        for span in re.findall(r"`((?:[A-Z_]+=\S+ )?nst [^`]+)`", prose):
            out.append((str(path.relative_to(ROOT)), re.sub(r"\s+", " ", span)))
    return list(dict.fromkeys(out))


INLINE = inline_commands()


@pytest.mark.parametrize("file, text", INLINE, ids=[f"{f}:{t}" for f, t in INLINE])
def test_inline_commands_use_real_commands_and_flags(file, text):
    """The commands quoted in the prose name a real sub-command and only flags it has (they are fragments, so
    their arguments are not checked)."""
    group = click_app()
    for variant in synopsis_variants(PROGRAM.sub("", text)):
        words = [w for w in shlex.split(variant) if w != "..."]
        command, ctx = group, None
        while words and hasattr(command, "resolve_command") and not words[0].startswith("-"):
            ctx = command.make_context(command.name or "nst", [], resilient_parsing=True, parent=ctx)
            _, command, _ = command.resolve_command(ctx, words[:1])
            words = words[1:]
        flags = {opt for p in command.params for opt in [*p.opts, *p.secondary_opts]} | {"--help"}
        unknown = [w for w in words if w.startswith("-") and w.split("=")[0] not in flags]
        assert not unknown, f"{file}: `{text}`: `nst {command.name}` has no {', '.join(unknown)}"


def test_the_guides_hook_examples_make_a_working_plugin():
    """docs/plugins.md's hook examples, executed in order as one module (as a reader assembles them), are hook
    implementations that nst accepts: argument names the hooks have, host hooks that run. (The worked example's
    module is the installed package of test_example_plugin_commands_config_and_api; the in-process example runs there.)"""
    import types

    from nst.host import PluginHost

    package = (ROOT / "examples" / "nst-example-plugin" / "nst_example.py").read_text(encoding="utf-8")
    module = types.ModuleType("guide_examples")
    for block in python_blocks(ROOT / "docs" / "plugins.md"):
        if not runs_nst(block) and code_of(block) != package:
            exec(compile(code_of(block), f"docs/plugins.md:{block.line}", "exec"), module.__dict__)
    host = PluginHost(load_entry_points=False)
    name = host.register(module, "guide")
    record = host.records[name]
    assert record.status == "ok", record.state()
    assert "identity" in host.methods() and "tinynet" in host.architectures()
    assert set(host.options()["guide"]) == {"weight", "mode", "layers", "mask", "save"}


def test_the_example_plugin_install_line_is_next_to_its_uses():
    """Wherever a config, API or command example uses the plugin `example`, its section says how to install it."""
    line = "pip install ./examples/nst-example-plugin"
    for path in DOC_FILES:
        text = path.read_text(encoding="utf-8")
        sections = re.split(r"^#{2,3} ", text, flags=re.M)
        for section in sections:
            code = "\n".join(re.findall(r"```(?:toml|python|bash|sh|console)\n(.*?)```", section, re.S))
            commands = "\n".join(l for l in code.splitlines() if not l.startswith(("│", "┃", "┏", "┡", "└", "error")))
            uses = re.search(r"--plugin example\b|\"example\"|\[set\.example\]|--set example\.", commands)
            if uses and line not in section:
                title = section.splitlines()[0]
                pytest.fail(f"{path.name}, section '{title}': uses the plugin example ({uses.group(0)}) without `{line}`")
