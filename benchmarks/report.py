"""The issue's targets checked against a run's results, and the BENCHMARKS.md text."""

from __future__ import annotations

ONE_PASS = "x + 1"  # the one-op anchor of inference rows (tf_workloads.one_pass)
REDUCTION = "sum"  # the one-reduction anchor of forward rows under XLA (tf_workloads.reduction)
FORWARD_NORMS = ("group", "instance", "layer", "rms")

TARGETS_NOTE = (
    "Targets are ratios within this run: TensorFlow's in float32 on the reference shapes, JAX's and "
    "PyTorch's on every row they name; `Keras/ours` > 1 means keras-norms is faster."
)


#: The norm-free layers, whose anchor is the layer norm they replace (its own target).
POINTWISE_NORMS = ("dyt", "derf")


def _ratio(row, other: str) -> float | None:
    ms = row["ms"]
    return ms[other] / ms["keras-norms"] if ms.get(other) else None


def _rows(rows, **match):
    return [r for r in rows if all(r.get(k) == v for k, v in match.items())]


def _check(targets, text, values, minimum=None, maximum=None, bound=None,
           bound_text="the most any one-pass kernel reaches (`keras / x + 1`)"):
    """Appends the target `text` with its measured `(label, ratio)` values; `bound`: the best reachable."""
    values = [(label, v) for label, v in values if v is not None]
    if not values:
        return
    met = all((minimum is None or v >= minimum) and (maximum is None or v <= maximum) for _, v in values)
    measured = ", ".join(f"{label} {v:.2f}x" for label, v in values)
    bound = [(label, v) for label, v in (bound or []) if v is not None]
    if bound:
        measured += f"; {bound_text}: " + ", ".join(
            f"{label} {v:.2f}x" for label, v in bound)
    targets.append({"target": text, "measured": measured, "met": met})


def targets(results: dict) -> list[dict]:
    """Each target of the issue with what this run measured and whether it is met."""
    variants, found = results.get("variants", []), []
    main = [r for r in results.get("main", []) if r.get("shapes", "reference") == "reference"]
    f32 = {"dtype": "float32"}

    def label(row):
        return row.get("variant") or "NHWC rank 4"

    batch_train = _rows(main, norm="batch", mode="train", xla=False, **f32) + [
        r for r in _rows(variants, mode="train") if r["variant"] in ("rank 2", "rank 3", "rank 5", "NCHW")]
    _check(found, "BatchNormalization training step >= 2.5x Keras (every rank)",
           [(label(r), _ratio(r, "keras")) for r in batch_train], minimum=2.5)
    batch_inference = _rows(main, norm="batch", mode="inference", xla=False, **f32) + _rows(
        variants, mode="inference")
    _check(found, "BatchNormalization inference >= 2x Keras (every rank)",
           [(label(r), _ratio(r, "keras")) for r in batch_inference], minimum=2.0,
           bound=[(label(r), r["ms"]["keras"] / r["ms"][ONE_PASS]) for r in batch_inference
                  if r["ms"].get(ONE_PASS)])
    _check(found, "virtual_batch_size and renorm training not slower than Keras",
           [(r["variant"], _ratio(r, "keras")) for r in variants if r["variant"] in ("virtual 8", "renorm")],
           minimum=1.0)
    for norm in ("group", "instance"):
        _check(found, f"{norm} norm training step >= 2x Keras' GroupNormalization (graph)",
               [(norm, _ratio(r, "keras")) for r in _rows(main, norm=norm, mode="train", xla=False, **f32)],
               minimum=2.0)
        _check(found, f"{norm} norm training step >= 1.3x Keras' GroupNormalization (XLA)",
               [(norm, _ratio(r, "keras")) for r in _rows(main, norm=norm, mode="train", xla=True, **f32)],
               minimum=1.3)
        _check(found, f"{norm} norm training step not slower than PyTorch (graph)",
               [(norm, _ratio(r, "torch")) for r in _rows(main, norm=norm, mode="train", xla=False, **f32)],
               minimum=1.0)
    for norm in ("layer", "rms"):
        _check(found, f"{norm} norm training step >= 2x Keras (graph)",
               [(norm, _ratio(r, "keras")) for r in _rows(main, norm=norm, mode="train", xla=False, **f32)],
               minimum=2.0)
    _check(found, "every training step within 3x of the memory floor (graph)",
           [(r["norm"], r["ms"]["keras-norms"] / r["floor_ms"])
            for r in _rows(main, mode="train", xla=False, **f32)], maximum=3.0)
    forward = [r for r in main if r["norm"] in FORWARD_NORMS and r["mode"] == "forward"]
    _check(found, "group, instance, layer and RMS norm forward within 2x of the memory floor (graph and XLA, "
           "float32 and bfloat16)",
           [(_forward_label(r), r["ms"]["keras-norms"] / r["floor_ms"]) for r in forward], maximum=2.0,
           bound=[(_forward_label(r), _forward_bound(r)) for r in forward],
           bound_text="what bounds the row, over its floor (graph: the passes that its graph of TFLite "
                      "builtin ops makes, op by op; XLA: one reduction of the input, the `sum` column, "
                      "the least any norm's statistics take)")
    jax = [r for r in results.get("jax", []) if r["norm"] not in POINTWISE_NORMS]
    _check(found, "JAX: every row (forward, inference, training step; float32 and bfloat16; both shape sets) "
           "not slower than Keras' built-in (jit)",
           [(_backend_label(r), _ratio(r, "keras")) for r in jax], minimum=1.0,
           bound=[(_backend_label(r), r["ms"]["keras"] / r["ms"][ONE_PASS])
                  for r in jax if r["ms"].get(ONE_PASS)])
    torch = results.get("torch", [])
    _check(found, "PyTorch: every row (eager; both shape sets) not slower than Keras' built-in",
           [(_backend_label(r), _ratio(r, "keras")) for r in torch], minimum=1.0)
    _check(found, "PyTorch: `keras_norms.functional` within 1.2x of `torch.nn.functional` called directly",
           [(_backend_label(r), r["ms"]["keras-norms functional"] / r["ms"]["torch"])
            for r in torch if r["ms"].get("torch") and r["ms"].get("keras-norms functional")],
           maximum=1.2)
    pointwise = _rows(results.get("pointwise", []), **f32)
    _check(found, "DyT and Derf within 2x of one pass over the tensor (x + 1), forward, XLA",
           [(f"{r['norm']} {r['mode']}", r["ms"]["keras-norms"] / r["ms"][ONE_PASS])
            for r in pointwise if r["mode"] == "forward" and r["xla"]], maximum=2.0)
    models = results.get("models", [])
    _check(found, "models (training steps and predict, every backend): none slower with our norm than with "
           "Keras' built-in",
           [(f"{r.get('backend', 'tensorflow')} {r['model']} {r['norm']} {r.get('mode', 'train')}",
             _ratio(r, "keras")) for r in models], minimum=1.0)
    tflite = results.get("tflite", {})
    if "batch" in tflite and "median_ms" in tflite["batch"]:
        _check(found, "TFLite paper CNN with group/instance norm within 1.3x of folded batch norm",
               [(norm, tflite[norm]["median_ms"] / tflite["batch"]["median_ms"])
                for norm in ("group", "instance") if norm in tflite], maximum=1.3)
    return found


def _forward_label(row) -> str:
    return f"{row['norm']} {'XLA' if row['xla'] else 'graph'} {row['dtype']}"


def _forward_bound(row) -> float | None:
    """The least a forward row's own computation costs, in units of its floor (None where not measured)."""
    if not row["xla"]:
        passes = row.get("graph_passes")
        return None if passes is None else passes / 3
    reduction = row["ms"].get(REDUCTION)
    return None if reduction is None else reduction / row["floor_ms"]


def _backend_label(row) -> str:
    dtype = "" if row["dtype"] == "float32" else " bf16"
    return f"{row['norm']} {row['mode']}{dtype} {'x'.join(map(str, row['shape']))}"


def _ms(value) -> str:
    return "" if value is None else f"{value:.1f}"


def _x(value) -> str:
    return "" if value is None else f"{value:.2f}x"


def _contender_columns(rows):
    names = []
    for row in rows:
        names += [n for n in row["ms"] if n not in names]
    return names


def _timing_table(rows, *, variant: bool) -> list[str]:
    names = _contender_columns(rows)
    others = [n for n in names if n != "keras-norms"]
    head = (["variant"] if variant else ["norm", "dtype", "XLA"]) + ["mode", "shape"]
    head += [f"{n} ms" for n in names] + ["floor ms"] + [f"{n} / ours" for n in others] + ["ours / floor"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        compiled = "eager" if row.get("backend") == "torch" else "on" if row["xla"] else "off"
        cells = [row["variant"]] if variant else [row["norm"], row["dtype"], compiled]
        cells += [row["mode"], "x".join(map(str, row["shape"]))]
        cells += [_ms(row["ms"].get(n)) for n in names] + [_ms(row["floor_ms"])]
        cells += [_x(_ratio(row, n)) for n in others] + [_x(row["ms"]["keras-norms"] / row["floor_ms"])]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def markdown(results: dict) -> str:
    machine, bandwidth = results["machine"], results["bandwidth"]
    versions = ", ".join(f"{k} {v}" for k, v in machine["versions"].items() if v)
    lines = [
        "# Benchmarks",
        "",
        f"Made by `{results['command'].strip()}` (`make bench`) on {machine['date']}. Every time is the "
        f"median of {results['repeats']} runs, interleaved with the other contenders of its row so that the "
        "noise of this shared machine hits all of them alike; only ratios within this run are compared.",
        "",
        "## Machine",
        "",
        f"- CPU: {machine['cpu']}, {machine['usable_cores']} usable cores of {machine['logical_cores']}, "
        f"{machine['memory_gib']} GiB memory; {machine['platform']}, Python {machine['python']}",
        f"- Versions: {versions}; oneDNN: {machine['onednn']}",
        f"- Load average (1, 5, 15 min) at start {machine['load_average_start']}, "
        f"at end {machine.get('load_average_end')} (other jobs share the machine)",
        f"- Large-copy bandwidth: {bandwidth['gb_per_s']:.1f} GB/s read + write ({bandwidth['method']}; "
        f"{bandwidth['by_method_gb_per_s']}). The floor of a row is the bytes that must move over it: "
        "forward 3 passes over the tensor (read for the statistics, read and write to normalize), "
        "inference 2, training step 8 (forward, then read dy and x for the two sums, and read dy and x and "
        "write dx).",
        "",
        "## Targets",
        "",
        TARGETS_NOTE,
        "",
        "| target | measured | met |",
        "|---|---|---|",
    ]
    lines += [f"| {t['target']} | {t['measured']} | {'yes' if t['met'] else '**no**'} |"
              for t in results.get("targets", [])]
    if results.get("main"):
        lines += ["", "## Time per call", "",
                  "`keras-norms` takes the TensorFlow fast paths, `keras-norms plain` the `keras.ops` path "
                  "(`functional.use_fast_paths(False)`), `keras` is `keras.layers.*` (instance norm: "
                  "`GroupNormalization(groups=-1)`), `torch` is `torch.nn.functional` on channels-last "
                  "tensors in its own process (instance norm: `group_norm` with one channel per group). "
                  "forward: training-mode forward; inference: batch norm with moving statistics; train: "
                  "forward and the gradients of the input and the weights. bfloat16 is the "
                  "`mixed_bfloat16` policy (float32 weights). Steps are traced for a batch of unknown "
                  "size, as `model.fit` traces them.", ""]
        lines += _timing_table(results["main"], variant=False)
    if results.get("variants"):
        lines += ["", "## Batch norm variants (float32, graph mode)", "",
                  "Other ranks (the same number of elements), channels first (`axis=1`), ghost batches "
                  "(`virtual_batch_size=8`; Keras has none, its anchor is its plain batch norm) and batch "
                  "renormalization (Keras' `renorm=True`).", ""]
        lines += _timing_table(results["variants"], variant=True)
    if results.get("pointwise"):
        lines += ["", "## Norm-free layers: DyT and Derf", "",
                  "`keras-norms` is `DynamicTanh` or `DynamicErf`, `keras` the "
                  "`keras.layers.LayerNormalization` it replaces, `keras-norms layer` our "
                  "`LayerNormalization`; `x + 1` is one read and one write of the tensor, the least any op "
                  "producing a new tensor costs (the one-op floor). "
                  "The floor here is an element-wise layer's: forward 2 passes, training step 5 (read dy "
                  "and x, write dx). On TensorFlow, Derf's erf is built from TFLite builtin ops "
                  "(`functional.erf`: TFLite has no erf), about ten element-wise ops that a graph without "
                  "XLA runs one by one (a forward pass without a gradient tape is the graph that exports, so "
                  "it stays builtin ops). Their training steps are a closed-form kernel "
                  "(`kernels/tf_pointwise.py`: forward and backward XLA-compiled for large tensors, the "
                  "per-channel sums as products with a vector of ones); `keras-norms plain` is the "
                  "autodiff chain of the `keras.ops` path.", ""]
        lines += _timing_table(results["pointwise"], variant=False)
    if results.get("jax"):
        lines += ["", "## JAX backend (`jax.jit`)", "",
                  "The same norms and shapes with `KERAS_BACKEND=jax`, in a process of its own: each step "
                  "is a `jax.jit` function of `Layer.stateless_call` (what `model.fit` runs), XLA-compiled "
                  "like every JAX step. `keras-norms` takes the JAX fast paths (closed-form gradients of "
                  "batch, layer and RMS norm; batch norm inference as one multiply-add), `keras-norms plain` "
                  "the `keras.ops` path, `keras` is `keras.layers.*` on JAX, `x + 1` one jitted pass over "
                  "the tensor. Batch norm's forward and inference, and RMS norm's forward, compile to the "
                  "same computation as Keras' layers (two reductions, or one, and one element-wise loop; "
                  "inference one multiply-add, as fast as `x + 1`): those rows are at parity, and their "
                  "ratio is the run's noise. Batch norm's forward centres the input before it scales it, "
                  "where Keras computes `x * a + b`: at a mean of 1e4 and a spread of 1, the largest error "
                  "is 7.9e-4 against Keras' 1.4e-3, for the same time.", ""]
        lines += _timing_table(results["jax"], variant=False)
    if results.get("torch"):
        lines += ["", "## PyTorch backend (eager)", "",
                  "The same norms with `KERAS_BACKEND=torch`, in a process of its own, eager (Keras' default "
                  "on PyTorch), at the reference shapes and a smaller set. `keras-norms` takes the PyTorch "
                  "fast paths (`kernels/torch.py`: PyTorch's native batch, layer and group norm kernels; "
                  "RMS norm as a closed-form gradient), `keras-norms plain` the `keras.ops` path, `keras` is "
                  "`keras.layers.*` on PyTorch, `keras-norms functional` is `keras_norms.functional` called "
                  "directly with the layer's weights, `torch` is `torch.nn.functional` called directly on "
                  "the same tensor (images as a `channels_last` NCHW view; RMS norm: `F.rms_norm`, which "
                  "PyTorch runs as a chain of element-wise ops on CPU). A layer's row includes Keras' "
                  "`Layer.__call__` in eager mode, about 0.2 ms per call here, which Keras' own layers pay "
                  "too: `keras / torch` shows it; at small shapes it is most of a call, so the 1.2x target "
                  "compares the functional calls. Group and instance norm pay one more pass over the tensor "
                  "than `torch`: PyTorch's channels-last group norm takes its variance in one pass "
                  "(`E[x^2] - E[x]^2`), which a mean of 1e4 against a spread of 1 turns into an error of "
                  "about 150 in the output (tests/test_torch_kernels.py checks ours there); keras-norms "
                  "first subtracts one value of each group, a read and a write of the tensor.", ""]
        lines += _timing_table(results["torch"], variant=False)
    if results.get("models"):
        lines += ["", "## Whole models: the compute overhead of normalization", "",
                  "One `train_on_batch` step (train: as `fit` runs it) or one `predict_on_batch` call "
                  "(predict) of each model built by `build_model`, with `compile()`'s defaults (on "
                  "TensorFlow a graph, XLA-compiled only where the machine has a GPU: Keras' "
                  "`jit_compile=\"auto\"` turns XLA off on CPU-only machines; `jax.jit` on JAX; eager on "
                  "PyTorch), each "
                  "backend in a process of its own: with keras-norms' norm, with `keras.layers`' norm in the "
                  "same places, and with no norm; interleaved, ms (median, and minimum in parentheses). "
                  "Overhead: the step with the norm over the step without.", "",
                  "| backend | model | mode | input, batch | norm | keras-norms ms | keras ms | no norm ms "
                  "| keras / ours | overhead: ours | overhead: keras |",
                  "|---|---|---|---|---|---:|---:|---:|---:|---:|---:|"]
        for r in results["models"]:
            ms, low = r["ms"], r["min_ms"]
            cells = [f"{ms[n]:.1f} ({low[n]:.1f})" for n in ("keras-norms", "keras", "no norm")]
            shape = "x".join(map(str, r["shape"]))
            lines.append(f"| {r.get('backend', 'tensorflow')} | {r['model']} | {r.get('mode', 'train')} "
                         f"| {shape}, {r['batch_size']} | {r['norm']} | " + " | ".join(cells)
                         + f" | {ms['keras'] / ms['keras-norms']:.2f}x "
                         f"| {ms['keras-norms'] / ms['no norm']:.2f}x | {ms['keras'] / ms['no norm']:.2f}x |")
    if results.get("memory"):
        names = _contender_columns([{"ms": r["peak_bytes"]} for r in results["memory"]])
        lines += ["", "## Peak memory of a training step (float32, graph mode)", "",
                  "Bytes allocated at the peak of one step above what was live before it, in units of "
                  "the input's size (the floor is 2: the output and the input's gradient). TensorFlow: "
                  "its CPU allocator's statistics; PyTorch: the resident set's high-water mark in its "
                  "process (every large block mapped on its own).", "",
                  "| norm | input MB | " + " | ".join(names) + " |", "|" + "---|" * (len(names) + 2)]
        for row in results["memory"]:
            size = row["input_bytes"]
            cells = [_x(row["peak_bytes"][n] / size) if row["peak_bytes"].get(n) is not None else ""
                     for n in names]
            lines.append(f"| {row['norm']} | {size / 2**20:.0f} | " + " | ".join(cells) + " |")
    tflite = results.get("tflite")
    if tflite and "batch" in tflite:
        lines += ["", "## TFLite: the paper's CNN (32x32x3, batch 1), LiteRT with XNNPACK", "",
                  "Exported by `keras_norms.export.export_model` (batch norm folded); median latency of "
                  "interleaved blocks of invocations.", "",
                  "| norm | latency ms | vs batch norm | ops |", "|---|---|---|---|"]
        base = tflite["batch"]["median_ms"]
        for norm, row in tflite.items():
            ops = ", ".join(f"{k} {v}" for k, v in sorted(row["ops"].items()))
            lines.append(f"| {norm} | {row['median_ms']:.3f} | {row['median_ms'] / base:.2f}x | {ops} |")
    lines += ["", "## Notes", "",
              "- The floor assumes that each pass streams the whole tensor from memory. A kernel that "
              "keeps a row (layer norm) or an example in cache between its passes can beat it.",
              "- Batch norm inference with moving statistics is one multiply-add per element: Keras' "
              "layer runs it as two ops (a multiply, then an add), the fused kernel as one, near the "
              "floor. The `x + 1` column is one op over the tensor, the least that any kernel writing "
              "its output can cost: `keras / x + 1` is the most any inference kernel can gain on Keras "
              "here. At ranks 2 and 3 an inference graph may not grow to the fused kernel's rank 4 "
              "(an inference graph never holds a tensor of higher rank than its input: see "
              "docs/contributing.md), and channels first the CPU kernel transposes; there "
              "keras-norms runs the same folded multiply-add as Keras.",
              "- PyTorch runs with glibc's heap keeping large blocks (`MALLOC_MMAP_THRESHOLD_`), as "
              "TensorFlow's pool does: by default every tensor above 32 MiB is freshly mapped memory, "
              "and the same kernel's time then varies 2x with where its tensors land.",
              "- Forward rows of group, instance, layer and RMS norm without XLA: a forward pass "
              "without a gradient tape is also the graph that export traces, so it stays TFLite builtin "
              "ops, which TensorFlow runs one at a time, each a pass over memory. The target row gives "
              "the passes that graph makes (counted from the traced graph, in units of the input's "
              "size) over the floor's 3; in bfloat16 the ops compute in float32, so each pass moves "
              "twice the input's bytes. On a CPU-only machine `fit`, `evaluate` and `predict` run "
              "these graphs (Keras' `jit_compile=\"auto\"` turns XLA off there); Keras' layers run "
              "graphs of the same kind.",
              "- Forward rows under XLA: the `sum` column is one reduction of the input in float32, "
              "the least any norm's statistics take. XLA's CPU code reduces a bfloat16 input at the "
              "speed of its conversion to float32, not of memory, so one reduction alone costs about "
              "3x the bfloat16 floor.",
              "- Under XLA, batch norm runs the closed form (XLA expands TensorFlow's fused kernel "
              "into slow code), so keras-norms' batch norm is fastest without XLA."]
    return "\n".join(lines) + "\n"
