"""The contract between the stages: what stage 1 writes and stage 2 reads.

- :mod:`masra.priors.schema`: the versioned Parquet schemas of prior and prior-embedding shards.
- :mod:`masra.priors.shards`: atomic shard writing, and reading with a schema check.
- :mod:`masra.priors.run`: :class:`~masra.priors.run.PriorRun`, where a run lives (one naming rule).
- :mod:`masra.priors.table`: :class:`~masra.priors.table.PriorTable`, the padded embeddings stage 2
  trains with (:func:`~masra.priors.table.read_prior_table`).

This package imports only the standard library, numpy and pyarrow (``tests/test_import_boundaries.py``),
so both stages use it without pulling in each other. Nothing is imported here: import the submodules.
"""
