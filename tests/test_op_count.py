"""The op-count tool on tiny shapes: it runs, attributes every op to a part, and MASRA dispatches more.

Counts only, never times: speed is measured by the benchmarks.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator

from bench.op_count import (
    OpCountConfig,
    build_variant,
    count_step_ops,
    format_table,
    main,
    random_batch,
    run_op_count,
)

MASRA_PARTS = ("model.sge", "model.sora", "model.codebook", "model.esta_head", "model.lrca_head")
# The prior losses (ESTA, SGE, LRCA) run in one pass: its region.
PRIOR_LOSSES = ("criterion.prior_losses",)
TINY_MODEL = {"hidden_dim": 32, "num_heads": 4, "ffn_dim": 64, "lrca_dim": 8, "dai_codebook_size": 3}


pytestmark = pytest.mark.usefixtures("one_thread")


def _tiny(**kw: object) -> OpCountConfig:
    base: dict[str, object] = dict(batch_size=3, num_clips=8, text_len=4, prior_dim=8, model=TINY_MODEL)
    base.update(kw)
    return OpCountConfig(**base)  # type: ignore[arg-type]


def test_masra_dispatches_more_ops_and_every_op_has_a_part() -> None:
    result = run_op_count(_tiny())
    base, masra = result["variants"]["baseline"], result["variants"]["masra"]
    assert masra["ops"] > base["ops"] > 0 and masra["compute_ops"] > base["compute_ops"]
    assert result["ratios"]["ops"] == pytest.approx(masra["ops"] / base["ops"], abs=1e-3)
    for counts in (base, masra):
        parts = counts["parts"]
        assert sum(p["total"] for p in parts.values()) == counts["ops"]
        assert counts["forward_ops"] + counts["backward_ops"] == counts["ops"]
        assert counts["backward_ops"] > 0 and counts["syncs"] == 0  # no host sync in the step
        # backward ops are attributed to the parts that created their nodes, not left unlabelled
        assert parts.get("backward", {"total": 0})["total"] <= 2
    for part in MASRA_PARTS + PRIOR_LOSSES:
        assert part not in base["parts"], part
        assert masra["parts"][part]["forward"] > 0 and masra["parts"][part]["backward"] > 0, part
    assert masra["parts"]["criterion.from_batch"]["forward"] > 0  # the prior targets, no gradient
    shared = ("model.decoder", "model.clip_encoder", "criterion.matcher", "criterion.loss_span_giou")
    for part in shared:
        assert base["parts"][part]["forward"] == masra["parts"][part]["forward"], part
    table = format_table(result)
    assert "| model.sora |" in table and "masra / baseline ops" in table


def test_counts_are_deterministic_and_the_cli_writes_json(tmp_path: Path) -> None:
    cfg = _tiny(variants=("masra",))
    variant, video_dim, text_dim = build_variant("masra", cfg, Accelerator(cpu=True))
    batch = random_batch(cfg, video_dim, text_dim, torch.device("cpu"), torch.float32)
    variant.run(batch)
    first, second = count_step_ops(variant, batch), count_step_ops(variant, batch)
    assert first == second

    out = tmp_path / "ops.json"
    main(["--batch-size", "2", "--clips", "6", "--text-len", "3", "--prior-dim", "8", "--json", str(out)])
    saved = json.loads(out.read_text())
    assert set(saved["variants"]) == {"baseline", "masra"}
    assert saved["config"]["batch_size"] == 2 and saved["ratios"]["ops"] > 1


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="max_events"):
        OpCountConfig(min_events=4, max_events=3)
    with pytest.raises(ValueError, match="variants"):
        OpCountConfig(variants=("nope",))
