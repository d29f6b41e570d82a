"""Per-row statistics: layer and RMS norm over the last axes, viewed as `(rows, features)`.

Forward-only graphs over the normalized axes of `x` itself when no tape
records (inference, export); otherwise the row kernels below.
"""

from __future__ import annotations

import functools
import math

import tensorflow as tf

from keras_norms.kernels.tf_base import (
    chunk_entries,
    dims_of,
    float32,
    in_chunks,
    in_xla_context,
    inference_kernels,
    param,
    worth_compiling,
    xla_compiled,
)

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
    return tf.reshape(tf.matmul(tf.ones([1, dims_of(t)[0]], t.dtype), t), [-1])


def _fused_row_forward(x, *params, epsilon: float, center: bool, has_scale: bool, has_offset: bool):
    x = float32(x)
    mean = _row_mean(x) if center else tf.zeros_like(x[:, :1])
    inverse = tf.math.rsqrt(_row_mean(tf.square(x - mean)) + epsilon)
    outputs = (x - mean) * inverse
    if has_scale:
        outputs = outputs * params[0]
    if has_offset:
        outputs = outputs + params[-1]
    return outputs, mean, inverse


def _fused_row_backward(upstream, x, mean, inverse, *params, **options):
    """The compiled backward, chunk by chunk of rows (see `in_chunks`)."""
    rows = chunk_entries(x.shape[1] * 4, minimum=1)
    return in_chunks(functools.partial(_row_backward, **options), [upstream, x, mean, inverse], params,
                      entries=rows, summed=len(params))


def _row_backward(upstream, x, mean, inverse, *params, center: bool, has_scale: bool, has_offset: bool):
    upstream = float32(upstream)
    normalized = (float32(x) - mean) * inverse
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
    forward = xla_compiled(_fused_row_forward, epsilon=epsilon, **options)
    backward = xla_compiled(_fused_row_backward, **options)

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
    gamma = None if scale is None else tf.reshape(float32(scale), [features])
    beta = None if offset is None else tf.reshape(float32(offset), [features])
    params = [p for p in (gamma, beta) if p is not None]
    if in_xla_context() or worth_compiling(view):
        return _row_standardize_fused(view, params, epsilon=epsilon, center=center,
                                      has_scale=gamma is not None, has_offset=beta is not None)

    @tf.custom_gradient
    def standardize(x, *params):
        dtype, x = x.dtype, float32(x)
        centered = x - tf.reduce_mean(x, axis=1, keepdims=True) if center else x
        mean_square = tf.square(tf.math.reduce_euclidean_norm(centered, axis=1, keepdims=True)) / features
        inverse = tf.math.rsqrt(mean_square + epsilon)
        normalized = centered * inverse
        outputs = normalized if gamma is None else normalized * params[0]
        if beta is not None:
            outputs = outputs + params[-1]

        def grad(upstream):
            upstream = float32(upstream)
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


def _axes_norm_inference(x, scale, offset, *, axes, epsilon: float, center: bool):
    """Forward-only layer norm (or RMS norm without `center`) over `axes` of `x`, no view."""
    rank = x.shape.rank
    shape = [x.shape[a] if a in axes else 1 for a in range(rank)]
    x = float32(x)
    if center:
        # The centred input, once, for the variance and the output: TensorFlow's broadcasting
        # SquaredDifference ran slower than a subtraction and a square (27.4 ms against 23.5 ms for a
        # layer norm of 32x512x768 on CPU).
        centered = x - tf.reduce_mean(x, axis=axes, keepdims=True)
        variance = tf.reduce_mean(tf.square(centered), axis=axes, keepdims=True)
        outputs = centered * tf.math.rsqrt(variance + epsilon)
    else:
        outputs = x * tf.math.rsqrt(tf.reduce_mean(tf.square(x), axis=axes, keepdims=True) + epsilon)
    if scale is not None:
        outputs = outputs * param(scale, shape)
    return outputs if offset is None else outputs + param(offset, shape)


# ----------------------------------------------------------------------------- entry points
# Called by keras_norms.functional.example_norms (layer_norm, rms_norm) with the same arguments as its
# functions of the same name; each returns None when its fast path does not apply to the input.


def _axes_norm(x, scale, offset, *, axis, epsilon: float, center: bool):
    """Layer or RMS norm: forward-only over `axis` of `x`, or the row kernel on `(rows, features)`."""
    rank = x.shape.rank
    if rank is None:
        return None
    axes = sorted(a % rank for a in ((axis,) if isinstance(axis, int) else axis))
    features = [x.shape[a] for a in axes]
    if axes[0] == 0 or any(size is None for size in features):
        return None
    if inference_kernels():
        return _axes_norm_inference(x, scale, offset, axes=axes, epsilon=epsilon, center=center)
    if axes != list(range(rank - len(axes), rank)):
        return None  # normalized axes with others after them: no row view; the plain path
    view = tf.reshape(x, [-1, math.prod(features)])
    return tf.reshape(row_standardize(view, scale, offset, epsilon=epsilon, center=center), dims_of(x))


def layer_norm(x, scale, offset, *, axis, epsilon: float):
    return _axes_norm(x, scale, offset, axis=axis, epsilon=epsilon, center=True)


def rms_norm(x, scale, *, axis, epsilon: float):
    return _axes_norm(x, scale, None, axis=axis, epsilon=epsilon, center=False)
