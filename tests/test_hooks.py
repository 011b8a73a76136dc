"""Every hook is called with its documented arguments, at the documented time, only when it should be."""
from pathlib import Path

import pytest
import torch
import typer

import nst
from nst.contract.context import RunContext, Scale
from nst.core.encoder import Encoder
from nst.errors import UsageError
from nst.host import PluginHost


@pytest.fixture
def fast(tiny_weights):
    return dict(weights=str(tiny_weights), size=32, steps=3, note=lambda m: None)


@pytest.fixture
def host():
    return PluginHost()


class Spy:
    """Implements every run hook and records each call."""

    name = "spy"

    def __init__(self):
        self.calls = []

    @nst.hookimpl
    def nst_prepare(self, ctx):
        assert isinstance(ctx, RunContext)
        assert ctx.content.shape == (1, 3, 24, 32) and len(ctx.styles) == 1
        self.calls.append("prepare")
        return {"spy.mask": torch.ones(1, 1, 24, 32)}

    @nst.hookimpl
    def nst_losses(self, ctx, encoder):
        assert isinstance(encoder, Encoder) and ctx.guides["spy.mask"].shape == (1, 1, 24, 32)
        self.calls.append(("losses", ctx.scale.size))
        return [nst.LossTerm("spy", 1.0, lambda feats, img: feats["relu1_1"].mean() * 0, ("relu1_1",))]

    @nst.hookimpl
    def nst_on_step(self, ctx, step, image, losses):
        assert image.shape[0] == 1 and "spy" in losses and "total" in losses
        self.calls.append(("step", step))

    @nst.hookimpl
    def nst_postprocess(self, ctx, image):
        self.calls.append("postprocess")
        return 1 - image


def test_nst_prepare_losses_on_step_postprocess_order_and_arguments(content_path, style_path, fast, host):
    spy = Spy()
    plain = nst.run(content_path, [style_path], host=host, **fast).image
    out = nst.run(content_path, [style_path], plugins=[spy], host=host, **fast).image
    assert spy.calls == ["prepare", ("losses", 32), ("step", 1), ("step", 2), ("step", 3), "postprocess"]
    assert torch.allclose(out, 1 - plain, atol=1e-5)  # postprocess result is used; the zero loss changes nothing


def test_nst_losses_term_changes_the_result(content_path, style_path, fast, host):
    class Dark:
        name = "dark"

        @nst.hookimpl
        def nst_losses(self, ctx, encoder):
            return [nst.LossTerm("dark", 1e7, lambda feats, img: img.mean() ** 2)]

    kw = dict(host=host, **{**fast, "steps": 15, "style_weight": 0.0})  # no style: the extra term is what moves
    plain = nst.run(content_path, [style_path], **kw).image
    dark = nst.run(content_path, [style_path], plugins=[Dark()], **kw).image
    assert dark.mean() < plain.mean() - 0.05


def test_nst_schedule_replaces_scales_first_result_wins(content_path, style_path, fast, host):
    sizes = []

    class Sched:
        name = "sched"

        @nst.hookimpl
        def nst_schedule(self, ctx):
            assert isinstance(ctx, RunContext)
            return [Scale(16, 1), Scale(24, 2)]

        @nst.hookimpl
        def nst_on_step(self, image):
            sizes.append(max(image.shape[-2:]))

    out = nst.run(content_path, [style_path], plugins=[Sched()], host=host, **fast).image
    assert sizes == [16, 24, 24] and out.shape[-1] == 32  # result at the output size


def test_run_hooks_only_for_plugins_taking_part(content_path, style_path, fast, host):
    spy = Spy()
    host.register(spy)
    try:
        nst.run(content_path, [style_path], host=host, **fast)
        assert spy.calls == []
        nst.run(content_path, [style_path], host=host, plugins=["spy"], **fast)
        assert spy.calls[0] == "prepare"
    finally:
        host.unregister("spy")


def test_nst_register_methods_and_method_provider_takes_part(content_path, fast, host):
    seen = {}

    class Flat:
        name = "flat"

        @nst.hookimpl
        def nst_register_methods(self, register):
            register("flat", lambda ctx: torch.full_like(ctx.content, 0.25), help="a grey image", needs_style=False)

        @nst.hookimpl
        def nst_prepare(self, ctx):
            seen["prepared"] = True

    host.register(Flat())
    try:
        assert host.methods()["flat"].plugin == "flat" and host.methods()["flat"].help == "a grey image"
        out = nst.run(content_path, [], method="flat", host=host, **fast).image  # no style needed
        assert torch.allclose(out, torch.full_like(out, 0.25)) and seen == {"prepared": True}
    finally:
        host.unregister("flat")
    with pytest.raises(UsageError, match="unknown method 'flat'.*gatys"):
        nst.run(content_path, [], method="flat", host=host, **fast)


def test_nst_plugin_options_typed_defaults_and_errors(content_path, style_path, fast, host):
    got = {}

    class Opt:
        name = "opt"

        @nst.hookimpl
        def nst_plugin_options(self, register):
            register("strength", float, 0.5, "how much")
            register("mode", str, "a", "which", choices=["a", "b"])
            register("flag", bool, False, "on/off")
            register("where", Path, Path("x"), "a path")

        @nst.hookimpl
        def nst_prepare(self, ctx):
            got.update(ctx.options["opt"])

    kw = dict(host=host, plugins=[Opt()], **fast)
    nst.run(content_path, [style_path], options={"opt": {"strength": 2, "flag": True}}, **kw)
    assert got == {"strength": 2.0, "mode": "a", "flag": True, "where": Path("x")}
    from nst.settings.values import Text  # what the command line hands over: parsed by the declared type

    nst.run(content_path, [style_path], options={"opt": {"strength": Text("3"), "flag": Text("no")}}, **kw)
    assert got == {"strength": 3.0, "mode": "a", "flag": False, "where": Path("x")}
    for bad, msg in [({"strength": "2"}, r"opt.strength: expected a number \(float\), got '2'"),  # API strings are not reparsed
                     ({"flag": "yes"}, "opt.flag: expected true or false"), ({"mode": "c"}, "must be one of a, b"),
                     ({"nope": 1}, "no option 'nope'.*flag, mode, strength, where")]:
        with pytest.raises(UsageError, match=msg):
            nst.run(content_path, [style_path], options={"opt": bad}, **kw)
    with pytest.raises(UsageError, match="unknown plugin 'ghost'"):
        nst.run(content_path, [style_path], options={"ghost": {"a": 1}}, host=host, **fast)


def test_nst_register_weights_adds_sources(host):
    class W:
        name = "w"

        @nst.hookimpl
        def nst_register_weights(self, register):
            register(nst.WeightSource("w-model", "url", "a test model", "w.pth", url="https://example.invalid/w.pth", sha256="00"))

    host.register(W())
    sources = host.weights().sources
    assert {"vgg19", "vgg19-torchvision", "w-model"} <= set(sources)
    assert sources["w-model"].status() == "missing"


def test_nst_register_commands_adds_a_subcommand(host):
    from typer.testing import CliRunner

    class Cmd:
        name = "cmd"

        @nst.hookimpl
        def nst_register_commands(self, app):
            @app.command("hello")
            def hello(name: str) -> None:
                typer.echo(f"hello {name}")

    host.register(Cmd())
    app = typer.Typer()

    @app.command("noop")
    def noop() -> None:
        pass

    host.attach_commands(app)
    result = CliRunner().invoke(app, ["hello", "world"])
    assert result.exit_code == 0 and result.output.strip() == "hello world"


def test_plugin_objects_are_unregistered_after_a_run(content_path, style_path, fast, host):
    nst.run(content_path, [style_path], plugins=[Spy()], host=host, **fast)
    assert host.pm.get_plugin("spy") is None and "spy" not in host.records
