"""Element-wise norms on TensorFlow: the error function from TFLite builtin operators, and DyT and
Derf with a closed-form gradient.

TFLite has no erf operator, so `tf.math.erf` in a graph cannot be exported
without Flex ops. `erf` computes it from multiplications, additions, a
division, an exponential and a select: the rational approximation of
Abramowitz and Stegun (1964), formula 7.1.26, whose absolute error is at most
1.5e-7 in exact arithmetic and 5.3e-7 in float32 (`tf.math.erf` itself is
off by up to 3e-7 in float32). Its gradient is the exact derivative.

`pointwise_norm` is Dynamic Tanh and Dynamic erf, ``squash(alpha * x + shift)
* gamma + beta`` with the channels last, in training: the forward pass and a
closed-form backward (``dz = dy * gamma * squash'(z)``; ``dx = alpha * dz``;
the gradients of alpha, shift, gamma and beta are sums of ``dz * x``, ``dz``,
``dy * squash(z)`` and ``dy``, the per-channel ones products with a vector of
ones), each XLA-compiled for large tensors so that their element-wise work is
one pass, the backward chunk by chunk of rows (as `tf_row`'s kernels).
Inference and export take the plain `keras.ops` graph, which is one op per
step and converts to builtin TFLite operators.
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
    worth_compiling,
    xla_compiled,
)

# Abramowitz and Stegun, formula 7.1.26: for x >= 0,
# erf(x) = 1 - (a1 t + a2 t^2 + a3 t^3 + a4 t^4 + a5 t^5) exp(-x^2), t = 1 / (1 + p x).
_P = 0.3275911
_A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)
_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)


def _erf_and_gaussian(x):
    """``erf(x)`` from builtin ops, and ``exp(-x^2)`` (which its derivative needs), for float32 `x`."""
    t = 1.0 / (1.0 + _P * tf.abs(x))
    polynomial = _A[4]
    for a in reversed(_A[:4]):  # Horner: a1 + t (a2 + t (a3 + ...)), times t below
        polynomial = a + t * polynomial
    gaussian = tf.exp(-x * x)
    positive = 1.0 - t * polynomial * gaussian
    return tf.where(x < 0.0, -positive, positive), gaussian


@tf.custom_gradient
def _erf(x):
    y, gaussian = _erf_and_gaussian(x)

    def grad(upstream):
        return upstream * (_TWO_OVER_SQRT_PI * gaussian)

    return y, grad


def erf(x):
    """``erf(x)`` for a float16, bfloat16 or float32 tensor, computed in float32, from builtin ops."""
    x = tf.convert_to_tensor(x)
    return tf.cast(_erf(tf.cast(x, tf.float32)), x.dtype)


# ----------------------------------------------------------------------------- DyT and Derf


def _squash(z, kind: str):
    """``squash(z)`` and its derivative ``squash'(z)``."""
    if kind == "tanh":
        s = tf.tanh(z)
        return s, 1.0 - s * s
    s, gaussian = _erf_and_gaussian(z)
    return s, _TWO_OVER_SQRT_PI * gaussian


def _forward(x, alpha, shift, *params, kind: str, has_scale: bool, has_offset: bool):
    s, _ = _squash(alpha * float32(x) + shift, kind)
    if has_scale:
        s = s * params[0]
    return s + params[-1] if has_offset else s


def _backward_block(upstream, x, alpha, shift, *params, kind: str, has_scale: bool, has_offset: bool):
    """dx for the rows of the block, then the parameter gradients summed over its rows."""
    x, upstream = float32(x), float32(upstream)
    s, slope = _squash(alpha * x + shift, kind)
    dz = (upstream * params[0] if has_scale else upstream) * slope
    ones = tf.ones([1, tf.shape(x)[0]], tf.float32)
    grads = [dz * alpha, tf.reduce_sum(dz * x, keepdims=True)[0], tf.reduce_sum(dz, keepdims=True)[0]]
    if has_scale:
        grads.append(tf.reshape(tf.matmul(ones, upstream * s), [-1]))
    if has_offset:
        grads.append(tf.reshape(tf.matmul(ones, upstream), [-1]))
    return grads


def _backward(upstream, x, alpha, shift, *params, **options):
    rows = chunk_entries(x.shape[1] * 4, minimum=1)
    return in_chunks(functools.partial(_backward_block, **options), [upstream, x], [alpha, shift, *params],
                     entries=rows, summed=2 + len(params))


def _pointwise_rows(view, alpha, shift, params, *, compiled: bool, **options):
    forward = xla_compiled(_forward, **options) if compiled else functools.partial(_forward, **options)
    backward = (xla_compiled(_backward, **options) if compiled
                else functools.partial(_backward_block, **options))

    @tf.custom_gradient
    def squash(x, alpha, shift, *params):
        def grad(upstream):
            dx, dalpha, dshift, *dparams = backward(upstream, x, alpha, shift, *params)
            return [tf.cast(dx, x.dtype), tf.reshape(dalpha, []), tf.reshape(dshift, []), *dparams]

        return forward(x, alpha, shift, *params), grad

    return squash(view, alpha, shift, *params)


def pointwise_norm(x, alpha, shift, scale, offset, *, axis, kind: str):
    """DyT (`kind="tanh"`) or Derf (`"erf"`) in training, channels last; None where it does not apply.

    `alpha` and `shift` are float32 scalars; `scale` and `offset` float32 of
    shape `(channels,)` or None. Returns float32 outputs in the shape of `x`.
    """
    rank = x.shape.rank
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    if rank is None or len(axes) != 1 or axes[0] % rank != rank - 1 or x.shape[-1] is None:
        return None
    if inference_kernels():
        return None  # a forward graph of builtin ops, as the plain path traces it
    channels = x.shape[-1]
    params = [tf.reshape(float32(p), [channels]) for p in (scale, offset) if p is not None]
    view = tf.reshape(x, [-1, channels])
    options = {"kind": kind, "has_scale": scale is not None, "has_offset": offset is not None}
    compiled = in_xla_context() or worth_compiling(view)
    alpha, shift = (tf.reshape(tf.cast(value, tf.float32), []) for value in (alpha, shift))
    outputs = _pointwise_rows(view, alpha, shift, params, compiled=compiled, **options)
    return tf.reshape(outputs, dims_of(x))
