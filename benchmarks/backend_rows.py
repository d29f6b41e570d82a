"""The driver of the JAX and PyTorch sections: their command line, the rows they time, one JSON line each.

`python -m benchmarks` runs `benchmarks.jax_workloads` and
`benchmarks.torch_workloads` each in a process of its own with its
`KERAS_BACKEND`; both parse the same options and print the same rows here,
with their own contenders.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable

from benchmarks.shapes import shapes_for


def main(backend: str, contenders: Callable[..., dict], argv=None, *, version: str, xla: bool) -> None:
    """Times `contenders(name, shape, mode=, dtype=, plain=)` for every row asked, interleaved.

    `contenders` returns `{contender: thunk}` for one row; `version` is the
    backend's version string, `xla` whether its steps are compiled by XLA.
    """
    parser = argparse.ArgumentParser(prog=f"python -m benchmarks.{backend}_workloads")
    parser.add_argument("--norms", default="batch,group,instance,layer,rms")
    parser.add_argument("--modes", default="forward,train,inference")
    parser.add_argument("--dtypes", default="float32")
    parser.add_argument("--shapes", default="reference,small")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--no-plain", action="store_true")
    args = parser.parse_args(argv)
    if os.environ.get("KERAS_BACKEND") != backend:
        sys.exit(f"run with KERAS_BACKEND={backend}")
    from benchmarks.timing import interleaved

    for name in args.norms.split(","):
        for shape_set in args.shapes.split(","):
            shape = shapes_for(name, shape_set)
            for dtype in args.dtypes.split(","):
                for mode in args.modes.split(","):
                    if mode == "inference" and name != "batch":
                        continue
                    row_contenders = contenders(name, shape, mode=mode, dtype=dtype, plain=not args.no_plain)
                    timings = interleaved(row_contenders, repeats=args.repeats, warmup=args.warmup)
                    row = {"norm": name, "shape": list(shape), "shapes": shape_set, "mode": mode, "xla": xla,
                           "dtype": dtype, "backend": backend, backend: version,
                           **{key: {n: t[field] for n, t in timings.items()}
                              for key, field in (("ms", "median_ms"), ("min_ms", "min_ms"),
                                                 ("samples_ms", "samples_ms"))}}
                    print(json.dumps(row), flush=True)
                    del row_contenders
