"""TensorFlow-only kernels: statistics reduced across `tf.distribute` replicas."""

from __future__ import annotations

import tensorflow as tf


def cross_replica_moments(x, axes: tuple[int, ...], *, keepdims: bool = False, mask=None):
    """Mean and variance of `x` over `axes` and over every replica's batch.

    Outside a replica context (no strategy, or the default one), this is the
    local two-pass computation. Inside one, the global mean is all-reduced
    first and the squared deviations from it second, so the variance keeps the
    accuracy of the two-pass formula (the one-pass `E[x^2] - E[x]^2` of
    `keras.ops.moments(synchronized=True)` does not).
    """
    x = tf.cast(x, tf.float32)
    if mask is None:
        weights = tf.ones_like(x)
    else:
        weights = tf.cast(tf.broadcast_to(mask, tf.shape(x)), tf.float32)
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
