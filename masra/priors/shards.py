"""Atomic Parquet shard writing and reading (pyarrow only; stage 2 may import this).

A shard is written to a temporary file in the same folder and renamed into place, so a reader never
sees a partial shard: a killed writer leaves at most a ``*.tmp`` file, which readers ignore (and
``masra priors generate`` removes at its next start). Shards get the mode of a normal new file
(``0666`` less the umask, e.g. ``0644``), not the ``0600`` of a temporary file.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from masra.priors.schema import check_schema


def rows_to_table(rows: Iterable[Mapping[str, Any]], schema: pa.Schema) -> pa.Table:
    """Build a table of exactly ``schema`` from row dicts (missing nullable fields become null)."""
    rows = list(rows)
    cols = {name: [r.get(name) for r in rows] for name in schema.names}
    return pa.Table.from_pydict(cols, schema=schema)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_table_atomic(table: pa.Table, path: str | os.PathLike[str]) -> Path:
    """Write ``table`` to ``path`` atomically (temp file + fsync + rename).

    Only string columns are dictionary-encoded: dictionaries of embedding values cost time and space
    (a QVHighlights-scale embedding shard wrote in 14-22 s and read in 5.0-5.7 s with them, in 8 s and
    1.9-2.5 s without, and is 3 % smaller).
    """
    path = Path(path)
    strings = [f.name for f in table.schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            pq.write_table(table, f, compression="zstd", use_dictionary=strings)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def shard_paths(folder: str | os.PathLike[str]) -> list[Path]:
    """Complete shards of a run folder, in name order (temporary files are skipped)."""
    return sorted(p for p in Path(folder).glob("*.parquet") if not p.name.startswith("."))


def read_shards(folder: str | os.PathLike[str], schema: pa.Schema) -> pa.Table:
    """Read and concatenate all complete shards of ``folder``, checking each one's schema."""
    paths = shard_paths(folder)
    if not paths:
        raise FileNotFoundError(f"no Parquet shards under {folder}")
    tables = []
    for p in paths:
        t = pq.read_table(p)
        check_schema(t.schema, schema, str(p))
        tables.append(t.select(schema.names).cast(schema))
    return pa.concat_tables(tables)
