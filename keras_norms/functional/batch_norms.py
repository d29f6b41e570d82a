"""Normalizations with statistics over the batch: batch norm, ghost batch norm, switchable norm.

Fast paths (see `keras_norms.functional.fast_paths`): with TensorFlow,
`batch_norm`, `batch_norm_train` and `virtual_batch_norm` call the kernels of
`keras_norms.kernels.tf_batch` (the fused batch norm kernel, a folded
multiply-add, closed-form gradients); with JAX, `batch_norm` and
`batch_norm_train` call those of `keras_norms.kernels.jax`, with PyTorch those
of `keras_norms.kernels.torch` (PyTorch's native batch norm; ghost batch norm
has a kernel on TensorFlow only). Each kernel is imported by name where it is
called, and returns None for an input it does not cover; the function then
goes on with the plain `keras.ops` math below the call.
"""

from __future__ import annotations

from keras import ops

from keras_norms.functional._common import (
    _fused_source,
    _like,
    _mean,
    _result_dtype,
    _spatial_axes,
    _tensor,
    _upcast,
)
from keras_norms.functional.example_norms import _full_mask
from keras_norms.functional.fast_paths import fast_path_backend
from keras_norms.functional.statistics import (
    _broadcast,
    moments,
    normalize,
    ungroup_virtual_batches,
    virtual_batch_moments,
)


def batch_norm(x, mean, variance, scale=None, offset=None, *, axis: int = -1,
               epsilon: float = 1e-3, dtype=None):
    r"""Normalizes `x` with given per-channel statistics (batch or moving).

    $$
    y = \frac{x - \mathrm{mean}}{\sqrt{\mathrm{variance} + \epsilon}} \cdot \mathrm{scale} + \mathrm{offset},
    $$

    each parameter
    of shape `(channels,)` broadcast along `axis`: batch normalization at
    inference, with the moving averages, or with statistics computed elsewhere
    (`batch_norm_train` computes those of the batch itself). On the TensorFlow
    fast path it runs the fused batch norm kernel or one multiply-add with
    folded parameters; on JAX, one multiply-add.

    Args:
        x: Input tensor, channels on `axis`.
        mean: Per-channel mean, shape `(channels,)`.
        variance: Per-channel variance, shape `(channels,)`.
        scale: Optional per-channel gamma, shape `(channels,)`.
        offset: Optional per-channel beta, shape `(channels,)`.
        axis: The channel axis.
        epsilon: Added to the variance.
        dtype: The dtype of the result; when None, the dtype the math runs in.

    Returns:
        The normalized tensor in `dtype` (computed in float32, or float64 for
        float64 `x`).

    Reference:
        - Ioffe and Szegedy, "Batch Normalization: Accelerating Deep Network
          Training by Reducing Internal Covariate Shift", ICML 2015.
          [arXiv:1502.03167](https://arxiv.org/abs/1502.03167)

    Examples:
        >>> import numpy as np
        >>> from keras_norms import functional as F
        >>> x = np.random.default_rng(0).normal(size=(4, 3)).astype("float32")
        >>> mean = np.array([0.0, 1.0, -1.0], dtype="float32")
        >>> variance = np.array([1.0, 4.0, 0.25], dtype="float32")
        >>> y = F.batch_norm(x, mean, variance, epsilon=1e-3)
        >>> bool(np.allclose(y, (x - mean) / np.sqrt(variance + 1e-3), atol=1e-5))
        True
    """
    dtype = _result_dtype(x, dtype)
    path = fast_path_backend(x)
    if path == "tensorflow":
        from keras_norms.kernels.tf_batch import batch_norm as tf_batch_norm

        outputs = tf_batch_norm(_fused_source(x, dtype), mean, variance, scale, offset, axis=axis,
                                epsilon=epsilon)
    elif path == "jax":
        from keras_norms.kernels.jax import batch_norm as jax_batch_norm

        outputs = jax_batch_norm(_fused_source(x, dtype), mean, variance, scale, offset, axis=axis,
                                 epsilon=epsilon)
    elif path == "torch":
        from keras_norms.kernels.torch import batch_norm as torch_batch_norm

        outputs = torch_batch_norm(_fused_source(x, dtype), _tensor(mean), _tensor(variance), _tensor(scale),
                                   _tensor(offset), axis=axis, epsilon=epsilon)
    else:
        outputs = None
    if outputs is not None:
        return ops.cast(outputs, dtype)
    x = _upcast(x)
    outputs = normalize(
        x,
        _broadcast(mean, x, axis),
        _broadcast(variance, x, axis),
        _broadcast(scale, x, axis),
        _broadcast(offset, x, axis),
        epsilon=epsilon,
    )
    return ops.cast(outputs, dtype)


def batch_norm_train(x, scale=None, offset=None, *, axis: int = -1, epsilon: float = 1e-3, dtype=None):
    r"""Batch normalization with the statistics of the batch itself (training).

    Each channel is normalized over every axis but `axis` (the batch and the
    spatial axes), with the mean $\mu_B$ and variance $\sigma_B^2$ of the batch:

    $$
    y = \frac{x - \mu_B}{\sqrt{\sigma_B^2 + \epsilon}} \cdot \mathrm{scale} + \mathrm{offset}.
    $$

    Equivalent to ``batch_norm(x, *moments(x, every axis but
    axis), scale, offset)``, with gradients through the statistics; on the fast
    paths one fused kernel (TensorFlow) or a closed-form gradient (TensorFlow
    and JAX) instead.

    Args:
        x: Input tensor of rank >= 2, channels on `axis`.
        scale: Optional per-channel gamma, shape `(channels,)`.
        offset: Optional per-channel beta, shape `(channels,)`.
        axis: The channel axis.
        epsilon: Added to the variance.
        dtype: The dtype of `outputs`; when None, the dtype the math runs in.

    Returns:
        `(outputs, mean, variance)`: the normalized tensor, and the float32
        (float64 for float64 `x`) per-channel batch mean and biased variance,
        shape `(channels,)`, without gradient (they feed moving averages).

    Reference:
        - Ioffe and Szegedy, "Batch Normalization: Accelerating Deep Network
          Training by Reducing Internal Covariate Shift", ICML 2015.
          [arXiv:1502.03167](https://arxiv.org/abs/1502.03167)

    Examples:
        >>> import numpy as np
        >>> from keras_norms import functional as F
        >>> x = np.random.default_rng(0).normal(3.0, 2.0, size=(8, 4, 4, 3)).astype("float32")
        >>> outputs, mean, variance = F.batch_norm_train(x)
        >>> tuple(outputs.shape), tuple(mean.shape)
        ((8, 4, 4, 3), (3,))
        >>> bool(np.allclose(mean, x.mean(axis=(0, 1, 2)), atol=1e-5))
        True
        >>> bool(np.allclose(variance, x.var(axis=(0, 1, 2)), rtol=1e-4))
        True
        >>> outputs = np.asarray(outputs)
        >>> bool(np.allclose(outputs.mean(axis=(0, 1, 2)), 0.0, atol=1e-5))
        True
        >>> print(np.round(outputs.var(axis=(0, 1, 2)), 3))
        [1. 1. 1.]
    """
    dtype = _result_dtype(x, dtype)
    path = fast_path_backend(x)
    if path == "tensorflow":
        from keras_norms.kernels.tf_batch import batch_norm_train as tf_batch_norm_train

        result = tf_batch_norm_train(_fused_source(x, dtype), scale, offset, axis=axis, epsilon=epsilon)
    elif path == "jax":
        from keras_norms.kernels.jax import batch_norm_train as jax_batch_norm_train

        result = jax_batch_norm_train(_fused_source(x, dtype), scale, offset, axis=axis, epsilon=epsilon)
    elif path == "torch":
        from keras_norms.kernels.torch import batch_norm_train as torch_batch_norm_train

        result = torch_batch_norm_train(_fused_source(x, dtype), _tensor(scale), _tensor(offset), axis=axis,
                                        epsilon=epsilon)
    else:
        result = None
    if result is not None:
        outputs, mean, variance = result
        return ops.cast(outputs, dtype), mean, variance
    rank = len(x.shape)
    axis %= rank
    mean, variance = moments(x, [a for a in range(rank) if a != axis])
    outputs = batch_norm(x, mean, variance, scale, offset, axis=axis, epsilon=epsilon, dtype=dtype)
    return outputs, ops.stop_gradient(mean), ops.stop_gradient(variance)


def virtual_batch_norm(x, virtual_batch_size: int, scale=None, offset=None, *, axis: int = -1,
                       epsilon: float = 1e-3, mask=None):
    r"""Ghost batch normalization: each run of `virtual_batch_size` examples normalized on its own statistics.

    The batch is cut into consecutive virtual batches of `virtual_batch_size`
    examples, and each virtual batch $V$ is batch-normalized with its own
    per-channel mean $\mu_V$ and variance $\sigma_V^2$ (over its examples and
    the spatial axes),

    $$
    y = \frac{x - \mu_V}{\sqrt{\sigma_V^2 + \epsilon}} \cdot \mathrm{scale} + \mathrm{offset}.
    $$

    It keeps the regularizing noise of small batches when training with large ones.

    Args:
        x: Input tensor, batch first; its batch size must be a multiple of
            `virtual_batch_size`.
        virtual_batch_size: Examples per virtual batch.
        scale: Optional per-channel gamma, shape `(channels,)`.
        offset: Optional per-channel beta, shape `(channels,)`.
        axis: The channel axis.
        epsilon: Added to the variance.
        mask: Optional boolean tensor broadcastable to `x`; only `True`
            positions count in the statistics (all are normalized).

    Returns:
        `(outputs, mean, variance)`: the normalized tensor, and the statistics
        of each virtual batch, shape `(num_virtual, channels)`, without
        gradient; float32 (float64 for float64 `x`).

    Reference:
        - Hoffer, Hubara and Soudry, "Train longer, generalize better: closing
          the generalization gap in large batch training of neural networks",
          NIPS 2017. [arXiv:1705.08741](https://arxiv.org/abs/1705.08741)

    Examples:
        >>> import numpy as np
        >>> from keras_norms import functional as F
        >>> x = np.random.default_rng(0).normal(size=(8, 4, 3)).astype("float32")
        >>> x[4:] += 10.0  # the second virtual batch has another mean
        >>> outputs, mean, variance = F.virtual_batch_norm(x, 4)
        >>> bool(np.allclose(mean, x.reshape(2, 16, 3).mean(axis=1), atol=1e-5))
        True
        >>> outputs = np.asarray(outputs).reshape(2, 16, 3)  # (virtual batch, positions, channels)
        >>> bool(np.allclose(outputs.mean(axis=1), 0.0, atol=1e-5))
        True
        >>> print(np.round(outputs.var(axis=1), 2))
        [[1. 1. 1.]
         [1. 1. 1.]]
    """
    if mask is None and fast_path_backend(x) == "tensorflow":  # JAX has no ghost batch norm kernel
        from keras_norms.kernels.tf_batch import virtual_batch_norm as tf_virtual_batch_norm

        result = tf_virtual_batch_norm(ops.convert_to_tensor(x), virtual_batch_size, scale, offset,
                                       axis=axis, epsilon=epsilon)
        if result is not None:
            return result
    grouped, mean, variance = virtual_batch_moments(x, virtual_batch_size, axis=axis, mask=mask)
    outputs = normalize(grouped, mean, variance, _broadcast(scale, grouped, -1),
                        _broadcast(offset, grouped, -1), epsilon=epsilon)
    outputs = ungroup_virtual_batches(outputs, x, axis=axis)
    return outputs, ops.stop_gradient(mean[:, 0]), ops.stop_gradient(variance[:, 0])


def switchable_norm(x, mean_weights, variance_weights, scale=None, offset=None, *, axis: int = -1,
                    epsilon: float = 1e-5, moving_mean=None, moving_variance=None, mask=None):
    r"""Switchable normalization: a learned mixture of instance, layer and batch statistics.

    With $w = \operatorname{softmax}(\texttt{mean\_weights})$ and
    $v = \operatorname{softmax}(\texttt{variance\_weights})$, for $k$ in
    (instance, layer, batch):

    $$
    y = \frac{x - \sum_k w_k \mu_k}{\sqrt{\sum_k v_k \sigma_k^2 + \epsilon}}
        \cdot \mathrm{scale} + \mathrm{offset}.
    $$

    Instance statistics are per example and channel over the spatial axes;
    layer and batch statistics pool them over the channels and over the batch
    (law of total variance:
    $\sigma^2 = \overline{\sigma_{\mathrm{in}}^2} + \overline{(\mu_{\mathrm{in}} - \mu)^2}$,
    no cancellation). Given `moving_mean` and `moving_variance` (inference),
    they replace the batch statistics.

    With a `mask` (padded sequences), all three are taken over the `True`
    positions only: instance statistics over those of each example and
    channel, layer statistics over those of each example, batch statistics
    over those of the whole batch (the pooling weights each instance
    statistic by its count of `True` positions). Statistics with no `True`
    position are 0. The output at the masked positions is finite but
    unspecified: it does not depend on the values there (their gradient is 0),
    so ignore it or mask it downstream.

    Args:
        x: Input tensor of rank 3 or more, batch first, channels on `axis`.
        mean_weights: Logits of the mean mixture, shape `(3,)`, in the order
            (instance, layer, batch).
        variance_weights: Logits of the variance mixture, shape `(3,)`, in the
            order (instance, layer, batch).
        scale: Optional per-channel gamma, shape `(channels,)`.
        offset: Optional per-channel beta, shape `(channels,)`.
        axis: The channel axis.
        epsilon: Added to the variance.
        moving_mean: Optional per-channel mean, shape `(channels,)`, used
            instead of the batch mean; give `moving_variance` with it.
        moving_variance: Optional per-channel variance, shape `(channels,)`,
            used instead of the batch variance; give `moving_mean` with it.
        mask: Optional boolean tensor of the rank of `x` that broadcasts
            against it (sizes of 1 broadcast, e.g. `(batch, time, 1)` for a
            `(batch, time, channels)` input); only `True` positions count in
            the statistics. `None` (the default) counts every position.

    Returns:
        `(outputs, batch_mean, batch_variance)`: the normalized tensor, float32
        (float64 for float64 `x`), and the per-channel statistics it used in the
        batch slot, shape `(channels,)`: those of the batch (of its unmasked
        positions), or `moving_mean` and `moving_variance` when given.

    Raises:
        ValueError: If `mask` has another rank than `x`, or a size that is
            neither 1 nor that of `x` on some axis.

    Reference:
        - Luo, Ren, Peng, Zhang and Li, "Differentiable Learning-to-Normalize via
          Switchable Normalization", ICLR 2019.
          [arXiv:1806.10779](https://arxiv.org/abs/1806.10779)

    Examples:
        >>> import numpy as np
        >>> from keras_norms import functional as F
        >>> x = np.random.default_rng(0).normal(size=(4, 5, 5, 3)).astype("float32")
        >>> batch_only = np.array([0.0, 0.0, 50.0], dtype="float32")  # softmax ~ (0, 0, 1)
        >>> y, mean, variance = F.switchable_norm(x, batch_only, batch_only)
        >>> bool(np.allclose(y, F.batch_norm_train(x, epsilon=1e-5)[0], atol=1e-4))
        True
        >>> bool(np.allclose(mean, x.mean(axis=(0, 1, 2)), atol=1e-5))
        True
        >>> instance_only = np.array([50.0, 0.0, 0.0], dtype="float32")
        >>> y, _, _ = F.switchable_norm(x, instance_only, instance_only)
        >>> bool(np.allclose(y, F.group_norm(x, -1, epsilon=1e-5), atol=1e-4))
        True

        With a mask, the batch statistics are those of the unmasked positions:

        >>> mask = np.ones((4, 5, 5, 1), bool)
        >>> mask[:, 3:] = False
        >>> _, mean, _ = F.switchable_norm(x, batch_only, batch_only, mask=mask)
        >>> bool(np.allclose(mean, x[:, :3].mean(axis=(0, 1, 2)), atol=1e-5))
        True
    """
    if mask is not None:
        mask = _full_mask(mask, x)
    x = _upcast(x)
    rank = len(x.shape)
    axis %= rank
    spatial_axes = _spatial_axes(rank, axis)
    if mask is None:
        count = None
        instance_mean, instance_variance = moments(x, spatial_axes, keepdims=True)
    else:
        # Masked values are zeroed first, so that they reach neither the statistics nor the gradient.
        x = ops.where(mask, x, ops.zeros_like(x))
        instance_mean, instance_variance = moments(x, spatial_axes, keepdims=True, mask=mask)
        count = ops.sum(ops.cast(mask, x.dtype), axis=spatial_axes, keepdims=True)

    def pooled(axes):
        if count is None:
            mean = _mean(instance_mean, axis=axes, keepdims=True)
            spread = _mean(ops.square(instance_mean - mean), axis=axes, keepdims=True)
            return mean, _mean(instance_variance, axis=axes, keepdims=True) + spread
        # Each instance statistic weighted by its count of unmasked positions: the statistics of
        # all the unmasked positions pooled (0 where there are none).
        total = ops.maximum(ops.sum(count, axis=axes, keepdims=True), 1.0)
        mean = ops.sum(count * instance_mean, axis=axes, keepdims=True) / total
        deviation = instance_variance + ops.square(instance_mean - mean)
        return mean, ops.sum(count * deviation, axis=axes, keepdims=True) / total

    layer_mean, layer_variance = pooled(axis)
    if moving_mean is None:
        batch_mean, batch_variance = pooled(0)
    else:
        batch_mean = _broadcast(moving_mean, x, axis)
        batch_variance = _broadcast(moving_variance, x, axis)
    mean_mix = ops.softmax(_like(mean_weights, x))
    variance_mix = ops.softmax(_like(variance_weights, x))
    mean = mean_mix[0] * instance_mean + mean_mix[1] * layer_mean + mean_mix[2] * batch_mean
    variance = (variance_mix[0] * instance_variance + variance_mix[1] * layer_variance
                + variance_mix[2] * batch_variance)
    outputs = normalize(x, mean, variance, _broadcast(scale, x, axis),
                        _broadcast(offset, x, axis), epsilon=epsilon)
    return outputs, ops.reshape(batch_mean, (-1,)), ops.reshape(batch_variance, (-1,))
