"""Batched minimum-cost assignment on torch tensors, without a host round trip.

:func:`batched_linear_sum_assignment` solves B rectangular assignment problems at once: for each
problem ``b`` every real row ``r`` (``row_mask[b, r]`` True) is given a distinct column so that the
sum of ``cost[b, r, col]`` is minimal, as :func:`scipy.optimize.linear_sum_assignment` does for one
matrix. It is the shortest-augmenting-path method (Jonker-Volgenant / Crouse, the one scipy
implements) with its loops unrolled to a fixed count that depends only on the shape, and every
problem of the batch advanced in lock step under masks. Nothing reads a tensor's value on the host,
so on a GPU the whole solve is queued like any other kernel sequence (no ``.item()``, no ``.cpu()``,
no data-dependent branch) and is safe to capture in a CUDA graph.

Cost: ``R (R + 1) / 2`` Dijkstra steps of O(B C) work each, plus ``R (R + 1) / 2`` augmentation
steps; for matching (R <= ~10 targets, C = 10 queries) that is a few hundred small kernels.

Ties: where several assignments are optimal this one may pick another than scipy; the total cost is
the same (the tests check both: equal total always, equal assignment when the optimum is unique).
Costs are solved in float64 (scipy's precision) and must be finite.

:func:`scipy_batched_assignment` is the same contract solved by scipy per problem (the CPU fallback).
"""

from __future__ import annotations

import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

__all__ = ["batched_linear_sum_assignment", "scipy_batched_assignment"]

_INF = float("inf")


def _check(cost: Tensor, row_mask: Tensor | None) -> Tensor:
    """The (B, R) row mask (all True when None), after checking shapes."""
    if cost.ndim != 3:
        raise ValueError(f"assignment: cost must be (B, R, C), got shape {tuple(cost.shape)}")
    if row_mask is None:
        return torch.ones(cost.shape[:2], dtype=torch.bool, device=cost.device)
    if row_mask.shape != cost.shape[:2] or row_mask.dtype != torch.bool:
        raise ValueError(
            f"assignment: row_mask must be bool {tuple(cost.shape[:2])}, got {row_mask.dtype} "
            f"{tuple(row_mask.shape)}"
        )
    return row_mask.to(cost.device)


def batched_linear_sum_assignment(cost: Tensor, row_mask: Tensor | None = None) -> Tensor:
    """Column of each row in a minimum-cost assignment, for B problems at once, on ``cost``'s device.

    Args:
        cost: (B, R, C) finite costs (any float dtype; solved in float64).
        row_mask: (B, R) bool, True for a real row; padded rows are left unassigned. None: all real.
            Each problem's real rows must number at most C (checked only when the mask is None, where
            a tall matrix R > C is solved transposed: then C rows are assigned and R - C get -1).

    Returns:
        (B, R) int64: the column assigned to each row, -1 for padded (or, when R > C, unassigned) rows.

    Example::

        >>> c = torch.tensor([[[4.0, 1.0, 3.0], [2.0, 0.0, 5.0]]])
        >>> batched_linear_sum_assignment(c).tolist()
        [[1, 0]]
    """
    mask = _check(cost, row_mask)
    batch, rows, cols = cost.shape
    if rows > cols:
        if row_mask is not None:
            raise ValueError(f"assignment: {rows} padded rows but only {cols} columns; pad to R <= C")
        col4row_t = batched_linear_sum_assignment(cost.transpose(1, 2))  # (B, C): row of each column
        out = torch.full((batch, rows), -1, dtype=torch.int64, device=cost.device)
        cols_idx = torch.arange(cols, device=cost.device).expand(batch, cols)
        return out.scatter_(1, col4row_t, cols_idx)
    if batch == 0 or rows == 0:
        return torch.full((batch, rows), -1, dtype=torch.int64, device=cost.device)
    return _solve(cost.to(torch.float64), mask)


def _solve(cost: Tensor, mask: Tensor) -> Tensor:
    """Shortest augmenting paths on (B, R, C) float64 costs, R <= C; see the module docstring."""
    batch, rows, cols = cost.shape
    dev = cost.device
    b_idx = torch.arange(batch, device=dev)
    u = cost.new_zeros(batch, rows)  # row duals
    v = cost.new_zeros(batch, cols)  # column duals
    col4row = torch.full((batch, rows), -1, dtype=torch.int64, device=dev)
    row4col = torch.full((batch, cols), -1, dtype=torch.int64, device=dev)
    for cur in range(rows):
        active = mask[:, cur]  # (B,) problems that assign row ``cur`` now
        spc = cost.new_full((batch, cols), _INF)  # shortest path cost to each column
        path = torch.full((batch, cols), -1, dtype=torch.int64, device=dev)  # previous row on the path
        seen_row = torch.zeros(batch, rows, dtype=torch.bool, device=dev)
        seen_col = torch.zeros(batch, cols, dtype=torch.bool, device=dev)
        min_val = cost.new_zeros(batch)
        row_i = torch.full((batch,), cur, dtype=torch.int64, device=dev)
        searching = active.clone()  # (B,) no free column reached yet
        sink = torch.zeros(batch, dtype=torch.int64, device=dev)
        # At most ``cur`` columns are taken, so a free one is reached within cur + 1 steps.
        for _ in range(min(cur + 1, cols)):
            seen_row[b_idx, row_i] |= searching
            reduced = min_val[:, None] + cost[b_idx, row_i] - u.gather(1, row_i[:, None]) - v  # (B, C)
            better = searching[:, None] & ~seen_col & (reduced < spc)
            spc = torch.where(better, reduced, spc)
            path = torch.where(better, row_i[:, None], path)
            open_spc = spc.masked_fill(seen_col, _INF)
            lowest = open_spc.min(1).values  # (B,)
            tie = ~seen_col & (open_spc == lowest[:, None])
            # Among the cheapest columns prefer a free one (it ends the search), then the lowest index.
            j = (tie.to(torch.int8) * 2 + (tie & (row4col < 0)).to(torch.int8)).argmax(1)  # (B,)
            min_val = torch.where(searching, lowest, min_val)
            seen_col[b_idx, j] |= searching
            owner = row4col.gather(1, j[:, None]).squeeze(1)  # (B,) -1 when j is free
            found = searching & (owner < 0)
            sink = torch.where(found, j, sink)
            row_i = torch.where(searching & ~found, owner, row_i)
            searching = searching & ~found
        # Dual updates: u[cur] += min_val; other rows on the tree: u[i] += min_val - spc[col4row[i]];
        # columns on the tree: v[j] -= min_val - spc[j].
        tree_rows = seen_row & active[:, None]
        tree_rows[:, cur] = False
        spc_of_row = spc.gather(1, col4row.clamp(min=0))  # (B, R)
        u = u + torch.where(tree_rows, min_val[:, None] - spc_of_row, 0.0)
        u[:, cur] += torch.where(active, min_val, 0.0)
        v = v - torch.where(seen_col & active[:, None], min_val[:, None] - spc, 0.0)
        # Augment along the path back from the sink (at most cur + 1 edges).
        j = sink
        going = active.clone()
        for _ in range(min(cur + 1, cols)):
            i = path.gather(1, j[:, None]).squeeze(1).clamp(min=0)  # (B,)
            row4col[b_idx, j] = torch.where(going, i, row4col[b_idx, j])
            prev = col4row[b_idx, i]
            col4row[b_idx, i] = torch.where(going, j, prev)
            going = going & (i != cur)
            j = torch.where(going, prev, j)
    return col4row.masked_fill(~mask, -1)


def scipy_batched_assignment(cost: Tensor, row_mask: Tensor | None = None) -> Tensor:
    """:func:`batched_linear_sum_assignment`'s contract solved by scipy, one problem at a time.

    The CPU fallback: copies ``cost`` to the host (a device wait on a GPU) and returns the (B, R)
    int64 columns on ``cost``'s device.
    """
    mask = _check(cost, row_mask).cpu()
    host = cost.detach().to("cpu", torch.float64)
    out = torch.full(cost.shape[:2], -1, dtype=torch.int64)
    for b in range(cost.shape[0]):
        real = mask[b].nonzero().squeeze(1)
        if real.numel() == 0:
            continue
        r, c = linear_sum_assignment(host[b, real].numpy())
        out[b, real[torch.as_tensor(r, dtype=torch.int64)]] = torch.as_tensor(c, dtype=torch.int64)
    return out.to(cost.device)
