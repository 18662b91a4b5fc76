"""Which queries a step sees: the seeded epoch order, the labelled subset and the pseudo-queries.

Epoch order is a function of (seed, epoch) only, and each process takes its own slice of every
global batch, so multi-process runs need no sampler. Pseudo-queries (prior events as queries) that
join labelled batches come from their own stream, a function of (seed, step) only
(:func:`pseudo_step_rows`), so the labelled order is that of a run without them and a resumed run
draws the same ones.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["epoch_batches", "label_subset", "pseudo_per_process", "pseudo_step_rows", "steps_per_epoch"]


def label_subset(num_queries: int, fraction: float, seed: int) -> Tensor:
    """Sorted (k,) int64 rows of the queries kept as labelled, ``k = max(1, round(fraction * n))``.

    The rows are a prefix of one seeded permutation, so for one seed a smaller fraction's queries are
    among a larger one's.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"label fraction must be in (0, 1], got {fraction!r}")
    order = np.random.default_rng([int(seed), 0x1ABE1]).permutation(num_queries)
    k = max(1, round(fraction * num_queries))
    return torch.from_numpy(np.sort(order[:k]).astype(np.int64))


def epoch_batches(
    num_items: int,
    global_batch: int,
    *,
    seed: int,
    epoch: int,
    rank: int = 0,
    world: int = 1,
    shuffle: bool = True,
) -> list[Tensor]:
    """This process's index batches of one epoch; the order depends only on (seed, epoch).

    Global batch ``s`` is ``order[s * G : (s + 1) * G]``; process ``rank`` takes its ``G / world``
    contiguous share. With one process the last batch may be smaller; with several the order is
    padded by wrapping around so every process runs the same number of equal batches.
    """
    if global_batch % world:
        raise ValueError(f"batch size {global_batch} is not a multiple of the {world} processes")
    if num_items < 1:
        raise ValueError("an epoch needs at least one item")
    if shuffle:
        gen = torch.Generator().manual_seed(int(seed) * 100_003 + int(epoch))
        order = torch.randperm(num_items, generator=gen)
    else:
        order = torch.arange(num_items)
    steps = -(-num_items // global_batch)
    if world > 1:
        need = steps * global_batch
        order = order.repeat(-(-need // num_items))[:need]
    per = global_batch // world
    out = []
    for s in range(steps):
        chunk = order[s * global_batch : (s + 1) * global_batch]
        out.append(chunk[rank * per : (rank + 1) * per] if world > 1 else chunk)
    return out


def pseudo_per_process(weight: float, batch_size: int, world: int = 1) -> int:
    """Pseudo-queries each process adds to a step: ``max(1, round(weight * batch_size / world))``
    (0 when ``weight`` is 0)."""
    if weight <= 0:
        return 0
    return max(1, round(weight * (batch_size // world)))


def steps_per_epoch(
    num_labelled: int, num_pseudo: int, batch_size: int, *, weight: float = 0.0, world: int = 1
) -> int:
    """Optimiser steps of one epoch: a pass over the labelled queries in global batches of
    ``batch_size``, or, with none, over the pseudo-queries in global batches of
    ``world * pseudo_per_process(weight, batch_size, world)``.

    >>> steps_per_epoch(100, 0, 32), steps_per_epoch(100, 500, 32, weight=1.0), steps_per_epoch(0, 500, 32, weight=0.5)
    (4, 4, 32)
    """
    if num_labelled:
        items, batch = num_labelled, batch_size
    else:
        items, batch = num_pseudo, world * pseudo_per_process(weight, batch_size, world)
    return len(epoch_batches(items, batch, seed=0, epoch=0, world=world, shuffle=False))


def pseudo_step_rows(
    num_pseudo: int, per_process: int, *, seed: int, step: int, rank: int = 0, world: int = 1
) -> Tensor:
    """(per_process,) int64 pseudo-query indices (in ``[0, num_pseudo)``) of process ``rank`` at
    optimiser step ``step`` (0-based), when pseudo-queries join labelled batches.

    The global stream is a sequence of seeded permutations of the pseudo-queries, one per pass
    (seeded with ``(seed, pass)``); step ``s`` takes its next ``world * per_process`` entries and
    process ``rank`` its contiguous share. Every pseudo-query is seen once per pass, and the rows of
    a step depend only on (seed, step, rank, world).
    """
    if num_pseudo < 1 or per_process < 1:
        raise ValueError(
            f"pseudo_step_rows needs pseudo-queries and a count >= 1, got {num_pseudo}, {per_process}"
        )
    start = (step * world + rank) * per_process
    pos = torch.arange(start, start + per_process)
    passes, index = pos // num_pseudo, pos % num_pseudo
    out = torch.empty(per_process, dtype=torch.long)
    for p in torch.unique(passes).tolist():
        gen = torch.Generator().manual_seed((int(seed) * 1_000_003 + int(p)) * 7 + 0x5E)
        perm = torch.randperm(num_pseudo, generator=gen)
        here = passes == p
        out[here] = perm[index[here]]
    return out
