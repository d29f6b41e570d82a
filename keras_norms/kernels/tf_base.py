"""What every TensorFlow kernel family shares.

- What is being traced: `in_xla_context` (XLA compiles the graph) and
  `gradient_may_be_recorded` (a tape may record it: training, not inference
  or export); `inference_kernels` combines them.
- Sizes: `dims_of`, `product` and `elements_per_statistic` give static sizes
  as ints where they are known, scalar tensors otherwise.
- The fused batch norm kernel: which inputs it takes (`fused_applies`) and
  the rank-4 view it gets (`fused_view`).
- The XLA-compiled functions (`xla_compiled`, once per process) and their
  loop over chunks of the first axis (`in_chunks`, `chunk_entries`), and
  whether a tensor is large enough for them (`worth_compiling`).
- Views and parameters: `channel_view`, `param`, `repeat_over_groups`,
  `is_variable`.

The tests monkeypatch `_COMPILE_MIN_ELEMENTS`, `_compiled_functions` and
`_CHUNK_BYTES` here, where they are read.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import tensorflow as tf

# cuDNN refuses a smaller epsilon; the plain path takes those cases.
_FUSED_MIN_EPSILON = 1.001e-5
_FUSED_DTYPES = (tf.float16, tf.bfloat16, tf.float32)


def in_xla_context() -> bool:
    """Whether the graph being traced is compiled by XLA (`jit_compile=True`)."""
    try:
        from tensorflow.python.framework import ops as framework_ops
        from tensorflow.python.ops import control_flow_util
    except ImportError:  # private modules moved: assume no XLA, which is always correct
        return False
    return bool(control_flow_util.GraphOrParentsInXlaContext(framework_ops.get_default_graph()))


def gradient_may_be_recorded() -> bool:
    """Whether a gradient tape may record the ops traced now (training); False for inference and export."""
    try:
        from tensorflow.python.eager import record
    except ImportError:  # assume a tape: the training kernels are right in every case
        return True
    return bool(record.could_possibly_record())


def float32(t):
    return t if t.dtype == tf.float32 else tf.cast(t, tf.float32)


def dims_of(x) -> list:
    """The shape of `x`: static sizes as ints, the others as scalar tensors."""
    dynamic = None
    dims = []
    for i, size in enumerate(x.shape):
        if size is None:
            dynamic = tf.shape(x) if dynamic is None else dynamic
            size = dynamic[i]
        dims.append(size)
    return dims


def product(sizes):
    return math.prod(sizes) if all(isinstance(s, int) for s in sizes) else tf.reduce_prod(tf.stack(sizes))


def elements_per_statistic(view, slots) -> tf.Tensor:
    """Elements per statistic: the size of `view` over the number of statistics (at least 1)."""
    size = product(dims_of(view))
    if isinstance(size, int) and isinstance(slots, int):
        return tf.constant(max(size // max(slots, 1), 1), tf.float32)
    count = tf.cast(size, tf.float32) / tf.cast(slots, tf.float32)
    return tf.maximum(count, 1.0)


# ----------------------------------------------------------------------------- fused kernel acceptance


def fused_view(x):
    """`x` (channels last) as rank 4 NHWC: rank 5+ with middle axes merged, rank 2 and 3 as one image row."""
    rank = x.shape.rank
    if rank == 4:
        return x
    dims = dims_of(x)
    if rank < 4:
        return tf.reshape(x, [1, 1, product(dims[:-1]), dims[-1]])
    return tf.reshape(x, [dims[0], product(dims[1:-2]), dims[-2], dims[-1]])


def fused_applies(x, axis: int, epsilon: float) -> bool:
    """Whether the fused kernel takes `x`: channels last, a dtype and epsilon it accepts, no XLA.

    Rank 2 and 3 need a rank-4 view, which only graphs that a gradient tape
    records (training) may have: graphs for inference and export never grow a
    tensor's rank, and a training graph grows it to 4 at most, which every
    runtime accepts.
    """
    rank = x.shape.rank
    if rank is None or rank < 2 or axis % rank != rank - 1 or x.shape[-1] is None:
        return False
    if rank < 4 and not gradient_may_be_recorded():
        return False
    return x.dtype in _FUSED_DTYPES and epsilon >= _FUSED_MIN_EPSILON and not in_xla_context()


# ----------------------------------------------------------------------------- compiled kernels

# Below this many elements the compiled kernels do not pay for their compilation.
_COMPILE_MIN_ELEMENTS = 1 << 18
_compiled_functions: dict = {}


def xla_compiled(function, **options):
    """`function` with `options` bound, XLA-compiled once per process (and per input shape)."""
    key = (function.__name__, tuple(sorted(options.items())))
    if key not in _compiled_functions:
        _compiled_functions[key] = tf.function(functools.partial(function, **options), jit_compile=True,
                                               autograph=False)
    return _compiled_functions[key]


def last_level_cache_bytes() -> int | None:
    """The size of this machine's largest CPU cache (from Linux's sysfs), or None where unknown."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    sizes = []
    for entry in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        try:
            text = (entry / "size").read_text().strip()
        except OSError:
            continue
        number, unit = (text[:-1], text[-1]) if text[-1:] in units else (text, "")
        if number.isdigit():
            sizes.append(int(number) * units.get(unit, 1))
    return max(sizes) if sizes else None


# Compiled kernels run over chunks of about this many bytes per operand (whole examples, or rows),
# so that the passes after a chunk's first read find it in cache instead of memory: an eighth of
# the last-level cache (a pass's operands and results together then stay in it), 4 MiB where its
# size is unknown. Where the cache holds a whole tensor, a loop over chunks only costs (measured: a
# group norm training step of 32x56x56x128 under XLA took 51 ms in 4 MiB chunks and 36 ms in one
# on a CPU with a 480 MiB cache; 4 MiB chunks had been the fastest on one with a smaller cache).
_CHUNK_BYTES = max(4 << 20, (last_level_cache_bytes() or 0) // 8)


def chunk_entries(entry_bytes: int, minimum: int) -> int:
    return max(minimum, _CHUNK_BYTES // entry_bytes)


def _dynamic_update_slice():
    """XLA's in-place `DynamicUpdateSlice` (from TensorFlow's XLA helpers), or None where absent."""
    try:
        from tensorflow.compiler.tf2xla.python import xla
    except ImportError:
        return None
    return getattr(xla, "dynamic_update_slice", None)


def in_chunks(block, sliced, shared, *, entries: int, summed: int = 0):
    """`block(*sliced, *shared)`, computed `entries` entries of the first axis at a time, in an XLA loop.

    For XLA-compiled functions. `block` returns tensors with the first axis of
    `sliced`, assembled in place from the chunks, then `summed` tensors that
    are summed over the chunks. The entries left after the whole chunks are a
    last, smaller block. Without XLA's update op, one block.
    """
    update = _dynamic_update_slice()
    if update is None:
        return block(*sliced, *shared)

    def chunk_size():
        # Computed where it is used: XLA needs slice sizes as constants of the function it compiles,
        # which the number of entries is (even where the traced graph does not know it).
        return tf.minimum(entries, tf.shape(sliced[0])[0])

    def run(start, size):
        parts = [tf.slice(t, _first_axis_at(t, start), tf.concat([[size], tf.shape(t)[1:]], 0))
                 for t in sliced]
        results = block(*parts, *shared)
        return results[:len(results) - summed], results[len(results) - summed:]

    def body(index, *state):
        size = chunk_size()
        pieces, sums = run(index * size, size)
        wholes, totals = state[:len(pieces)], state[len(pieces):]
        assembled = [update(whole, piece, _first_axis_at(whole, index * size))
                     for whole, piece in zip(wholes, pieces, strict=True)]
        return index + 1, *assembled, *[total + part for total, part in zip(totals, sums, strict=True)]

    total = tf.shape(sliced[0])[0]
    chunks = total // tf.maximum(chunk_size(), 1)
    start = chunks * chunk_size()
    pieces, sums = run(start, total - start)  # the entries after the whole chunks, first: their shapes
    wholes = [update(tf.zeros(tf.concat([[total], tf.shape(p)[1:]], 0), p.dtype), p, _first_axis_at(p, start))
              for p in pieces]
    _, *state = tf.while_loop(lambda index, *_: index < chunks, body, [0, *wholes, *sums])
    return state


def _first_axis_at(t, start):
    return tf.stack([start] + [0] * (t.shape.rank - 1))


def worth_compiling(view) -> bool:
    size = product(dims_of(view))
    return not isinstance(size, int) or size >= _COMPILE_MIN_ELEMENTS


# ----------------------------------------------------------------------------- shared by the families


def repeat_over_groups(stats, channels: int, groups: int, reduce):
    """`reduce` over each group of consecutive channels, repeated over its channels; rank 2 inside.

    The channels must be the last non-unit axis of `stats`. Repeating is a
    multiply by ones, not `broadcast_to`: XNNPACK (TFLite) runs MUL but not
    BROADCAST_TO, which would split an exported graph between delegates.
    """
    if groups == channels:
        return stats
    per_group = channels // groups
    totals = reduce(tf.reshape(stats, [-1, per_group]), axis=1, keepdims=True)
    return tf.reshape(totals * tf.ones([1, per_group], stats.dtype), tf.shape(stats))


def is_variable(value) -> bool:
    import keras

    return isinstance(value, (tf.Variable, keras.Variable))


def channel_view(x, axis: int, batch_axes: int = 1):
    """`x` as `(batch, positions, channels)` or `(batch, channels, positions)`, or None.

    The first `batch_axes` axes form the batch. Channels must be last or
    right after the batch; the view has rank 3, so an input of rank 3 or more
    never grows.
    """
    rank = x.shape.rank
    if rank is None or rank < 3 or x.shape[axis] is None:
        return None, None
    dims = dims_of(x)
    batch = product(dims[:batch_axes])
    if axis == rank - 1:
        return tf.reshape(x, [batch, product(dims[batch_axes:-1]), dims[-1]]), "nsc"
    if axis == batch_axes:
        return tf.reshape(x, [batch, dims[axis], product(dims[axis + 1:])]), "ncs"
    return None, None


def inference_kernels() -> bool:
    """Whether to trace the forward-only graphs: no tape records, and no XLA (which fuses either)."""
    return not gradient_may_be_recorded() and not in_xla_context()


def param(param, shape):
    return None if param is None else tf.reshape(float32(param), shape)
