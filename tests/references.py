"""Independent float64 NumPy references for every normalization, used across the tests.

They are written from the papers' formulas, not from keras_norms.functional, and
reshape the way the papers do (groups as an extra axis) on purpose.
"""

from __future__ import annotations

import numpy as np


def _f64(x):
    return np.asarray(x, dtype=np.float64)


def _param(p, shape):
    return None if p is None else _f64(p).reshape(shape)


def _affine(y, gamma, beta, shape):
    if gamma is not None:
        y = y * _param(gamma, shape)
    if beta is not None:
        y = y + _param(beta, shape)
    return y


def channel_shape(rank, axis, channels):
    shape = [1] * rank
    shape[axis % rank] = channels
    return shape


def batch_norm(x, mean, variance, gamma=None, beta=None, axis=-1, epsilon=1e-3):
    """Normalization with given per-channel statistics."""
    x = _f64(x)
    shape = channel_shape(x.ndim, axis, x.shape[axis])
    y = (x - _param(mean, shape)) / np.sqrt(_param(variance, shape) + epsilon)
    return _affine(y, gamma, beta, shape)


def batch_moments(x, axis=-1):
    """Per-channel mean and biased variance over every axis but `axis`."""
    x = _f64(x)
    axes = tuple(i for i in range(x.ndim) if i != axis % x.ndim)
    return x.mean(axis=axes), x.var(axis=axes)


def batch_norm_train(x, gamma=None, beta=None, axis=-1, epsilon=1e-3):
    mean, variance = batch_moments(x, axis)
    return batch_norm(x, mean, variance, gamma, beta, axis, epsilon)


def layer_norm(x, gamma=None, beta=None, axis=-1, epsilon=1e-3):
    x = _f64(x)
    axes = tuple(sorted(a % x.ndim for a in np.atleast_1d(axis)))
    mean = x.mean(axis=axes, keepdims=True)
    variance = x.var(axis=axes, keepdims=True)
    y = (x - mean) / np.sqrt(variance + epsilon)
    shape = [x.shape[i] if i in axes else 1 for i in range(x.ndim)]
    return _affine(y, gamma, beta, shape)


def rms_norm(x, gamma=None, axis=-1, epsilon=1e-6):
    x = _f64(x)
    axes = tuple(sorted(a % x.ndim for a in np.atleast_1d(axis)))
    y = x / np.sqrt(np.mean(x * x, axis=axes, keepdims=True) + epsilon)
    shape = [x.shape[i] if i in axes else 1 for i in range(x.ndim)]
    return _affine(y, gamma, None, shape)


def group_norm(x, groups, gamma=None, beta=None, axis=-1, epsilon=1e-3):
    """Wu and He (2018), Figure 3: view channels as (groups, channels // groups)."""
    x = _f64(x)
    axis %= x.ndim
    channels = x.shape[axis]
    groups = channels if groups == -1 else groups
    moved = np.moveaxis(x, axis, -1)
    grouped = moved.reshape(moved.shape[0], -1, groups, channels // groups)
    mean = grouped.mean(axis=(1, 3), keepdims=True)
    variance = grouped.var(axis=(1, 3), keepdims=True)
    y = ((grouped - mean) / np.sqrt(variance + epsilon)).reshape(moved.shape)
    y = np.moveaxis(y, -1, axis)
    return _affine(y, gamma, beta, channel_shape(x.ndim, axis, channels))


def instance_norm(x, gamma=None, beta=None, axis=-1, epsilon=1e-3):
    x = _f64(x)
    axis %= x.ndim
    axes = tuple(i for i in range(1, x.ndim) if i != axis)
    mean = x.mean(axis=axes, keepdims=True)
    variance = x.var(axis=axes, keepdims=True)
    y = (x - mean) / np.sqrt(variance + epsilon)
    return _affine(y, gamma, beta, channel_shape(x.ndim, axis, x.shape[axis]))


def numerical_gradient(f, x, upstream, h=1e-5):
    """Central-difference gradient of sum(f(x) * upstream) with respect to x, in float64."""
    x = _f64(x).copy()
    grad = np.empty_like(x)
    flat, out = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        saved = flat[i]
        flat[i] = saved + h
        plus = np.sum(f(x) * upstream)
        flat[i] = saved - h
        minus = np.sum(f(x) * upstream)
        flat[i] = saved
        out[i] = (plus - minus) / (2 * h)
    return grad
