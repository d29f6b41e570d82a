"""Normalizations within each example: layer, RMS, group and instance norm, filter response norm and TLU.

Fast paths (see `keras_norms.functional.fast_paths`): with TensorFlow,
`layer_norm` and `rms_norm` call the kernels of `keras_norms.kernels.tf_row`
and `group_norm` that of `keras_norms.kernels.tf_channel`; with JAX,
`layer_norm` and `rms_norm` call those of `keras_norms.kernels.jax` (group norm
has no JAX kernel: under XLA its plain path is already as fast as Keras'
built-in); with PyTorch, all three call those of `keras_norms.kernels.torch`.
Each kernel is imported by name where it is called, and returns None for an
input it does not cover; the function then goes on with the plain `keras.ops`
math below the call. A `mask` (`group_norm`) always takes the plain path.
"""

from __future__ import annotations

from collections.abc import Sequence

from keras import ops

from keras_norms.functional._common import (
    _as_axes,
    _fused_source,
    _like,
    _mean,
    _result_dtype,
    _tensor,
    _upcast,
)
from keras_norms.functional.fast_paths import fast_path_backend
from keras_norms.functional.statistics import _broadcast, moments, normalize


def _full_mask(mask, x):
    """`mask` as a boolean tensor of the shape of `x`, which it must broadcast against at its rank.

    Raises:
        ValueError: If `mask` has another rank than `x`, or a size other than 1 or that of `x`.
    """
    mask = ops.convert_to_tensor(mask)
    mask_shape, x_shape = tuple(mask.shape), tuple(x.shape)
    fits = len(mask_shape) == len(x_shape) and all(
        m in (None, 1) or s is None or m == s for m, s in zip(mask_shape, x_shape, strict=True)
    )
    if not fits:
        raise ValueError(
            "`mask` must be a boolean tensor of the rank of the input that broadcasts against it "
            f"(sizes of 1 broadcast). Received: mask.shape={mask_shape}, x.shape={x_shape}"
        )
    return ops.broadcast_to(ops.cast(mask, "bool"), ops.shape(x))


def layer_norm(x, scale=None, offset=None, *, axis: int | Sequence[int] = -1,
               epsilon: float = 1e-3, dtype=None):
    r"""Layer normalization: each example normalized over `axis`.

    $$
    y = \frac{x - \mu}{\sqrt{\sigma^2 + \epsilon}} \cdot \mathrm{scale} + \mathrm{offset},
    $$

    with the mean $\mu$ and variance $\sigma^2$ of each example over `axis`
    (the features, by default the last
    axis), so the result does not depend on the batch: the norm of transformers
    and recurrent networks.

    Args:
        x: Input tensor.
        scale: Optional gamma, with the shape of `x` along `axis`.
        offset: Optional beta, with the shape of `x` along `axis`.
        axis: Axis or axes to normalize over (never the batch axis).
        epsilon: Added to the variance.
        dtype: The dtype of the result; when None, the dtype the math runs in.

    Returns:
        The normalized tensor in `dtype` (computed in float32, or float64 for
        float64 `x`).

    Reference:
        - Ba, Kiros and Hinton, "Layer Normalization", 2016.
          [arXiv:1607.06450](https://arxiv.org/abs/1607.06450)

    Examples:
        >>> import numpy as np
        >>> from keras_norms import functional as F
        >>> x = np.random.default_rng(0).normal(5.0, 3.0, size=(2, 3, 8)).astype("float32")
        >>> y = F.layer_norm(x)
        >>> mean = x.mean(axis=-1, keepdims=True)
        >>> variance = x.var(axis=-1, keepdims=True)
        >>> bool(np.allclose(y, (x - mean) / np.sqrt(variance + 1e-3), atol=1e-5))
        True
    """
    dtype = _result_dtype(x, dtype)
    path = fast_path_backend(x)
    if path == "tensorflow":
        from keras_norms.kernels.tf_row import layer_norm as tf_layer_norm

        outputs = tf_layer_norm(ops.convert_to_tensor(x), scale, offset, axis=axis, epsilon=epsilon)
    elif path == "jax":
        from keras_norms.kernels.jax import layer_norm as jax_layer_norm

        outputs = jax_layer_norm(ops.convert_to_tensor(x), scale, offset, axis=axis, epsilon=epsilon)
    elif path == "torch":
        from keras_norms.kernels.torch import layer_norm as torch_layer_norm

        outputs = torch_layer_norm(_fused_source(x, dtype), _tensor(scale), _tensor(offset), axis=axis,
                                   epsilon=epsilon)
    else:
        outputs = None
    if outputs is not None:
        return ops.cast(outputs, dtype)
    x = _upcast(x)
    axes = _as_axes(axis, len(x.shape))
    mean, variance = moments(x, axes, keepdims=True)
    outputs = normalize(
        x, mean, variance, _broadcast(scale, x, axes), _broadcast(offset, x, axes),
        epsilon=epsilon,
    )
    return ops.cast(outputs, dtype)


def rms_norm(x, scale=None, *, axis: int | Sequence[int] = -1, epsilon: float = 1e-6, dtype=None):
    r"""Root-mean-square normalization: `x` divided by its root mean square over `axis`.

    $$
    y = \frac{x}{\sqrt{\frac{1}{n} \sum_{i=1}^{n} x_i^2 + \epsilon}} \cdot \mathrm{scale},
    $$

    with the mean square taken over `axis` for each example (its $n$ values
    $x_i$ there). The mean is not
    subtracted: the divisor is the root mean square, not the standard deviation,
    and there is no offset. Cheaper than layer norm, it is the norm of many
    recent transformers.

    Args:
        x: Input tensor.
        scale: Optional gamma, with the shape of `x` along `axis`.
        axis: Axis or axes of the mean square (never the batch axis).
        epsilon: Added to the mean square.
        dtype: The dtype of the result; when None, the dtype the math runs in.

    Returns:
        The normalized tensor in `dtype` (computed in float32, or float64 for
        float64 `x`).

    Reference:
        - Zhang and Sennrich, "Root Mean Square Layer Normalization", NeurIPS 2019.
          [arXiv:1910.07467](https://arxiv.org/abs/1910.07467)

    Examples:
        >>> import numpy as np
        >>> from keras_norms import functional as F
        >>> x = np.array([[3.0, 4.0], [1.0, -1.0]], dtype="float32")
        >>> y = np.asarray(F.rms_norm(x))
        >>> print(np.round(y, 4))
        [[ 0.8485  1.1314]
         [ 1.     -1.    ]]
        >>> print(np.round(np.sqrt(np.mean(np.square(y), axis=-1)), 4))
        [1. 1.]
    """
    dtype = _result_dtype(x, dtype)
    path = fast_path_backend(x)
    if path == "tensorflow":
        from keras_norms.kernels.tf_row import rms_norm as tf_rms_norm

        outputs = tf_rms_norm(ops.convert_to_tensor(x), scale, axis=axis, epsilon=epsilon)
    elif path == "jax":
        from keras_norms.kernels.jax import rms_norm as jax_rms_norm

        outputs = jax_rms_norm(ops.convert_to_tensor(x), scale, axis=axis, epsilon=epsilon)
    elif path == "torch":
        from keras_norms.kernels.torch import rms_norm as torch_rms_norm

        outputs = torch_rms_norm(_tensor(x), _tensor(scale), axis=axis, epsilon=epsilon)
    else:
        outputs = None
    if outputs is not None:
        return ops.cast(outputs, dtype)
    x = _upcast(x)
    axes = _as_axes(axis, len(x.shape))
    inverse = ops.rsqrt(_mean(ops.square(x), axis=axes, keepdims=True) + epsilon)
    outputs = x * inverse
    if scale is not None:
        outputs = outputs * _broadcast(scale, x, axes)
    return ops.cast(outputs, dtype)


def group_norm(x, groups: int, scale=None, offset=None, *, axis: int = -1,
               epsilon: float = 1e-3, mask=None, dtype=None):
    r"""Group normalization: each example normalized within groups of channels.

    Channels on `axis` are split into `groups` consecutive groups; each group
    $g$ of each example is normalized over its channels and all non-batch
    axes, with their mean $\mu_g$ and variance $\sigma_g^2$, then each channel
    $c$ of the group gets its own scale and offset:

    $$
    y_c = \frac{x_c - \mu_g}{\sqrt{\sigma_g^2 + \epsilon}} \cdot \mathrm{scale}_c + \mathrm{offset}_c.
    $$

    `groups=-1` (or the number of channels) is instance normalization,
    `groups=1` is layer normalization over all non-batch axes. Independent of
    the batch size, it suits small batches, where batch norm degrades.

    No intermediate tensor has a higher rank than `x`: per-channel statistics
    of shape `(batch, channels)` are pooled into groups by a rank-2 reshape,
    instead of viewing `x` as `(..., groups, channels // groups)`.

    With a `mask` (padded sequences), each group's mean and variance are taken
    over its `True` positions only, so the padding does not change them; a
    group with no `True` position gets the statistics 0. The output at the
    masked positions is finite but unspecified: it does not depend on the
    values there (their gradient is 0), so ignore it or mask it downstream.
    A mask takes the plain `keras.ops` path (the TensorFlow kernel does not
    take masks).

    Args:
        x: Input tensor of rank >= 2 with the batch on axis 0.
        groups: Number of groups; must divide the channel count (not checked
            here: `GroupNormalization` checks it). `-1` means one channel per
            group.
        scale: Optional per-channel gamma, shape `(channels,)`.
        offset: Optional per-channel beta, shape `(channels,)`.
        axis: The channel axis.
        epsilon: Added to the variance.
        mask: Optional boolean tensor of the rank of `x` that broadcasts
            against it (sizes of 1 broadcast, e.g. `(batch, time, 1)` for a
            `(batch, time, channels)` input); only `True` positions count in
            the statistics. `None` (the default) counts every position.
        dtype: The dtype of the result; when None, the dtype the math runs in.

    Returns:
        The normalized tensor in `dtype` (computed in float32, or float64 for
        float64 `x`).

    Raises:
        ValueError: If `mask` has another rank than `x`, or a size that is
            neither 1 nor that of `x` on some axis.

    Reference:
        - Wu and He, "Group Normalization", ECCV 2018.
          [arXiv:1803.08494](https://arxiv.org/abs/1803.08494)

    Examples:
        >>> import numpy as np
        >>> from keras_norms import functional as F
        >>> x = np.random.default_rng(0).normal(size=(2, 4, 4, 8)).astype("float32")
        >>> y = F.group_norm(x, groups=4)
        >>> g = x.reshape(2, 4, 4, 4, 2)  # (batch, height, width, groups, channels per group)
        >>> mean = g.mean(axis=(1, 2, 4), keepdims=True)
        >>> variance = g.var(axis=(1, 2, 4), keepdims=True)
        >>> expected = ((g - mean) / np.sqrt(variance + 1e-3)).reshape(x.shape)
        >>> bool(np.allclose(y, expected, atol=1e-5))
        True

        With a mask, the padded steps of a sequence do not count:

        >>> x = np.array([[[1.0], [3.0], [100.0]]], dtype="float32")  # (batch, time, channels)
        >>> mask = np.array([[[True], [True], [False]]])
        >>> print(np.round(np.asarray(F.group_norm(x, 1, mask=mask, epsilon=0.0))[:, :2, 0], 4))
        [[-1.  1.]]
    """
    if mask is not None:
        mask = _full_mask(mask, x)
    dtype = _result_dtype(x, dtype)
    if mask is None and (path := fast_path_backend(x)) == "tensorflow":  # JAX has none: XLA fuses it
        from keras_norms.kernels.tf_channel import group_norm as tf_group_norm

        outputs = tf_group_norm(ops.convert_to_tensor(x), groups, scale, offset, axis=axis, epsilon=epsilon)
        if outputs is not None:
            return ops.cast(outputs, dtype)
    elif mask is None and path == "torch":
        from keras_norms.kernels.torch import group_norm as torch_group_norm

        outputs = torch_group_norm(_fused_source(x, dtype), groups, _tensor(scale), _tensor(offset),
                                   axis=axis, epsilon=epsilon)
        if outputs is not None:
            return ops.cast(outputs, dtype)
    x = _upcast(x)
    rank = len(x.shape)
    axis = axis % rank
    channels = x.shape[axis]
    groups = channels if groups == -1 else groups
    spatial_axes = tuple(i for i in range(1, rank) if i != axis)

    def pool_groups(per_channel, reduce=_mean):
        # (batch, .., channels, ..) with unit spatial axes -> mean (or `reduce`) within each group,
        # repeated back over the group's channels. Rank 2 throughout.
        if groups == channels:
            return per_channel
        by_group = ops.reshape(per_channel, (-1, channels // groups))
        pooled = reduce(by_group, axis=1, keepdims=True)
        pooled = ops.broadcast_to(pooled, ops.shape(by_group))
        return ops.reshape(pooled, ops.shape(per_channel))

    def spatial_mean(t):
        return _mean(t, axis=spatial_axes, keepdims=True) if spatial_axes else t

    if mask is None:
        mean = pool_groups(spatial_mean(x))
        centered = x - mean
        variance = pool_groups(spatial_mean(ops.square(centered)))
    else:
        # Sums and counts of the unmasked positions of each group: a mask of the input's full
        # shape may leave the channels of a group different counts. Masked values are zeroed
        # first, so that they (even inf or NaN) reach neither the statistics nor the gradient.
        def group_sum(t):
            t = ops.sum(t, axis=spatial_axes, keepdims=True) if spatial_axes else t
            return pool_groups(t, ops.sum)

        weights = ops.cast(mask, x.dtype)
        x = ops.where(mask, x, ops.zeros_like(x))
        count = ops.maximum(group_sum(weights), 1.0)  # a fully masked group: statistics 0
        mean = group_sum(x) / count
        centered = x - mean
        variance = group_sum(ops.square(centered) * weights) / count
    inverse = ops.rsqrt(variance + epsilon)
    if scale is not None:
        inverse = inverse * _broadcast(scale, x, axis)
    outputs = centered * inverse
    if offset is not None:
        outputs = outputs + _broadcast(offset, x, axis)
    return ops.cast(outputs, dtype)


def filter_response_norm(x, scale=None, offset=None, *, axis: int | Sequence[int] = (1, 2),
                         epsilon: float = 1e-6, learned_epsilon=None):
    r"""Filter response normalization: `x` divided by its root mean square over the spatial axes.

    Each channel of each example is divided by the root of its mean squared
    activation $\nu^2$ over `axis` (the spatial axes, $N$ positions $i$):

    $$
    \nu^2 = \frac{1}{N} \sum_i x_i^2, \qquad
    y = \frac{x}{\sqrt{\nu^2 + |\epsilon|}} \cdot \mathrm{scale} + \mathrm{offset}.
    $$

    The mean is not
    subtracted, so there is no batch dependence and no centring. With a learned
    epsilon $\epsilon_l$ the divisor is $\sqrt{\nu^2 + |\epsilon| + |\epsilon_l|}$, the
    formula of tensorflow-addons. Follow it with `tlu`, as in the paper.

    Args:
        x: Input tensor, e.g. `(batch, height, width, channels)`.
        scale: Optional gamma broadcasting against `x`, e.g. of shape
            `(1, 1, 1, channels)`.
        offset: Optional beta broadcasting against `x`, e.g. of shape
            `(1, 1, 1, channels)`.
        axis: The axes of the mean square.
        epsilon: Constant added (as its absolute value) to the mean square.
        learned_epsilon: Optional tensor added as its absolute value.

    Returns:
        The normalized tensor, float32 (float64 for float64 `x`).

    Reference:
        - Singh and Krishnan, "Filter Response Normalization Layer: Eliminating
          Batch Dependence in the Training of Deep Neural Networks", CVPR 2020.
          [arXiv:1911.09737](https://arxiv.org/abs/1911.09737)

    Examples:
        >>> import numpy as np
        >>> from keras_norms import functional as F
        >>> x = np.random.default_rng(0).normal(2.0, 1.0, size=(2, 4, 4, 3)).astype("float32")
        >>> y = np.asarray(F.filter_response_norm(x))
        >>> print(np.round(np.mean(np.square(y), axis=(1, 2)), 3))  # nu^2 of the output
        [[1. 1. 1.]
         [1. 1. 1.]]
        >>> bool(np.allclose(y, x / np.sqrt(np.mean(x**2, axis=(1, 2), keepdims=True) + 1e-6)))
        True
    """
    x = _upcast(x)
    nu2 = _mean(ops.square(x), axis=_as_axes(axis, len(x.shape)), keepdims=True)
    epsilon = abs(float(epsilon))
    if learned_epsilon is not None:
        epsilon = epsilon + ops.abs(_like(learned_epsilon, x))
    outputs = x * ops.rsqrt(nu2 + epsilon)
    if scale is not None:
        outputs = outputs * _like(scale, x)
    if offset is not None:
        outputs = outputs + _like(offset, x)
    return outputs


def tlu(x, tau, alpha=None):
    r"""Thresholded linear unit: $\max(x, \tau)$, or $\max(x, \alpha x + \tau)$ (TLU-affine).

    A ReLU with a learned threshold `tau`, the activation that follows filter
    response normalization (whose output is not centred, so a plain ReLU could
    leave units dead). TLU-affine, with `alpha`, is the variant of
    tensorflow-addons.

    Args:
        x: Input tensor.
        tau: The threshold, broadcasting against `x`.
        alpha: Optional slope of TLU-affine, broadcasting against `x`.

    Returns:
        The activated tensor, float32 (float64 for float64 `x`).

    Reference:
        - Singh and Krishnan, "Filter Response Normalization Layer: Eliminating
          Batch Dependence in the Training of Deep Neural Networks", CVPR 2020.
          [arXiv:1911.09737](https://arxiv.org/abs/1911.09737)

    Examples:
        >>> import numpy as np
        >>> from keras_norms import functional as F
        >>> x = np.array([-2.0, -0.5, 1.0], dtype="float32")
        >>> print(np.asarray(F.tlu(x, tau=-1.0)))
        [-1.  -0.5  1. ]
        >>> print(np.asarray(F.tlu(x, tau=0.0, alpha=0.5)))
        [-1.   -0.25  1.  ]
    """
    x = _upcast(x)
    threshold = _like(tau, x) if alpha is None else _like(alpha, x) * x + _like(tau, x)
    return ops.maximum(x, threshold)
