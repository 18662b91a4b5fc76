"""The dress rehearsal of a real dataset (issue 26): every step a user runs, on the real annotation files.

``python -m scripts.rehearsal --dataset qvhighlights|charades|tacos`` (``make rehearsal``) takes the
dataset's real annotation files through its shipped card, writes synthetic features of the real
releases' clip lengths and (slightly varying) clip counts for every video, small synthetic videos of
the real durations for a sample, and a rehearsal card; then it runs, in subprocesses as a user
would, ``make tiny-models``, ``masra priors import`` (synthetic priors for the videos without a
video file), ``make priors`` (the tiny MLLM on the sampled videos), ``masra priors embed``,
``make train``, ``make eval`` (every labelled split besides train), ``masra predict`` with a text
query and ``masra predict --video``. It writes ``rehearsal.json`` and ``rehearsal.md``: per step the
time, the exit status, and what was cut, refitted or skipped, read from the files the commands
write (the training run's ``summary.json`` split reports, the import manifest, the logs).

- :mod:`rehearsal.sources`: where the annotations come from (``../shared/datasets/<dataset>``, else
  the committed sample under ``tests/data/rehearsal``), the videos, ``--limit-videos`` subsets;
- :mod:`rehearsal.world`: synthetic features, query features, videos and the rehearsal card;
- :mod:`rehearsal.priors`: the synthetic prior file to import and the prior run's name;
- :mod:`rehearsal.steps`: the commands, run and timed;
- :mod:`rehearsal.offline`: what the ``predict`` steps need that may not be here (weights);
- :mod:`rehearsal.run`: the order of the steps and the work-arounds behind the report's findings;
- :mod:`rehearsal.report`: the counts, ``rehearsal.json`` and ``rehearsal.md``;
- :mod:`rehearsal.sample`: how the committed sample was cut from the real files.
"""
