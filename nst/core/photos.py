"""Training photos: a folder tree of images, random square crops and flips, reproducible by position.

Every sample is drawn from an infinite stream fixed by the seed: position p of the stream is photo
perm_e[p mod N] of epoch e = p // N (perm_e a seeded permutation), cropped with an RNG seeded by
(seed, p). So a run resumed at step k sees exactly the samples an uninterrupted run would, on any
number of workers or ranks.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch.utils.data import Dataset, Sampler

from nst.core.images import load_image, resize
from nst.errors import NSTError, UsageError

PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}


def find_photos(root: str | Path) -> list[Path]:
    """Every .jpg/.jpeg/.png/.webp under ROOT (recursive, sorted). Raises NSTError if there are none."""
    if not isinstance(root, (str, os.PathLike)):
        raise UsageError(f"data must be the path of a folder of training photos, got {root!r}")
    root = Path(root)
    if root.is_file():
        raise NSTError(f"{root}: is a file, not a folder of training photos")
    if not root.is_dir():
        raise NSTError(f"{root}: no such folder (the training photos)")
    photos = sorted(p for p in root.rglob("*") if p.suffix.lower() in PHOTO_SUFFIXES and p.is_file())
    if not photos:
        raise NSTError(f"{root}: no training images ({', '.join(sorted(PHOTO_SUFFIXES))}) in this folder tree")
    return photos


class StreamSampler(Sampler):
    """Yields stream positions for one rank: global batch g covers positions [g·B·W, (g+1)·B·W); this
    rank takes its B-sized slice. Starts at global batch START and runs for STEPS batches."""

    def __init__(self, batch_size: int, start: int, steps: int, rank: int = 0, world: int = 1) -> None:
        self.batch_size, self.start, self.steps, self.rank, self.world = batch_size, start, steps, rank, world

    def __iter__(self):
        for g in range(self.start, self.start + self.steps):
            first = (g * self.world + self.rank) * self.batch_size
            yield from range(first, first + self.batch_size)

    def __len__(self) -> int:
        return self.steps * self.batch_size


class PhotoCrops(Dataset):
    """dataset[p] -> ((3, S, S) crop in [0, 1], path of a corrupt photo skipped or "") for stream position p.

    A photo that cannot be read is replaced by the next one in the epoch's order and reported.
    """

    def __init__(self, photos: list[Path], size: int, seed: int) -> None:
        self.photos, self.size, self.seed = photos, size, seed
        self._perm: dict[int, torch.Tensor] = {}

    def _photo(self, position: int) -> int:
        n = len(self.photos)
        epoch = position // n
        if epoch not in self._perm:
            self._perm = {epoch: torch.randperm(n, generator=torch.Generator().manual_seed(self.seed * 100003 + epoch))}
        return int(self._perm[epoch][position % n])

    def __len__(self) -> int:  # the stream is endless; the sampler decides what is drawn
        return 2 ** 62

    def __getitem__(self, position: int):
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + position)
        skipped = ""
        index = self._photo(position)
        for attempt in range(len(self.photos)):
            path = self.photos[(index + attempt) % len(self.photos)]
            try:
                image = load_image(path)[0]
            except NSTError:
                skipped = skipped or str(path)
                continue
            return self._crop(image, g), skipped
        raise NSTError("none of the training images can be read")

    def _crop(self, image: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """Resize so the short side is S, take a random S×S crop, flip half of them."""
        h, w = image.shape[-2:]
        scale = self.size / min(h, w)
        image = resize(image[None], (max(self.size, round(h * scale)), max(self.size, round(w * scale))))[0]
        h, w = image.shape[-2:]
        top = int(torch.randint(0, h - self.size + 1, (1,), generator=g))
        left = int(torch.randint(0, w - self.size + 1, (1,), generator=g))
        crop = image[:, top:top + self.size, left:left + self.size]
        return crop.flip(-1) if torch.rand(1, generator=g) < 0.5 else crop


def collate(batch):
    """[(crop, skipped)] -> ((B, 3, S, S), [skipped paths])."""
    return torch.stack([c for c, _ in batch]), [s for _, s in batch if s]
