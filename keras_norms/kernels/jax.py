"""The JAX kernels of `keras_norms.functional`: batch, layer and RMS norm.

Called by the functions of the same name, with the same arguments, in
`keras_norms.functional.batch_norms` (`batch_norm`, `batch_norm_train`) and
`keras_norms.functional.example_norms` (`layer_norm`, `rms_norm`). Batch norm
in training and layer and RMS norm run `jax_standardize`'s closed-form
gradient, batch norm with given statistics one multiply-add. Layer and RMS
norm return None when the batch axis is normalized, and the caller then takes
its plain path. The other norms have no JAX kernel: their plain `keras.ops`
path is already as fast as Keras' built-ins under XLA, or faster.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from keras_norms.kernels.jax_standardize import standardize


def _param(param, shape, fill: float):
    if param is None:
        return jnp.full(shape, fill, jnp.float32)
    return jnp.reshape(jnp.asarray(param).astype(jnp.float32), shape)


def _axes(axis, rank: int) -> tuple[int, ...]:
    return tuple(sorted(a % rank for a in ((axis,) if isinstance(axis, int) else axis)))


def batch_norm_train(x, scale, offset, *, axis: int, epsilon: float):
    """`(outputs, mean, variance)`, the statistics of shape `(channels,)` without gradient."""
    rank = x.ndim
    axis %= rank
    shape = [1] * rank
    shape[axis] = x.shape[axis]
    axes = tuple(a for a in range(rank) if a != axis)
    outputs, mean, variance = standardize(x, _param(scale, shape, 1.0), _param(offset, shape, 0.0), axes,
                                          True, epsilon)
    return outputs, jnp.reshape(mean, (-1,)), jnp.reshape(variance, (-1,))


def _axes_norm(x, scale, offset, *, axis, epsilon: float, center: bool):
    axes = _axes(axis, x.ndim)
    if axes[0] == 0:
        return None
    shape = [x.shape[a] if a in axes else 1 for a in range(x.ndim)]
    return standardize(x, _param(scale, shape, 1.0), _param(offset, shape, 0.0), axes, center, epsilon)[0]


def layer_norm(x, scale, offset, *, axis, epsilon: float):
    return _axes_norm(x, scale, offset, axis=axis, epsilon=epsilon, center=True)


def rms_norm(x, scale, *, axis, epsilon: float):
    return _axes_norm(x, scale, None, axis=axis, epsilon=epsilon, center=False)


def batch_norm(x, mean, variance, scale, offset, *, axis: int, epsilon: float):
    """Batch norm with given statistics as one multiply-add, ``x * a + b``, as TensorFlow's inference kernel.

    ``a = scale / sqrt(variance + epsilon)`` and ``b = offset - mean * a`` are
    per-channel; gradients flow to every argument through them.
    """
    rank = x.ndim
    shape = [1] * rank
    shape[axis % rank] = x.shape[axis % rank]
    gain = jnp.reshape(jnp.asarray(variance).astype(jnp.float32), shape) + epsilon
    gain = jax.lax.rsqrt(gain) * _param(scale, shape, 1.0)
    shift = _param(offset, shape, 0.0) - jnp.reshape(jnp.asarray(mean).astype(jnp.float32), shape) * gain
    return x.astype(jnp.float32) * gain + shift
