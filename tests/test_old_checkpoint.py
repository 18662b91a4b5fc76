"""A checkpoint written before the grounding stage was re-laid out still loads and predicts the same.

``tests/data/checkpoint_v808d212`` was written by the code of commit 808d212 (flat
``masra/grounding/``): a one-epoch run on the toy world of ``tests/_train_world.py``, with the
outputs that code gave for a fixed random input saved beside it (``expected.npz``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from masra.grounding import load_checkpoint

OLD = Path(__file__).parent / "data" / "checkpoint_v808d212"


def test_a_checkpoint_of_the_old_layout_loads_and_predicts_the_same() -> None:
    model, config = load_checkpoint(OLD)
    assert config["step"] >= 1 and model.cfg.prior_placement in ("video", "cross")
    x = np.load(OLD / "expected.npz")
    with torch.no_grad():
        out = model(
            torch.from_numpy(x["video"]),
            torch.from_numpy(x["vmask"]),
            torch.from_numpy(x["text"]),
            torch.from_numpy(x["tmask"]),
        )
    for key in ("pred_logits", "pred_spans", "saliency"):
        np.testing.assert_allclose(out[key].numpy(), x[key], rtol=1e-5, atol=1e-6, err_msg=key)
