"""PyTorch anchors (`torch.nn.functional`, channels last), timed in a separate process.

PyTorch's OpenMP threads and TensorFlow's thread pool slow each other down
when both live in one process, so PyTorch runs here, in a subprocess that the
benchmark drives over stdin/stdout (one JSON object per line) and that times
itself; the benchmark still interleaves it with the TensorFlow contenders.

Images are given in TensorFlow's NHWC shape and run as PyTorch NCHW tensors in
`torch.channels_last` memory format (the same bytes in the same order).
Instance norm is `F.group_norm` with one channel per group: on channels-last
CPU tensors it is PyTorch's fastest native instance norm (`F.instance_norm`
reshapes to one batch-norm channel per sample and copies).
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import time

EPSILONS = {"batch": 1e-3, "group": 1e-3, "instance": 1e-3, "layer": 1e-3, "rms": 1e-6}


def _build(spec: dict):
    """One unit of work for `spec` (norm, shape, dtype, mode, groups): a callable returning its outputs."""
    import torch
    import torch.nn.functional as F

    norm, shape, mode = spec["norm"], tuple(spec["shape"]), spec["mode"]
    dtype = torch.bfloat16 if spec["dtype"] == "bfloat16" else torch.float32
    generator = torch.Generator().manual_seed(0)

    def sample(*size):
        return torch.randn(*size, generator=generator)

    if len(shape) == 4:
        batch, height, width, channels = shape
        x, upstream = (sample(batch, channels, height, width).to(dtype=dtype,
                                                                 memory_format=torch.channels_last)
                       for _ in range(2))
    else:
        channels = shape[-1]
        x, upstream = (sample(*shape).to(dtype) for _ in range(2))
    # Parameters stay float32 (as in mixed precision), but the fused RMS kernel wants the input's dtype.
    param_dtype = dtype if norm == "rms" else torch.float32
    weight = (1.0 + 0.5 * sample(channels)).to(param_dtype)
    bias = (0.5 * sample(channels)).to(param_dtype)
    epsilon = EPSILONS[norm]
    running_mean, running_var = torch.zeros(channels), torch.ones(channels)

    def forward(inputs):
        if norm == "batch":
            return F.batch_norm(inputs, running_mean, running_var, weight, bias,
                                training=mode != "inference", momentum=0.01, eps=epsilon)
        if norm in ("group", "instance"):
            groups = channels if norm == "instance" else spec["groups"]
            return F.group_norm(inputs, groups, weight, bias, epsilon)
        if norm == "layer":
            return F.layer_norm(inputs, (channels,), weight, bias, epsilon)
        return F.rms_norm(inputs, (channels,), weight, epsilon)

    if mode != "train":
        def run():
            with torch.no_grad():
                return forward(x)
        return run

    params = [weight] if norm == "rms" else [weight, bias]
    for tensor in (x, *params):
        tensor.requires_grad_(True)

    def run():
        outputs = forward(x)
        return outputs, torch.autograd.grad(outputs, [x, *params], upstream)

    return run


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as file:
        for line in file:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def _peak_growth_bytes(run) -> int | None:
    """Peak resident memory above the resident set before one call (Linux: VmHWM after a reset).

    Meaningful in a worker started with `for_memory=True`: there every large
    block is its own mapping, returned to the system when freed, so the
    resident set follows the live tensors (glibc would otherwise keep freed
    blocks below its adaptive mmap threshold in the heap).
    """
    gc.collect()
    try:
        with open("/proc/self/clear_refs", "w") as file:
            file.write("5")  # resets VmHWM to the current resident set
    except OSError:
        return None
    before = _status_kib("VmRSS")
    outputs = run()
    peak = _status_kib("VmHWM")
    del outputs
    return (peak - before) * 1024


def serve() -> None:
    import torch

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "0")) or torch.get_num_threads())
    runs = {}
    reply = sys.stdout
    for line in sys.stdin:
        request = json.loads(line)
        op = request["op"]
        if op == "setup":
            runs[request["key"]] = run = _build(request["spec"])
            run()  # first-call costs (allocator, kernels) are not what we measure
            answer = {"ok": True}
        elif op == "run":
            start = time.perf_counter()
            runs[request["key"]]()
            answer = {"seconds": time.perf_counter() - start}
        elif op == "memory":
            answer = {"bytes": _peak_growth_bytes(runs[request["key"]])}
        elif op == "drop":
            runs.pop(request["key"], None)
            gc.collect()
            answer = {"ok": True}
        else:
            return
        reply.write(json.dumps(answer) + "\n")
        reply.flush()


class TorchWorker:
    """The benchmark's handle on the PyTorch subprocess."""

    def __init__(self, threads: int, *, for_memory: bool = False):
        # Idle OpenMP threads sleep instead of spinning, which would take the cores from the
        # TensorFlow contender that runs next (PyTorch's own times do not change). Waiting for
        # them to stop instead lets the machine go idle, which slows the next short kernel.
        env = {**os.environ, "BENCH_THREADS": str(threads), "OMP_NUM_THREADS": str(threads),
               "OMP_WAIT_POLICY": "PASSIVE"}
        if for_memory:
            env["MALLOC_MMAP_THRESHOLD_"] = str(1 << 17)
        else:
            # Large blocks come from the heap and stay there, as in TensorFlow's pool: glibc would
            # otherwise map fresh (page-faulting) memory for every tensor above 32 MiB, and the
            # time of one kernel would depend on where the kernel's tensors land (2x apart).
            env["MALLOC_MMAP_THRESHOLD_"] = str(1 << 30)
            env["MALLOC_TRIM_THRESHOLD_"] = str(1 << 34)
        self._process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.torch_worker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            text=True, env=env,
        )

    def _ask(self, request: dict) -> dict:
        self._process.stdin.write(json.dumps(request) + "\n")
        self._process.stdin.flush()
        line = self._process.stdout.readline()
        if not line:
            raise RuntimeError("the PyTorch worker exited (see its stderr above)")
        return json.loads(line)

    def setup(self, key: str, spec: dict) -> None:
        self._ask({"op": "setup", "key": key, "spec": spec})

    def timed(self, key: str):
        """A contender for `timing.interleaved`: runs once in the worker, returns the worker's seconds."""

        return lambda: float(self._ask({"op": "run", "key": key})["seconds"])

    def peak_memory(self, key: str) -> int | None:
        return self._ask({"op": "memory", "key": key})["bytes"]

    def drop(self, key: str) -> None:
        self._ask({"op": "drop", "key": key})

    def close(self) -> None:
        if self._process.poll() is None:
            self._process.stdin.write(json.dumps({"op": "exit"}) + "\n")
            self._process.stdin.flush()
            self._process.wait(timeout=60)


if __name__ == "__main__":
    serve()
