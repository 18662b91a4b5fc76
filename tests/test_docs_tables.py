"""The reference tables of the docs name every field of the configs they describe, with its default."""

from __future__ import annotations

import re
from dataclasses import fields
from typing import Any

from _doc_commands import REPO


def _doc_value(text: str) -> Any:
    """A default as the docs write it: ``null``, ``true``, ``1e-4``, ``MR-full-mAP``."""
    text = text.strip().strip("`")
    if text in ("null", "true", "false", "[]"):
        return {"null": None, "true": True, "false": False, "[]": []}[text]
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def test_training_config_table_matches_train_config() -> None:
    """docs/training.md's configuration table names every TrainConfig field, and its defaults are the
    dataclass defaults (``card`` marks a default taken from the dataset card)."""
    from dataclasses import MISSING

    from masra.grounding.config import PostprocessConfig, PseudoQueryConfig, TrainConfig

    text = (REPO / "docs" / "training.md").read_text(encoding="utf-8")
    table = text.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    defaults = {f.name: f.default for f in fields(TrainConfig)}
    defaults |= {f"postprocess.{f.name}": f.default for f in fields(PostprocessConfig)}
    defaults |= {
        f"pseudo_queries.{f.name}": f.default_factory() if f.default is MISSING else f.default  # type: ignore[misc]
        for f in fields(PseudoQueryConfig)
    }
    documented: set[str] = set()
    problems = []
    for row in re.findall(r"^\| (`.*?) \| (.*?) \|", table, re.M):
        names = re.findall(r"`([\w.*]+)`", row[0])
        names = [f"{names[0].split('.')[0]}{n}" if n.startswith(".") else n for n in names]
        documented |= set(names)
        values = [v for v in row[1].split(",") if v.strip()]
        if len(values) != len(names):
            continue  # `model.*`: no single default
        for name, value in zip(names, values, strict=True):
            doc, code = _doc_value(value), defaults.get(name)
            if doc != "card" and doc != code:
                problems.append(f"{name}: the table says {doc!r}, TrainConfig has {code!r}")
    heads = {n.split(".")[0] for n in documented}
    missing = sorted({f.name for f in fields(TrainConfig)} - heads - {"dataset"})  # dataset: --dataset
    assert not missing, f"TrainConfig fields missing from docs/training.md's table: {missing}"
    assert not problems, problems


def test_card_table_names_every_card_field() -> None:
    """docs/datasets.md's table of card keys names every DatasetCard field."""
    from masra.datasets.card import DatasetCard

    text = (REPO / "docs" / "datasets.md").read_text(encoding="utf-8")
    table = text.split("## Dataset cards", 1)[1].split("\n#", 1)[0]
    documented = set(re.findall(r"^\| `(\w+)` \|", table, re.M))
    missing = sorted({f.name for f in fields(DatasetCard)} - {"extra"} - documented)
    assert not missing, f"DatasetCard fields missing from docs/datasets.md's table: {missing}"
