"""PriorRun: one naming rule for a prior run's folder, shards, manifest and embeddings."""

from __future__ import annotations

from pathlib import Path

from masra.priors.run import PriorRun
from masra.priors.table import embeddings_dir


def test_paths_of_a_run(tmp_path: Path) -> None:
    run = PriorRun(tmp_path / "priors", "charades__model__abc")
    assert run.dir == tmp_path / "priors" / "charades__model__abc"
    assert run.manifest == run.dir / "manifest.json"
    assert run.embeddings == run.dir / "embeddings"
    assert run.embeddings_dir("minilm") == run.dir / "embeddings" / "minilm"
    # An encoder id's "/" becomes "__": the writer (masra priors embed) and the reader agree.
    assert run.embeddings_dir("openai/clip-vit-base-patch32").name == "openai__clip-vit-base-patch32"
    assert embeddings_dir(tmp_path / "priors", run.name, "a/b") == run.embeddings_dir("a/b")
    assert PriorRun.at(run.dir) == run


def test_shards_skip_temporary_files(tmp_path: Path) -> None:
    run = PriorRun(tmp_path, "r")
    run.embeddings_dir("minilm").mkdir(parents=True)
    for name in ("part-000of001-00001.parquet", "part-000of001-00000.parquet", ".part-x.parquet.tmp"):
        (run.dir / name).write_bytes(b"")
    (run.dir / ".part-000of001-00002.parquet").write_bytes(b"")
    assert [p.name for p in run.shards()] == ["part-000of001-00000.parquet", "part-000of001-00001.parquet"]
