"""Nearest neighbours under centred cosine distance, in chunks of bounded memory, over a bank of style features.

The bank holds the hypercolumns of every style source (a painting at one stroke size, with its rotations),
(N, D), sorted so each (source, region) is one contiguous run of rows. Centred cosine similarity of a query q
(its set centred by the query's own mean) and a bank row b of source g:
    <q - μ_q, b - μ_g> / (|q - μ_q| |b - μ_g|)
is computed from the raw rows as (q̂ · b - q̂ · μ_g) / |b - μ_g| with q̂ the centred, unit query: one copy of the
bank serves the search and the loss's targets (rows gathered and normalised, uncentred).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

CHUNK_BYTES = 128 * 2 ** 20  # scores held at once per chunk (queries × bank rows × 4 bytes)


@dataclass
class Source:
    """Rows START:END of the bank: one painting (STYLE, its index) at one stroke LEVEL; RUNS: {region label:
    (start, end)} (label 0 only without regions); MEAN (D,) of its rows."""

    style: int
    level: int
    start: int
    end: int
    runs: dict[int, tuple[int, int]]
    mean: torch.Tensor


@dataclass
class Bank:
    """ROWS (N, D) raw hypercolumns in DTYPE; CELLS (N, F) the fine layers' blocks at those positions (float16: they
    are only targets), or None; INV_CENTRED (N,) 1 / |row - its source's mean|; INV_NORM (N,) 1 / |row|."""

    rows: torch.Tensor
    cells: torch.Tensor | None
    sources: list[Source]
    inv_centred: torch.Tensor = field(init=False)
    inv_norm: torch.Tensor = field(init=False)

    def __post_init__(self) -> None:
        centred = torch.empty(len(self.rows), device=self.rows.device)
        for s in self.sources:
            centred[s.start:s.end] = (self.rows[s.start:s.end].float() - s.mean).norm(dim=1)
        self.inv_centred = 1 / centred.clamp_min(1e-8)
        self.inv_norm = 1 / self.rows.float().norm(dim=1).clamp_min(1e-8)

    def targets(self, index: torch.Tensor) -> torch.Tensor:
        """(n,) bank rows -> (n, D) unit vectors in float32, the loss's targets."""
        return self.rows[index].float() * self.inv_norm[index, None]


def make_bank(parts: list[tuple[int, int, torch.Tensor, torch.Tensor | None, torch.Tensor | None]],
              dtype: torch.dtype) -> Bank:
    """A bank from PARTS [(style, level, rows (n, D), cells (n, F) or None, region labels (n,) or None)]; rows are
    regrouped by label."""
    rows, blocks, sources, start = [], [], [], 0
    for style, level, part, cells, labels in parts:
        mean = part.float().mean(0)
        if labels is None:
            labels = torch.zeros(len(part), dtype=torch.long, device=part.device)
        order = torch.argsort(labels, stable=True)
        part, labels = part[order], labels[order]
        runs, at = {}, start
        for label, count in zip(*torch.unique_consecutive(labels, return_counts=True)):
            runs[int(label)] = (at, at + int(count))
            at += int(count)
        rows.append(part.to(dtype))
        if cells is not None:
            blocks.append(cells[order].half())
        sources.append(Source(style, level, start, at, runs, mean))
        start = at
    return Bank(torch.cat(rows), torch.cat(blocks) if blocks else None, sources)


def centre_queries(queries: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """(n, D) -> (n, D) centred by MEAN (the whole query set's) and scaled to unit length, float32."""
    return F.normalize(queries.float() - mean, dim=1)


def nearest(queries: torch.Tensor, bank: Bank, start: int, end: int, mean: torch.Tensor,
            chunk_bytes: int = CHUNK_BYTES) -> tuple[torch.Tensor, torch.Tensor]:
    """For each centred unit query (n, D): (best centred cosine similarity (n,), its bank row (n,)) among rows
    START:END, whose source has MEAN. Scores are computed CHUNK_BYTES at a time."""
    n = len(queries)
    best = torch.full((n,), -float("inf"), device=queries.device)
    where = torch.zeros(n, dtype=torch.long, device=queries.device)
    if end <= start or n == 0:
        return best, where
    step = min(n, 4096)
    rows = max(1, chunk_bytes // (4 * step))
    for a in range(0, n, step):
        q = queries[a:a + step]
        offset, q = q @ mean, q.to(bank.rows.dtype)
        for b in range(start, end, rows):
            e = min(end, b + rows)
            scores = ((q @ bank.rows[b:e].t()).float() - offset[:, None]) * bank.inv_centred[None, b:e]
            value, index = scores.max(1)
            better = value > best[a:a + step]
            best[a:a + step] = torch.where(better, value, best[a:a + step])
            where[a:a + step] = torch.where(better, index + b, where[a:a + step])
    return best, where


def balance(scores: torch.Tensor, shares: list[float], rounds: int = 200) -> torch.Tensor:
    """(n, G) similarities of each query's best neighbour in each of G paintings -> (n,) the painting each query
    draws from: its best after a per-painting offset, the offsets set so painting g serves about shares[g] of
    the queries (neighbours drawn from several paintings in proportion, each query where it fits best)."""
    n, g = scores.shape
    if g == 1:
        return torch.zeros(n, dtype=torch.long, device=scores.device)
    want = torch.tensor(shares, device=scores.device, dtype=torch.float32)
    offsets = torch.zeros(g, device=scores.device)
    step = float(scores.max() - scores.min()) / 4 + 1e-6
    for _ in range(rounds):
        choice = (scores + offsets).argmax(1)
        got = torch.bincount(choice, minlength=g).float() / n
        if (got - want).abs().max() * n < 1:
            break
        offsets += step * (want - got)
        step *= 0.97
    return (scores + offsets).argmax(1)
