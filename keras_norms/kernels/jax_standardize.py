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
    outputs = ((x32 - mean) * gain if center else x32 * gain) + beta
    return (outputs, mean, variance), (x, mean, inverse, gamma)


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


standardize.defvjp(lambda *args: _forward(*args), _backward)
