"""scukit's benchmark runner: StoreScu and MockScp against DCMTK on loopback.

Run ``python -m bench`` (``--help`` for options). It builds deterministic corpora into
``bench/out/`` (or ``--workdir``), alternates the runs, and prints files/s, MB/s, the
ratio to DCMTK storescu -> storescp --fork --ignore measured in the same process, peak RSS and
CPU time of each sender; ``--json`` for machines, ``--smoke`` for CI. Not part of the
test suite, and never a pass/fail gate: the targets are printed beside the figures.
"""
