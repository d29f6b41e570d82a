"""Speed and memory benchmarks of keras-norms (scripts, not tests).

Run ``python -m benchmarks`` (or ``make bench``) from the repository root; it
writes BENCHMARKS.md and BENCHMARKS.json. ``python -m benchmarks --quick`` is a
short run for iterating; ``--help`` lists the options.
"""
