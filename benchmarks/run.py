"""Runs the benchmarks and writes BENCHMARKS.md and BENCHMARKS.json (`python -m benchmarks --help`).

For batch, group, instance, layer and RMS norm on the reference shapes
(images (32, 56, 56, 128) with groups=32, sequences (32, 512, 768) for layer
and RMS norm): the forward pass and the training step (forward, then the
gradients with respect to the input and the weights), traced by `tf.function`,
with and without XLA, in float32 and bfloat16 (mixed precision). Each row
interleaves keras-norms (fast paths, and the plain `keras.ops` path), the
Keras built-in layer, PyTorch (when importable; channels last) and reports the
memory floor: the bytes that must move over the measured large-copy bandwidth.
Then batch norm variants (other ranks, channels first, ghost batches, renorm),
the peak memory of a training step, TFLite latency of the paper's CNN, and the
same norms on the JAX backend (`jax.jit` steps, in a process of its own)
against Keras' built-ins there; and whole-model training steps (the paper's
CNN, the ResNet and the transformer) with each norm, Keras' built-in and no
norm, for the compute overhead of normalization.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

from benchmarks.report import ONE_PASS, REDUCTION
from benchmarks.shapes import shapes_for

ROOT = Path(__file__).resolve().parents[1]
# PyTorch processes keep large blocks in the heap, as for the PyTorch anchor of the main section
# (benchmarks/torch_worker.py; BENCHMARKS.md's notes say why).
_HEAP = {"MALLOC_MMAP_THRESHOLD_": str(1 << 30), "MALLOC_TRIM_THRESHOLD_": str(1 << 34)}
SECTIONS = ("main", "variants", "pointwise", "memory", "tflite", "jax", "torch", "models")


def _parse(argv):
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="a short run to iterate: 3 repeats, float32, no XLA, main section only, "
                             "no files unless --out is given")
    parser.add_argument("--norms", default="batch,group,instance,layer,rms")
    parser.add_argument("--modes", default="forward,train,inference",
                        help="forward, train (forward + backward), inference (batch norm only)")
    parser.add_argument("--xla", choices=("off", "on", "both"), default=None)
    parser.add_argument("--dtypes", default=None, help="float32,bfloat16")
    parser.add_argument("--sections", default=None, help=f"any of {','.join(SECTIONS)}")
    parser.add_argument("--shapes", default=None,
                        help="reference,small: the shape sets of benchmarks/shapes.py (default both; "
                             "--quick: reference)")
    parser.add_argument("--repeats", type=int, default=None, help="timed rounds per row (default 15)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--no-torch", action="store_true", help="leave PyTorch out even if installed")
    parser.add_argument("--no-plain", action="store_true", help="leave keras-norms' plain path out")
    parser.add_argument("--out", default=None,
                        help="file prefix for .md and .json (default: BENCHMARKS in the repository root)")
    args = parser.parse_args(argv)
    quick = args.quick
    args.xla = args.xla or ("off" if quick else "both")
    args.dtypes = (args.dtypes or ("float32" if quick else "float32,bfloat16")).split(",")
    args.sections = (args.sections or ("main" if quick else ",".join(SECTIONS))).split(",")
    args.repeats = args.repeats or (3 if quick else 15)
    args.shapes = (args.shapes or ("reference" if quick else "reference,small")).split(",")
    args.norms = args.norms.split(",")
    args.modes = args.modes.split(",")
    if args.out is None and not quick:
        args.out = str(ROOT / "BENCHMARKS")
    return args


def _xla_values(choice: str):
    return {"off": [False], "on": [True], "both": [False, True]}[choice]


def _threads() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def _torch_worker(args, **kwargs):
    if args.no_torch or importlib.util.find_spec("torch") is None:
        return None
    from benchmarks.torch_worker import TorchWorker

    return TorchWorker(_threads(), **kwargs)


def _row(label: dict, timings: dict, floor_ms: float) -> dict:
    row = {**label, "floor_ms": floor_ms, "ms": {name: t["median_ms"] for name, t in timings.items()},
           "min_ms": {name: t["min_ms"] for name, t in timings.items()},
           "samples_ms": {name: t["samples_ms"] for name, t in timings.items()}}
    print(_describe(row), flush=True)
    return row


def _compiled(row: dict) -> str:
    """How the row's step runs: "xla", "graph" (TensorFlow without XLA) or "eager" (PyTorch)."""
    return "eager" if row.get("backend") == "torch" else "xla" if row["xla"] else "graph"


def _describe(row: dict) -> str:
    return "  ".join([f"{row['norm']:>8} {row.get('variant', ''):>14} {row['mode']:>9} "
                      f"{_compiled(row):>5} {row['dtype']:>8}"]
                     + [f"{name} {ms:7.1f}" for name, ms in row["ms"].items()]
                     + [f"floor {row['floor_ms']:5.1f}",
                        f"keras/ours {row['ms']['keras'] / row['ms']['keras-norms']:4.2f}"])


def _measure_row(label, ours, keras_layer, shape, *, args, bandwidth, torch, torch_spec=None,
                 ours_kwargs=None, keras_kwargs=None, extra=None, passes=None, anchors=None):
    from benchmarks import tf_workloads as W
    from benchmarks.timing import interleaved

    common = {"mode": label["mode"], "xla": label["xla"], "dtype": label["dtype"]}
    contenders = {"keras-norms": W.step(ours, shape, **common, layer_kwargs=ours_kwargs)}
    if not args.no_plain:
        contenders["keras-norms plain"] = W.step(ours, shape, **common, fast=False, layer_kwargs=ours_kwargs)
    contenders["keras"] = W.step(keras_layer, shape, **common, layer_kwargs=keras_kwargs)
    for name, make_layer in (extra or {}).items():
        contenders[name] = W.step(make_layer, shape, **common)
    if label["mode"] == "inference" or passes is not None:
        contenders[ONE_PASS] = W.one_pass(shape, xla=label["xla"], dtype=label["dtype"])
    contenders.update(anchors or {})
    key = None
    if torch is not None and torch_spec is not None:
        key = json.dumps(torch_spec, sort_keys=True)
        torch.setup(key, torch_spec)
        contenders["torch"] = torch.timed(key)
    timings = interleaved(contenders, repeats=args.repeats, warmup=args.warmup)
    floor_ms = 1e3 * (passes or W.PASSES)[label["mode"]] * W.tensor_bytes(shape, label["dtype"]) / (
        bandwidth * 1e9)
    row = _row(label, timings, floor_ms)
    del contenders
    if key is not None:
        torch.drop(key)
    gc.collect()
    return row


def run_main(args, bandwidth, torch) -> list[dict]:
    from benchmarks import tf_workloads as W

    rows = []
    for name in args.norms:
        norm = W.NORMS[name]
        for shape_set in args.shapes:
            shape = shapes_for(name, shape_set)
            for dtype in args.dtypes:
                for xla in _xla_values(args.xla):
                    for mode in args.modes:
                        if mode == "inference" and name != "batch":
                            continue
                        label = {"norm": name, "shape": list(shape), "shapes": shape_set, "mode": mode,
                                 "xla": xla, "dtype": dtype}
                        spec = {"norm": name, "shape": list(shape), "dtype": dtype, "mode": mode,
                                "groups": norm.groups}
                        anchors = _forward_anchors(name, shape, label) if mode == "forward" else {}
                        row = _measure_row(label, norm.ours, norm.keras, shape, args=args,
                                           bandwidth=bandwidth, torch=torch, torch_spec=spec, anchors=anchors)
                        if anchors and not xla:
                            row["graph_passes"] = W.graph_passes(norm.ours, shape, dtype=dtype)
                        rows.append(row)
    return rows


def _forward_anchors(name: str, shape, label) -> dict:
    """What bounds a forward row of group, instance, layer or RMS norm: one pass, and under XLA one reduction.

    Group and instance norm reduce over the positions (`(1, 2)` of NHWC), layer
    and RMS norm over the last axis.
    """
    from benchmarks import tf_workloads as W

    if name not in ("group", "instance", "layer", "rms"):
        return {}
    anchors = {ONE_PASS: W.one_pass(shape, xla=label["xla"], dtype=label["dtype"])}
    if label["xla"]:
        axes = [1, 2] if name in ("group", "instance") else [-1]
        anchors[REDUCTION] = W.reduction(shape, xla=True, dtype=label["dtype"], axes=axes)
    return anchors


def run_variants(args, bandwidth) -> list[dict]:
    """Batch norm at other ranks, channels first, with ghost batches and with renorm (float32, graph mode)."""
    from benchmarks import tf_workloads as W

    norm = W.NORMS["batch"]
    variants = [
        ("rank 2", (32 * 56 * 56, 128), {}, {}, ("train", "inference")),
        ("rank 3", (32, 56 * 56, 128), {}, {}, ("train", "inference")),
        ("rank 5", (32, 4, 14, 56, 128), {}, {}, ("train", "inference")),
        ("NCHW", (32, 128, 56, 56), {"axis": 1}, {"axis": 1}, ("train", "inference")),
        # Keras has no ghost batch norm: the anchor is its plain batch norm.
        ("virtual 8", W.IMAGES, {"virtual_batch_size": 8}, {}, ("train",)),
        ("renorm", W.IMAGES, {"renorm": True}, {"renorm": True}, ("train",)),
    ]
    rows = []
    for variant, shape, ours_kwargs, keras_kwargs, modes in variants:
        for mode in modes:
            label = {"norm": "batch", "variant": variant, "shape": list(shape), "mode": mode, "xla": False,
                     "dtype": "float32"}
            rows.append(_measure_row(label, norm.ours, norm.keras, shape, args=args, bandwidth=bandwidth,
                                     torch=None, ours_kwargs=ours_kwargs, keras_kwargs=keras_kwargs))
    return rows


def run_pointwise(args, bandwidth) -> list[dict]:
    """DyT and Derf against the layer norm they replace, ours and Keras', and one pass over the tensor."""
    from benchmarks import tf_workloads as W

    rows = []
    for name, norm in W.POINTWISE.items():
        for dtype in args.dtypes:
            for xla in _xla_values(args.xla):
                for mode in ("forward", "train"):
                    label = {"norm": name, "shape": list(norm.shape), "mode": mode, "xla": xla,
                             "dtype": dtype}
                    rows.append(_measure_row(label, norm.ours, norm.keras, norm.shape, args=args,
                                             bandwidth=bandwidth, torch=None, passes=W.POINTWISE_PASSES,
                                             extra={"keras-norms layer": W.NORMS["layer"].ours}))
    return rows


def run_memory(args) -> list[dict]:
    """Peak memory of one training step (float32, graph mode), in bytes and in units of the input's size."""
    from benchmarks import tf_workloads as W

    torch = _torch_worker(args, for_memory=True)
    rows = []
    try:
        for name in args.norms:
            norm = W.NORMS[name]
            size = W.tensor_bytes(norm.shape, "float32")
            common = {"mode": "train", "xla": False, "dtype": "float32"}
            peaks = {"keras-norms": W.peak_memory(W.step(norm.ours, norm.shape, **common))}
            if not args.no_plain:
                plain = W.step(norm.ours, norm.shape, **common, fast=False)
                peaks["keras-norms plain"] = W.peak_memory(plain)
            peaks["keras"] = W.peak_memory(W.step(norm.keras, norm.shape, **common))
            if torch is not None:
                spec = {"norm": name, "shape": list(norm.shape), "dtype": "float32", "mode": "train",
                        "groups": norm.groups}
                torch.setup(name, spec)
                peaks["torch"] = torch.peak_memory(name)
                torch.drop(name)
            gc.collect()
            row = {"norm": name, "input_bytes": size, "peak_bytes": peaks}
            print(f"memory {name:>8} " + "  ".join(f"{k} {v / size:4.2f}x" for k, v in peaks.items() if v),
                  flush=True)
            rows.append(row)
    finally:
        if torch is not None:
            torch.close()
    return rows


def _run_backend(backend: str, args, bandwidth, norms, environment=None) -> list[dict]:
    """Rows from `benchmarks.<backend>_workloads`, run with ``KERAS_BACKEND=<backend>`` in its own process."""
    from benchmarks import tf_workloads as W

    options = ["--norms", ",".join(norms), "--modes", ",".join(args.modes), "--dtypes", ",".join(args.dtypes),
               "--shapes", ",".join(args.shapes), "--repeats", str(args.repeats),
               "--warmup", str(args.warmup)]
    options += ["--no-plain"] if args.no_plain else []
    rows = []
    for row in _json_rows(f"benchmarks.{backend}_workloads", options, backend, environment):
        passes = W.POINTWISE_PASSES if row["norm"] in W.POINTWISE else W.PASSES
        row["floor_ms"] = 1e3 * passes[row["mode"]] * W.tensor_bytes(row["shape"], row["dtype"]) / (
            bandwidth * 1e9)
        print(f"{backend} " + _describe(row), flush=True)
        rows.append(row)
    return rows


def run_jax(args, bandwidth) -> list[dict]:
    """The main rows on the JAX backend (benchmarks/jax_workloads.py, in its own process)."""
    from benchmarks import tf_workloads as W

    if importlib.util.find_spec("jax") is None:
        print("jax is not installed: no JAX section", flush=True)
        return []
    norms = args.norms + (list(W.POINTWISE) if "pointwise" in args.sections else [])
    return _run_backend("jax", args, bandwidth, norms)


def run_torch(args, bandwidth) -> list[dict]:
    """The main rows on the PyTorch backend (benchmarks/torch_workloads.py, in its own process), eager."""
    if args.no_torch or importlib.util.find_spec("torch") is None:
        print("torch is not installed (or --no-torch): no PyTorch section", flush=True)
        return []
    return _run_backend("torch", args, bandwidth, args.norms, environment=_HEAP)


def _json_rows(module: str, options: list[str], backend: str, environment=None):
    """The JSON rows that `python -m <module> <options>` prints, run with ``KERAS_BACKEND=<backend>``."""
    command = [sys.executable, "-m", module, *options]
    environment = {**os.environ, **(environment or {}), "KERAS_BACKEND": backend, "PYTHONPATH": str(ROOT)}
    with subprocess.Popen(command, cwd=ROOT, env=environment, stdout=subprocess.PIPE, text=True) as worker:
        for line in worker.stdout:
            if line.startswith("{"):
                yield json.loads(line)
    if worker.returncode:
        raise RuntimeError(f"the {backend} benchmark failed (exit {worker.returncode}): {' '.join(command)}")


def run_models(args) -> list[dict]:
    """Whole-model training steps and predictions on every installed backend, each in its own process."""
    rows = []
    for backend in ("tensorflow", "jax", "torch"):
        if backend == "torch" and args.no_torch:
            continue
        if importlib.util.find_spec(backend) is None:
            print(f"{backend} is not installed: no model rows there", flush=True)
            continue
        options = ["--norms", ",".join(args.norms), "--repeats", str(args.repeats),
                   "--warmup", str(args.warmup)]
        environment = _HEAP if backend == "torch" else None
        rows += list(_json_rows("benchmarks.model_steps", options, backend, environment))
    return rows


def main(argv=None) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.path.insert(0, str(ROOT))  # keras_norms from this checkout even where it is not installed
    args = _parse(argv)

    from benchmarks import machine, report, tflite_latency
    from benchmarks import tf_workloads as W

    results = {"command": "python -m benchmarks " + " ".join(sys.argv[1:] if argv is None else argv),
               "machine": machine.describe(), "repeats": args.repeats}
    results["bandwidth"] = machine.copy_bandwidth(W.tensor_bytes(W.IMAGES, "float32"), repeats=args.repeats)
    bandwidth = results["bandwidth"]["gb_per_s"]
    print(f"copy bandwidth {bandwidth:.1f} GB/s ({results['bandwidth']['method']})", flush=True)
    if "main" in args.sections:
        torch = _torch_worker(args)
        try:
            results["main"] = run_main(args, bandwidth, torch)
        finally:
            if torch is not None:
                torch.close()
    if "variants" in args.sections and "batch" in args.norms:
        results["variants"] = run_variants(args, bandwidth)
    if "pointwise" in args.sections:
        results["pointwise"] = run_pointwise(args, bandwidth)
    if "memory" in args.sections:
        results["memory"] = run_memory(args)
    if "tflite" in args.sections:
        results["tflite"] = tflite_latency.measure(repeats=args.repeats, threads=_threads())
        latencies = {k: round(v["median_ms"], 3) for k, v in results["tflite"].items() if "median_ms" in v}
        print("tflite", latencies)
    if "jax" in args.sections:
        results["jax"] = run_jax(args, bandwidth)
    if "torch" in args.sections:
        results["torch"] = run_torch(args, bandwidth)
    if "models" in args.sections:
        results["models"] = run_models(args)
    results["machine"]["load_average_end"] = machine.load_average()
    results["targets"] = report.targets(results)
    for target in results["targets"]:
        print(f"{'MET ' if target['met'] else 'MISS'} {target['target']}: {target['measured']}")
    if args.out:
        Path(args.out + ".json").write_text(json.dumps(results, indent=1) + "\n")
        Path(args.out + ".md").write_text(report.markdown(results))
        print(f"wrote {args.out}.md and {args.out}.json")
