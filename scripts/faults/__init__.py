"""The fault-injection suite of issue 15, run by ``scripts/fault_injection.py`` (``make test-faults``).

Everything runs ``masra`` as a user would, in subprocesses, on the shapes fixture that
``masra fixture --seed 0`` builds (a small one, in the work folder), with the tiny random Qwen2.5-VL
of ``scripts/build_tiny_models.py`` as stage 1's MLLM:

- :mod:`faults.common`: the work context, subprocess helpers and the result rows;
- :mod:`faults.stage1`: SIGKILLs of ``masra priors generate`` and two writers on one folder;
- :mod:`faults.training`: SIGKILLs of ``masra train`` and ``--resume``;
- :mod:`faults.inputs`: each bad input of the issue's holes fed to the command that reads it;
- :mod:`faults.report`: the tables, the JSON result and the run-log section.

It imports nothing from ``masra``: results are read from the files the commands write (Parquet
with pyarrow, JSON), so that the suite checks the CLI's behaviour, not the package's internals.
"""
