"""Per-channel statistics: per (sample, group of channels), or per channel over the batch.

Group and instance norm (`group_norm`), and batch norm where the fused kernel
does not take it (`tf_batch` calls `channel_standardize` with `pool_batch`):
a closed-form gradient in TensorFlow ops, or two XLA-compiled functions for
large channels-last tensors in training; forward-only graphs of TFLite
builtin ops on `x` itself when no tape records. Group and instance norm of
large channels-last examples in training take the statistics by examples of
`tf_example` instead.
"""

from __future__ import annotations

import math

import tensorflow as tf

from keras_norms.kernels.tf_base import (
    channel_view,
    chunk_entries,
    dims_of,
    elements_per_statistic,
    float32,
    gradient_may_be_recorded,
    in_chunks,
    in_xla_context,
    inference_kernels,
    param,
    repeat_over_groups,
    worth_compiling,
    xla_compiled,
)
from keras_norms.kernels.tf_example import example_standardize

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
    dims = dims_of(t)
    if layout == "sc":
        return tf.matmul(tf.ones([1, dims[0]], t.dtype), t)
    return tf.matmul(tf.ones([dims[0], 1, dims[1]], t.dtype), t)


def _sum_squares_positions(t, layout: str, xla: bool):
    if xla:
        return _sum_positions(tf.square(t), layout, xla, computed=True)
    axis = {"nsc": 1, "ncs": 2, "sc": 0}[layout]
    return tf.square(tf.math.reduce_euclidean_norm(t, axis=axis, keepdims=True))


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
        return repeat_over_groups(sums, self.channels, self.groups, tf.reduce_sum)

    def slots(self, view):
        """The number of statistics of `view`."""
        return (1 if self.pool_batch else dims_of(view)[0]) * self.groups

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
    x = float32(x)
    pooling = _Pooling(layout, x.shape[1 if layout == "ncs" else -1], groups, pool_batch)
    count = elements_per_statistic(x, pooling.slots(x))
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
    upstream = float32(upstream)
    pooling = _Pooling(layout, centered.shape[1 if layout == "ncs" else -1], groups, pool_batch)
    count = elements_per_statistic(centered, pooling.slots(centered))
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
    return block(x) if chunk is None else in_chunks(block, [x], [], entries=chunk)


def _fused_channel_backward(upstream, x, mean, variance, *params, **options):
    """The compiled backward, chunk by chunk of examples unless the statistics pool the batch."""
    def block(upstream, x, mean, variance):
        return _channel_backward(upstream, float32(x) - mean, variance, *params, **options)

    chunk = _example_chunk(x, options)
    if chunk is None:
        return block(upstream, x, mean, variance)
    return in_chunks(block, [upstream, x, mean, variance], [], entries=chunk, summed=len(params))


def _example_chunk(x, options) -> int | None:
    """Examples per chunk; None where statistics pool the batch or an example's size is unknown."""
    if options["pool_batch"] or options["layout"] == "sc" or not x.shape[1:].is_fully_defined():
        return None
    # At least two examples: one example per chunk ran slower than no chunks (measured on CPU).
    return chunk_entries(4 * math.prod(x.shape[1:]), minimum=2)


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
    gamma = None if scale is None else tf.reshape(float32(scale), param_shape)
    beta = None if offset is None else tf.reshape(float32(offset), param_shape)
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
    compiled = xla or (layout == "nsc" and worth_compiling(view))

    @tf.custom_gradient
    def standardize(x, *params):
        if compiled:
            outputs, mean, variance = xla_compiled(_fused_channel_forward, **options, xla=True)(x, *params)

            def backward(upstream):
                return xla_compiled(_fused_channel_backward, **options, xla=True)(upstream, x, mean, variance,
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
        return repeat_over_groups(mean, channels, groups, tf.reduce_mean)

    centered = float32(x) - pooled_mean(float32(x))
    gain = tf.math.rsqrt(pooled_mean(tf.square(centered)) + epsilon)
    if scale is not None:
        gain = gain * param(scale, shape)
    outputs = centered * gain
    return outputs if offset is None else outputs + param(offset, shape)


# ----------------------------------------------------------------------------- entry points
# Called by keras_norms.functional.example_norms.group_norm with the same arguments; returns None when
# its fast path does not apply to the input.


def group_norm(x, groups: int, scale, offset, *, axis: int, epsilon: float):
    rank = x.shape.rank
    if rank is None or x.shape[axis] is None:
        return None
    axis %= rank
    if inference_kernels():
        groups = x.shape[axis] if groups == -1 else groups
        return _group_norm_inference(x, groups, scale, offset, axis=axis, epsilon=epsilon)
    channels = x.shape[axis]
    groups = channels if groups == -1 else groups
    view, layout = channel_view(x, axis)
    if view is None:
        return None  # rank 2 (no positions) or a middle channel axis: tiny or rare
    if layout == "nsc":
        fused = example_standardize(view, groups, scale, offset, epsilon=epsilon)
        if fused is not None:
            return tf.reshape(fused[0], dims_of(x))
    outputs, _, _ = channel_standardize(view, layout, scale, offset, groups=groups, epsilon=epsilon)
    return tf.reshape(outputs, dims_of(x))
