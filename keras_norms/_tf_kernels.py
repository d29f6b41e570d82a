"""TensorFlow-only kernels: the fast paths of `keras_norms.functional`, and cross-replica statistics.

`keras_norms.functional` calls the kernels here when the Keras backend is
TensorFlow and fast paths are on (`functional.use_fast_paths`). Each computes
what the plain `keras.ops` path computes, to float32 rounding, with fewer passes
over memory: normalization is memory-bound, and in a TensorFlow graph without
XLA every op over a full-size tensor is at least one pass.

- Batch norm, channels last: TensorFlow's fused kernel and its fused gradient,
  in training (`FusedBatchNormV2`, which reads float16 and bfloat16 directly)
  and inference (`FusedBatchNorm`, which the TFLite converter turns into builtin
  MUL and ADD; V2, which it does not convert, only for bfloat16, which TFLite
  does not take). Rank 5+ is viewed as rank 4. Not `FusedBatchNormV3` (one of
  its outputs has an unknown rank); not channels first (on CPU the kernel
  transposes NCHW internally, which costs more than it saves), nor under XLA
  (which expands it into slow code). Group and instance norm and ghost batch
  norm (channels last) in training take their statistics from the same kernel
  run on each example (or virtual batch): the moments, and in backward the
  sums of its inference-mode gradient, pooled into groups.
- Everything else (layer and RMS norm, batch norm channels first or under XLA,
  group norms of small examples, channels first or under XLA) is a closed-form
  gradient (`tf.custom_gradient`): backward is the two sums and one expression for dx,
  not the autodiff chain through every op; scale and shift are folded into one
  per-(sample, channel) multiply-add. Sums over an axis that is not the
  innermost are products with a vector of ones (a GEMV is several times faster
  than TensorFlow's column reduction on CPU), and a sum of squares is one
  `EuclideanNorm` reduction.
- The closed forms of large tensors in training run as two XLA-compiled
  functions (forward, backward) even in a graph without XLA: XLA fuses their
  element-wise work, which TensorFlow would run op by op (small tensors take
  TensorFlow ops, which need no compilation). They loop over chunks of
  examples (of rows, for layer and RMS norm's backward) small enough to stay
  in cache between their passes.
- Moments are two passes (the mean, then squared deviations from it), exact
  for a large mean. The one-pass alternative that stays exact (each slice
  shifted by one of its values) was measured: on CPU, XLA runs it no faster.
- When no gradient tape records (inference, export), short forward graphs of
  TFLite builtin ops (and XNNPACK-friendly: no BROADCAST_TO), on `x` itself.

Ranks: graphs traced without a tape (inference, export) never have a tensor
of higher rank than the input. Graphs a tape records (training, never
exported) may view a rank 2 or 3 input as rank 4 for the fused batch norm
kernel, and never go above rank 4, which every runtime accepts.

This is one module on purpose (everything TensorFlow-specific in one place),
hence its length. A kernel returns `None` where it does not apply, and
`functional` then takes the plain path.
"""

from __future__ import annotations

import functools
import math

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


def _float32(t):
    return t if t.dtype == tf.float32 else tf.cast(t, tf.float32)


def _dims(x) -> list:
    """The shape of `x`: static sizes as ints, the others as scalar tensors."""
    dynamic = None
    dims = []
    for i, size in enumerate(x.shape):
        if size is None:
            dynamic = tf.shape(x) if dynamic is None else dynamic
            size = dynamic[i]
        dims.append(size)
    return dims


def _product(sizes):
    return math.prod(sizes) if all(isinstance(s, int) for s in sizes) else tf.reduce_prod(tf.stack(sizes))


def _count(view, slots) -> tf.Tensor:
    """Elements per statistic: the size of `view` over the number of statistics (at least 1)."""
    size = _product(_dims(view))
    if isinstance(size, int) and isinstance(slots, int):
        return tf.constant(max(size // max(slots, 1), 1), tf.float32)
    count = tf.cast(size, tf.float32) / tf.cast(slots, tf.float32)
    return tf.maximum(count, 1.0)


# ----------------------------------------------------------------------------- fused batch norm


def _fused_view(x):
    """`x` (channels last) as rank 4 NHWC: rank 5+ with middle axes merged, rank 2 and 3 as one image row."""
    rank = x.shape.rank
    if rank == 4:
        return x
    dims = _dims(x)
    if rank < 4:
        return tf.reshape(x, [1, 1, _product(dims[:-1]), dims[-1]])
    return tf.reshape(x, [dims[0], _product(dims[1:-2]), dims[-2], dims[-1]])


def _fused_applies(x, axis: int, epsilon: float) -> bool:
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


def _affine_or_default(param, channels: int, value: float):
    return tf.fill([channels], value) if param is None else _float32(param)


def fused_batch_norm_train(x, scale, offset, *, axis: int, epsilon: float):
    """Training batch norm with the fused kernel: `(outputs, mean, variance)`, or None.

    The outputs have the dtype of `x` (the kernel computes in float32 and
    rounds once). `variance` is the biased batch variance (the kernel returns
    the unbiased one; the correction is undone), and neither statistic carries
    a gradient.
    """
    if not _fused_applies(x, axis, epsilon):
        return None
    channels = x.shape[-1]
    outputs, mean, variance, _, _ = tf.raw_ops.FusedBatchNormV2(
        x=_fused_view(x),
        scale=_affine_or_default(scale, channels, 1.0),
        offset=_affine_or_default(offset, channels, 0.0),
        mean=tf.zeros([0]),
        variance=tf.zeros([0]),
        epsilon=epsilon,
        data_format="NHWC",
        is_training=True,
    )
    count = _count(x, channels)
    variance = variance * ((count - 1.0) / count)
    return tf.reshape(outputs, _dims(x)), tf.stop_gradient(mean), tf.stop_gradient(variance)


def fused_batch_norm(x, mean, variance, scale, offset, *, axis: int, epsilon: float):
    """Inference batch norm (given statistics) with the fused kernel; or None.

    bfloat16 (which TFLite does not take) is read and written as it is by
    `FusedBatchNormV2`, without a cast over the tensor on each side; other
    dtypes run as float32 in `FusedBatchNorm`, which the TFLite converter turns
    into builtin ops.
    """
    if not _fused_applies(x, axis, epsilon):
        return None
    channels = x.shape[-1]
    kernel = tf.raw_ops.FusedBatchNormV2 if x.dtype == tf.bfloat16 else tf.raw_ops.FusedBatchNorm
    outputs = kernel(
        x=_fused_view(x if x.dtype == tf.bfloat16 else _float32(x)),
        scale=_affine_or_default(scale, channels, 1.0),
        offset=_affine_or_default(offset, channels, 0.0),
        mean=_float32(mean),
        variance=_float32(variance),
        epsilon=epsilon,
        data_format="NHWC",
        is_training=False,
    )[0]
    return tf.reshape(outputs, _dims(x))


def folded_batch_norm(x, mean, variance, scale, offset, *, epsilon: float, shape):
    """Batch norm with given statistics as ``x * a + b``: two passes over memory, not three.

    ``a = scale / sqrt(variance + epsilon)`` and ``b = offset - mean * a``, the
    parameters reshaped to `shape` (a broadcast shape); float32 result.
    """
    inverse = tf.math.rsqrt(tf.reshape(_float32(variance), shape) + epsilon)
    if scale is not None:
        inverse = inverse * tf.reshape(_float32(scale), shape)
    shift = -tf.reshape(_float32(mean), shape) * inverse
    if offset is not None:
        shift = shift + tf.reshape(_float32(offset), shape)
    return _float32(x) * inverse + shift


# ----------------------------------------------------------------------------- compiled kernels

# Below this many elements the compiled kernels do not pay for their compilation.
_COMPILE_MIN_ELEMENTS = 1 << 18
_compiled_functions: dict = {}


def _compiled(function, **options):
    """`function` with `options` bound, XLA-compiled once per process (and per input shape)."""
    key = (function.__name__, tuple(sorted(options.items())))
    if key not in _compiled_functions:
        _compiled_functions[key] = tf.function(functools.partial(function, **options), jit_compile=True,
                                               autograph=False)
    return _compiled_functions[key]


# Compiled kernels run over chunks of about this many bytes per operand (whole examples, or rows),
# so that the passes after a chunk's first read find it in cache instead of memory.
_CHUNK_BYTES = 4 << 20


def _chunk_entries(entry_bytes: int, minimum: int) -> int:
    return max(minimum, _CHUNK_BYTES // entry_bytes)


def _dynamic_update_slice():
    """XLA's in-place `DynamicUpdateSlice` (from TensorFlow's XLA helpers), or None where absent."""
    try:
        from tensorflow.compiler.tf2xla.python import xla
    except ImportError:
        return None
    return getattr(xla, "dynamic_update_slice", None)


def _in_chunks(block, sliced, shared, *, entries: int, summed: int = 0):
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


def _worth_compiling(view) -> bool:
    size = _product(_dims(view))
    return not isinstance(size, int) or size >= _COMPILE_MIN_ELEMENTS


# ----------------------------------------------------------------------------- per-channel statistics
# A view is (batch, positions, channels) "nsc", (batch, channels, positions) "ncs" or
# (rows, channels) "sc". Statistics are per (batch, group of channels), or per channel over
# the whole view with `pool_batch` (batch norm; "sc" always pools its rows).


def _sum_positions(t, layout: str, xla: bool, computed: bool = False):
    """Sum over the positions (rows for "sc"), keeping the axis; `computed`: `t` is an expression."""
    if layout == "ncs":
        return tf.reduce_sum(t, axis=2, keepdims=True)  # innermost: Eigen's fast reduction
    axis = 1 if layout == "nsc" else 0
    if xla and computed:
        return tf.reduce_sum(t, axis=axis, keepdims=True)
    dims = _dims(t)
    if layout == "sc":
        return tf.matmul(tf.ones([1, dims[0]], t.dtype), t)
    return tf.matmul(tf.ones([dims[0], 1, dims[1]], t.dtype), t)


def _sum_squares_positions(t, layout: str, xla: bool):
    if xla:
        return _sum_positions(tf.square(t), layout, xla, computed=True)
    axis = {"nsc": 1, "ncs": 2, "sc": 0}[layout]
    return tf.square(tf.math.reduce_euclidean_norm(t, axis=axis, keepdims=True))


def _repeat_over_groups(stats, channels: int, groups: int, reduce):
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


class _Pooling:
    """Sums per-(sample, channel) sums into the statistic each element is normalized with."""

    def __init__(self, layout: str, channels: int, groups: int, pool_batch: bool):
        self.layout = layout
        self.channels = channels
        self.groups = groups
        self.pool_batch = pool_batch or layout == "sc"

    def over_batch(self, sums):
        if self.pool_batch and self.layout != "sc":
            return tf.reduce_sum(sums, axis=0, keepdims=True)
        return sums

    def over_groups(self, sums):
        """Group totals repeated over the group's channels (rank 2 inside, whatever the view)."""
        if self.groups == self.channels:
            return sums
        return _repeat_over_groups(sums, self.channels, self.groups, tf.reduce_sum)

    def slots(self, view):
        """The number of statistics of `view`."""
        return (1 if self.pool_batch else _dims(view)[0]) * self.groups

    def per_channel(self, stats):
        """A statistics-shaped tensor summed to one value per channel, shape `(channels,)`."""
        channel_axis = {"nsc": 2, "ncs": 1, "sc": 1}[self.layout]
        axes = [a for a in range(len(stats.shape)) if a != channel_axis]
        return tf.reshape(tf.reduce_sum(stats, axis=axes), [self.channels])


def _param_shape(layout: str, channels: int):
    return {"nsc": [1, 1, channels], "ncs": [1, channels, 1], "sc": [1, channels]}[layout]


def _channel_forward(x, *params, layout: str, groups: int, pool_batch: bool, epsilon: float,
                     has_scale: bool, has_offset: bool, xla: bool):
    """`(outputs, mean, variance, centered)` of a view; `params` are gamma and/or beta, broadcastable."""
    x = _float32(x)
    pooling = _Pooling(layout, x.shape[1 if layout == "ncs" else -1], groups, pool_batch)
    count = _count(x, pooling.slots(x))
    mean = pooling.over_groups(pooling.over_batch(_sum_positions(x, layout, xla))) / count
    centered = x - mean
    variance = pooling.over_groups(pooling.over_batch(_sum_squares_positions(centered, layout, xla))) / count
    gain = tf.math.rsqrt(variance + epsilon)
    gain = gain * params[0] if has_scale else gain
    outputs = centered * gain
    return (outputs + params[-1] if has_offset else outputs), mean, variance, centered


def _channel_backward(upstream, centered, variance, *params, layout: str, groups: int, pool_batch: bool,
                      epsilon: float, has_scale: bool, has_offset: bool, xla: bool):
    """The gradients of `_channel_forward`'s outputs: input (float32), then gamma and beta."""
    upstream = _float32(upstream)
    pooling = _Pooling(layout, centered.shape[1 if layout == "ncs" else -1], groups, pool_batch)
    count = _count(centered, pooling.slots(centered))
    inverse = tf.math.rsqrt(variance + epsilon)
    gamma = params[0] if has_scale else None
    sum_up = pooling.over_batch(_sum_positions(upstream, layout, xla))
    sum_up_centered = pooling.over_batch(_sum_positions(upstream * centered, layout, xla, computed=True))
    weighted_up = sum_up if gamma is None else sum_up * gamma
    weighted_up_centered = sum_up_centered if gamma is None else sum_up_centered * gamma
    coefficient = inverse ** 3 * pooling.over_groups(weighted_up_centered) / count
    bias = inverse * pooling.over_groups(weighted_up) / count
    gain = inverse if gamma is None else inverse * gamma
    grads = [upstream * gain - (centered * coefficient + bias)]
    param_shape = _param_shape(layout, pooling.channels)
    if has_scale:
        grads.append(tf.reshape(pooling.per_channel(inverse * sum_up_centered), param_shape))
    if has_offset:
        grads.append(tf.reshape(pooling.per_channel(sum_up), param_shape))
    return grads


def _fused_channel_forward(x, *params, **options):
    """The compiled forward, chunk by chunk of examples unless the statistics pool the batch."""
    def block(x):
        return _channel_forward(x, *params, **options)[:3]  # centered is recomputed in backward, not kept

    chunk = _example_chunk(x, options)
    return block(x) if chunk is None else _in_chunks(block, [x], [], entries=chunk)


def _fused_channel_backward(upstream, x, mean, variance, *params, **options):
    """The compiled backward, chunk by chunk of examples unless the statistics pool the batch."""
    def block(upstream, x, mean, variance):
        return _channel_backward(upstream, _float32(x) - mean, variance, *params, **options)

    chunk = _example_chunk(x, options)
    if chunk is None:
        return block(upstream, x, mean, variance)
    return _in_chunks(block, [upstream, x, mean, variance], [], entries=chunk, summed=len(params))


def _example_chunk(x, options) -> int | None:
    """Examples per chunk; None where statistics pool the batch or an example's size is unknown."""
    if options["pool_batch"] or options["layout"] == "sc" or not x.shape[1:].is_fully_defined():
        return None
    # At least two examples: one example per chunk ran slower than no chunks (measured on CPU).
    return _chunk_entries(4 * math.prod(x.shape[1:]), minimum=2)


def channel_standardize(view, layout: str, scale, offset, *, groups: int, epsilon: float,
                        pool_batch: bool = False):
    """Normalizes `view` per (sample, group of channels), or per channel with `pool_batch`.

    Large channels-last tensors in training run XLA-compiled forward and
    backward functions (as layer norm does), the others TensorFlow ops.

    Args:
        view: `(batch, positions, channels)` ("nsc"), `(batch, channels,
            positions)` ("ncs") or `(rows, channels)` ("sc", statistics over all rows).
        layout: One of "nsc", "ncs", "sc".
        scale, offset: Optional per-channel gamma and beta, shape `(channels,)`.
        groups: Groups of consecutive channels sharing a statistic (channels: one each).
        epsilon: Added to the variance.
        pool_batch: Statistics over the batch too (batch norm).

    Returns:
        `(outputs, mean, variance)`: float32 outputs in the shape of `view`, and
        the statistics (no gradient) with the reduced axes kept, repeated over
        the channels of each group.
    """
    channels = view.shape[1 if layout == "ncs" else -1]
    param_shape = _param_shape(layout, channels)
    gamma = None if scale is None else tf.reshape(_float32(scale), param_shape)
    beta = None if offset is None else tf.reshape(_float32(offset), param_shape)
    params = [p for p in (gamma, beta) if p is not None]
    xla = in_xla_context()
    options = {"layout": layout, "groups": groups, "pool_batch": pool_batch, "epsilon": epsilon,
               "has_scale": gamma is not None, "has_offset": beta is not None}
    if not gradient_may_be_recorded():
        # Forward only, in TFLite builtin ops (SUM, not MatMul or EuclideanNorm).
        outputs, mean, variance, _ = _channel_forward(view, *params, **options, xla=True)
        return outputs, mean, variance
    # Channels first, the sums run over the innermost axis, which TensorFlow's reductions do at full
    # speed: the compiled kernels win only for channels last (measured on CPU).
    compiled = xla or (layout == "nsc" and _worth_compiling(view))

    @tf.custom_gradient
    def standardize(x, *params):
        if compiled:
            outputs, mean, variance = _compiled(_fused_channel_forward, **options, xla=True)(x, *params)

            def backward(upstream):
                return _compiled(_fused_channel_backward, **options, xla=True)(upstream, x, mean, variance,
                                                                               *params)
        else:
            outputs, mean, variance, centered = _channel_forward(x, *params, **options, xla=False)

            def backward(upstream):
                return _channel_backward(upstream, centered, variance, *params, **options, xla=False)

        def grad(upstream, *_):
            grads = backward(upstream)
            return [tf.cast(grads[0], x.dtype), *grads[1:]]

        return (outputs, tf.stop_gradient(mean), tf.stop_gradient(variance)), grad

    return standardize(view, *params)


# ----------------------------------------------------------------------------- per-row statistics
# Layer and RMS norm over (rows, features), as the channel kernels: TensorFlow ops for small
# tensors, two XLA-compiled functions for large ones in training (the normalized tensor is
# recomputed in backward, not stored; backward runs chunk by chunk of rows, each in cache
# across its passes). Their row sums are matrix-vector products, which XLA on CPU runs
# several times faster than reductions with element-wise work fused into them.


def _row_mean(t, weights=None):
    """``mean(t * weights, axis=1)`` (weights `(features,)` or None) as a matrix-vector product.

    XLA on CPU runs a product with a vector several times faster than a reduction
    over the rows that has element-wise work fused into it.
    """
    vector = tf.ones([t.shape[1], 1], t.dtype) if weights is None else weights[:, None]
    return tf.matmul(t, vector) / t.shape[1]


def _column_sum(t):
    return tf.reshape(tf.matmul(tf.ones([1, _dims(t)[0]], t.dtype), t), [-1])


def _fused_row_forward(x, *params, epsilon: float, center: bool, has_scale: bool, has_offset: bool):
    x = _float32(x)
    mean = _row_mean(x) if center else tf.zeros_like(x[:, :1])
    inverse = tf.math.rsqrt(_row_mean(tf.square(x - mean)) + epsilon)
    outputs = (x - mean) * inverse
    if has_scale:
        outputs = outputs * params[0]
    if has_offset:
        outputs = outputs + params[-1]
    return outputs, mean, inverse


def _fused_row_backward(upstream, x, mean, inverse, *params, **options):
    """The compiled backward, chunk by chunk of rows (see `_in_chunks`)."""
    rows = _chunk_entries(x.shape[1] * 4, minimum=1)
    return _in_chunks(functools.partial(_row_backward, **options), [upstream, x, mean, inverse], params,
                      entries=rows, summed=len(params))


def _row_backward(upstream, x, mean, inverse, *params, center: bool, has_scale: bool, has_offset: bool):
    upstream = _float32(upstream)
    normalized = (_float32(x) - mean) * inverse
    up_normalized = upstream * normalized
    gamma = params[0] if has_scale else None
    correction = normalized * _row_mean(up_normalized, gamma)
    if center:
        correction = correction + _row_mean(upstream, gamma)
    scaled_up = upstream if gamma is None else upstream * gamma
    grads = [tf.cast((scaled_up - correction) * inverse, x.dtype)]
    if has_scale:
        grads.append(_column_sum(up_normalized))
    if has_offset:
        grads.append(_column_sum(upstream))
    return grads


def _row_standardize_fused(view, params, *, epsilon: float, center: bool, has_scale: bool, has_offset: bool):
    options = {"center": center, "has_scale": has_scale, "has_offset": has_offset}
    forward = _compiled(_fused_row_forward, epsilon=epsilon, **options)
    backward = _compiled(_fused_row_backward, **options)

    @tf.custom_gradient
    def standardize(x, *params):
        outputs, mean, inverse = forward(x, *params)

        def grad(upstream):
            return backward(upstream, x, mean, inverse, *params)

        return outputs, grad

    return standardize(view, *params)


def row_standardize(view, scale, offset, *, epsilon: float, center: bool = True):
    """Layer (or, without `center`, RMS) normalization of each row of `view` `(rows, features)`.

    `scale` and `offset` have shape `(features,)` (or None). Returns the float32
    outputs in the shape of `view`.
    """
    features = view.shape[1]
    gamma = None if scale is None else tf.reshape(_float32(scale), [features])
    beta = None if offset is None else tf.reshape(_float32(offset), [features])
    params = [p for p in (gamma, beta) if p is not None]
    if in_xla_context() or _worth_compiling(view):
        return _row_standardize_fused(view, params, epsilon=epsilon, center=center,
                                      has_scale=gamma is not None, has_offset=beta is not None)

    @tf.custom_gradient
    def standardize(x, *params):
        dtype, x = x.dtype, _float32(x)
        centered = x - tf.reduce_mean(x, axis=1, keepdims=True) if center else x
        mean_square = tf.square(tf.math.reduce_euclidean_norm(centered, axis=1, keepdims=True)) / features
        inverse = tf.math.rsqrt(mean_square + epsilon)
        normalized = centered * inverse
        outputs = normalized if gamma is None else normalized * params[0]
        if beta is not None:
            outputs = outputs + params[-1]

        def grad(upstream):
            upstream = _float32(upstream)
            up_normalized = upstream * normalized
            if gamma is not None:
                scaled_up = upstream * params[0]
                correction = normalized * _row_mean(up_normalized, params[0])
                if center:
                    correction = correction + _row_mean(upstream, params[0])
            else:
                scaled_up = upstream
                correction = normalized * tf.reduce_mean(up_normalized, axis=1, keepdims=True)
                if center:
                    correction = correction + tf.reduce_mean(upstream, axis=1, keepdims=True)
            grads = [tf.cast((scaled_up - correction) * inverse, dtype)]
            if gamma is not None:
                grads.append(_column_sum(up_normalized))
            if beta is not None:
                grads.append(_column_sum(upstream))
            return grads

        return outputs, grad

    return standardize(view, *params)


# ----------------------------------------------------------------------------- statistics by examples
# Group and instance norm (channels last) in training: the fused kernel, run on each example,
# gives exact per-(example, channel) moments and, in backward, the per-(example, channel) sums
# of dy and dy * x_hat, each in one sweep over the example while it is in cache. Those are
# pooled into groups (the law of total variance for the variance), and the two element-wise
# passes (the output, the input's gradient) run as XLA-compiled functions, which fuse each into
# one loop, or as TensorFlow ops for small tensors.


# At most this many examples are unrolled into the graph (a batch of unknown size, or more, runs
# in a loop); examples smaller than this many elements take the closed form, which is faster
# than a loop of small kernels (measured on CPU: the loop wins from about 2**17 elements).
_UNROLL_MAX_EXAMPLES = 256
_EXAMPLE_MIN_ELEMENTS = 1 << 17


def _shift_and_scale(x, mean, gain, *offset):
    """``(x - mean) * gain (+ offset)`` in float32, rounded once to the dtype of `x`."""
    outputs = (_float32(x) - mean) * gain
    return tf.cast(outputs + offset[0] if offset else outputs, x.dtype)


def _standardize_input_gradient(upstream, x, mean, gain, slope, bias):
    """``upstream * gain + (x - mean) * slope + bias``, in the dtype of `x`."""
    return tf.cast(_float32(upstream) * gain + (_float32(x) - mean) * slope + bias, x.dtype)


def _per_example(function, tensors, outputs: tuple[int, ...], size: int):
    """Calls `function` on each example of `tensors`; stacks the `outputs` it returns, `size` values each.

    A static batch of at most `_UNROLL_MAX_EXAMPLES` examples is unrolled (slices of
    the first axis are views, not copies); any other runs in a `tf.while_loop`.
    """
    batch = tensors[0].shape[0]
    if batch is not None and batch <= _UNROLL_MAX_EXAMPLES:
        slices = [tf.split(t, batch, axis=0) for t in tensors]
        results = [function(*parts) for parts in zip(*slices, strict=True)]
        return [tf.stack([result[i] for result in results]) for i in outputs]
    count = tf.shape(tensors[0])[0]

    def body(index, *arrays):
        result = function(*(t[index:index + 1] for t in tensors))
        return (index + 1, *(array.write(index, result[i]) for array, i in zip(arrays, outputs, strict=True)))

    arrays = [tf.TensorArray(tf.float32, size=count, element_shape=[size]) for _ in outputs]
    _, *arrays = tf.while_loop(lambda index, *_: index < count, body, [0, *arrays], parallel_iterations=10)
    return [array.stack() for array in arrays]


def example_standardize(view, groups: int, scale, offset, *, epsilon: float):
    """Normalizes `view` `(batch, positions, channels)` per (example, group) with fused statistics; or None.

    Applies under a gradient tape, without XLA, to static positions and
    channels, examples of at least two positions and `_EXAMPLE_MIN_ELEMENTS`
    elements, in a dtype and with an epsilon the fused kernel takes.

    Returns:
        `(outputs, mean, variance)`: outputs in the dtype of `view`, and the
        biased statistics of each group repeated over its channels, shape
        `(batch, channels)`, without gradient.
    """
    positions, channels = view.shape[1], view.shape[2]
    if (positions is None or channels is None or positions < 2 or positions * channels < _EXAMPLE_MIN_ELEMENTS
            or (view.shape[0] is not None and view.shape[0] < 1) or not gradient_may_be_recorded()
            or not _fused_applies(view, -1, epsilon)):
        return None
    gamma = tf.ones([channels]) if scale is None else tf.reshape(_float32(scale), [channels])
    params = [gamma] if offset is None else [gamma, tf.reshape(_float32(offset), [channels])]
    ones, zeros, empty = tf.ones([channels]), tf.zeros([channels]), tf.zeros([0])
    compiled = _worth_compiling(view)
    shift_and_scale = _compiled(_shift_and_scale) if compiled else _shift_and_scale
    input_gradient = _compiled(_standardize_input_gradient) if compiled else _standardize_input_gradient

    def group_mean(per_channel):
        return _repeat_over_groups(per_channel, channels, groups, tf.reduce_mean)

    def moments(example):
        return tf.raw_ops.FusedBatchNormV2(x=_fused_view(example), scale=ones, offset=zeros, mean=empty,
                                           variance=empty, epsilon=epsilon, data_format="NHWC",
                                           is_training=True)

    def sums(upstream, example, mean, variance):
        # The inference-mode gradient: sums of dy and dy * x_hat, x_hat from the given statistics.
        return tf.raw_ops.FusedBatchNormGradV2(
            y_backprop=_fused_view(upstream), x=_fused_view(example), scale=ones,
            reserve_space_1=tf.reshape(mean, [channels]), reserve_space_2=tf.reshape(variance, [channels]),
            epsilon=epsilon, data_format="NHWC", is_training=False,
        )

    @tf.custom_gradient
    def standardize(x, gamma, *beta):
        channel_mean, channel_variance = _per_example(moments, [x], outputs=(1, 2), size=channels)
        channel_variance = channel_variance * ((positions - 1) / positions)  # the kernel's is unbiased
        mean = group_mean(channel_mean)
        variance = group_mean(channel_variance) + group_mean(tf.square(channel_mean - mean))
        inverse = tf.math.rsqrt(variance + epsilon)
        gain = (inverse * gamma)[:, None]
        outputs = shift_and_scale(x, mean[:, None], gain, *beta)

        def grad(upstream, *_):
            sum_up_normalized, sum_up = _per_example(sums, [upstream, x, mean, variance], outputs=(1, 2),
                                                     size=channels)
            # Means over each group's elements of the gradient of x_hat, and of its product with x_hat.
            mean_up = group_mean(sum_up * gamma) / positions
            mean_up_normalized = group_mean(sum_up_normalized * gamma) / positions
            slope, bias = -inverse * inverse * mean_up_normalized, -inverse * mean_up
            grads = [input_gradient(upstream, x, mean[:, None], gain, slope[:, None], bias[:, None]),
                     tf.reduce_sum(sum_up_normalized, axis=0)]
            return grads + ([tf.reduce_sum(sum_up, axis=0)] if beta else [])

        return (outputs, tf.stop_gradient(mean), tf.stop_gradient(variance)), grad

    return standardize(view, *params)


# ----------------------------------------------------------------------------- entry points
# Called by keras_norms.functional with the same arguments as its functions of the same name;
# each returns None when its fast path does not apply to the input.


def _is_variable(value) -> bool:
    import keras

    return isinstance(value, (tf.Variable, keras.Variable))


def _channel_view(x, axis: int, batch_axes: int = 1):
    """`x` as `(batch, positions, channels)` or `(batch, channels, positions)`, or None.

    The first `batch_axes` axes form the batch. Channels must be last or
    right after the batch; the view has rank 3, so an input of rank 3 or more
    never grows.
    """
    rank = x.shape.rank
    if rank is None or rank < 3 or x.shape[axis] is None:
        return None, None
    dims = _dims(x)
    batch = _product(dims[:batch_axes])
    if axis == rank - 1:
        return tf.reshape(x, [batch, _product(dims[batch_axes:-1]), dims[-1]]), "nsc"
    if axis == batch_axes:
        return tf.reshape(x, [batch, dims[axis], _product(dims[axis + 1:])]), "ncs"
    return None, None


def _inference_kernels() -> bool:
    """Whether to trace the forward-only graphs: no tape records, and no XLA (which fuses either)."""
    return not gradient_may_be_recorded() and not in_xla_context()


def _param(param, shape):
    return None if param is None else tf.reshape(_float32(param), shape)


def _group_norm_inference(x, groups: int, scale, offset, *, axis: int, epsilon: float):
    """Forward-only group norm on `x` itself: per-channel means over the other axes, pooled per group.

    Two reductions and four full-size ops (SUB, SQUARE, MUL, ADD) on `x`
    itself, so an exported graph has no reshape of the full tensor. `x` is
    centred before it is scaled: ``x * gain + shift`` saves a pass but loses
    digits when the mean is large next to the spread.
    """
    rank = x.shape.rank
    channels = x.shape[axis]
    spatial = [a for a in range(1, rank) if a != axis]
    shape = [1] * rank
    shape[axis] = channels

    def pooled_mean(t):
        mean = tf.reduce_mean(t, axis=spatial, keepdims=True) if spatial else t
        return _repeat_over_groups(mean, channels, groups, tf.reduce_mean)

    centered = _float32(x) - pooled_mean(_float32(x))
    gain = tf.math.rsqrt(pooled_mean(tf.square(centered)) + epsilon)
    if scale is not None:
        gain = gain * _param(scale, shape)
    outputs = centered * gain
    return outputs if offset is None else outputs + _param(offset, shape)


def _axes_norm_inference(x, scale, offset, *, axes, epsilon: float, center: bool):
    """Forward-only layer norm (or RMS norm without `center`) over `axes` of `x`, no view."""
    rank = x.shape.rank
    shape = [x.shape[a] if a in axes else 1 for a in range(rank)]
    x = _float32(x)
    if center:
        mean = tf.reduce_mean(x, axis=axes, keepdims=True)
        variance = tf.reduce_mean(tf.math.squared_difference(x, mean), axis=axes, keepdims=True)
        outputs = (x - mean) * tf.math.rsqrt(variance + epsilon)
    else:
        outputs = x * tf.math.rsqrt(tf.reduce_mean(tf.square(x), axis=axes, keepdims=True) + epsilon)
    if scale is not None:
        outputs = outputs * _param(scale, shape)
    return outputs if offset is None else outputs + _param(offset, shape)


def group_norm(x, groups: int, scale, offset, *, axis: int, epsilon: float):
    rank = x.shape.rank
    if rank is None or x.shape[axis] is None:
        return None
    axis %= rank
    if _inference_kernels():
        groups = x.shape[axis] if groups == -1 else groups
        return _group_norm_inference(x, groups, scale, offset, axis=axis, epsilon=epsilon)
    channels = x.shape[axis]
    groups = channels if groups == -1 else groups
    view, layout = _channel_view(x, axis)
    if view is None:
        return None  # rank 2 (no positions) or a middle channel axis: tiny or rare
    if layout == "nsc":
        fused = example_standardize(view, groups, scale, offset, epsilon=epsilon)
        if fused is not None:
            return tf.reshape(fused[0], _dims(x))
    outputs, _, _ = channel_standardize(view, layout, scale, offset, groups=groups, epsilon=epsilon)
    return tf.reshape(outputs, _dims(x))


def _axes_norm(x, scale, offset, *, axis, epsilon: float, center: bool):
    """Layer or RMS norm: forward-only over `axis` of `x`, or the row kernel on `(rows, features)`."""
    rank = x.shape.rank
    if rank is None:
        return None
    axes = sorted(a % rank for a in ((axis,) if isinstance(axis, int) else axis))
    features = [x.shape[a] for a in axes]
    if axes[0] == 0 or any(size is None for size in features):
        return None
    if _inference_kernels():
        return _axes_norm_inference(x, scale, offset, axes=axes, epsilon=epsilon, center=center)
    if axes != list(range(rank - len(axes), rank)):
        return None  # normalized axes with others after them: no row view; the plain path
    view = tf.reshape(x, [-1, math.prod(features)])
    return tf.reshape(row_standardize(view, scale, offset, epsilon=epsilon, center=center), _dims(x))


def layer_norm(x, scale, offset, *, axis, epsilon: float):
    return _axes_norm(x, scale, offset, axis=axis, epsilon=epsilon, center=True)


def rms_norm(x, scale, *, axis, epsilon: float):
    return _axes_norm(x, scale, None, axis=axis, epsilon=epsilon, center=False)


def batch_norm_train(x, scale, offset, *, axis: int, epsilon: float):
    """`(outputs, mean, variance)` with per-channel statistics of shape `(channels,)`, or None."""
    rank = x.shape.rank
    if rank is None or x.shape[axis] is None:
        return None
    axis %= rank
    fused = fused_batch_norm_train(x, scale, offset, axis=axis, epsilon=epsilon)
    if fused is not None:
        return fused
    if rank == 2:
        view, layout = x, "sc"
    else:
        # Every axis before the channels is a "batch" axis: the statistics pool them all.
        view, layout = _channel_view(x, axis, batch_axes=max(axis, 1) if axis < rank - 1 else 1)
    channels = x.shape[axis]
    outputs, mean, variance = channel_standardize(view, layout, scale, offset, groups=channels,
                                                  epsilon=epsilon, pool_batch=True)
    return tf.reshape(outputs, _dims(x)), tf.reshape(mean, [channels]), tf.reshape(variance, [channels])


def batch_norm(x, mean, variance, scale, offset, *, axis: int, epsilon: float):
    """Inference batch norm: the fused kernel, or one multiply-add with folded parameters; or None.

    The fused kernel's gradient ignores the statistics, so it is used only
    when they are variables (moving averages) or when no gradient is recorded.
    """
    rank = x.shape.rank
    if rank is None:
        return None
    axis %= rank
    if (_is_variable(mean) and _is_variable(variance)) or not gradient_may_be_recorded():
        fused = fused_batch_norm(x, mean, variance, scale, offset, axis=axis, epsilon=epsilon)
        if fused is not None:
            return fused
    shape = [1] * rank
    shape[axis] = x.shape[axis]
    return folded_batch_norm(x, mean, variance, scale, offset, epsilon=epsilon, shape=shape)


def virtual_batch_norm(x, virtual_batch_size: int, scale, offset, *, axis: int, epsilon: float):
    """Ghost batch norm, channels last: `(outputs, mean, variance)`, or None.

    Each virtual batch is one example of `example_standardize` (fused
    statistics per virtual batch), or of the closed form (rank >= 3). The
    statistics have shape `(num_virtual, channels)`.
    """
    rank = x.shape.rank
    if rank is None or axis % rank != rank - 1 or x.shape[-1] is None:
        return None
    dims = _dims(x)
    channels = dims[-1]
    view = tf.reshape(x, [-1, _product([virtual_batch_size, *dims[1:-1]]), channels])
    fused = example_standardize(view, channels, scale, offset, epsilon=epsilon)
    if fused is not None:
        outputs, mean, variance = fused
        return tf.reshape(outputs, dims), mean, variance
    if rank < 3:
        return None
    outputs, mean, variance = channel_standardize(view, "nsc", scale, offset, groups=channels,
                                                  epsilon=epsilon)
    return tf.reshape(outputs, dims), mean[:, 0], variance[:, 0]


# ----------------------------------------------------------------------------- cross-replica


def cross_replica_moments(x, axes: tuple[int, ...], *, keepdims: bool = False, mask=None):
    """Mean and variance of `x` over `axes` and over every replica's batch.

    Outside a replica context (no strategy, or the default one), this is the
    local two-pass computation. Inside one, the global mean is all-reduced
    first and the squared deviations from it second, so the variance keeps the
    accuracy of the two-pass formula (the one-pass `E[x^2] - E[x]^2` of
    `keras.ops.moments(synchronized=True)` does not).
    """
    x = tf.cast(x, tf.float64 if x.dtype == tf.float64 else tf.float32)
    if mask is None:
        weights = tf.ones_like(x)
    else:
        weights = tf.cast(tf.broadcast_to(mask, tf.shape(x)), x.dtype)
    context = tf.distribute.get_replica_context()
    in_sync = context is not None and context.num_replicas_in_sync > 1

    def all_sum(value):
        return context.all_reduce(tf.distribute.ReduceOp.SUM, value) if in_sync else value

    count = all_sum(tf.reduce_sum(weights, axis=axes, keepdims=True))
    safe_count = tf.maximum(count, 1.0)
    mean = all_sum(tf.reduce_sum(x * weights, axis=axes, keepdims=True)) / safe_count
    squared = tf.reduce_sum(tf.square(x - mean) * weights, axis=axes, keepdims=True)
    variance = all_sum(squared) / safe_count
    if not keepdims:
        mean = tf.squeeze(mean, axis=axes)
        variance = tf.squeeze(variance, axis=axes)
    return mean, variance
