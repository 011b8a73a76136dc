"""One-pass tiles (nst.core.lazy_tiles): a network recorded on lazy whole-image maps and computed tile by tile
gives the untiled output, computes each activation about once, and keeps its maps in memory or temporary files."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nst.core import lazy_tiles, tiles
from nst.core.johnson import InstanceNorm, TransformerNet


class Zoo(nn.Module):
    """Every operation lazy maps know, with instance norms between: padding of each mode and asymmetric, dilated,
    strided and 'same' convolutions, slicing, channel concatenation, pixel_shuffle, nearest upsampling, per-pixel
    masks, computed tensors on the left of operators. (1, 3, H, W) -> (1, 3, H, W), H and W multiples of 4."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 6, 3, padding=2, dilation=2)
        self.b = nn.Conv2d(6, 8, 3, stride=2, padding=1)
        self.c = nn.Conv2d(8, 8, 3, padding="same")
        self.d = nn.Conv2d(16, 16, 3)
        self.e = nn.Conv2d(20, 3, 5)
        self.norms = nn.ModuleList([InstanceNorm(n, affine=True) for n in (6, 8, 8, 4, 3)])
        g = torch.Generator().manual_seed(3)
        with torch.no_grad():
            for p in self.parameters():
                p.add_(torch.randn(p.shape, generator=g) * 0.2)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        n = iter(self.norms)
        y = F.relu(next(n)(self.a(F.pad(x * 2 - 1, (1, 2, 0, 3), mode="replicate"))))[..., 1:-2, 2:-1]
        z = F.leaky_relu(next(n)(self.b(F.pad(y, (2, 2, 2, 2), mode="reflect"))), 0.1)
        z = torch.cat([z, 0.5 * torch.sigmoid(next(n)(self.c(z)))], 1)
        u = next(n)(F.pixel_shuffle(self.d(F.pad(z, (1, 1, 1, 1), value=0.3)), 2))
        v = torch.cat([u, F.interpolate(z, scale_factor=2, mode="nearest")], 1)
        out = torch.sigmoid(next(n)(self.e(v)))
        return mask * out + (1 - mask) * torch.zeros_like(out) + 0.1


def test_one_pass_equals_the_whole_image_for_every_operation(one_thread):
    torch.manual_seed(0)
    net, x = Zoo().eval(), torch.rand(1, 3, 44, 60)
    mask = torch.rand(1, 1, 44, 60)
    with torch.no_grad():
        whole = net(x, mask)
    assert isinstance(tiles.one_pass(net, lambda t, _tile: net(t, mask), x), lazy_tiles.Survey)
    counts = []
    for cell in (8, 16, 23, 37):
        notes, seen = [], []
        out = tiles.run_network(net, lambda t, _tile: net(t, mask), x, cell, 8, note=notes.append,
                                on_tile=lambda done, total: seen.append((done, total)))
        assert not notes  # no fallback
        assert out.shape == whole.shape and (out - whole).abs().max() < 1e-5
        assert seen[0][1] == seen[-1][0] == seen[-1][1]  # the progress total is known from the start
        counts.append(seen[-1][0])
    assert counts == sorted(counts, reverse=True) and counts[0] > 6 * 4  # 6 maps computed whole, in more tiles


class Tricky(nn.Module):
    """What tripped earlier versions: a step reading a map that another reads with a wider margin, a view read
    after an activation, an in-place activation on a map read again (eager semantics), a norm over a map whose
    mean is far from zero, a convolution padded beyond its kernel's reach, tensor methods and comparisons."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 4, 5, padding=2)
        self.down, self.far = nn.Conv2d(4, 4, 3, stride=4, padding=1), nn.Conv2d(4, 4, 1, padding=3)
        self.norms = nn.ModuleList([InstanceNorm(4, affine=True) for _ in range(4)])
        self.act = nn.ReLU(inplace=True)
        with torch.no_grad():
            self.b.bias.fill_(100.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norms[0](self.a(x))
        h = torch.relu(h) + self.b(h) * 0.01 + torch.relu(h)[:, :1]
        g = self.norms[1](self.b(h))  # mean ~100, spread ~1
        g = g + self.b(self.act(g)) * 0.01  # in place, then read again
        far = F.interpolate(self.far(self.down(g)), scale_factor=4)[..., :g.shape[-2], :g.shape[-1]]
        y = self.norms[2](far) + g.tanh().mul(2) + abs(g) * 0.1
        return self.norms[3](torch.where(y > 0, y, 0.1 * y))


def test_one_pass_equals_the_whole_image_where_it_is_tricky(one_thread):
    torch.manual_seed(0)
    net, x = Tricky().eval(), torch.rand(1, 3, 20, 28)
    with torch.no_grad():
        whole = net(x)
    assert isinstance(tiles.one_pass(net, lambda t, _tile: net(t), x), lazy_tiles.Survey)
    for cell in (4, 5, 7, 13, 32):
        out = tiles.run_network(net, lambda t, _tile: net(t), x, cell, 8)
        assert (out - whole).abs().max() < 1e-4, cell


class Flipping(nn.Module):
    """A network lazy maps cannot record (a flip of a whole map)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.norm = nn.Conv2d(3, 4, 3, padding=1), InstanceNorm(4, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x)) + torch.flip(x[:, :1], (-1,)) * 0


def test_a_network_it_cannot_record_runs_in_passes_and_says_why(one_thread):
    net, x = Flipping().eval(), torch.rand(1, 3, 40, 48)
    with torch.no_grad():
        whole = net(x)
    assert "flip" in tiles.one_pass(net, lambda t, _tile: net(t), x)
    notes = []
    out = tiles.run_network(net, lambda t, _tile: net(t), x, 16, 8, note=notes.append)
    assert (out - whole).abs().max() < 1e-5
    assert len(notes) == 1 and "2 passes over overlapping windows" in notes[0] and "flip" in notes[0]
    viewing = Flipping().eval()
    viewing.forward = lambda t: viewing.norm(viewing.conv(t).view_as(viewing.conv(t)))  # not recordable either
    assert "view_as" in tiles.one_pass(viewing, lambda t, _tile: viewing(t), x)
    with torch.no_grad():
        whole = viewing(x)
    assert (tiles.run_network(viewing, lambda t, _tile: viewing(t), x, 16, 8) - whole).abs().max() < 1e-5


def test_each_activation_is_computed_about_once(monkeypatch, one_thread):
    """Convolution outputs of a tiled Johnson net: as many as the untiled pass's (every convolution there feeds a
    norm or is the output, whose maps are cut into tiles exactly; the margins recompute only per-pixel steps),
    where the pass-per-norm scheme computes the early layers once per norm layer."""
    torch.manual_seed(0)
    net, x = TransformerNet(8, 2).eval(), torch.rand(1, 3, 128, 128)
    real, counted = F.conv2d, []

    def conv2d(inp, *args, **kwargs):
        out = real(inp, *args, **kwargs)
        if isinstance(inp, torch.Tensor):
            counted.append(out.numel())
        return out

    monkeypatch.setattr(F, "conv2d", conv2d)
    with torch.no_grad():
        whole = net(x)
    untiled = sum(counted)
    counted.clear()
    out = tiles.run_network(net, lambda t, _tile: net(t), x, 64, 8)
    assert (out - whole).abs().max() < 1e-5
    assert untiled <= sum(counted) <= 1.05 * untiled
    counted.clear()
    monkeypatch.setattr(tiles, "one_pass", lambda *args: "forced")
    tiles.run_network(net, lambda t, _tile: net(t), x, 64, tiles.receptive_radius(net) + 16)
    assert sum(counted) > 4 * untiled


def test_maps_in_temporary_files_give_the_same_image_and_are_removed(tmp_path, monkeypatch, one_thread):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    made = []
    real = lazy_tiles.Store.empty

    def empty(self, *args):
        t = real(self, *args)
        made.append(list(tmp_path.iterdir()))
        return t

    monkeypatch.setattr(lazy_tiles.Store, "empty", empty)
    net, x, mask = Zoo().eval(), torch.rand(1, 3, 44, 60), torch.ones(1, 1, 44, 60)
    with torch.no_grad():
        whole = net(x, mask)
    out = tiles.run_network(net, lambda t, _tile: net(t, mask), x, 20, 8, spill=True)
    assert (out - whole).abs().max() < 1e-5
    assert made and [p.name.startswith("nst-maps-") for p in made[0]] == [True]  # the run's own folder
    assert list(tmp_path.iterdir()) == []  # gone with the run


def test_a_map_input_runs_in_one_pass(one_thread):
    """A per-pixel network input (a stroke-size map) is read tile by tile; passes over windows refuse it."""
    from nst.core.planner import MemoryPlan, ScalePlan
    from nst.errors import UsageError
    from nst.plugins.stroke.network import StrokePyramidNet
    from nst.runtime.large import check_tileable

    torch.manual_seed(0)
    net, x = StrokePyramidNet(8, 1, (64, 128)).eval(), torch.rand(1, 3, 64, 80)
    stroke = torch.linspace(64, 128, 80).expand(1, 1, 64, 80)
    with torch.no_grad():
        whole = net(x, stroke)
    notes = []
    out = tiles.run_network(net, lambda t, _tile: net(t, stroke), x, 32, 8, note=notes.append)
    assert not notes and (out - whole).abs().max() < 1e-5
    one_pass = MemoryPlan("johnson", "cpu", 1, [ScalePlan(64, 80, 0, 32, 0, 6, 1.0, 1.0)])
    check_tileable(one_pass, {"stroke": stroke})
    windows = MemoryPlan("johnson", "cpu", 1, [ScalePlan(64, 80, 0, 32, 40, 6, 1.0, 1.0)])
    check_tileable(windows, {"stroke": torch.tensor(300.0), "style": torch.ones(1, 26)})
    with pytest.raises(UsageError, match="network input 'stroke' is a map over the image"):
        check_tileable(windows, {"stroke": stroke})


def test_a_run_whose_maps_do_not_fit_keeps_them_in_files(monkeypatch, content_path, style_path, one_thread):
    """End to end: with no room in the budget for the whole maps, the plan says they go to temporary files and the
    run gives the untiled image."""
    import nst
    from nst.runtime import large

    whole = nst.run(content_path, [style_path], method="arbitrary", size=96, backend="torch")
    monkeypatch.setattr(large, "budget", lambda ctx: 1)
    notes = []
    tiled = nst.run(content_path, [style_path], method="arbitrary", size=96, backend="torch", tile=32, note=notes.append)
    scale = tiled.plan.scales[0]
    assert scale.cell == 32 and scale.halo == 0 and scale.spill > 0
    assert any("in temporary files" in n for n in notes)
    assert (whole.image - tiled.image).abs().max() < 1e-4
