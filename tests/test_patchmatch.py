"""PatchMatch: known warps are recovered, brute force agrees, NNF upsampling and voting are exact."""
from __future__ import annotations

import pytest
import torch

from nst.core import patchmatch as pm

pytestmark = pytest.mark.usefixtures("one_thread")


def texture(h: int, w: int, seed: int = 0) -> torch.Tensor:
    """(3, H, W) random texture: every 3×3 patch is distinct."""
    return torch.rand(3, h, w, generator=torch.Generator().manual_seed(seed))


def shift_field(h: int, w: int, dy: int, dx: int) -> torch.Tensor:
    ident = pm.identity_nnf((h, w))
    return torch.stack([(ident[..., 0] + dy) % h, (ident[..., 1] + dx) % w], -1)


def block_permutation(a: torch.Tensor, block: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """B = A's BLOCK×BLOCK tiles shuffled, and the true NNF (H, W, 2) from A to B."""
    _, h, w = a.shape
    gh, gw = h // block, w // block
    perm = torch.randperm(gh * gw, generator=torch.Generator().manual_seed(seed))
    b = torch.empty_like(a)
    true = torch.empty(h, w, 2, dtype=torch.long)
    ident = pm.identity_nnf((block, block))
    for src, dst in enumerate(perm.tolist()):
        sy, sx = divmod(src, gw)
        ty, tx = divmod(dst, gw)
        b[:, ty * block:(ty + 1) * block, tx * block:(tx + 1) * block] = a[:, sy * block:(sy + 1) * block, sx * block:(sx + 1) * block]
        true[sy * block:(sy + 1) * block, sx * block:(sx + 1) * block] = ident + torch.tensor([ty * block, tx * block])
    return b, true


def exact_pixels(a: torch.Tensor, b: torch.Tensor, true: torch.Tensor, patch: int = 3) -> torch.Tensor:
    """(H, W) bool: pixels whose patch in A reappears exactly at the true match in B (seams and borders excluded)."""
    pa, pb = pm.patch_vectors(a, patch), pm.patch_vectors(b, patch)
    flat = true[..., 0].flatten() * b.shape[-1] + true[..., 1].flatten()
    return (pa == pb[flat]).all(1).reshape(true.shape[:2])


def test_recovers_a_shift():
    a = texture(64, 64)
    b = torch.roll(a, (5, -7), (1, 2))
    true = shift_field(64, 64, 5, -7)
    nnf = pm.patchmatch(a, b, 3, iters=8, generator=torch.Generator().manual_seed(0))
    fair = exact_pixels(a, b, true)
    assert fair.float().mean() > 0.85
    assert (nnf == true).all(-1)[fair].float().mean() > 0.98


def test_recovers_permuted_blocks():
    a = texture(64, 64, seed=3)
    b, true = block_permutation(a, 16)
    nnf = pm.patchmatch(a, b, 3, iters=8, generator=torch.Generator().manual_seed(0))
    fair = exact_pixels(a, b, true)
    assert (nnf == true).all(-1)[fair].float().mean() > 0.98


def test_brute_force_finds_the_true_field_and_patchmatch_agrees():
    a = texture(24, 32, seed=5).double()
    b, true = block_permutation(a, 8, seed=2)
    fair = exact_pixels(a, b, true)
    b = b + 0.02 * torch.randn(b.shape, generator=torch.Generator().manual_seed(9), dtype=b.dtype)
    exact = pm.brute_force_nnf(a, b, 3)
    assert (exact == true).all(-1)[fair].all()
    # randomised: over seeds 1-5, 93-100% agree and the total distance is 1.06-1.35× the exact one
    approx = pm.patchmatch(a, b, 3, iters=12, generator=torch.Generator().manual_seed(2))
    assert (approx == exact).all(-1)[fair].float().mean() > 0.9  # at most one 8×8 block not found yet
    d_exact = pm.patch_distance(a, b, exact, 3).sum()
    d_approx = pm.patch_distance(a, b, approx, 3).sum()
    assert d_exact <= d_approx <= 1.4 * d_exact


def test_patch_distance_matches_patch_vectors_and_chunking(monkeypatch):
    a, b = texture(10, 13, seed=1).double(), texture(9, 11, seed=2).double()
    nnf = pm.random_nnf((10, 13), (9, 11), torch.Generator().manual_seed(4))
    pa, pb = pm.patch_vectors(a, 5), pm.patch_vectors(b, 5)
    expected = (pa - pb[nnf[..., 0].flatten() * 11 + nnf[..., 1].flatten()]).square().sum(1).reshape(10, 13)
    torch.testing.assert_close(pm.patch_distance(a, b, nnf, 5), expected)
    monkeypatch.setattr(pm, "CHUNK_ELEMENTS", 16)  # one row per chunk
    torch.testing.assert_close(pm.patch_distance(a, b, nnf, 5), expected)


def test_seeded_search_is_reproducible():
    a, b = texture(20, 20, seed=1), texture(20, 20, seed=2)
    runs = [pm.patchmatch(a, b, 3, 2, generator=torch.Generator().manual_seed(7)) for _ in range(2)]
    assert torch.equal(*runs)


def test_upsampling_keeps_a_known_field():
    coarse = pm.identity_nnf((16, 16)) + torch.tensor([3, 5])  # a shift into a larger B (20×24)
    fine = pm.upsample_nnf(coarse, (32, 32), (20, 24), (40, 48))
    assert torch.equal(fine, pm.identity_nnf((32, 32)) + torch.tensor([6, 10]))
    # identity between odd sizes (VGG's ceil-mode pooling) stays within a pixel of identity
    ident = pm.upsample_nnf(pm.identity_nnf((9, 11)), (17, 21), (9, 11), (17, 21))
    assert (ident - pm.identity_nnf((17, 21))).abs().max() <= 1


def test_vote_reproduces_the_source_from_a_perfect_field():
    a = texture(32, 32, seed=4)
    b, true = block_permutation(a, 8, seed=3)
    torch.testing.assert_close(pm.vote(b, true, 1), a)  # 1-px patches: each pixel is its match
    voted = pm.vote(b, true, 3)
    fair = exact_pixels(a, b, true)
    torch.testing.assert_close(voted[:, fair], a[:, fair])
    torch.testing.assert_close(pm.vote(a, pm.identity_nnf((32, 32)), 5), a)  # borders included


def test_channel_mismatch_is_an_error():
    with pytest.raises(ValueError, match="channels"):
        pm.patchmatch(torch.rand(3, 8, 8), torch.rand(4, 8, 8))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_runs_on_cuda_like_on_cpu():
    a = texture(48, 48)
    b = torch.roll(a, (3, 4), (1, 2))
    nnf = pm.patchmatch(a.cuda(), b.cuda(), 3, 5, generator=torch.Generator().manual_seed(0))
    assert nnf.device.type == "cuda"
    assert (nnf.cpu() == shift_field(48, 48, 3, 4)).all(-1)[2:-2, 2:-2].float().mean() > 0.95
