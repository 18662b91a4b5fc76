"""Dataset cards: extractor names per video feature type, and annotation entries listing fallbacks
(the QVHighlights test split scored from its published labels)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from masra.datasets.card import builtin_card_dir, load_card
from masra.datasets.extractors import EXTRACTOR_DIMS
from masra.datasets.readers import load_queries
from masra.features.registry import EXTRACTORS
from masra.pipelines.cli import main

BASE = (
    "name: t\nformat: qvhighlights\nroot: {root}\nannotations: {{val: v.jsonl}}\nclip_len: 2\nmax_clips: 8\n"
    "text_features: {{dir: text, dim: 384}}\nvideo_features:\n"
)


def _card(tmp_path: Path, features: str) -> Path:
    path = tmp_path / "card.yaml"
    path.write_text(BASE.format(root=tmp_path) + features)
    return path


@pytest.mark.parametrize("name", sorted(p.stem for p in builtin_card_dir().glob("*.yaml")))
def test_shipped_cards_name_known_extractors(name: str) -> None:
    card = load_card(name)
    for src in card.video_features:
        if name == "openworld":  # features only, made by the generator: no extractor
            assert src.extractor is None
            continue
        assert src.extractor in EXTRACTORS, (name, src.name)
        assert EXTRACTORS[src.extractor].dim == src.dim


def test_the_dataset_layer_and_the_registry_list_the_same_extractors() -> None:
    """The card reader checks names and widths against masra.datasets.extractors (it does not import
    masra.features); the registry builds every one of them, no other."""
    assert {n: s.dim for n, s in EXTRACTORS.items()} == EXTRACTOR_DIMS


def test_extractor_and_model_are_read_and_checked(tmp_path: Path) -> None:
    card = load_card(_card(tmp_path, "  clip: {dir: c, dim: 768, extractor: clip-vit-b32, model: ./vit-l14}\n"
                                     "  old: {dir: o, dim: 5}\n"))  # fmt: skip
    clip, old = card.video_features
    assert (clip.extractor, clip.model, clip.dim) == ("clip-vit-b32", "./vit-l14", 768)  # another CLIP model
    assert (old.extractor, old.model) == (None, None)  # cards without extractors still load
    with pytest.raises(ValueError, match="unknown extractor 'i3d'; known: appearance, clip-vit-b32"):
        load_card(_card(tmp_path, "  x: {dir: x, dim: 5, extractor: i3d}\n"))
    with pytest.raises(ValueError, match="makes 2304-d features, the card says dim 2048"):
        load_card(_card(tmp_path, "  sf: {dir: x, dim: 2048, extractor: slowfast-r50}\n"))
    with pytest.raises(ValueError, match="`model` given without an `extractor`"):
        load_card(_card(tmp_path, "  sf: {dir: x, dim: 8, model: w.pyth}\n"))
    over = load_card(
        _card(tmp_path, "  sf: {dir: x, dim: 2304}\n"), {"video_features.sf.extractor": "slowfast-r50"}
    )
    assert over.video_features[0].extractor == "slowfast-r50"


def _qvh_rows(labelled: bool) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for qid, (vid, window) in enumerate([("a", [4, 10]), ("b", [0, 6]), ("c", [12, 20])]):
        row: dict[str, object] = {"qid": qid, "query": f"query {qid}", "duration": 30, "vid": vid}
        if labelled:
            clips = list(range(window[0] // 2, window[1] // 2))
            row |= {
                "relevant_windows": [window],
                "relevant_clip_ids": clips,
                "saliency_scores": [[2, 3, 4]] * len(clips),
            }
        rows.append(row)
    return rows


def _write(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_qvhighlights_test_split_uses_published_labels_when_present(tmp_path: Path) -> None:
    release = _write(tmp_path / "highlight_test_release.jsonl", _qvh_rows(labelled=False))
    card = load_card("qvhighlights", {"root": str(tmp_path)})
    assert card.annotation_path("test") == release  # only the release: predictions only, as before
    assert not any(q.labelled for q in load_queries(card, "test")[0])

    labelled = _write(tmp_path / "highlight_test_with_gt.jsonl", _qvh_rows(labelled=True))
    card = load_card("qvhighlights", {"root": str(tmp_path)})
    assert card.annotation_path("test") == labelled
    queries, _ = load_queries(card, "test")
    assert [q.qid for q in queries] == [0, 1, 2] and all(q.labelled for q in queries)

    # `masra eval --dataset qvhighlights --split test` scores test like val (perfect predictions here)
    preds = [
        {"qid": r["qid"], "pred_relevant_windows": [[*r["relevant_windows"][0], 1.0]],  # type: ignore[index]
         "pred_saliency_scores": [1.0 if i in r["relevant_clip_ids"] else 0.0 for i in range(15)]}  # type: ignore[operator]
        for r in _qvh_rows(labelled=True)
    ]  # fmt: skip
    pred_file = _write(tmp_path / "predictions_test.jsonl", preds)
    res = CliRunner().invoke(main, ["eval", "--predictions", str(pred_file), "--dataset", "qvhighlights",
                                    "--split", "test", "--set", f"root={tmp_path}", "--out", str(tmp_path / "m.json")])  # fmt: skip
    assert res.exit_code == 0, res.output
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["brief"]["MR-full-R1@0.7"] == pytest.approx(100.0)
    assert metrics["scoring"]["num_queries"] == 3


def test_a_card_names_no_prior_run(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """``priors.run`` was documented as stage 2's default prior run but never read: it is dropped with a
    warning (the training config's ``priors_run`` names the run); the shipped cards have none."""
    path = _card(tmp_path, "  a: {dir: a, dim: 4}\npriors: {run: mine, backend: transformers}\n")
    card = load_card(path)
    assert card.extra["priors"] == {"backend": "transformers"}
    assert "priors.run ('mine') is not read" in caplog.text and "--priors-run" in caplog.text
    for shipped in builtin_card_dir().glob("*.yaml"):
        assert "run" not in (load_card(shipped).extra.get("priors") or {}), shipped.name
