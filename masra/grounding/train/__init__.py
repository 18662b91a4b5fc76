"""Training: the Accelerate :class:`~masra.grounding.train.trainer.Trainer`, one run end to end
(:func:`~masra.grounding.train.recipe.run_training`) and the position-only baselines a run is
compared against. Checkpoints are :mod:`masra.grounding.checkpoint`.
"""
