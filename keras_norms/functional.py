"""The normalization math, written once and shared by every layer.

Every function computes its statistics and the normalization in float32,
whatever the dtype of ``x``, and returns float32; the layers cast the result
to their compute dtype. Statistics are computed in two passes (the mean, then
the mean of squared deviations from it), which stays accurate when the data
has a large mean, where ``E[x^2] - E[x]^2`` loses every significant digit.

Example:

>>> import numpy as np
>>> from keras_norms import functional as F
>>> x = np.random.default_rng(0).normal(size=(2, 4, 4, 8)).astype("float32")
>>> y = F.group_norm(x, groups=4)
>>> tuple(y.shape)
(2, 4, 4, 8)
"""

from __future__ import annotations

from collections.abc import Sequence

from keras import ops

__all__ = [
    "batch_norm",
    "broadcast_shape",
    "group_norm",
    "layer_norm",
    "moments",
    "normalize",
    "rms_norm",
    "ungroup_virtual_batches",
    "virtual_batch_moments",
]


def _float32(x):
    return ops.cast(x, "float32")


def _as_axes(axes: int | Sequence[int], rank: int) -> tuple[int, ...]:
    if isinstance(axes, int):
        axes = (axes,)
    return tuple(sorted(a % rank for a in axes))


def broadcast_shape(rank: int, axes: int | Sequence[int], sizes: Sequence[int]):
    """The shape that broadcasts a parameter of `sizes` along `axes` of a rank-`rank` tensor.

    Example: ``broadcast_shape(4, -1, [8]) == [1, 1, 1, 8]``.
    """
    axes = _as_axes(axes, rank)
    shape = [1] * rank
    for axis, size in zip(axes, sizes, strict=True):
        shape[axis] = size
    return shape


def _broadcast(param, rank: int, axes: int | Sequence[int]):
    """Reshapes a per-feature parameter (gamma, beta, a moving statistic) to broadcast."""
    if param is None:
        return None
    param = _float32(param)
    return ops.reshape(param, broadcast_shape(rank, axes, param.shape))


def moments(x, axes: int | Sequence[int], *, keepdims: bool = False, mask=None,
            synchronized: bool = False):
    """Mean and (biased) variance of `x` over `axes`, in float32.

    Args:
        x: Input tensor of any float dtype.
        axes: Axis or axes to reduce over.
        keepdims: Keep the reduced axes with length 1.
        mask: Optional boolean tensor broadcastable to `x`; only `True`
            positions count. The statistics of a fully masked slice are 0.
        synchronized: Under a `tf.distribute` strategy, reduce over the
            global batch of all replicas (TensorFlow backend only).

    Returns:
        `(mean, variance)`, float32 tensors.
    """
    x = _float32(x)
    axes = _as_axes(axes, len(x.shape))
    if synchronized:
        from keras_norms import _tf_kernels

        return _tf_kernels.cross_replica_moments(x, axes, keepdims=keepdims, mask=mask)
    if mask is None:
        mean = ops.mean(x, axis=axes, keepdims=True)
        variance = ops.mean(ops.square(x - mean), axis=axes, keepdims=True)
    else:
        weights = ops.cast(ops.broadcast_to(mask, ops.shape(x)), "float32")
        count = ops.sum(weights, axis=axes, keepdims=True)
        safe_count = ops.maximum(count, 1.0)
        mean = ops.sum(x * weights, axis=axes, keepdims=True) / safe_count
        variance = ops.sum(ops.square(x - mean) * weights, axis=axes, keepdims=True) / safe_count
    if not keepdims:
        mean = ops.squeeze(mean, axis=axes)
        variance = ops.squeeze(variance, axis=axes)
    return mean, variance


def normalize(x, mean, variance, scale=None, offset=None, *, epsilon: float):
    """``(x - mean) / sqrt(variance + epsilon) * scale + offset``, in float32.

    All arguments must already broadcast against `x`. `scale` and `offset`
    may be `None` (no scale, no shift).
    """
    inverse = ops.rsqrt(_float32(variance) + epsilon)
    if scale is not None:
        inverse = inverse * _float32(scale)
    outputs = (_float32(x) - _float32(mean)) * inverse
    if offset is not None:
        outputs = outputs + _float32(offset)
    return outputs


def batch_norm(x, mean, variance, scale=None, offset=None, *, axis: int = -1,
               epsilon: float = 1e-3):
    """Normalizes `x` with given per-channel statistics (batch or moving).

    Args:
        x: Input tensor, channels on `axis`.
        mean, variance: Per-channel statistics, shape `(channels,)`.
        scale, offset: Optional per-channel gamma and beta, shape `(channels,)`.
        axis: The channel axis.
        epsilon: Added to the variance.

    Returns:
        The normalized float32 tensor.
    """
    rank = len(x.shape)
    return normalize(
        x,
        _broadcast(mean, rank, axis),
        _broadcast(variance, rank, axis),
        _broadcast(scale, rank, axis),
        _broadcast(offset, rank, axis),
        epsilon=epsilon,
    )


def virtual_batch_moments(x, virtual_batch_size: int, *, axis: int = -1):
    """Per-virtual-batch statistics for ghost batch normalization.

    The batch is cut into consecutive virtual batches of `virtual_batch_size`
    examples. `x` is viewed as `(num_virtual, virtual_batch_size * rest,
    channels)` (channels moved last), so the statistics of each virtual batch
    are one reduction.

    Args:
        x: Input tensor; its batch size must be a multiple of `virtual_batch_size`.
        virtual_batch_size: Examples per virtual batch.
        axis: The channel axis.

    Returns:
        `(grouped, mean, variance)`: the float32 view of `x` of shape
        `(num_virtual, -1, channels)` and its statistics of shape
        `(num_virtual, 1, channels)`. Undo the view with
        `ungroup_virtual_batches`.
    """
    grouped = _float32(_channels_last(x, axis))
    num_virtual = ops.shape(grouped)[0] // virtual_batch_size
    grouped = ops.reshape(grouped, (num_virtual, -1, grouped.shape[-1]))
    mean, variance = moments(grouped, 1, keepdims=True)
    return grouped, mean, variance


def ungroup_virtual_batches(grouped, like, *, axis: int = -1):
    """Inverse of the view taken by `virtual_batch_moments`, to the shape of `like`."""
    channels_last = _channels_last(like, axis)
    restored = ops.reshape(grouped, ops.shape(channels_last))
    return _channels_restore(restored, axis, len(like.shape))


def _channels_last(x, axis: int):
    rank = len(x.shape)
    axis = axis % rank
    if axis == rank - 1:
        return x
    perm = [i for i in range(rank) if i != axis] + [axis]
    return ops.transpose(x, perm)


def _channels_restore(x, axis: int, rank: int):
    axis = axis % rank
    if axis == rank - 1:
        return x
    perm = list(range(rank - 1))
    perm.insert(axis, rank - 1)
    return ops.transpose(x, perm)


def layer_norm(x, scale=None, offset=None, *, axis: int | Sequence[int] = -1,
               epsilon: float = 1e-3):
    """Layer normalization: each example normalized over `axis`.

    Args:
        x: Input tensor.
        scale, offset: Optional gamma and beta with the shape of `x` along `axis`.
        axis: Axis or axes to normalize over (never the batch axis).
        epsilon: Added to the variance.

    Returns:
        The normalized float32 tensor.

    Reference:
        Ba et al., 2016, "Layer Normalization", https://arxiv.org/abs/1607.06450
    """
    rank = len(x.shape)
    axes = _as_axes(axis, rank)
    mean, variance = moments(x, axes, keepdims=True)
    return normalize(
        x, mean, variance, _broadcast(scale, rank, axes), _broadcast(offset, rank, axes),
        epsilon=epsilon,
    )


def rms_norm(x, scale=None, *, axis: int | Sequence[int] = -1, epsilon: float = 1e-6):
    """Root-mean-square normalization: ``x / sqrt(mean(x^2) + epsilon) * scale``.

    The mean is not subtracted: the divisor is the root mean square, not the
    standard deviation.

    Reference:
        Zhang and Sennrich, 2019, "Root Mean Square Layer Normalization",
        https://arxiv.org/abs/1910.07467
    """
    x = _float32(x)
    rank = len(x.shape)
    axes = _as_axes(axis, rank)
    inverse = ops.rsqrt(ops.mean(ops.square(x), axis=axes, keepdims=True) + epsilon)
    outputs = x * inverse
    if scale is not None:
        outputs = outputs * _broadcast(scale, rank, axes)
    return outputs


def group_norm(x, groups: int, scale=None, offset=None, *, axis: int = -1,
               epsilon: float = 1e-3):
    """Group normalization: each example normalized within groups of channels.

    Channels on `axis` are split into `groups` consecutive groups; each group
    of each example is normalized over its channels and all non-batch axes.
    `groups=-1` (or the number of channels) is instance normalization,
    `groups=1` is layer normalization over all non-batch axes.

    No intermediate tensor has a higher rank than `x`: per-channel statistics
    of shape `(batch, channels)` are pooled into groups by a rank-2 reshape,
    instead of viewing `x` as `(..., groups, channels // groups)`.

    Args:
        x: Input tensor of rank >= 2 with the batch on axis 0.
        groups: Number of groups; must divide the channel count. `-1` means one
            channel per group.
        scale, offset: Optional per-channel gamma and beta, shape `(channels,)`.
        axis: The channel axis.
        epsilon: Added to the variance.

    Returns:
        The normalized float32 tensor.

    Reference:
        Wu and He, 2018, "Group Normalization", https://arxiv.org/abs/1803.08494
    """
    x = _float32(x)
    rank = len(x.shape)
    axis = axis % rank
    channels = x.shape[axis]
    groups = channels if groups == -1 else groups
    spatial_axes = tuple(i for i in range(1, rank) if i != axis)

    def pool_groups(per_channel):
        # (batch, .., channels, ..) with unit spatial axes -> mean within each group,
        # repeated back over the group's channels. Rank 2 throughout.
        if groups == channels:
            return per_channel
        by_group = ops.reshape(per_channel, (-1, channels // groups))
        pooled = ops.mean(by_group, axis=1, keepdims=True)
        pooled = ops.broadcast_to(pooled, ops.shape(by_group))
        return ops.reshape(pooled, ops.shape(per_channel))

    def spatial_mean(t):
        return ops.mean(t, axis=spatial_axes, keepdims=True) if spatial_axes else t

    mean = pool_groups(spatial_mean(x))
    centered = x - mean
    variance = pool_groups(spatial_mean(ops.square(centered)))
    inverse = ops.rsqrt(variance + epsilon)
    if scale is not None:
        inverse = inverse * _broadcast(scale, rank, axis)
    outputs = centered * inverse
    if offset is not None:
        outputs = outputs + _broadcast(offset, rank, axis)
    return outputs
