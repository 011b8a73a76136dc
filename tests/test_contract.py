"""The plugin contract as outside packages meet it: fixture packages are pip-installed and driven through
`python -m nst.cli` (entry points found by importlib.metadata), plus in-process API checks.

Packages (generated below, installed together):
- nst-impostor: an entry point named `gatys` (refused unloaded) and `shadow` registering method `gatys`;
- nst-cmds: `runner` adds a command `run`, `hello_a` and `hello_b` both add `hello`;
- nst-badopts: a method `flat` and a command `flatten` plus an nst_plugin_options hook that raises;
- nst-edges: a loss term that raises KeyError('layer');
- nst-finisher: nst_finish writes what it saw to a log; can raise KeyboardInterrupt at a step (Ctrl-C);
- nst-tinynet: its own architecture, trained through nst_train_network and run with --method johnson.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import nst
from nst.host import PluginHost

sys.path.insert(0, str(Path(__file__).parent))
from conftest import gradient_image, pip_install, stripes_image, write_package  # noqa: E402

PACKAGES = {
    "nst-impostor": ({"gatys": "nst_impostor", "shadow": "nst_shadow"}, {
        "nst_impostor": 'raise RuntimeError("the impostor was imported")\n',
        "nst_shadow": '''
            import torch
            from nst import hookimpl

            @hookimpl
            def nst_register_methods(register):
                register("black", lambda ctx: torch.zeros_like(ctx.content), needs_style=False)
                register("gatys", lambda ctx: torch.zeros_like(ctx.content))
            '''}),
    "nst-cmds": ({"runner": "nst_runner", "hello_a": "nst_hello_a", "hello_b": "nst_hello_b"}, {
        "nst_runner": '''
            from nst import hookimpl

            @hookimpl
            def nst_register_commands(app):
                @app.command("run")
                def run():
                    print("impostor run")
            ''',
        "nst_hello_a": '''
            from nst import hookimpl

            @hookimpl
            def nst_register_commands(app):
                @app.command("hello")
                def hello():
                    print("hello from a")
            ''',
        "nst_hello_b": '''
            from nst import hookimpl

            @hookimpl
            def nst_register_commands(app):
                @app.command("hello")
                def hello():
                    print("hello from b")
            '''}),
    "nst-badopts": ({"badopts": "nst_badopts"}, {"nst_badopts": '''
        import torch
        from nst import hookimpl

        @hookimpl
        def nst_register_methods(register):
            register("flat", lambda ctx: torch.full_like(ctx.content, 0.5), needs_style=False)

        @hookimpl
        def nst_plugin_options(register):
            raise ValueError("options are broken")

        @hookimpl
        def nst_register_commands(app):
            @app.command("flatten")
            def flatten(name: str):
                print("flat", name)
        '''}),
    "nst-edges": ({"edges": "nst_edges"}, {"nst_edges": '''
        from nst import LossTerm, hookimpl

        @hookimpl
        def nst_losses(ctx, encoder):
            return [LossTerm("edges", 1.0, lambda features, image: features["layer"].mean(), ("relu1_1",))]
        '''}),
    "nst-finisher": ({"finisher": "nst_finisher"}, {"nst_finisher": '''
        from pathlib import Path
        from nst import hookimpl

        @hookimpl
        def nst_plugin_options(register):
            register("log", Path, None, "file to append what nst_finish saw to")
            register("interrupt_at", int, 0, "raise KeyboardInterrupt at this step (0: never)")

        @hookimpl
        def nst_on_step(step, options):
            if step == options["interrupt_at"]:
                raise KeyboardInterrupt

        @hookimpl
        def nst_finish(ctx, result, error, options):
            with open(options["log"], "a") as f:
                got = "none" if result is None else "x".join(map(str, result.shape[-2:][::-1]))
                f.write(f"{ctx.mode} {type(error).__name__ if error else 'ok'} {got}\\n")
        '''}),
    "nst-tinynet": ({"tinynet": "nst_tinynet"}, {"nst_tinynet": '''
        import torch
        from torch import nn
        from nst import hookimpl

        class TinyNet(nn.Module):
            """A 1x1 convolution and a sigmoid: the smallest network nst can train."""

            def __init__(self, width=4):
                super().__init__()
                self.config = {"arch": "tinynet", "width": width}
                self.body = nn.Sequential(nn.Conv2d(3, width, 1), nn.ReLU(), nn.Conv2d(width, 3, 1))

            def forward(self, x):
                return torch.sigmoid(self.body(x * 2 - 1))

        @hookimpl
        def nst_register_architectures(register):
            register("tinynet", lambda config: TinyNet(config["width"]))

        @hookimpl
        def nst_train_network(config):
            return TinyNet(4)
        '''}),
}


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """Every fixture package above, pip-installed into one target folder."""
    root = tmp_path_factory.mktemp("contract")
    for dist, (points, modules) in PACKAGES.items():
        src = write_package(root / "src" / dist, dist, "1.0.0", points, modules)
        pip_install(src, root / "site")
    return root / "site"


@pytest.fixture(scope="module")
def cli(site, tmp_path_factory):
    """cli(*args, env=None) -> CompletedProcess of `python -m nst.cli ARGS` with the fixture packages installed."""
    base = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
                COLUMNS="400", NO_COLOR="1", OMP_NUM_THREADS="1")
    for key in ("FORCE_COLOR", "NST_DEBUG", "NST_DISABLE_PLUGINS"):
        base.pop(key, None)
    cwd = tmp_path_factory.mktemp("cwd")

    def call(*args, env=None):
        return subprocess.run([sys.executable, "-m", "nst.cli", *map(str, args)], capture_output=True, text=True,
                              env={**base, **(env or {})}, cwd=cwd, timeout=180)

    return call


@pytest.fixture(scope="module")
def listing(cli) -> str:
    done = cli("plugins")
    assert done.returncode == 0, done.stderr
    return done.stdout


def row(listing: str, name: str, package: str | None = None) -> str:
    rows = [l for l in listing.splitlines() if l.strip("│ ").split("│")[0].strip() == name and (package is None or package in l)]
    assert rows, f"no row for {name} in\n{listing}"
    return rows[0]


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("images")
    gradient_image(48, 36).save(root / "c.png")
    stripes_image(48, 48).save(root / "s.png")
    return root / "c.png", root / "s.png"


def mean_pixel(path: Path) -> float:
    return float(np.asarray(Image.open(path), dtype=np.float64).mean() / 255)


# --- built-ins cannot be replaced --------------------------------------------------------------------------------

def test_entry_point_named_like_a_builtin_is_refused_unloaded(listing):
    line = row(listing, "gatys", "nst-impostor")
    assert "refused: the name 'gatys' belongs to a built-in plugin" in line
    assert "imported" not in listing  # refused before its code ran
    assert "ok" in row(listing, "gatys", "nst-suite")


def test_plugin_registering_a_builtin_method_is_refused_and_contributes_nothing(listing, cli, images, tiny_weights, tmp_path):
    line = row(listing, "shadow")
    assert "error: refused: method 'gatys' is already provided by the built-in plugin 'gatys'" in line
    out = tmp_path / "o.png"
    done = cli("run", *images, "-o", out, "--weights", tiny_weights, "--size", 32, "--steps", 2, "-q", "--device", "cpu")
    assert done.returncode == 0, done.stderr
    assert mean_pixel(out) > 0.2  # the real gatys ran, not the impostor's black image
    done = cli("run", images[0], "-o", tmp_path / "b.png", "--method", "black")
    assert done.returncode == 2 and done.stderr.strip() == (  # its other method went with it, and says why
        "error: --method: method 'black' comes from plugin 'shadow', which could not be loaded: refused: method "
        "'gatys' is already provided by the built-in plugin 'gatys'")


# --- commands ---------------------------------------------------------------------------------------------------

def test_command_clashes_are_refused_and_commands_listed(listing, cli):
    assert "refused: command 'run' is already provided by nst's own command" in row(listing, "runner")
    assert "command hello" in row(listing, "hello_a") and "ok" in row(listing, "hello_a")
    assert "refused: command 'hello' is already provided by plugin 'hello_a'" in row(listing, "hello_b")
    assert "command depth" in row(listing, "depth")
    done = cli("hello")
    assert done.returncode == 0 and done.stdout.strip() == "hello from a"
    done = cli("run", "--help")
    assert done.returncode == 0 and "Stylise CONTENT" in done.stdout  # nst run is still nst's
    shown = cli("plugins", "show", "analogy")
    assert shown.returncode == 0 and "command nst analogy" in shown.stdout and "method analogy" in shown.stdout


# --- broken means out --------------------------------------------------------------------------------------------

def test_broken_options_hook_removes_the_plugins_method(listing, cli, images, tmp_path):
    assert "error: nst_plugin_options failed: ValueError: options are broken" in row(listing, "badopts")
    done = cli("run", images[0], "-o", tmp_path / "f.png", "--method", "flat")
    assert done.returncode == 2 and done.stderr.strip() == (
        "error: --method: method 'flat' comes from plugin 'badopts', which could not be loaded: nst_plugin_options "
        "failed: ValueError: options are broken")
    done = cli("flatten", "x")
    assert done.returncode == 2 and done.stderr.strip() == (
        "error: command 'flatten' comes from plugin 'badopts', which could not be loaded: nst_plugin_options failed: "
        "ValueError: options are broken")
    done = cli("run", images[0], "-o", tmp_path / "f.png", "--plugin", "badopts")
    assert done.returncode == 1 and "plugin 'badopts' could not be loaded" in done.stderr


# --- failures name the plugin and the hook -------------------------------------------------------------------------

def test_failing_run_hook_names_plugin_and_hook(cli, images, tiny_weights, tmp_path):
    done = cli("run", *images, "-o", tmp_path / "e.png", "--plugin", "edges", "--weights", tiny_weights, "--size", 32,
               "--steps", 2, "-q", "--device", "cpu")
    assert done.returncode == 1
    assert done.stderr.strip() == "error: plugin 'edges' failed in nst_losses: KeyError: 'layer'"
    assert not (tmp_path / "e.png").exists()
    debug = cli("run", *images, "-o", tmp_path / "e.png", "--plugin", "edges", "--weights", tiny_weights, "--size", 32,
                "--steps", 2, "-q", "--device", "cpu", env={"NST_DEBUG": "1"})
    assert "Traceback" in debug.stderr and 'features["layer"]' in debug.stderr


# --- nst_finish -------------------------------------------------------------------------------------------------

def test_nst_finish_after_success_failure_and_ctrl_c(cli, images, tiny_weights, tmp_path):
    log = tmp_path / "finish.log"
    common = ["--weights", tiny_weights, "--size", 32, "--steps", 3, "-q", "--device", "cpu", "--plugin", "finisher",
              "--set", f"finisher.log={log}"]
    assert cli("run", *images, "-o", tmp_path / "ok.png", *common).returncode == 0
    failed = cli("run", *images, "-o", tmp_path / "bad.png", *common, "--plugin", "edges")
    assert failed.returncode == 1
    stopped = cli("run", *images, "-o", tmp_path / "stop.png", *common, "--set", "finisher.interrupt_at=2")
    assert stopped.returncode == 130 and stopped.stderr.strip().splitlines()[-1] == "error: interrupted"
    assert log.read_text().splitlines() == ["run ok 32x24", "run PluginFailure none", "run KeyboardInterrupt none"]
    assert not (tmp_path / "stop.png").exists() and not (tmp_path / "bad.png").exists()


# --- architectures are registered --------------------------------------------------------------------------------

def test_custom_architecture_trains_and_runs_with_method_johnson(cli, images, tiny_weights, tmp_path):
    data = tmp_path / "photos"
    data.mkdir()
    for i in range(3):
        gradient_image(40, 40, seed=i).save(data / f"p{i}.png")
    model = tmp_path / "tiny.safetensors"
    done = cli("train", images[1], "--data", data, "-o", model, "--plugin", "tinynet", "--weights", tiny_weights,
               "--size", 32, "--batch-size", 2, "--steps", 2, "--workers", 0, "-q", "--device", "cpu")
    assert done.returncode == 0, done.stderr
    out = tmp_path / "styled.png"
    done = cli("run", images[0], "-o", out, "--method", "johnson", "--model", model, "--size", 48, "-q", "--device", "cpu")
    assert done.returncode == 0, done.stderr  # no --plugin tinynet: the architecture registry is a host hook
    assert Image.open(out).size == (48, 36)
    gone = cli("run", images[0], "-o", out, "--method", "johnson", "--model", model, env={"NST_DISABLE_PLUGINS": "tinynet"})
    assert gone.returncode == 1 and "architecture 'tinynet', which no installed plugin registers" in gone.stderr
    listed = cli("plugins", env={"NST_DISABLE_PLUGINS": "tinynet,edges"})
    assert "disabled: disabled by NST_DISABLE_PLUGINS" in row(listed.stdout, "tinynet")


# --- in-process: the host is left as it was found --------------------------------------------------------------------

@pytest.fixture
def installed_host(site, monkeypatch):
    """A host that loaded the fixture packages from their entry points (their modules importable)."""
    monkeypatch.syspath_prepend(str(site))
    return PluginHost()


def test_in_process_module_of_an_installed_plugin_twice_leaves_the_host_unchanged(installed_host, images, tiny_weights):
    import nst_finisher

    host = installed_host
    before = (dict(host.records), [name for name, _ in host.pm.list_name_plugin()])
    kw = dict(host=host, weights=str(tiny_weights), size=32, steps=1, device="cpu", note=lambda m: None)
    for _ in range(2):
        nst.run(images[0], [images[1]], plugins=[nst_finisher], options={"finisher": {"log": os.devnull}}, **kw)
    assert (dict(host.records), [name for name, _ in host.pm.list_name_plugin()]) == before
    assert host.pm.get_plugin("finisher") is nst_finisher and host.records["finisher"].status == "ok"


def test_own_options_reach_a_plugin_under_any_name(images, tiny_weights):
    seen = []

    class Probe:
        @nst.hookimpl
        def nst_plugin_options(self, register):
            register("level", float, 0.25, "a level", min=0, max=1)

        @nst.hookimpl
        def nst_prepare(self, ctx, options):
            seen.append((options, ctx.plugin_options(self)))

    for name in ("probe_a", "probe_b"):
        probe = Probe()
        probe.name = name
        nst.run(images[0], [images[1]], plugins=[probe], options={name: {"level": 0.5}}, host=PluginHost(),
                weights=str(tiny_weights), size=32, steps=1, note=lambda m: None)
    assert seen == [({"level": 0.5}, {"level": 0.5})] * 2


def test_two_plugins_replacing_the_style_term_are_refused(images, tiny_weights):
    with pytest.raises(nst.UsageError, match="plugins 'semantic' and 'stroke' both replace the core 'style' term"):
        nst.run(images[0], [images[1]], plugins=["semantic", "stroke"], host=PluginHost(), weights=str(tiny_weights),
                size=32, steps=1, note=lambda m: None)


def test_a_run_leaves_torch_global_state_as_it_was(images, tiny_weights):
    from nst.core.devices import _flushing_denormals

    torch.manual_seed(1234)
    torch.set_flush_denormal(False)
    state = torch.get_rng_state()
    nst.run(images[0], [images[1]], host=PluginHost(), weights=str(tiny_weights), size=32, steps=2, seed=7,
            init="noise", note=lambda m: None)
    assert torch.equal(torch.get_rng_state(), state) and not _flushing_denormals()


def test_config_file_works_in_the_api(images, tiny_weights, tmp_path):
    cfg = tmp_path / "run.toml"
    cfg.write_text(f'size = 40\nsteps = 1\nweights = "{tiny_weights}"\nplugins = ["finisher"]\n')
    with pytest.raises(nst.UsageError, match="unknown plugin 'finisher'"):  # not installed for this host
        nst.run(images[0], [images[1]], config=cfg, host=PluginHost(load_entry_points=False), note=lambda m: None)
    cfg.write_text(f'size = 40\nsteps = 1\nweights = "{tiny_weights}"\n')
    assert nst.run(images[0], [images[1]], config=cfg, host=PluginHost(), note=lambda m: None).image.shape[-1] == 40
    assert nst.run(images[0], [images[1]], config=cfg, size=32, host=PluginHost(), note=lambda m: None).image.shape[-1] == 32
    cfg.write_text('plugins = "depth"\n')
    with pytest.raises(nst.UsageError, match="plugins must be a list"):
        nst.run(images[0], [images[1]], config=cfg, note=lambda m: None)


# --- the house ------------------------------------------------------------------------------------------------------
