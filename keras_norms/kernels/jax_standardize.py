"""JAX: standardization over axes with a closed-form gradient (batch, layer and RMS norm in training).

Under `jax.jit`, XLA differentiates the plain `keras.ops` math through every
op: the gradient flows back through the variance and the mean separately, and
on CPU the result runs a few more passes over memory than it needs to. Here
forward and backward are written out (`jax.custom_vjp`):

- forward: the mean and variance (two passes: exact for a large mean), then
  ``(x - mean) * (inverse * gamma) + beta``, the input centred before it is
  scaled so that no digits are lost (``x * a + b`` would lose them when the
  mean is large next to the spread);
- backward: the two sums (of ``dy`` and of ``dy * (x - mean)``) and one
  expression for ``dx``; the normalized tensor is recomputed, not stored.
  Where the parameters live on the axes that are not reduced (batch norm),
  the sums of the parameters' gradients are the ones ``dx`` needs, so they
  are computed once.

Mean and variance are returned beside the output, without gradient (they feed
moving averages). Everything is float32 inside; the output is float32 and
the input's gradient has the input's dtype.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp


def _size(shape, axes) -> int:
    size = 1
    for axis in axes:
        size *= shape[axis]
    return size


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5))
def standardize(x, gamma, beta, axes: tuple[int, ...], center: bool, epsilon: float):
    """`(outputs, mean, variance)` of `x` standardized over `axes` (centred unless not `center`).

    `gamma` and `beta` are float32 arrays broadcastable against `x`; the
    statistics keep the reduced axes (size 1). Only `outputs` carries a
    gradient.
    """
    return _forward(x, gamma, beta, axes, center, epsilon)[0]


def _forward(x, gamma, beta, axes, center, epsilon):
    x32 = x.astype(jnp.float32)
    if center:
        mean = jnp.mean(x32, axes, keepdims=True)
        # jnp.var, not the mean of square(x32 - mean): XLA then keeps the centred input inside the
        # reduction instead of writing it to memory for the output to reuse (measured on CPU).
        variance = jnp.var(x32, axes, keepdims=True)
    else:
        mean = jnp.zeros((1,) * x.ndim, jnp.float32)
        variance = jnp.mean(jnp.square(x32), axes, keepdims=True)
    inverse = jax.lax.rsqrt(variance + epsilon)
    gain = inverse * gamma
    centering = jax.lax.optimization_barrier(mean) if center and _apart(x.shape, axes) else mean
    outputs = ((x32 - centering) * gain if center else x32 * gain) + beta
    return (outputs, mean, variance), (x, mean, inverse, gamma)


# From this many rows (statistics) up, XLA on CPU compiles a layer norm over the last axes into one
# kernel, which keeping the output's centring apart from the variance's would prevent (measured).
_ONE_KERNEL_MIN_ROWS = 4096


def _apart(shape, axes) -> bool:
    """Whether the output's ``x - mean`` is kept apart from the variance's (`optimization_barrier`).

    Sharing it, XLA on CPU writes the centred input to memory for the variance's
    reduction, one more pass: it does so where statistics pool leading axes
    (batch norm), and over the last axes for fewer than `_ONE_KERNEL_MIN_ROWS`
    rows. The barrier only orders the computation; the values are the same.
    """
    if len(shape) - 1 not in axes:
        return True
    return _size(shape, [a for a in range(len(shape)) if a not in axes]) < _ONE_KERNEL_MIN_ROWS


def _backward(axes, center, epsilon, residuals, cotangents):
    upstream = cotangents[0].astype(jnp.float32)
    x, mean, inverse, gamma = residuals
    centered = x.astype(jnp.float32) - mean if center else x.astype(jnp.float32)
    param_axes = tuple(a for a in range(x.ndim) if gamma.shape[a] == 1)
    count = _size(x.shape, axes)
    if param_axes == tuple(axes):
        # Per-channel parameters (batch norm): dx needs the very sums that give d(gamma) and d(beta).
        sum_up = jnp.sum(upstream, axes, keepdims=True)
        dgamma = jnp.sum(upstream * centered, axes, keepdims=True) * inverse
        mean_up = gamma * sum_up / count
        mean_up_normalized = gamma * dgamma / count
    elif tuple(axes) == tuple(range(x.ndim - len(axes), x.ndim)):
        sum_up, dgamma, mean_up, mean_up_normalized = _row_sums(upstream, centered, inverse, gamma, count)
    else:
        sum_up = jnp.sum(upstream, param_axes, keepdims=True)
        dgamma = jnp.sum(upstream * centered * inverse, param_axes, keepdims=True)
        scaled_up = upstream * gamma
        mean_up = jnp.mean(scaled_up, axes, keepdims=True)
        mean_up_normalized = jnp.mean(scaled_up * centered, axes, keepdims=True) * inverse
    # dx = inverse * (dy * gamma - mean(dy * gamma) - x_hat * mean(dy * gamma * x_hat)),
    # with x_hat = centered * inverse.
    slope = -inverse * inverse * mean_up_normalized
    gradient = upstream * (gamma * inverse) + centered * slope
    if center:
        gradient = gradient - inverse * mean_up
    return gradient.astype(x.dtype), dgamma, sum_up


def _row_sums(upstream, centered, inverse, gamma, features: int):
    """The sums of `_backward` for statistics over the last axes (layer and RMS norm), as products.

    On `(rows, features)` views: ``dy * (x - mean)`` is written once, and the
    weighted sums over features (by gamma) and over rows (by the inverse) are
    matrix-vector products, which XLA on CPU runs at memory speed; the
    reductions they replace, with the parameters broadcast into them, wrote
    the broadcasts out first (measured: 40 ms against 22 ms for the backward
    of 32x512x768).
    """
    shape = gamma.shape
    up_rows = jnp.reshape(upstream, (-1, features))
    inverse_rows = jnp.reshape(inverse, (-1,))
    weights = jnp.reshape(gamma, (features,))
    product = up_rows * jnp.reshape(centered, (-1, features))
    rows_shape = inverse.shape
    mean_up = jnp.reshape(up_rows @ weights, rows_shape) / features
    mean_up_normalized = jnp.reshape(product @ weights, rows_shape) * inverse / features
    dgamma = jnp.reshape(inverse_rows @ product, shape)
    return jnp.reshape(jnp.sum(up_rows, 0), shape), dgamma, mean_up, mean_up_normalized


standardize.defvjp(lambda *args: _forward(*args), _backward)
