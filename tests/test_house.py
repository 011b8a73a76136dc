"""The house: the layers of nst/ and their rule (docs/architecture.md), run hooks in pluggy's order, broken
plugins named, essential built-ins, every setting declared once."""
from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest
import torch

import nst
from nst.host import PluginHost

sys.path.insert(0, str(Path(__file__).parent))
from conftest import gradient_image, nst_main  # noqa: E402

ROOT = Path(nst.__file__).parent
# bottom first; a module may import its own layer and those below, imports inside functions included
LAYERS = [
    ("base", ("nst.errors", "nst.version")),
    ("core", ("nst.core",)),
    ("settings", ("nst.settings",)),
    ("contract", ("nst.contract",)),
    ("host", ("nst.host",)),
    ("runtime", ("nst.runtime",)),
    ("api", ("nst.api", "nst")),  # "nst" is the package's face: the public API, loaded on first use
    ("plugins", ("nst.plugins",)),
    ("front-ends", ("nst.serve", "nst.bench")),
    ("shell", ("nst.cli",)),
]
# within a layer these are separate units that never import each other: each plugin, each front-end
UNIT_DEPTH = {"plugins": 3, "front-ends": 2, "base": 2}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def layer_of(module: str) -> int:
    best, index = -1, None
    for i, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, index = len(prefix), i
    assert index is not None, f"{module} is in no layer: add it to LAYERS and docs/architecture.md"
    return index


def unit_of(module: str) -> str:
    depth = UNIT_DEPTH.get(LAYERS[layer_of(module)][0])
    return ".".join(module.split(".")[:depth]) if depth else LAYERS[layer_of(module)][0]


def imports(path: Path, known: dict[str, Path]) -> list[tuple[str, list[str], int]]:
    """(imported nst module, names taken from it, line) for every import in PATH, wherever it stands; names
    taken from the package face `nst` resolve to the module that defines them."""
    from nst import _EXPORTS

    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno) for a in node.names if a.name.split(".")[0] == "nst"]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "nst":
            for alias in node.names:
                target = f"{node.module}.{alias.name}"
                if target in known:  # a submodule
                    out.append((target, [], node.lineno))
                elif node.module == "nst" and alias.name in _EXPORTS:
                    out.append((_EXPORTS[alias.name], [alias.name], node.lineno))
                elif node.module == "nst" and alias.name == "__version__":
                    out.append(("nst.version", [alias.name], node.lineno))
                else:
                    out.append((node.module, [alias.name], node.lineno))
    return out


def test_every_import_follows_the_layers():
    known = modules()
    bad = []
    for name, path in known.items():
        mine = layer_of(name)
        for target, names, line in imports(path, known):
            theirs = layer_of(target)
            where = f"{path.relative_to(ROOT.parent)}:{line} imports {target}"
            if theirs > mine:
                bad.append(f"{where}: layer {LAYERS[theirs][0]} is above {LAYERS[mine][0]}")
            elif theirs == mine and unit_of(target) != unit_of(name) and not target == "nst":
                bad.append(f"{where}: {unit_of(name)} and {unit_of(target)} are separate units of one layer")
            private = [n for n in names if n.startswith("_") and n != "__version__"]
            if private and unit_of(target) != unit_of(name):
                bad.append(f"{where}: the private name {private[0]} of another package")
    assert not bad, "\n".join(bad)


def test_no_module_outside_the_cli_imports_it():
    known = modules()
    users = [f"{n}: {t}" for n, p in known.items() if not n.startswith("nst.cli")
             for t, _, _ in imports(p, known) if t == "nst.cli" or t.startswith("nst.cli.")]
    assert not users, users


def test_no_import_cycle():
    known = modules()
    graph = {n: {t for t, _, _ in imports(p, known) if t in known and t != n} for n, p in known.items()}
    index, low, stack, on, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, cycles


def test_the_layer_table_is_the_one_docs_draw():
    doc = (ROOT.parent / "docs" / "architecture.md").read_text()
    for i, (name, prefixes) in enumerate(LAYERS):
        line = re.search(rf"^{i}\. {name}: (.*)$", doc, re.M)
        assert line, f"docs/architecture.md lacks the line '{i}. {name}: ...'"
        for prefix in prefixes:
            assert prefix.replace(".", "/") in line.group(1), (name, prefix)


# --- run hooks in pluggy's order ----------------------------------------------------------------------------------

class Marker:
    """A plugin whose postprocess appends NAME to a shared log and returns the image unchanged."""

    def __init__(self, name: str, log: list[str], **marks) -> None:
        self.name, self.log = name, log

        @nst.hookimpl(**marks)
        def nst_postprocess(image):
            log.append(name)
            return image

        @nst.hookimpl(**marks)
        def nst_schedule(ctx):
            return [nst.Scale(ctx.settings.size, 1)] if name != "plain-early" else [nst.Scale(ctx.settings.size, 2)]

        self.nst_postprocess, self.nst_schedule = nst_postprocess, nst_schedule


def test_run_hooks_run_in_pluggys_order(tiny_weights):
    host, log = PluginHost(load_entry_points=False), []
    plugins = [Marker("last", log, trylast=True), Marker("plain-early", log), Marker("first", log, tryfirst=True),
               Marker("plain-late", log)]
    result = nst.run(gradient_image(32, 24), [gradient_image(24, 24)], plugins=plugins, host=host, size=24,
                     weights=str(tiny_weights), note=lambda m: None)
    assert log == ["first", "plain-late", "plain-early", "last"]  # what pm.hook.nst_postprocess would call
    seen = []
    host.pm.register(type("Probe", (), {"nst_postprocess": nst.hookimpl(lambda image: seen.append(1))})(), "probe")
    assert [i.plugin_name for i in reversed(host.pm.hook.nst_postprocess.get_hookimpls())][0] == "probe"
    assert result.image is not None


def test_a_hook_wrapper_on_a_run_hook_is_refused_when_it_registers():
    class Wrapping:
        name = "wrapping"

        @nst.hookimpl(wrapper=True)
        def nst_postprocess(self, image):
            return (yield)

    with pytest.raises(nst.NSTError, match="plugin 'wrapping' refused: nst_postprocess is a hook wrapper"):
        PluginHost(load_entry_points=False).register(Wrapping())


# --- broken and essential plugins ---------------------------------------------------------------------------------

def test_the_default_method_cannot_be_disabled(monkeypatch):
    monkeypatch.setenv("NST_DISABLE_PLUGINS", "gatys, johnson")
    host = PluginHost(load_entry_points=False)
    assert host.records["gatys"].status == "ok" and host.records["johnson"].status == "disabled"
    assert host.notes == ["NST_DISABLE_PLUGINS: the built-in plugin 'gatys' provides the default method and cannot "
                          "be disabled"]
    with pytest.raises(nst.FieldError, match="comes from plugin 'johnson', which is disabled by NST_DISABLE_PLUGINS"):
        host.method("johnson")


# --- every setting declared once ----------------------------------------------------------------------------------

@pytest.mark.parametrize("command, cls", [("run", "Settings"), ("train", "TrainSettings")])
def test_every_declared_setting_is_a_flag_with_its_help_and_default(capsys, monkeypatch, command, cls):
    from nst.settings.declare import declared

    code, out, _ = nst_main(capsys, monkeypatch, command, "--help")
    assert code == 0
    flat = re.sub(r"\s+", " ", out)
    for name, opt in declared(getattr(nst, cls)).items():
        flag = "--" + name.replace("_", "-")
        assert f"{flag} " in flat, flag
        assert re.sub(r"\s+", " ", opt.help) in flat, flag
        if opt.default_text():
            assert f"[default: {opt.default_text()}]" in flat, flag


def test_the_studio_form_is_made_from_the_same_declarations():
    from nst.serve.catalog import describe_settings
    from nst.serve.forms import SERVER_FIELDS
    from nst.settings.declare import declared

    form = {f["name"]: f for f in describe_settings()}
    for name, opt in declared(nst.Settings).items():
        if name in SERVER_FIELDS:
            assert name.replace("_", "-") not in form
            continue
        field = form[name.replace("_", "-")]
        assert (field["min"], field["max"]) == (opt.min, opt.max)
        assert field["default"] == (opt.default if not isinstance(opt.default, Path) else str(opt.default))


def test_a_declared_range_is_checked_the_same_from_flags_config_and_api(capsys, monkeypatch, tmp_path):
    (tmp_path / "run.toml").write_text("style_scale = 20\n")
    code, _, err = nst_main(capsys, monkeypatch, "run", "a.png", "b.png", "-o", tmp_path / "o.png", "--style-scale", "20")
    assert code == 2 and err.strip() == "error: --style-scale: must be between 0.05 and 8, got 20"
    code, _, err = nst_main(capsys, monkeypatch, "run", "a.png", "b.png", "-o", tmp_path / "o.png",
                            "--config", tmp_path / "run.toml")
    assert code == 2 and err.strip() == f"error: {tmp_path / 'run.toml'}: style_scale: must be between 0.05 and 8, got 20"
    with pytest.raises(nst.FieldError, match="^style_scale: must be between 0.05 and 8, got 20$"):
        nst.run(torch.rand(3, 16, 16), [torch.rand(3, 16, 16)], style_scale=20)
