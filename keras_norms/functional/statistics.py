"""Statistics: moments over axes (masked, across replicas, per virtual batch) and the normalization step.

`moments` computes in two passes (the mean, then the mean of squared
deviations from it), which stays accurate when the data has a large mean,
where ``E[x^2] - E[x]^2`` loses every significant digit. `normalize` is the
last step of every norm once its statistics are known, and `broadcast_shape`
shapes a per-feature parameter to meet the tensor.
"""

from __future__ import annotations

from collections.abc import Sequence

from keras import backend, ops

from keras_norms.functional._common import _as_axes, _channels_last, _channels_restore, _like, _mean, _upcast


def broadcast_shape(rank: int, axes: int | Sequence[int], sizes: Sequence[int]):
    """The shape that broadcasts a parameter of `sizes` along `axes` of a rank-`rank` tensor.

    A list of `rank` ones with `sizes` on `axes`: the shape a per-feature
    parameter (gamma, beta, a statistic) is reshaped to before it meets the
    tensor. Negative axes count from the end, and the sizes are matched to the
    axes in increasing order, whatever order `axes` lists them in.

    Args:
        rank: The rank of the tensor the parameter broadcasts against.
        axes: The axis or axes of that tensor the parameter spans.
        sizes: The size of the parameter along each of `axes` (e.g. its shape),
            one entry per axis.

    Returns:
        A list of `rank` ints: `sizes` on `axes`, 1 elsewhere.

    Raises:
        ValueError: If `sizes` does not have exactly one entry per axis of `axes`.

    Examples:
        >>> from keras_norms import functional as F
        >>> F.broadcast_shape(4, -1, [8])
        [1, 1, 1, 8]
        >>> F.broadcast_shape(4, [1, 2], [5, 6])
        [1, 5, 6, 1]
    """
    axes = _as_axes(axes, rank)
    shape = [1] * rank
    for axis, size in zip(axes, sizes, strict=True):
        shape[axis] = size
    return shape


def _broadcast(param, like, axes: int | Sequence[int]):
    """Reshapes a per-feature parameter (gamma, beta, a moving statistic) to broadcast against `like`.

    The parameter is cast to the dtype of `like`, an upcast tensor.
    """
    if param is None:
        return None
    return ops.reshape(_like(param, like), broadcast_shape(len(like.shape), axes, param.shape))


def moments(x, axes: int | Sequence[int], *, keepdims: bool = False, mask=None,
            synchronized: bool = False):
    """Mean and (biased) variance of `x` over `axes`, in float32 (float64 for float64 `x`).

    Two passes: the mean, then the mean of the squared deviations from it, so
    the variance stays accurate when the data has a large mean. With a `mask`,
    both are weighted means over the `True` positions only.

    Args:
        x: Input tensor of any float dtype.
        axes: Axis or axes to reduce over.
        keepdims: Keep the reduced axes with length 1.
        mask: Optional boolean tensor broadcastable to `x`; only `True`
            positions count. The statistics of a fully masked slice are 0.
        synchronized: Under a `tf.distribute` strategy, reduce over the
            global batch of all replicas (TensorFlow). On JAX the arrays a
            jitted step sees under `keras.distribution` are already the
            global batch, so there is nothing more to reduce.

    Returns:
        `(mean, variance)`, float32 tensors (float64 for float64 `x`) of the
        shape of `x` without `axes` (with `axes` of length 1 when `keepdims`).

    Examples:
        >>> import numpy as np
        >>> from keras_norms import functional as F
        >>> x = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], dtype="float32")
        >>> mean, variance = F.moments(x, axes=1)
        >>> print(np.asarray(mean).round(4), np.asarray(variance).round(4))
        [2. 5.] [0.6667 0.6667]
        >>> mask = np.array([[True, True, False], [False, False, False]])
        >>> mean, variance = F.moments(x, axes=1, mask=mask)
        >>> print(np.asarray(mean).round(4), np.asarray(variance).round(4))
        [1.5 0. ] [0.25 0.  ]
    """
    x = _upcast(x)
    axes = _as_axes(axes, len(x.shape))
    if synchronized and backend.backend() == "tensorflow":
        from keras_norms.kernels.tf_batch import cross_replica_moments

        return cross_replica_moments(x, axes, keepdims=keepdims, mask=mask)
    if mask is None:
        mean = _mean(x, axis=axes, keepdims=True)
        variance = _mean(ops.square(x - mean), axis=axes, keepdims=True)
    else:
        weights = ops.cast(ops.broadcast_to(mask, ops.shape(x)), x.dtype)
        count = ops.sum(weights, axis=axes, keepdims=True)
        safe_count = ops.maximum(count, 1.0)
        mean = ops.sum(x * weights, axis=axes, keepdims=True) / safe_count
        variance = ops.sum(ops.square(x - mean) * weights, axis=axes, keepdims=True) / safe_count
    if not keepdims:
        mean = ops.squeeze(mean, axis=axes)
        variance = ops.squeeze(variance, axis=axes)
    return mean, variance


def normalize(x, mean, variance, scale=None, offset=None, *, epsilon: float):
    r"""``(x - mean) / sqrt(variance + epsilon) * scale + offset``, in float32 (float64 for float64 `x`).

    $$
    y = \frac{x - \mathrm{mean}}{\sqrt{\mathrm{variance} + \epsilon}} \cdot \mathrm{scale} + \mathrm{offset}.
    $$

    The last step of the norms here, once their statistics are known. The
    statistics and parameters are cast to the dtype the math runs in and must
    already broadcast against `x` (computed with `keepdims=True`, or reshaped
    with `broadcast_shape`).

    Args:
        x: Input tensor of any float dtype.
        mean: The mean to subtract, broadcastable to `x`.
        variance: The variance whose root (after adding `epsilon`) divides,
            broadcastable to `x`.
        scale: Optional gamma, broadcastable to `x`; `None` for no scale.
        offset: Optional beta, broadcastable to `x`; `None` for no shift.
        epsilon: Added to the variance (keyword-only, no default).

    Returns:
        The normalized tensor, float32 (float64 for float64 `x`).

    Examples:
        >>> import numpy as np
        >>> from keras_norms import functional as F
        >>> x = np.array([1.0, 2.0, 3.0], dtype="float32")
        >>> y = F.normalize(x, x.mean(), x.var(), scale=2.0, offset=1.0, epsilon=0.0)
        >>> print(np.asarray(y).round(4))
        [-1.4495  1.      3.4495]
    """
    x = _upcast(x)
    inverse = ops.rsqrt(_like(variance, x) + epsilon)
    if scale is not None:
        inverse = inverse * _like(scale, x)
    outputs = (x - _like(mean, x)) * inverse
    if offset is not None:
        outputs = outputs + _like(offset, x)
    return outputs


def virtual_batch_moments(x, virtual_batch_size: int, *, axis: int = -1, mask=None):
    """Per-virtual-batch statistics for ghost batch normalization.

    The batch is cut into consecutive virtual batches of `virtual_batch_size`
    examples. `x` is viewed as `(num_virtual, virtual_batch_size * rest,
    channels)` (channels moved last; `rest` is the product of the other
    non-batch axes), so the statistics of each virtual batch are one reduction.

    Args:
        x: Input tensor, batch first; its batch size must be a multiple of
            `virtual_batch_size`.
        virtual_batch_size: Examples per virtual batch.
        axis: The channel axis.
        mask: Optional boolean tensor broadcastable to `x`; only `True`
            positions count in the statistics.

    Returns:
        `(grouped, mean, variance)`: the float32 (float64 for float64 `x`)
        view of `x` of shape `(num_virtual, -1, channels)` and its statistics
        of shape `(num_virtual, 1, channels)`. Undo the view with
        `ungroup_virtual_batches`.

    Examples:
        >>> import numpy as np
        >>> from keras_norms import functional as F
        >>> x = np.random.default_rng(0).normal(size=(6, 5, 3)).astype("float32")
        >>> grouped, mean, variance = F.virtual_batch_moments(x, 2)
        >>> tuple(grouped.shape), tuple(mean.shape)
        ((3, 10, 3), (3, 1, 3))
        >>> bool(np.allclose(mean[:, 0], x.reshape(3, 10, 3).mean(axis=1), atol=1e-6))
        True
    """
    x = _upcast(x)

    def group(t):
        t = _channels_last(t, axis)
        return ops.reshape(t, (ops.shape(t)[0] // virtual_batch_size, -1, t.shape[-1]))

    grouped = group(x)
    if mask is not None:
        mask = group(ops.broadcast_to(mask, ops.shape(x)))
    mean, variance = moments(grouped, 1, keepdims=True, mask=mask)
    return grouped, mean, variance


def ungroup_virtual_batches(grouped, like, *, axis: int = -1):
    """Inverse of the view taken by `virtual_batch_moments`, to the shape of `like`.

    `grouped` is reshaped to the shape of `like` with its channels last, then
    the channels are moved back to `axis`.

    Args:
        grouped: Tensor of shape `(num_virtual, -1, channels)`: the view
            `virtual_batch_moments` returns, or a result computed from it
            element by element (the normalized view).
        like: The tensor the view was taken of; gives the shape to restore.
        axis: The channel axis of `like`, as given to `virtual_batch_moments`.

    Returns:
        `grouped` with the shape and axis order of `like`, in its own dtype.

    Examples:
        >>> import numpy as np
        >>> from keras_norms import functional as F
        >>> x = np.random.default_rng(0).normal(size=(4, 3, 5)).astype("float32")
        >>> grouped, _, _ = F.virtual_batch_moments(x, 2, axis=1)
        >>> tuple(grouped.shape)
        (2, 10, 3)
        >>> bool(np.array_equal(F.ungroup_virtual_batches(grouped, x, axis=1), x))
        True
    """
    channels_last = _channels_last(like, axis)
    restored = ops.reshape(grouped, ops.shape(channels_last))
    return _channels_restore(restored, axis, len(like.shape))
