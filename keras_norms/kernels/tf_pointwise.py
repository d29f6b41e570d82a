"""The error function from TFLite builtin operators, for Derf on TensorFlow.

TFLite has no erf operator, so `tf.math.erf` in a graph cannot be exported
without Flex ops. `erf` computes it from multiplications, additions, a
division, an exponential and a select: the rational approximation of
Abramowitz and Stegun (1964), formula 7.1.26, whose absolute error is at most
1.5e-7 in exact arithmetic and 5.3e-7 in float32 (`tf.math.erf` itself is
off by up to 3e-7 in float32). Its gradient is the exact derivative.
"""

from __future__ import annotations

import math

import tensorflow as tf

# Abramowitz and Stegun, formula 7.1.26: for x >= 0,
# erf(x) = 1 - (a1 t + a2 t^2 + a3 t^3 + a4 t^4 + a5 t^5) exp(-x^2), t = 1 / (1 + p x).
_P = 0.3275911
_A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)
_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)


@tf.custom_gradient
def _erf(x):
    magnitude = tf.abs(x)
    t = 1.0 / (1.0 + _P * magnitude)
    polynomial = _A[4]
    for a in reversed(_A[:4]):  # Horner: a1 + t (a2 + t (a3 + ...)), times t below
        polynomial = a + t * polynomial
    gaussian = tf.exp(-x * x)
    positive = 1.0 - t * polynomial * gaussian
    y = tf.where(x < 0.0, -positive, positive)

    def grad(upstream):
        return upstream * (_TWO_OVER_SQRT_PI * gaussian)

    return y, grad


def erf(x):
    """``erf(x)`` for a float16, bfloat16 or float32 tensor, computed in float32, from builtin ops."""
    x = tf.convert_to_tensor(x)
    return tf.cast(_erf(tf.cast(x, tf.float32)), x.dtype)
