"""The optimal-transport style losses (nst.core.transport, --style-loss ot | w2) and iterate averaging, against
closed forms, hand values, float64 gradient checks and their properties."""
import math

import pytest
import torch

from nst.core import losses as L
from nst.core import transport as T


def spd(c: int, seed: int, dtype=torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(c, c, generator=g, dtype=dtype)
    return a @ a.t() + 0.5 * torch.eye(c, dtype=dtype)


def test_newton_schulz_square_root_matches_the_eigendecomposition():
    a = spd(6, 0)
    vals, vecs = torch.linalg.eigh(a)
    exact = vecs @ torch.diag(vals.sqrt()) @ vecs.t()
    root = T.sqrtm(a)
    assert torch.allclose(root, exact, atol=1e-6 * exact.abs().max())
    assert torch.allclose(root @ root, a, rtol=1e-6, atol=1e-8)


def test_w2_of_one_dimensional_gaussians_is_the_closed_form():
    """In 1-D, W2² = (μ1 − μ2)² + (σ1 − σ2)², here over the target's second moment σ2² + μ2²."""
    x = torch.tensor([1.0, 3.0], dtype=torch.float64).view(1, 1, 1, 2)  # μ 2, σ 1
    y = torch.tensor([-1.0, 5.0, -1.0, 5.0], dtype=torch.float64).view(1, 1, 2, 2)  # μ 2, σ 3
    target = T.W2Target([T.raw_moments(y)], [1.0])
    expected = ((2 - 2) ** 2 + (1 - 3) ** 2) / (9 + 4)
    assert T.w2_loss(target, *T.sums(x.float())).item() == pytest.approx(expected / 1.0 * T.W2_SCALE, rel=1e-3)


def test_w2_is_zero_for_the_same_statistics_and_symmetric_in_distance():
    g = torch.Generator().manual_seed(1)
    f = torch.randn(1, 5, 8, 9, generator=g)
    permuted = f.flatten(2)[..., torch.randperm(72, generator=g)].view_as(f)  # same positions, shuffled
    target = T.W2Target([T.raw_moments(f)], [1.0])
    assert T.w2_loss(target, *T.sums(permuted)).item() < 1e-4
    other = torch.randn(1, 5, 8, 9, generator=g) * 2 + 1
    assert T.w2_loss(target, *T.sums(other)).item() > 0.1


def test_w2_gradcheck_float64():
    g = torch.Generator().manual_seed(2)
    style = torch.randn(1, 3, 5, 5, generator=g, dtype=torch.float64)
    target = T.W2Target([(style[0].flatten(1).mean(1), style[0].flatten(1) @ style[0].flatten(1).t() / 25)], [1.0])
    x = torch.randn(1, 3, 4, 4, generator=g, dtype=torch.float64, requires_grad=True)

    def fn(f):
        flat = f[0].flatten(1)
        return target.distance(*T.gaussian(flat.mean(1), flat @ flat.t() / flat.shape[1]))

    assert torch.autograd.gradcheck(fn, (x,), eps=1e-6, atol=1e-5)


def test_w2_blend_matches_blended_moments():
    """Blending two styles' raw moments equals the moments of their pooled positions (equal sizes)."""
    g = torch.Generator().manual_seed(3)
    a, b = torch.randn(1, 4, 6, 6, generator=g), torch.randn(1, 4, 6, 6, generator=g) + 2
    blended = T.W2Target([T.raw_moments(a), T.raw_moments(b)], [0.5, 0.5])
    pooled = T.W2Target([T.raw_moments(torch.cat([a, b], 3))], [1.0])
    assert torch.allclose(blended.cov, pooled.cov, atol=1e-4) and torch.allclose(blended.mean, pooled.mean, atol=1e-6)


def test_remd_hand_value_and_zero_for_the_same_set():
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    y = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    # cosine costs: x0-y0 0, x0-y1 1-1/√2, x1-y0 1, x1-y1 1-1/√2; rows' minima 0 and 1-1/√2 (mean 0.146),
    # columns' minima 0 and 1-1/√2 (mean 0.146): the max of the two
    assert T.remd(x, y).item() == pytest.approx((1 - 1 / math.sqrt(2)) / 2, rel=1e-6)
    assert T.remd(y, y).item() == pytest.approx(0.0, abs=1e-6)


def test_moment_distance_hand_value():
    x = torch.tensor([[0.0], [2.0]])  # mean 1, var 1
    y = torch.tensor([[1.0], [1.0]])  # mean 1, var 0
    assert T.moment_distance(x, y).item() == pytest.approx(1.0)


def test_ot_gradcheck_float64():
    g = torch.Generator().manual_seed(4)
    y = torch.rand(7, 3, generator=g, dtype=torch.float64) + 0.1
    x = (torch.rand(5, 3, generator=g, dtype=torch.float64) + 0.1).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda v: T.remd(v, y) + T.moment_distance(v, y), (x,), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("kind", ["ot", "w2"])
def test_style_terms_are_lowest_at_the_style_itself(kind):
    g = torch.Generator().manual_seed(5)
    style = {"a": torch.rand(1, 4, 16, 16, generator=g), "b": torch.rand(1, 6, 8, 8, generator=g) * 3}
    other = {"a": torch.rand(1, 4, 16, 16, generator=g) * 0.3, "b": torch.rand(1, 6, 8, 8, generator=g) + 2}
    term = L.style_term(kind, [style], [1.0], ["a", "b"], 1.0, seed=0)
    image = torch.zeros(1, 3, 16, 16)
    assert term(style, image).item() < 0.25 * term(other, image).item()


def test_w2_term_in_tiles_equals_the_whole():
    """The tiled form (sums over cells) gives the untiled value."""
    from nst.core.tiled_gatys import View
    from nst.core.tiles import grid

    g = torch.Generator().manual_seed(6)
    feats = {"relu1_1": torch.rand(1, 4, 32, 48, generator=g), "relu2_1": torch.rand(1, 5, 16, 24, generator=g)}
    style = {"relu1_1": torch.rand(1, 4, 20, 20, generator=g) * 2, "relu2_1": torch.rand(1, 5, 10, 10, generator=g)}
    term = L.style_term("w2", [style], [1.0], ["relu1_1", "relu2_1"], 1.0)
    image = torch.zeros(1, 3, 32, 48)
    sums: dict = {}
    for tile in grid(32, 48, 16, 0, 16):
        y0, y1, x0, x1 = tile.window
        window = {l: f[..., y0 // d:y1 // d, x0 // d:x1 // d] for (l, f), d in zip(feats.items(), (1, 2))}
        for k, v in term.tiled.partial(window, image, View(tile, (32, 48))).items():
            sums[k] = sums[k] + v if k in sums else v
    assert term.tiled.combine(sums).item() == pytest.approx(term.fn(feats, image).item(), rel=1e-4)


def test_iterate_averaging_returns_the_bias_corrected_mean_of_the_iterates():
    """Adam on a loss whose minimum is 0.75 everywhere, from 0.25: the output is the EMA of the clamped iterates."""
    from nst.core.gatys import optimise

    target = torch.full((1, 3, 4, 4), 0.75)
    term = L.LossTerm("pull", 1.0, lambda _f, img: (img - target).pow(2).sum())
    seen = []
    start = torch.full((1, 3, 4, 4), 0.25)
    out = optimise(start, [term], None, 20, "adam", 0.05, lambda step, img, losses: seen.append(img.clone()),
                   average=0.9)
    ema = torch.zeros_like(start)
    for img in seen:
        ema = 0.9 * ema + 0.1 * img.clamp(0, 1)
    assert torch.allclose(out, ema / (1 - 0.9 ** 20), atol=1e-6)
    assert not torch.allclose(out, optimise(start, [term], None, 20, "adam", 0.05))  # off: the best iterate instead
