"""The non-finite loss watch of training, without a host sync per step.

The first bad step (``NO_BAD_STEP`` if none) lives on the device; the trainer reads it at each log
line and at the end of each epoch, before any evaluation or checkpoint, so nothing is saved from a
bad state. All processes agree: the first bad step is the minimum over processes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from torch import Tensor

from masra.grounding.data.batch import Batch

__all__ = ["NO_BAD_STEP", "LossWatch"]

NO_BAD_STEP = 2**62  # the watch's value when every watched loss was finite


class LossWatch:
    """Records, per step, whether the loss was finite, and the step's qids until the next check."""

    def __init__(self) -> None:
        self.first_bad: Tensor | None = None
        self.recent_qids: dict[int, list[Any]] = {}

    def record(self, total: Tensor, step: int, batch: Batch) -> None:
        """Keep (on the device, no sync) ``step`` if ``total`` is not finite."""
        cand = torch.where(torch.isfinite(total.detach()), NO_BAD_STEP, step).to(torch.long).reshape(1)
        self.first_bad = cand if self.first_bad is None else torch.minimum(self.first_bad, cand)
        self.recent_qids[step] = [m.get("qid") for m in batch.meta]

    def check(self, acc: Accelerator, epoch: int, run_dir: Path) -> None:
        """Raise FloatingPointError naming the first bad step and its qids, if any since the last check.

        ``epoch`` is the number of finished epochs; ``run_dir/last`` is left as it was.
        """
        qids, self.recent_qids = self.recent_qids, {}
        if self.first_bad is None:
            return
        first = self.first_bad
        if acc.num_processes > 1:
            first = acc.gather(first).min().reshape(1)
        bad = int(first.item())
        if bad == NO_BAD_STEP:
            return
        raise FloatingPointError(
            f"non-finite training loss at step {bad} (epoch {epoch + 1}); batch qids "
            f"{qids.get(bad, 'of another process')}. Training stopped; {run_dir / 'last'} is left "
            f"as it was (epoch {epoch}). Check the features of these queries and the learning rate"
        )
