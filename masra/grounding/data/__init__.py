"""Training data of the grounding stage: a split resident in memory and the typed batches it cuts.

- :mod:`~masra.grounding.data.resident`: :class:`ResidentSplit` (features read once from the feature
  store, labels on the clip grid, priors joined), the seeded epoch order and the label subset;
- :mod:`~masra.grounding.data.batch`: :class:`Batch`, with the priors as one :class:`PriorBatch`;
- :mod:`~masra.grounding.data.pseudo` and :mod:`~masra.grounding.data.pseudo_cache`: prior events as
  training queries (the filtering rules, and their texts encoded once per prior run).
"""
