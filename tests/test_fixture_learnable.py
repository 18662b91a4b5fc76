"""The fixture is learnable from its files: a tiny bilinear probe beats position by far (slow)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from masra.datasets.card import load_card
from masra.datasets.features import load_text_features, load_video_features
from masra.datasets.readers import load_queries
from masra.datasets.types import Query
from masra.fixture import BuildConfig, WorldConfig, build_fixture

pytestmark = pytest.mark.slow
CLIP, MAX_CLIPS = 2.0, 32


def _arrays(
    root: Path, split: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, list[Query]]:
    """(video (Q, L, Dv), mask (Q, L), pooled query (Q, Dt), clip labels (Q, L), queries) of a split."""
    card = load_card("fixture", {"root": str(root)})
    queries, _ = load_queries(card, split)
    video = np.zeros((len(queries), MAX_CLIPS, card.video_dim - 2), np.float32)
    mask = np.zeros((len(queries), MAX_CLIPS), bool)
    labels = np.zeros((len(queries), MAX_CLIPS), np.float32)
    pooled = []
    for i, q in enumerate(queries):
        v = load_video_features(card, q.vid)  # (L, 28) per-type L2-normalised
        video[i, : len(v)], mask[i, : len(v)] = v, True
        for s, e in q.windows:
            labels[i, int(s // CLIP) : int(np.ceil(e / CLIP))] = 1.0
        pooled.append(load_text_features(card, q.qid)[1])
    return (
        torch.tensor(video),
        torch.tensor(mask),
        torch.tensor(np.stack(pooled)),
        torch.tensor(labels),
        queries,
    )


class Probe(torch.nn.Module):
    """score(clip, query) = <MLP(clip), W query>: no attention, no temporal context."""

    def __init__(self, dv: int, dt: int, hidden: int = 64) -> None:
        super().__init__()
        self.video = torch.nn.Sequential(
            torch.nn.Linear(dv, 128), torch.nn.ReLU(), torch.nn.Linear(128, hidden)
        )
        self.text = torch.nn.Linear(dt, hidden)

    def forward(self, video: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        return (self.video(video) * self.text(text)[:, None, :]).sum(-1)  # (Q, L)


def _r1(scores: torch.Tensor, mask: torch.Tensor, queries: list[Query], thr: float) -> float:
    """R1@thr of the best-scoring run of clips above 0.5 (the top clip when none is)."""
    hits = []
    for sc, m, q in zip(torch.sigmoid(scores).numpy(), mask.numpy(), queries, strict=True):
        sc = sc[m]
        runs, start = [], None
        for i, on in enumerate([*(sc > 0.5), False]):
            if on and start is None:
                start = i
            elif not on and start is not None:
                runs.append((sc[start:i].sum(), start, i))
                start = None
        _, a, b = max(runs) if runs else (0.0, int(sc.argmax()), int(sc.argmax()) + 1)
        ps, pe = a * CLIP, b * CLIP
        iou = max(max(0.0, min(pe, ge) - max(ps, gs)) / (max(pe, ge) - min(ps, gs)) for gs, ge in q.windows)
        hits.append(iou >= thr)
    return float(np.mean(hits))


def test_bilinear_probe_learns_the_fixture(tmp_path: Path) -> None:
    root = tmp_path / "fx"
    build_fixture(BuildConfig(out=root, world=WorldConfig(seed=4, train_videos=80, val_videos=25)))
    tr_v, tr_m, tr_t, tr_y, _ = _arrays(root, "train")
    va_v, va_m, va_t, _, va_q = _arrays(root, "val")
    torch.manual_seed(0)
    probe = Probe(tr_v.shape[-1], tr_t.shape[-1])
    opt = torch.optim.Adam(probe.parameters(), lr=3e-3)
    for _ in range(400):  # full batch
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            probe(tr_v, tr_t), tr_y, weight=tr_m.float()
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        r1 = _r1(probe(va_v, va_t), va_m, va_q, 0.5)
        blind = _r1(probe(va_v, va_t.mean(0, keepdim=True).expand_as(va_t)), va_m, va_q, 0.5)
    assert r1 > 0.4, r1  # the best fixed window reaches ~0.17, a random event ~0.21
    assert blind < r1 - 0.2, (blind, r1)  # the same probe without the query's words fails
