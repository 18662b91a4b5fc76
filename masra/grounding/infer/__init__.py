"""Inference: ONE path from model outputs to ranked windows and clip saliency.

- :mod:`~masra.grounding.infer.decode`: model outputs of one pass -> prediction rows (used by the
  trainer's evaluation and by the :class:`Grounder` alike);
- :mod:`~masra.grounding.infer.grounder`: :class:`Grounder`, a checkpoint ready for features or text,
  videos of any length;
- :mod:`~masra.grounding.infer.evaluate`: a checkpoint on a dataset split (``masra eval --checkpoint``);
- :mod:`~masra.grounding.infer.raw_video`: a video file through the card's registered extractors
  (:meth:`Grounder.predict_video`, ``masra predict --video``).

This ``__init__`` imports nothing, so ``masra eval --predictions`` stays free of torch.
"""
