"""The machine a run measured: CPU, cores, memory, versions, load, and its large-copy bandwidth."""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform

import numpy as np

from benchmarks.timing import interleaved


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as file:
            for line in file:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        with open("/proc/meminfo") as file:
            for line in file:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def describe() -> dict:
    """CPU model, cores, memory, library versions, load: what the report's header prints."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": usable,
        "memory_gib": _memory_gib(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {name: _version(name) for name in
                     ("keras-norms", "tensorflow", "keras", "jax", "numpy", "torch", "ai-edge-litert")},
        "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default (on for x86 Linux builds)"),
        "load_average_start": load_average(),
    }


def copy_bandwidth(nbytes: int, *, repeats: int) -> dict:
    """Bytes read plus bytes written per second by a large copy, the best of TensorFlow's and NumPy's.

    The copy is as large as a benchmark tensor (far beyond the caches), so
    this is what memory can deliver to the normalization kernels; it sets the
    floor of the report (bytes that must move / bandwidth).
    """
    import tensorflow as tf

    elements = nbytes // 4
    source = tf.random.uniform([elements])
    tf_copy = tf.function(lambda: tf.raw_ops.DeepCopy(x=source))
    array = np.random.default_rng(0).random(elements, dtype=np.float32)
    target = np.empty_like(array)
    timings = interleaved(
        {"tensorflow": tf_copy, "numpy": lambda: np.copyto(target, array)}, repeats=repeats, warmup=2
    )
    # The fastest repeat: what memory can deliver when the neighbours are quiet (a low floor).
    rates = {name: 2 * nbytes / (t["min_ms"] / 1e3) / 1e9 for name, t in timings.items()}
    best = max(rates, key=rates.get)
    return {"bytes": nbytes, "gb_per_s": rates[best], "method": best,
            "by_method_gb_per_s": {k: round(v, 2) for k, v in rates.items()}}
