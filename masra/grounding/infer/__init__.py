"""Inference: ONE path from a checkpoint and its inputs to ranked windows, saliency and metrics.

- :mod:`~masra.grounding.infer.run`: :func:`run_checkpoint`, the entry point every command calls
  (``masra eval --checkpoint``, ``masra predict``, ``masra app``, ``masra viz report``): a checkpoint
  and a split or one video in, predictions and metrics out;
- :mod:`~masra.grounding.infer.decode`: model outputs of one pass -> prediction rows (used by the
  trainer's evaluation and by the :class:`Grounder` alike), ranked as a ``PostprocessConfig`` says;
- :mod:`~masra.grounding.infer.grounder`: :class:`Grounder`, a checkpoint ready for features or text,
  videos of any length (long ones by windows);
- :mod:`~masra.grounding.infer.config`: :class:`GrounderConfig`, how the Grounder feeds its model;
- :mod:`~masra.grounding.infer.inputs`: clip features from an npz file, the text encoder of a card;
- :mod:`~masra.grounding.infer.result`: :class:`Grounding`, the windows and saliency of one query;
- :mod:`~masra.grounding.infer.evaluate`: a card's ground truth and scoring (:func:`card_scoring`);
- :mod:`~masra.grounding.infer.raw_video`: a video file through the card's registered extractors
  (:meth:`Grounder.predict_video`, ``masra predict --video``).

This ``__init__`` imports nothing, so ``masra eval --predictions`` stays free of torch.
"""
