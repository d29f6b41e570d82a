"""Independent float64 NumPy references for every normalization, used across the tests.

They are written from the papers' formulas, not from keras_norms.functional, and
reshape the way the papers do (groups as an extra axis) on purpose.
"""

from __future__ import annotations

import math

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


def _scalar(value):
    return float(np.asarray(value, np.float64).reshape(()))


def dynamic_tanh(x, alpha, gamma=None, beta=None, axis=-1):
    """Zhu et al. (2025): tanh(alpha x) gamma + beta, gamma and beta along `axis`."""
    x = _f64(x)
    axes = tuple(sorted(a % x.ndim for a in np.atleast_1d(axis)))
    shape = [x.shape[i] if i in axes else 1 for i in range(x.ndim)]
    return _affine(np.tanh(_scalar(alpha) * x), gamma, beta, shape)


_erf = np.vectorize(math.erf, otypes=[np.float64])


def dynamic_erf(x, alpha, shift, gamma=None, beta=None, axis=-1):
    """Chen et al. (2025): erf(alpha x + s) gamma + beta, gamma and beta along `axis`."""
    x = _f64(x)
    axes = tuple(sorted(a % x.ndim for a in np.atleast_1d(axis)))
    shape = [x.shape[i] if i in axes else 1 for i in range(x.ndim)]
    return _affine(_erf(_scalar(alpha) * x + _scalar(shift)), gamma, beta, shape)


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


# ----------------------------------------------------------------------------- conditional


def modulate(y, gamma, beta, axis=-1):
    """``y * gamma + beta`` with per-example parameters `(batch, channels)`, broadcast over other axes."""
    y = _f64(y)
    shape = channel_shape(y.ndim, axis, y.shape[axis])
    shape[0] = y.shape[0]
    return y * _f64(gamma).reshape(shape) + _f64(beta).reshape(shape)


def condition_rows(table, condition):
    """Rows of a per-class or per-style table: ``table[ids]`` for integer ids, ``weights @ table`` else."""
    condition = np.asarray(condition)
    if np.issubdtype(condition.dtype, np.integer):
        return _f64(table)[condition.reshape(-1)]
    return _f64(condition) @ _f64(table)


def _projected_affine(condition, w):
    """FiLM's generator: ``gamma = 1 + c @ Wg + bg``, ``beta = c @ Wb + bb``."""
    c = _f64(condition)
    gamma = 1.0 + c @ _f64(w["gamma_kernel"]) + _f64(w["gamma_bias"])
    beta = c @ _f64(w["beta_kernel"]) + _f64(w["beta_bias"])
    return gamma, beta


def conditional_batch_norm(x, condition, w, axis=-1, epsilon=1e-3, training=True, virtual_batch_size=None):
    """de Vries et al. (2017): batch norm without affine, then a gamma and beta per example.

    `w` holds `gamma`/`beta` tables (class-id conditions) or `gamma_kernel`,
    `gamma_bias`, `beta_kernel`, `beta_bias` (vector conditions), and the
    moving statistics used when not training. With `virtual_batch_size`, each
    run of that many examples is normalized on its own (ghost batch norm).
    """
    x = _f64(x)
    if not training:
        y = batch_norm(x, w["moving_mean"], w["moving_variance"], axis=axis, epsilon=epsilon)
    else:
        k = virtual_batch_size or len(x)
        y = np.concatenate([batch_norm_train(x[i:i + k], axis=axis, epsilon=epsilon)
                            for i in range(0, len(x), k)])
    if "gamma_kernel" in w:
        gamma, beta = _projected_affine(condition, w)
    else:
        gamma, beta = condition_rows(w["gamma"], condition), condition_rows(w["beta"], condition)
    return modulate(y, gamma, beta, axis)


def conditional_instance_norm(x, condition, gamma, beta, axis=-1, epsilon=1e-3):
    """Dumoulin et al. (2017): instance norm, then the gamma and beta of each example's style
    (integer style ids, or style weights mixing the rows)."""
    y = instance_norm(x, axis=axis, epsilon=epsilon)
    return modulate(y, condition_rows(gamma, condition), condition_rows(beta, condition), axis)


def film(x, condition, w, axis=-1):
    """Perez et al. (2018): ``x * (1 + c @ Wg + bg) + (c @ Wb + bb)``, no normalization."""
    return modulate(x, *_projected_affine(condition, w), axis)


def resize_nearest(images, height, width):
    """Nearest neighbour by pixel centres: output pixel i samples input pixel floor((i + 0.5) * in / out)."""
    images = _f64(images)

    def source(size, out):
        return np.minimum(np.floor((np.arange(out) + 0.5) * size / out).astype(int), size - 1)

    return images[:, source(images.shape[1], height)][:, :, source(images.shape[2], width)]


def conv2d_same(x, kernel, bias):
    """Stride-1 2D cross-correlation with zero "same" padding, as a sum over the kernel's offsets."""
    x, kernel = _f64(x), _f64(kernel)
    kh, kw = kernel.shape[:2]
    top, left = (kh - 1) // 2, (kw - 1) // 2
    padded = np.pad(x, ((0, 0), (top, kh - 1 - top), (left, kw - 1 - left), (0, 0)))
    height, width = x.shape[1:3]
    out = np.zeros((*x.shape[:3], kernel.shape[3]))
    for i in range(kh):
        for j in range(kw):
            out += padded[:, i:i + height, j:j + width, :] @ kernel[i, j]
    return out + _f64(bias)


def spade(x, segmap, w, norm="batch", epsilon=1e-3, training=True):
    """Park et al. (2019), Eq. (1) and Fig. 2: parameter-free norm of x, modulated per pixel by
    ``gamma, beta = conv(relu(conv(resize(segmap))))`` as ``norm(x) * (1 + gamma) + beta``."""
    x = _f64(x)
    if norm == "instance":
        y = instance_norm(x, epsilon=epsilon)
    elif training:
        y = batch_norm_train(x, epsilon=epsilon)
    else:
        y = batch_norm(x, w["moving_mean"], w["moving_variance"], epsilon=epsilon)
    m = resize_nearest(segmap, *x.shape[1:3])
    hidden = np.maximum(conv2d_same(m, w["shared_kernel"], w["shared_bias"]), 0.0)
    gamma = conv2d_same(hidden, w["gamma_kernel"], w["gamma_bias"])
    beta = conv2d_same(hidden, w["beta_kernel"], w["beta_bias"])
    return y * (1.0 + gamma) + beta


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


# ----------------------------------------------------------------------------- adaptive, response


def _spatial_axes(ndim, axis=-1):
    return tuple(i for i in range(1, ndim) if i != axis % ndim)


def _silu(c):
    return c / (1.0 + np.exp(-c))


def _per_example(p, ndim):
    """`(batch, channels)` -> `(batch, 1, ..., 1, channels)` of rank `ndim`."""
    return p.reshape(p.shape[0], *([1] * (ndim - 2)), p.shape[-1])


def _projection(condition, w, chunks, activation=None):
    """Per-example parameters ``activation(c) @ kernel + bias``, split into `chunks`."""
    c = _f64(condition)
    if activation == "silu":
        c = _silu(c)
    return np.split(c @ _f64(w["kernel"]) + _f64(w["bias"]), chunks, axis=-1)


def filter_response_norm(x, gamma, beta, axis=(1, 2), epsilon=1e-6, learned_epsilon=None):
    """tensorflow-addons' `FilterResponseNormalization.call`, transcribed: ``nu2 = mean(x^2)`` over
    `axis`, ``x * rsqrt(nu2 + |epsilon| (+ |learned_epsilon|))``, then ``gamma * x + beta``."""
    x = _f64(x)
    epsilon = np.abs(_f64(epsilon))
    if learned_epsilon is not None:
        epsilon = epsilon + np.abs(_f64(learned_epsilon))
    nu2 = np.mean(np.square(x), axis=tuple(axis), keepdims=True)
    return _f64(gamma) * (x * (1.0 / np.sqrt(nu2 + epsilon))) + _f64(beta)


def tlu(x, tau, alpha=None):
    """tensorflow-addons' TLU: ``max(x, tau)``, or ``max(x, alpha * x + tau)`` when affine."""
    x = _f64(x)
    return np.maximum(x, _f64(tau) if alpha is None else _f64(alpha) * x + _f64(tau))


def adain(content, style, alpha=1.0, epsilon=1e-5):
    """Huang and Belongie (2017), Eq. (8), blended with the content as in their Sec. 7:
    ``alpha * (sigma(y) * (x - mu(x)) / sigma(x) + mu(y)) + (1 - alpha) * x``,
    ``sigma = sqrt(var + epsilon)`` per example and channel over the spatial axes."""
    x, y = _f64(content), _f64(style)
    cx, cy = _spatial_axes(x.ndim), _spatial_axes(y.ndim)
    sigma_x = np.sqrt(x.var(axis=cx, keepdims=True) + epsilon)
    sigma_y = np.sqrt(y.var(axis=cy, keepdims=True) + epsilon)
    stylized = sigma_y * (x - x.mean(axis=cx, keepdims=True)) / sigma_x + y.mean(axis=cy, keepdims=True)
    return alpha * stylized + (1.0 - alpha) * x


def adain_vector(content, style, w, alpha=1.0, epsilon=1e-5, activation=None):
    """Learned AdaIN (StyleGAN's style modulation): ``IN(x) * (1 + scale) + shift``,
    ``[scale, shift] = activation(style) @ kernel + bias``, blended by `alpha`."""
    x = _f64(content)
    scale, shift = _projection(style, w, 2, activation)
    y = instance_norm(x, epsilon=epsilon) * (1.0 + _per_example(scale, x.ndim)) + _per_example(shift, x.ndim)
    return alpha * y + (1.0 - alpha) * x


def adaptive_layer_norm(x, condition, w, zero=False, epsilon=1e-6, activation="silu"):
    """DiT (Peebles and Xie 2023): ``shift, scale[, gate] = Linear(SiLU(c))``,
    ``modulate(LN(x), shift, scale) = LN(x) * (1 + scale) + shift`` (LN without affine);
    adaLN-Zero also returns the gate, shaped `(batch, 1, ..., channels)`."""
    x = _f64(x)
    parts = _projection(condition, w, 3 if zero else 2, activation)
    shift, scale = (_per_example(p, x.ndim) for p in parts[:2])
    y = layer_norm(x, epsilon=epsilon) * (1.0 + scale) + shift
    return (y, _per_example(parts[2], x.ndim)) if zero else y


def adaptive_group_norm(x, condition, w, groups, epsilon=1e-5, activation="silu"):
    """ADM's scale-shift norm (Dhariwal and Nichol 2021): ``GN(x) * (1 + scale) + shift``,
    ``scale, shift = Linear(SiLU(emb))`` (group norm without affine)."""
    x = _f64(x)
    scale, shift = (_per_example(p, x.ndim) for p in _projection(condition, w, 2, activation))
    return group_norm(x, groups, epsilon=epsilon) * (1.0 + scale) + shift


def _softmax(v):
    e = np.exp(_f64(v) - np.max(v))
    return e / e.sum()


def switchable_norm(x, w, axis=-1, epsilon=1e-5, training=True):
    """Luo et al. (2019), Eqs. (3)-(6): instance, layer and batch statistics, each computed directly
    over its own axes, mixed by softmax weights (order: instance, layer, batch); in inference the
    moving statistics replace the batch ones."""
    x = _f64(x)
    axis %= x.ndim
    shape = channel_shape(x.ndim, axis, x.shape[axis])
    spatial = _spatial_axes(x.ndim, axis)
    non_batch = tuple(range(1, x.ndim))
    means = [x.mean(axis=spatial, keepdims=True), x.mean(axis=non_batch, keepdims=True)]
    variances = [x.var(axis=spatial, keepdims=True), x.var(axis=non_batch, keepdims=True)]
    if training:
        batch_mean, batch_variance = batch_moments(x, axis)
    else:
        batch_mean, batch_variance = w["moving_mean"], w["moving_variance"]
    means.append(_f64(batch_mean).reshape(shape))
    variances.append(_f64(batch_variance).reshape(shape))
    mean = sum(k * m for k, m in zip(_softmax(w["mean_weights"]), means, strict=True))
    variance = sum(k * v for k, v in zip(_softmax(w["variance_weights"]), variances, strict=True))
    return _affine((x - mean) / np.sqrt(variance + epsilon), w.get("gamma"), w.get("beta"), shape)


def standardize_kernel(kernel, epsilon=1e-5):
    """Qiao et al. (2019), Eq. (5): each output channel (last axis) of the kernel to zero mean and unit
    variance over all its other axes, ``(W - mu) / sqrt(sigma^2 + epsilon)``."""
    k = _f64(kernel)
    axes = tuple(range(k.ndim - 1))
    return (k - k.mean(axis=axes, keepdims=True)) / np.sqrt(k.var(axis=axes, keepdims=True) + epsilon)


def conv2d_valid(x, kernel, bias=None):
    """Stride-1 2D cross-correlation without padding, channels last, as a sum over kernel offsets."""
    x, kernel = _f64(x), _f64(kernel)
    kh, kw = kernel.shape[:2]
    height, width = x.shape[1] - kh + 1, x.shape[2] - kw + 1
    out = np.zeros((x.shape[0], height, width, kernel.shape[3]))
    for i in range(kh):
        for j in range(kw):
            out += x[:, i:i + height, j:j + width, :] @ kernel[i, j]
    return out if bias is None else out + _f64(bias)
