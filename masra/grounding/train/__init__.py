"""Training: the Accelerate :class:`~masra.grounding.train.trainer.Trainer`, one run end to end
(:func:`~masra.grounding.train.recipe.run_training`) and the position-only baselines a run is
compared against. A run's checkpoints are written, published and resumed from by
:mod:`masra.grounding.train.checkpoints`; their format and reader are :mod:`masra.grounding.checkpoint`.
"""
