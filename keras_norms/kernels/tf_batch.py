"""Batch statistics: batch norm in training and inference, ghost batches, and cross-replica moments.

Batch norm, channels last: TensorFlow's fused kernel and its fused gradient,
in training (`FusedBatchNormV2`, which reads float16 and bfloat16 directly)
and inference (`FusedBatchNorm`, which the TFLite converter turns into builtin
MUL and ADD; V2, which it does not convert, only for bfloat16, which TFLite
does not take). Rank 5+ is viewed as rank 4. Not `FusedBatchNormV3` (one of
its outputs has an unknown rank); not channels first (on CPU the kernel
transposes NCHW internally, which costs more than it saves), nor under XLA
(which expands it into slow code). Where it does not apply, training takes
the closed form of `tf_channel` (statistics pooled over the batch) and
inference one multiply-add with folded parameters. Ghost batch norm takes the
statistics by examples of `tf_example`, one virtual batch per example.
"""

from __future__ import annotations

import tensorflow as tf

from keras_norms.kernels.tf_base import (
    channel_view,
    dims_of,
    elements_per_statistic,
    float32,
    fused_applies,
    fused_view,
    gradient_may_be_recorded,
    is_variable,
    product,
)
from keras_norms.kernels.tf_channel import channel_standardize
from keras_norms.kernels.tf_example import example_standardize

# ----------------------------------------------------------------------------- fused batch norm


def _affine_or_default(param, channels: int, value: float):
    return tf.fill([channels], value) if param is None else float32(param)


def fused_batch_norm_train(x, scale, offset, *, axis: int, epsilon: float):
    """Training batch norm with the fused kernel: `(outputs, mean, variance)`, or None.

    The outputs have the dtype of `x` (the kernel computes in float32 and
    rounds once). `variance` is the biased batch variance (the kernel returns
    the unbiased one; the correction is undone), and neither statistic carries
    a gradient.
    """
    if not fused_applies(x, axis, epsilon):
        return None
    channels = x.shape[-1]
    outputs, mean, variance, _, _ = tf.raw_ops.FusedBatchNormV2(
        x=fused_view(x),
        scale=_affine_or_default(scale, channels, 1.0),
        offset=_affine_or_default(offset, channels, 0.0),
        mean=tf.zeros([0]),
        variance=tf.zeros([0]),
        epsilon=epsilon,
        data_format="NHWC",
        is_training=True,
    )
    count = elements_per_statistic(x, channels)
    variance = variance * ((count - 1.0) / count)
    return tf.reshape(outputs, dims_of(x)), tf.stop_gradient(mean), tf.stop_gradient(variance)


def fused_batch_norm(x, mean, variance, scale, offset, *, axis: int, epsilon: float):
    """Inference batch norm (given statistics) with the fused kernel; or None.

    bfloat16 (which TFLite does not take) is read and written as it is by
    `FusedBatchNormV2`, without a cast over the tensor on each side; other
    dtypes run as float32 in `FusedBatchNorm`, which the TFLite converter turns
    into builtin ops.
    """
    if not fused_applies(x, axis, epsilon):
        return None
    channels = x.shape[-1]
    kernel = tf.raw_ops.FusedBatchNormV2 if x.dtype == tf.bfloat16 else tf.raw_ops.FusedBatchNorm
    outputs = kernel(
        x=fused_view(x if x.dtype == tf.bfloat16 else float32(x)),
        scale=_affine_or_default(scale, channels, 1.0),
        offset=_affine_or_default(offset, channels, 0.0),
        mean=float32(mean),
        variance=float32(variance),
        epsilon=epsilon,
        data_format="NHWC",
        is_training=False,
    )[0]
    return tf.reshape(outputs, dims_of(x))


def folded_batch_norm(x, mean, variance, scale, offset, *, epsilon: float, shape):
    """Batch norm with given statistics as ``x * a + b``: two passes over memory, not three.

    ``a = scale / sqrt(variance + epsilon)`` and ``b = offset - mean * a``, the
    parameters reshaped to `shape` (a broadcast shape); float32 result.
    """
    inverse = tf.math.rsqrt(tf.reshape(float32(variance), shape) + epsilon)
    if scale is not None:
        inverse = inverse * tf.reshape(float32(scale), shape)
    shift = -tf.reshape(float32(mean), shape) * inverse
    if offset is not None:
        shift = shift + tf.reshape(float32(offset), shape)
    return float32(x) * inverse + shift


# ----------------------------------------------------------------------------- entry points
# Called by keras_norms.functional.batch_norms (batch_norm, batch_norm_train, virtual_batch_norm) with
# the same arguments as its functions of the same name; each returns None when its fast path does not
# apply to the input. cross_replica_moments is called by functional.statistics.moments.


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
        view, layout = channel_view(x, axis, batch_axes=max(axis, 1) if axis < rank - 1 else 1)
    channels = x.shape[axis]
    outputs, mean, variance = channel_standardize(view, layout, scale, offset, groups=channels,
                                                  epsilon=epsilon, pool_batch=True)
    return tf.reshape(outputs, dims_of(x)), tf.reshape(mean, [channels]), tf.reshape(variance, [channels])


def batch_norm(x, mean, variance, scale, offset, *, axis: int, epsilon: float):
    """Inference batch norm: the fused kernel, or one multiply-add with folded parameters; or None.

    The fused kernel's gradient ignores the statistics, so it is used only
    when they are variables (moving averages) or when no gradient is recorded.
    """
    rank = x.shape.rank
    if rank is None:
        return None
    axis %= rank
    if (is_variable(mean) and is_variable(variance)) or not gradient_may_be_recorded():
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
    dims = dims_of(x)
    channels = dims[-1]
    view = tf.reshape(x, [-1, product([virtual_batch_size, *dims[1:-1]]), channels])
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
