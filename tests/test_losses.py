"""Loss values against hand-computed ones, gradient checks in float64, and their properties."""
import pytest
import torch

from nst.core import losses as L


def test_gram_matches_hand_computation():
    f = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 1, 2, 2)  # one channel, 4 positions
    assert L.gram_matrix(f).item() == pytest.approx((1 + 4 + 9 + 16) / 4)
    f2 = torch.tensor([[[1.0, 0.0]], [[0.0, 2.0]]]).view(1, 2, 1, 2)  # 2 channels, M = 2
    assert torch.allclose(L.gram_matrix(f2)[0], torch.tensor([[0.5, 0.0], [0.0, 2.0]]))


def test_gram_loss_is_gatys_normalisation():
    """E = Σ(G − A)² / (4 N² M²) with unnormalised Grams G = F Fᵀ."""
    torch.manual_seed(0)
    f, s = torch.rand(1, 3, 4, 5), torch.rand(1, 3, 4, 5)
    n, m = 3, 20
    g = f.view(3, m) @ f.view(3, m).t()
    a = s.view(3, m) @ s.view(3, m).t()
    expected = ((g - a) ** 2).sum() / (4 * n * n * m * m)
    assert L.gram_loss(f, L.gram_matrix(s)).item() == pytest.approx(expected.item(), rel=1e-5)


def test_content_loss_hand_value():
    f = torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 1, 2, 2)
    p = torch.zeros(1, 1, 2, 2)
    assert L.content_loss(f, p).item() == pytest.approx(0.5 * 30 / 4)


def test_tv_hand_value():
    x = torch.tensor([[0.0, 1.0], [1.0, 1.0]]).view(1, 1, 2, 2)
    # vertical diffs: (1-0), (1-1) -> mean of squares 0.5; horizontal: (1-0), (1-1) -> 0.5
    assert L.tv_loss(x).item() == pytest.approx(1.0)


def test_mmd_linear_is_mean_difference():
    f = torch.ones(1, 2, 3, 3) * torch.tensor([1.0, 2.0]).view(1, 2, 1, 1)
    s = torch.zeros(1, 2, 2, 2)
    assert L.mmd_loss(f, s, "linear").item() == pytest.approx((1 + 4) / 2)


def test_mmd_meanstd_hand_value():
    f = torch.tensor([0.0, 2.0, 0.0, 2.0]).view(1, 1, 2, 2)  # mean 1, std (unbiased) sqrt(4/3)
    s = torch.zeros(1, 1, 2, 2)
    expected = 1.0 + 4.0 / 3.0
    assert L.mmd_loss(f, s, "meanstd").item() == pytest.approx(expected, rel=1e-5)


def test_mmd_gaussian_hand_value_and_zero_for_same_distribution():
    x = torch.tensor([0.0, 1.0]).view(1, 1, 1, 2)
    y = torch.tensor([0.0, 2.0]).view(1, 1, 1, 2)
    # σ² = mean squared distance among y samples = (0 + 4 + 4 + 0) / 4 = 2 ; k = exp(-d²/4)
    k = lambda d2: torch.exp(torch.tensor(-d2 / 4.0))
    kxx = (2 * k(0) + 2 * k(1)) / 4
    kyy = (2 * k(0) + 2 * k(4)) / 4
    kxy = (k(0) + k(4) + k(1) + k(1)) / 4
    assert L.mmd_loss(x, y, "gaussian").item() == pytest.approx((kxx + kyy - 2 * kxy).item(), rel=1e-5)
    z = torch.rand(1, 4, 6, 6)
    assert L.mmd_loss(z, z.flip(-1), "gaussian").item() == pytest.approx(0.0, abs=1e-6)


def test_mmd_poly_is_zero_when_grams_match_and_positive_otherwise():
    z = torch.rand(1, 3, 5, 5)
    assert L.mmd_loss(z, z.transpose(2, 3), "poly").item() == pytest.approx(0.0, abs=1e-6)
    assert L.mmd_loss(z, 2 * z, "poly").item() > 0


def test_mrf_zero_when_every_patch_exists_in_style_and_picks_nearest():
    torch.manual_seed(0)
    s = torch.rand(1, 2, 6, 6)
    assert L.mrf_loss(s, L.extract_patches(s)).item() == pytest.approx(0.0, abs=1e-10)
    # A 3x3 map equal to one style patch scaled by 2: NCC still picks that patch (direction, not scale)
    patches = L.extract_patches(s)
    f = 2 * patches[7:8]
    expected = (f - patches[7:8]).pow(2).mean()
    assert L.mrf_loss(f, patches).item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize("fn", [
    lambda f, s: L.gram_loss(f, L.gram_matrix(s)),
    lambda f, s: L.content_loss(f, s),
    lambda f, s: L.mmd_loss(f, s, "gaussian"),
    lambda f, s: L.mmd_loss(f, s, "meanstd"),
    lambda f, s: L.mmd_loss(f, s, "poly"),
    lambda f, s: L.mrf_loss(f, L.extract_patches(s)),
    lambda f, s: L.tv_loss(f),
], ids=["gram", "content", "mmd-gaussian", "mmd-meanstd", "mmd-poly", "mrf", "tv"])
def test_gradcheck(fn):
    torch.manual_seed(1)
    f = torch.rand(1, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    s = torch.rand(1, 2, 4, 4, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: fn(x, s), (f,), eps=1e-6, atol=1e-5)


def test_style_term_blend_equals_blended_gram_target():
    """Σ w_i ‖G − A_i‖² and ‖G − Σ w_i A_i‖² differ by a constant: same gradient."""
    torch.manual_seed(2)
    s1, s2 = {"l": torch.rand(1, 3, 4, 4)}, {"l": torch.rand(1, 3, 4, 4)}
    x = torch.rand(1, 3, 4, 4, requires_grad=True)
    term = L.style_term("gram", [s1, s2], [0.25, 0.75], ["l"], 1.0)
    term({"l": x}, x).backward()
    g1 = x.grad.clone()
    x.grad = None
    blended = 0.25 * L.gram_matrix(s1["l"]) + 0.75 * L.gram_matrix(s2["l"])
    L.gram_loss(x, blended).backward()
    assert torch.allclose(g1, x.grad, atol=1e-6)


def test_unknown_style_loss_is_a_clear_error():
    from nst.errors import NSTError

    with pytest.raises(NSTError, match="unknown style loss 'foo'"):
        L.style_term("foo", [], [], ["relu1_1"], 1.0)
