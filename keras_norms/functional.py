"""The normalization math, written once and shared by every layer.

Every function computes its statistics and the normalization in float32
(float16 and bfloat16 inputs are read as they are and upcast), or in float64
when ``x`` is float64, and returns that dtype: statistics never run in less
than float32. The layers cast the result to their compute dtype. Statistics
are computed in two passes (the mean, then the mean of squared deviations
from it), which stays accurate when the data has a large mean, where
``E[x^2] - E[x]^2`` loses every significant digit.

With the TensorFlow backend, batch, group, instance, layer and RMS norm take
fast paths (keras_norms/kernels/: TensorFlow's fused batch norm kernel,
closed-form gradients) that compute the same values in fewer passes over
memory; with JAX, batch norm in training and layer and RMS norm take a
closed-form gradient. `use_fast_paths(False)` runs the plain `keras.ops` math
below instead, which is also what PyTorch runs.

Examples:
    >>> import numpy as np
    >>> from keras_norms import functional as F
    >>> x = np.random.default_rng(0).normal(size=(2, 4, 4, 8)).astype("float32")
    >>> y = F.group_norm(x, groups=4)
    >>> tuple(y.shape)
    (2, 4, 4, 8)
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence

import numpy as np
from keras import backend, config, ops

__all__ = [
    "adaptive_instance_norm",
    "batch_norm",
    "batch_norm_train",
    "broadcast_shape",
    "check_ids",
    "condition_parameters",
    "conv2d",
    "convolve",
    "convolve_transpose",
    "fast_paths_enabled",
    "filter_response_norm",
    "group_norm",
    "kernel_norms",
    "layer_norm",
    "linear",
    "modulate",
    "modulated_instance_norm",
    "moments",
    "normalize",
    "resize_nearest",
    "rms_norm",
    "select_rows",
    "standardize_kernel",
    "switchable_norm",
    "tlu",
    "ungroup_virtual_batches",
    "use_fast_paths",
    "virtual_batch_moments",
    "virtual_batch_norm",
    "weight_normalized_kernel",
]


def _upcast(x):
    """`x` in the dtype the math runs in: float64 when it is float64, else float32."""
    dtype = "float64" if backend.standardize_dtype(x.dtype) == "float64" else "float32"
    return ops.cast(x, dtype)


def _upcast_all(*tensors):
    """`tensors` (None passes) in one dtype: float64 when any of them is float64, else float32."""
    wide = any(t is not None and backend.standardize_dtype(t.dtype) == "float64" for t in tensors)
    dtype = "float64" if wide else "float32"
    return [None if t is None else ops.cast(t, dtype) for t in tensors]


def _mean(x, axis, keepdims: bool = False):
    """`ops.mean`, computed in the dtype of `x` (Keras' PyTorch backend takes float64 means in float32)."""
    if backend.standardize_dtype(x.dtype) != "float64":
        return ops.mean(x, axis=axis, keepdims=keepdims)
    count = 1
    for a in _as_axes(axis, len(x.shape)):
        count = count * ops.shape(x)[a]
    return ops.sum(x, axis=axis, keepdims=keepdims) / ops.cast(count, x.dtype)


def _like(param, x):
    """`param` (a weight, a statistic; None passes) cast to the dtype of the upcast tensor `x`."""
    return None if param is None else ops.cast(param, x.dtype)


# ----------------------------------------------------------------------------- fast paths
# With the TensorFlow backend, batch norm runs TensorFlow's fused kernel and the other norms
# closed-form gradients; with JAX, batch, layer and RMS norm closed-form gradients
# (keras_norms/kernels/). The keras.ops math below is the plain path, for every backend.
# Both compute the same values to float32 rounding.

_FAST_PATHS_VARIABLE = "KERAS_NORMS_FAST_PATHS"
_fast_paths = os.environ.get(_FAST_PATHS_VARIABLE, "1").strip().lower() not in ("0", "false", "off", "no")


@contextlib.contextmanager
def use_fast_paths(enabled: bool = True):
    """Turns the fast paths (TensorFlow and JAX) on or off inside the block (process-wide).

    A context manager: the previous setting comes back when the block exits,
    also when it raises. The setting is read when a function is traced: a
    `tf.function` or `jax.jit` function (a compiled Keras model) keeps the path
    it was traced with. The environment variable ``KERAS_NORMS_FAST_PATHS=0``
    turns the fast paths off by default. PyTorch always takes the plain
    `keras.ops` path. Both paths compute the same values to float32 rounding, so
    switching them off is for comparing and debugging, not for accuracy.

    Args:
        enabled: `True` to take the fast paths where the backend has them,
            `False` to run the plain `keras.ops` math.

    Examples:
        >>> import numpy as np
        >>> from keras_norms import functional as F
        >>> x = np.random.default_rng(0).normal(size=(2, 4, 4, 8)).astype("float32")
        >>> with F.use_fast_paths(False):
        ...     plain = F.group_norm(x, groups=4)
        >>> bool(np.allclose(plain, F.group_norm(x, groups=4), atol=1e-5))
        True
    """
    global _fast_paths
    previous, _fast_paths = _fast_paths, bool(enabled)
    try:
        yield
    finally:
        _fast_paths = previous


def fast_paths_enabled() -> bool:
    """Whether the functions here take the fast paths (TensorFlow or JAX backend, not switched off).

    The fast paths are switched off by `use_fast_paths(False)` or by the
    environment variable ``KERAS_NORMS_FAST_PATHS=0``. Even when they are on,
    float64 inputs, and inputs a fast path does not cover, take the plain
    `keras.ops` path.

    Returns:
        `True` on the TensorFlow and JAX backends unless the fast paths are
        switched off; `False` on any other backend (PyTorch).

    Examples:
        >>> from keras_norms import functional as F
        >>> with F.use_fast_paths(False):
        ...     F.fast_paths_enabled()
        False
    """
    return _fast_paths and backend.backend() in ("tensorflow", "jax")


def _kernels(x):
    """The fast paths of the active backend (`keras_norms.kernels.tf` or `.jax`) for `x`, else None.

    The fast paths compute in float32; float64 inputs take the plain path.
    """
    if not fast_paths_enabled() or backend.standardize_dtype(x.dtype) == "float64":
        return None
    if backend.backend() == "jax":
        from keras_norms.kernels import jax as jax_kernels

        return jax_kernels
    from keras_norms.kernels import tf as tf_kernels

    return tf_kernels


def _as_axes(axes: int | Sequence[int], rank: int) -> tuple[int, ...]:
    if isinstance(axes, int):
        axes = (axes,)
    return tuple(sorted(a % rank for a in axes))


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
        from keras_norms.kernels import tf as tf_kernels

        return tf_kernels.cross_replica_moments(x, axes, keepdims=keepdims, mask=mask)
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
    """``(x - mean) / sqrt(variance + epsilon) * scale + offset``, in float32 (float64 for float64 `x`).

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


def _fused_source(x, dtype: str):
    """`x` as a tensor in the dtype the fused kernel should read: `dtype` if `x` has it, else float32.

    The fused batch norm kernel reads and writes float16/bfloat16 directly
    (statistics in float32 inside), which saves two casts over the tensor.
    """
    x = ops.convert_to_tensor(x)
    return x if backend.standardize_dtype(x.dtype) == dtype else ops.cast(x, "float32")


def _result_dtype(x, dtype) -> str:
    """`dtype` standardized, or the dtype the math runs in for `x` when None."""
    if dtype is None:
        return "float64" if backend.standardize_dtype(x.dtype) == "float64" else "float32"
    return backend.standardize_dtype(dtype)


def batch_norm(x, mean, variance, scale=None, offset=None, *, axis: int = -1,
               epsilon: float = 1e-3, dtype=None):
    """Normalizes `x` with given per-channel statistics (batch or moving).

    ``(x - mean) / sqrt(variance + epsilon) * scale + offset``, each parameter
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
        Ioffe and Szegedy, 2015, "Batch Normalization: Accelerating Deep Network
        Training by Reducing Internal Covariate Shift", https://arxiv.org/abs/1502.03167

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
    kernels = _kernels(x)
    dtype = _result_dtype(x, dtype)
    if kernels is not None:
        outputs = kernels.batch_norm(_fused_source(x, dtype), mean, variance, scale, offset,
                                     axis=axis, epsilon=epsilon)
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
    """Batch normalization with the statistics of the batch itself (training).

    Each channel is normalized over every axis but `axis` (the batch and the
    spatial axes). Equivalent to ``batch_norm(x, *moments(x, every axis but
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
        Ioffe and Szegedy, 2015, "Batch Normalization: Accelerating Deep Network
        Training by Reducing Internal Covariate Shift", https://arxiv.org/abs/1502.03167

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
    kernels = _kernels(x)
    dtype = _result_dtype(x, dtype)
    if kernels is not None:
        result = kernels.batch_norm_train(_fused_source(x, dtype), scale, offset, axis=axis, epsilon=epsilon)
        if result is not None:
            outputs, mean, variance = result
            return ops.cast(outputs, dtype), mean, variance
    rank = len(x.shape)
    axis %= rank
    mean, variance = moments(x, [a for a in range(rank) if a != axis])
    outputs = batch_norm(x, mean, variance, scale, offset, axis=axis, epsilon=epsilon, dtype=dtype)
    return outputs, ops.stop_gradient(mean), ops.stop_gradient(variance)


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


def virtual_batch_norm(x, virtual_batch_size: int, scale=None, offset=None, *, axis: int = -1,
                       epsilon: float = 1e-3, mask=None):
    """Ghost batch normalization: each run of `virtual_batch_size` examples normalized on its own statistics.

    The batch is cut into consecutive virtual batches of `virtual_batch_size`
    examples, and each is batch-normalized with its own per-channel mean and
    variance (over its examples and the spatial axes): the regularizing noise of
    small batches, kept when training with large ones.

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
        Hoffer et al., 2017, "Train longer, generalize better: closing the
        generalization gap in large batch training of neural networks",
        https://arxiv.org/abs/1705.08741

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
    kernels = None if mask is not None else _kernels(x)
    if kernels is not None:
        result = kernels.virtual_batch_norm(ops.convert_to_tensor(x), virtual_batch_size, scale, offset,
                                            axis=axis, epsilon=epsilon)
        if result is not None:
            return result
    grouped, mean, variance = virtual_batch_moments(x, virtual_batch_size, axis=axis, mask=mask)
    outputs = normalize(grouped, mean, variance, _broadcast(scale, grouped, -1),
                        _broadcast(offset, grouped, -1), epsilon=epsilon)
    outputs = ungroup_virtual_batches(outputs, x, axis=axis)
    return outputs, ops.stop_gradient(mean[:, 0]), ops.stop_gradient(variance[:, 0])


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

    ``(x - mean) / sqrt(variance + epsilon) * scale + offset`` with the mean and
    variance of each example over `axis` (the features, by default the last
    axis), so the result does not depend on the batch: the norm of transformers
    and recurrent networks.

    Args:
        x: Input tensor.
        scale: Optional gamma, with the shape of `x` along `axis`.
        offset: Optional beta, with the shape of `x` along `axis`.
        axis: Axis or axes to normalize over (never the batch axis).
        epsilon: Added to the variance.

    Returns:
        The normalized tensor, float32 (float64 for float64 `x`).

    Reference:
        Ba et al., 2016, "Layer Normalization", https://arxiv.org/abs/1607.06450

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
    kernels = _kernels(x)
    if kernels is not None:
        outputs = kernels.layer_norm(ops.convert_to_tensor(x), scale, offset, axis=axis, epsilon=epsilon)
        if outputs is not None:
            return outputs
    x = _upcast(x)
    axes = _as_axes(axis, len(x.shape))
    mean, variance = moments(x, axes, keepdims=True)
    return normalize(
        x, mean, variance, _broadcast(scale, x, axes), _broadcast(offset, x, axes),
        epsilon=epsilon,
    )


def rms_norm(x, scale=None, *, axis: int | Sequence[int] = -1, epsilon: float = 1e-6):
    """Root-mean-square normalization: ``x / sqrt(mean(x^2) + epsilon) * scale``.

    The mean square is taken over `axis` for each example. The mean is not
    subtracted: the divisor is the root mean square, not the standard deviation,
    and there is no offset. Cheaper than layer norm, it is the norm of many
    recent transformers.

    Args:
        x: Input tensor.
        scale: Optional gamma, with the shape of `x` along `axis`.
        axis: Axis or axes of the mean square (never the batch axis).
        epsilon: Added to the mean square.

    Returns:
        The normalized tensor, float32 (float64 for float64 `x`).

    Reference:
        Zhang and Sennrich, 2019, "Root Mean Square Layer Normalization",
        https://arxiv.org/abs/1910.07467

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
    kernels = _kernels(x)
    if kernels is not None:
        outputs = kernels.rms_norm(ops.convert_to_tensor(x), scale, axis=axis, epsilon=epsilon)
        if outputs is not None:
            return outputs
    x = _upcast(x)
    axes = _as_axes(axis, len(x.shape))
    inverse = ops.rsqrt(_mean(ops.square(x), axis=axes, keepdims=True) + epsilon)
    outputs = x * inverse
    if scale is not None:
        outputs = outputs * _broadcast(scale, x, axes)
    return outputs


def group_norm(x, groups: int, scale=None, offset=None, *, axis: int = -1,
               epsilon: float = 1e-3):
    """Group normalization: each example normalized within groups of channels.

    Channels on `axis` are split into `groups` consecutive groups; each group
    of each example is normalized over its channels and all non-batch axes.
    `groups=-1` (or the number of channels) is instance normalization,
    `groups=1` is layer normalization over all non-batch axes. Independent of
    the batch size, it suits small batches, where batch norm degrades.

    No intermediate tensor has a higher rank than `x`: per-channel statistics
    of shape `(batch, channels)` are pooled into groups by a rank-2 reshape,
    instead of viewing `x` as `(..., groups, channels // groups)`.

    Args:
        x: Input tensor of rank >= 2 with the batch on axis 0.
        groups: Number of groups; must divide the channel count (not checked
            here: `GroupNormalization` checks it). `-1` means one channel per
            group.
        scale: Optional per-channel gamma, shape `(channels,)`.
        offset: Optional per-channel beta, shape `(channels,)`.
        axis: The channel axis.
        epsilon: Added to the variance.

    Returns:
        The normalized tensor, float32 (float64 for float64 `x`).

    Reference:
        Wu and He, 2018, "Group Normalization", https://arxiv.org/abs/1803.08494

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
    """
    kernels = _kernels(x)
    if kernels is not None:
        outputs = kernels.group_norm(ops.convert_to_tensor(x), groups, scale, offset, axis=axis,
                                     epsilon=epsilon)
        if outputs is not None:
            return outputs
    x = _upcast(x)
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
        pooled = _mean(by_group, axis=1, keepdims=True)
        pooled = ops.broadcast_to(pooled, ops.shape(by_group))
        return ops.reshape(pooled, ops.shape(per_channel))

    def spatial_mean(t):
        return _mean(t, axis=spatial_axes, keepdims=True) if spatial_axes else t

    mean = pool_groups(spatial_mean(x))
    centered = x - mean
    variance = pool_groups(spatial_mean(ops.square(centered)))
    inverse = ops.rsqrt(variance + epsilon)
    if scale is not None:
        inverse = inverse * _broadcast(scale, x, axis)
    outputs = centered * inverse
    if offset is not None:
        outputs = outputs + _broadcast(offset, x, axis)
    return outputs


# ----------------------------------------------------------------------------- conditioning
# The pieces of conditional normalization (conditional batch/instance norm, FiLM, SPADE):
# per-example gamma and beta come from a condition, then modulate the normalized input.
# Each runs in float32, or in float64 when one of its operands is float64.


def linear(x, kernel, bias=None):
    """``x @ kernel + bias``: a conditioning vector projected to per-channel parameters.

    Computed in float32, or in float64 when one of the operands is float64.

    Args:
        x: Tensor of shape `(batch, features)`.
        kernel: Shape `(features, units)`.
        bias: Optional, shape `(units,)`.

    Returns:
        The tensor of shape `(batch, units)`, float32 (float64 when an operand
        is float64).

    Examples:
        >>> import numpy as np
        >>> from keras_norms import functional as F
        >>> x = np.array([[1.0, 2.0]], dtype="float32")
        >>> kernel = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]], dtype="float32")
        >>> bias = np.array([0.0, 0.0, 10.0], dtype="float32")
        >>> print(np.asarray(F.linear(x, kernel, bias)))
        [[ 1.  2. 13.]]
    """
    x, kernel, bias = _upcast_all(x, kernel, bias)
    outputs = ops.matmul(x, kernel)
    return outputs if bias is None else outputs + bias


def select_rows(table, condition):
    """Per-example rows of `table`, picked by integer id or mixed by weights.

    An integer `condition` of shape `(batch,)` holds row ids and gives
    ``table[condition]``. The ids are one-hot encoded, so an id outside
    ``[0, rows)`` gives a row of zeros, the same way eagerly, in graph mode,
    under XLA and in TFLite. A float `condition` of shape `(batch, rows)` holds
    weights and gives ``condition @ table``, a weighted mixture of the rows.

    Args:
        table: Shape `(rows, features)`: per-class or per-style parameters.
        condition: Integer ids `(batch,)` or float weights `(batch, rows)`.

    Returns:
        The tensor of shape `(batch, features)`, float32 (float64 when `table`
        or the weights are float64).

    Examples:
        >>> import numpy as np
        >>> from keras_norms import functional as F
        >>> table = np.arange(6.0, dtype="float32").reshape(3, 2)
        >>> print(np.asarray(F.select_rows(table, np.array([2, 0, 5]))))
        [[4. 5.]
         [0. 1.]
         [0. 0.]]
        >>> weights = np.array([[0.5, 0.5, 0.0]], dtype="float32")
        >>> print(np.asarray(F.select_rows(table, weights)))
        [[1. 2.]]
    """
    if "int" in backend.standardize_dtype(condition.dtype):
        condition = ops.one_hot(ops.cast(condition, "int32"), table.shape[0], dtype=table.dtype)
    return ops.matmul(*_upcast_all(condition, table))


def _values_known_now(x):
    """The values of `x` as a NumPy array when they exist now (eager), None while traced or compiled."""
    if isinstance(x, (np.ndarray, np.generic)):
        return np.asarray(x)
    name = backend.backend()
    if name == "tensorflow":
        from keras_norms.kernels import tf_checks as checks
    elif name == "jax":
        from keras_norms.kernels import jax_checks as checks
    elif name == "torch":
        from keras_norms.kernels import torch_checks as checks
    else:
        return None
    return checks.values_known_now(x)


def check_ids(ids, rows: int, *, what: str):
    """Checks that every integer id of `ids` indexes one of `rows` rows; returns `ids`.

    Where the ids have values (eager TensorFlow, JAX outside `jax.jit`,
    PyTorch), an id outside ``[0, rows)`` raises a `ValueError` at once. In a
    TensorFlow graph (`tf.function`, `model.fit`, `model.predict`) the graph
    asserts it when it runs and raises `InvalidArgumentError` with the same
    words. Compiled code cannot raise: under XLA (`jit_compile=True`) and in
    `jax.jit` the ids pass unchecked, and `select_rows` gives a row of zeros
    for an id out of range.

    Args:
        ids: Integer tensor of ids.
        rows: The number of rows the ids index.
        what: The start of the error message: who takes the ids and what
            they are, e.g. ``"ConditionalBatchNormalization 'cbn': class ids"``.

    Returns:
        `ids` (in a TensorFlow graph, behind the assertion).

    Raises:
        ValueError: If an id is outside ``[0, rows)``; the message names
            `what`, the valid range and the ids out of range.

    Examples:
        >>> import numpy as np
        >>> from keras_norms import functional as F
        >>> F.check_ids(np.array([0, 2]), 3, what="class ids").tolist()
        [0, 2]
        >>> F.check_ids(np.array([0, 5, -1]), 3, what="class ids")
        Traceback (most recent call last):
        ...
        ValueError: class ids must be in [0, 3). Received: ids out of range [5, -1]
    """
    message = f"{what} must be in [0, {rows})"
    values = _values_known_now(ids)
    if values is not None:
        outside = values[(values < 0) | (values >= rows)]
        if outside.size:
            raise ValueError(f"{message}. Received: ids out of range {outside.tolist()}")
        return ids
    if backend.backend() == "tensorflow":
        from keras_norms.kernels import tf_checks

        return tf_checks.assert_ids_in_range(ids, rows, f"{message}.")
    return ids


def _per_example(param, rank: int, axis: int):
    if len(param.shape) == rank:
        return param
    shape = [1] * rank
    shape[0] = -1
    shape[axis % rank] = param.shape[-1]
    return ops.reshape(param, shape)


def modulate(x, scale=None, offset=None, *, axis: int = -1):
    """``x * scale + offset`` with per-example or per-position parameters.

    Parameters of shape `(batch, channels)` are broadcast over every axis of
    `x` but the batch and `axis` (FiLM, conditional batch and instance norm);
    parameters of the full shape of `x` apply per position (SPADE). Either may
    be `None`.

    Args:
        x: Input tensor, batch first, channels on `axis`.
        scale: `(batch, channels)` or the shape of `x`, or `None` (no scaling).
        offset: `(batch, channels)` or the shape of `x`, or `None` (no shift).
        axis: The channel axis.

    Returns:
        The modulated tensor, float32 (float64 when an operand is float64).

    Examples:
        >>> import numpy as np
        >>> from keras_norms import functional as F
        >>> x = np.ones((2, 3, 3, 3), dtype="float32")
        >>> scale = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], dtype="float32")
        >>> offset = np.ones((2, 3), dtype="float32")
        >>> y = np.asarray(F.modulate(x, scale, offset))
        >>> print(y[:, 0, 0, :])
        [[2. 3. 4.]
         [5. 6. 7.]]
        >>> bool((y == y[:, :1, :1, :]).all())  # the same at every position
        True
    """
    rank = len(x.shape)
    outputs, scale, offset = _upcast_all(x, scale, offset)
    if scale is not None:
        outputs = outputs * _per_example(scale, rank, axis)
    if offset is not None:
        outputs = outputs + _per_example(offset, rank, axis)
    return outputs


def resize_nearest(images, size):
    """Nearest-neighbour resize of channels-last `images` `(batch, height, width, channels)` to `size`.

    Output pixel ``i`` takes input pixel ``floor((i + 0.5) * in / out)``, the
    one whose centre is nearest to its own centre (ties to the later one):
    the rule of `tf.image.resize(method="nearest")` and of PyTorch's
    ``mode="nearest-exact"`` (PyTorch's ``mode="nearest"`` takes
    ``floor(i * in / out)`` instead, a different pixel when downsampling).
    The indices are computed exactly, in integers, and the resize is a gather
    per spatial axis; an axis whose size already matches is left alone.

    Args:
        images: Tensor of rank 4, channels last.
        size: `(height, width)` of the result, ints or scalar int tensors.

    Returns:
        The resized tensor, in the dtype of `images`.

    Raises:
        ValueError: If `size` does not have exactly two entries.

    Examples:
        >>> import numpy as np
        >>> from keras_norms import functional as F
        >>> row = np.arange(4, dtype="float32").reshape(1, 1, 4, 1)  # one row of pixels 0, 1, 2, 3
        >>> print(np.asarray(F.resize_nearest(row, (1, 2)))[0, 0, :, 0])
        [1. 3.]
        >>> print(np.asarray(F.resize_nearest(row, (1, 8)))[0, 0, :, 0])
        [0. 0. 1. 1. 2. 2. 3. 3.]
    """
    for axis, out_size in zip((1, 2), size, strict=True):
        in_size = images.shape[axis]
        if isinstance(in_size, int) and isinstance(out_size, int):
            if in_size == out_size:
                continue
            indices = ((2 * np.arange(out_size) + 1) * in_size) // (2 * out_size)
            indices = indices.astype("int32")
        else:
            if in_size is None:
                in_size = ops.shape(images)[axis]
            indices = ((2 * ops.arange(out_size, dtype="int32") + 1) * in_size) // (2 * out_size)
        images = ops.take(images, indices, axis=axis)
    return images


def conv2d(x, kernel, bias=None):
    """A stride-1, "same"-padded 2D convolution of channels-last `x` (SPADE's convolutions).

    The input is zero-padded so that the output keeps its height and width.
    Computed in float32, or in float64 when one of the operands is float64.

    Args:
        x: Tensor `(batch, height, width, in_channels)`.
        kernel: `(kernel_height, kernel_width, in_channels, out_channels)`.
        bias: Optional, `(out_channels,)`.

    Returns:
        The tensor `(batch, height, width, out_channels)`.

    Examples:
        >>> import numpy as np
        >>> from keras_norms import functional as F
        >>> x = np.ones((1, 3, 3, 1), dtype="float32")
        >>> kernel = np.ones((3, 3, 1, 1), dtype="float32")  # sums each 3x3 neighbourhood
        >>> print(np.asarray(F.conv2d(x, kernel))[0, :, :, 0])
        [[4. 6. 4.]
         [6. 9. 6.]
         [4. 6. 4.]]
    """
    x, kernel, bias = _upcast_all(x, kernel, bias)
    outputs = ops.conv(x, kernel, strides=1, padding="same", data_format="channels_last")
    outputs = _conv_shape_for_empty_batch(outputs, x, kernel, strides=1, padding="same", dilation_rate=1,
                                          data_format="channels_last")
    return outputs if bias is None else outputs + bias


def _conv_shape_for_empty_batch(outputs, x, kernel, **convolution):
    """`outputs` of ``ops.conv(x, kernel, **convolution)``, in its shape also for an empty batch.

    TensorFlow's CPU convolutions return an empty batch in the shape of their
    input, which the next op (a bias, a modulation) refuses;
    `kernels.tf_conv` gives it the convolution's shape. Other backends, and
    batches known to hold examples, pass as they are.
    """
    batch = x.shape[0]
    if backend.backend() != "tensorflow" or (batch is not None and batch > 0):
        return outputs
    from keras_norms.kernels import tf_conv

    return tf_conv.empty_batch_in_conv_shape(outputs, x, kernel, **convolution)


# ----------------------------------------------------------------------------- adaptive, response
# Adaptive normalization (AdaIN, adaLN, adaptive group norm, switchable norm), filter response
# normalization with its TLU, and weight standardization.


def _spatial_axes(rank: int, axis: int) -> tuple[int, ...]:
    """Every axis but the batch and the channel axis."""
    axis %= rank
    return tuple(i for i in range(1, rank) if i != axis)


def _blend(stylized, content, alpha: float):
    if alpha == 1.0:
        return stylized
    return alpha * stylized + (1.0 - alpha) * _like(content, stylized)


def condition_parameters(condition, kernel, bias=None, *, chunks: int, activation=None):
    """``activation(condition) @ kernel + bias`` split into `chunks` equal per-channel tensors.

    The modulation parameters of adaptive normalization: a conditioning vector
    (a style code, a class or timestep embedding) is mapped to per-example
    scales, shifts and gates.

    Args:
        condition: Tensor of shape `(batch, features)`.
        kernel: Shape `(features, chunks * channels)`.
        bias: Optional, shape `(chunks * channels,)`.
        chunks: How many parameter tensors to split the projection into; must
            divide the last dimension of `kernel`.
        activation: Optional callable applied to `condition` first (SiLU in DiT
            and diffusion U-Nets).

    Returns:
        A list of `chunks` tensors of shape `(batch, channels)`, float32
        (float64 when `condition` or `kernel` is float64).

    Examples:
        >>> import numpy as np
        >>> from keras import ops
        >>> from keras_norms import functional as F
        >>> condition = np.array([[1.0, -2.0]], dtype="float32")
        >>> kernel = np.array([[1.0, 0.0, 0.0, 1.0], [0.0, 1.0, 1.0, 0.0]], dtype="float32")
        >>> scale, shift = F.condition_parameters(condition, kernel, chunks=2)
        >>> print(np.asarray(scale), np.asarray(shift))
        [[ 1. -2.]] [[-2.  1.]]
        >>> scale, shift = F.condition_parameters(condition, kernel, chunks=2, activation=ops.relu)
        >>> print(np.asarray(scale), np.asarray(shift))
        [[1. 0.]] [[0. 1.]]
    """
    condition, kernel = _upcast_all(condition, kernel)
    if activation is not None:
        condition = activation(condition)
    return ops.split(linear(condition, kernel, bias), chunks, axis=-1)


def adaptive_instance_norm(content, style, *, alpha: float = 1.0, epsilon: float = 1e-5,
                           axis: int = -1):
    """AdaIN: `content` renormalized to the per-channel mean and standard deviation of `style`.

    ``AdaIN(x, y) = sigma(y) * (x - mu(x)) / sigma(x) + mu(y)``, with ``mu`` and
    ``sigma = sqrt(variance + epsilon)`` taken per example and channel over the
    spatial axes; then ``alpha * AdaIN(x, y) + (1 - alpha) * x``, the paper's
    content-style trade-off. `style` may have other spatial sizes than `content`.
    There are no learned parameters: the style statistics are the affine
    parameters.

    Args:
        content: Tensor, batch first, channels on `axis`, with spatial axes.
        style: Tensor with the batch size and channels of `content`; its
            spatial sizes may differ.
        alpha: Content-style trade-off: 1 gives AdaIN's output, 0 gives
            `content` back, values between blend the two linearly.
        epsilon: Added to both variances.
        axis: The channel axis of both tensors.

    Returns:
        The stylized tensor of the shape of `content`, float32 (float64 for
        float64 `content`).

    Reference:
        Huang and Belongie, 2017, "Arbitrary Style Transfer in Real-time with
        Adaptive Instance Normalization", https://arxiv.org/abs/1703.06868

    Examples:
        >>> import numpy as np
        >>> from keras_norms import functional as F
        >>> rng = np.random.default_rng(0)
        >>> content = rng.normal(size=(1, 8, 8, 3)).astype("float32")
        >>> style = rng.normal([5.0, -1.0, 0.0], [2.0, 0.5, 3.0], size=(1, 4, 4, 3)).astype("float32")
        >>> y = np.asarray(F.adaptive_instance_norm(content, style))
        >>> bool(np.allclose(y.mean(axis=(1, 2)), style.mean(axis=(1, 2)), atol=1e-4))
        True
        >>> bool(np.allclose(y.std(axis=(1, 2)), style.std(axis=(1, 2)), rtol=1e-3))
        True
        >>> bool(np.allclose(F.adaptive_instance_norm(content, style, alpha=0.0), content))
        True
    """
    rank = len(content.shape)
    content_mean, content_variance = moments(content, _spatial_axes(rank, axis), keepdims=True)
    style_mean, style_variance = moments(style, _spatial_axes(len(style.shape), axis), keepdims=True)
    stylized = normalize(content, content_mean, content_variance, ops.sqrt(style_variance + epsilon),
                         style_mean, epsilon=epsilon)
    return _blend(stylized, content, alpha)


def modulated_instance_norm(x, scale, shift, *, alpha: float = 1.0, epsilon: float = 1e-5):
    """Learned AdaIN: ``IN(x) * (1 + scale) + shift`` with `(batch, channels)` parameters.

    ``IN`` is instance normalization (each example and channel over the spatial
    axes, without affine parameters). The per-example `scale` and `shift` are
    typically projected from a style code (`condition_parameters`); the gain
    ``1 + scale`` makes zero parameters the identity on ``IN(x)``. Blended with
    the input as ``alpha * that + (1 - alpha) * x``; channels last.

    Args:
        x: Input tensor, batch first, channels last, with spatial axes.
        scale: Per-example scale, shape `(batch, channels)`; the gain is
            ``1 + scale``.
        shift: Per-example shift, shape `(batch, channels)`.
        alpha: Trade-off with the input: 1 gives the modulated output, 0 gives
            `x` back, values between blend the two linearly.
        epsilon: Added to the variance of the instance norm.

    Returns:
        The tensor of the shape of `x`, float32 (float64 when `x`, `scale` or
        `shift` is float64).

    Reference:
        Karras et al., 2019, "A Style-Based Generator Architecture for
        Generative Adversarial Networks", https://arxiv.org/abs/1812.04948

    Examples:
        >>> import numpy as np
        >>> from keras_norms import functional as F
        >>> x = np.random.default_rng(0).normal(3.0, 2.0, size=(2, 4, 4, 3)).astype("float32")
        >>> scale = np.ones((2, 3), dtype="float32")  # gain 2
        >>> shift = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], dtype="float32")
        >>> y = np.asarray(F.modulated_instance_norm(x, scale, shift))
        >>> print(np.round(y.mean(axis=(1, 2)), 3))
        [[1. 2. 3.]
         [4. 5. 6.]]
        >>> print(np.round(y.std(axis=(1, 2)), 3))
        [[2. 2. 2.]
         [2. 2. 2.]]
    """
    stylized = modulate(group_norm(x, -1, epsilon=epsilon), 1.0 + scale, shift)
    return _blend(stylized, x, alpha)


def filter_response_norm(x, scale=None, offset=None, *, axis: int | Sequence[int] = (1, 2),
                         epsilon: float = 1e-6, learned_epsilon=None):
    """Filter response normalization: ``x / sqrt(mean(x^2) + |epsilon|) * scale + offset``.

    Each channel of each example is divided by the root of its mean squared
    activation ``nu^2`` over `axis` (the spatial axes); the mean is not
    subtracted, so there is no batch dependence and no centring. With a learned
    epsilon the divisor is ``sqrt(nu^2 + |epsilon| + |learned_epsilon|)``, the
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
        Singh and Krishnan, 2020, "Filter Response Normalization Layer:
        Eliminating Batch Dependence in the Training of Deep Neural Networks",
        https://arxiv.org/abs/1911.09737

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
    """Thresholded linear unit: ``max(x, tau)``, or ``max(x, alpha * x + tau)`` (TLU-affine).

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
        Singh and Krishnan, 2020, "Filter Response Normalization Layer:
        Eliminating Batch Dependence in the Training of Deep Neural Networks",
        https://arxiv.org/abs/1911.09737

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


def switchable_norm(x, mean_weights, variance_weights, scale=None, offset=None, *, axis: int = -1,
                    epsilon: float = 1e-5, moving_mean=None, moving_variance=None):
    """Switchable normalization: a learned mixture of instance, layer and batch statistics.

    ``mean = sum_k softmax(mean_weights)_k * mu_k`` and ``variance = sum_k
    softmax(variance_weights)_k * sigma2_k`` for ``k`` in (instance, layer,
    batch), then ``(x - mean) / sqrt(variance + epsilon) * scale + offset``.
    Instance statistics are per example and channel over the spatial axes;
    layer and batch statistics pool them over the channels and over the batch
    (law of total variance: ``sigma2 = mean(sigma2_in) + mean((mu_in - mu)^2)``,
    no cancellation). Given `moving_mean` and `moving_variance` (inference),
    they replace the batch statistics.

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

    Returns:
        `(outputs, batch_mean, batch_variance)`: the normalized tensor, float32
        (float64 for float64 `x`), and the per-channel statistics it used in the
        batch slot, shape `(channels,)`: those of the batch, or `moving_mean` and
        `moving_variance` when given.

    Reference:
        Luo et al., 2019, "Differentiable Learning-to-Normalize via Switchable
        Normalization", https://arxiv.org/abs/1806.10779

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
    """
    x = _upcast(x)
    rank = len(x.shape)
    axis %= rank
    instance_mean, instance_variance = moments(x, _spatial_axes(rank, axis), keepdims=True)

    def pooled(axes):
        mean = _mean(instance_mean, axis=axes, keepdims=True)
        spread = _mean(ops.square(instance_mean - mean), axis=axes, keepdims=True)
        return mean, _mean(instance_variance, axis=axes, keepdims=True) + spread

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


def standardize_kernel(kernel, *, epsilon: float = 1e-5):
    """Weight standardization: each output channel of `kernel` (its last axis) to mean 0 and variance 1.

    ``(w - mean(w)) / sqrt(variance(w) + epsilon)`` over all axes but the
    last, e.g. over `(kernel_height, kernel_width, in_channels)` of a Conv2D
    kernel, in float32 (float64 for a float64 kernel). Applied to the kernel
    before each convolution, it smooths the loss landscape, which helps with
    small batches (with group norm) where batch norm cannot be used.

    Args:
        kernel: The kernel, output channels on its last axis.
        epsilon: Added to the variance.

    Returns:
        The standardized kernel of the shape of `kernel`, float32 (float64 for
        a float64 kernel).

    Reference:
        Qiao et al., 2019, "Micro-Batch Training with Batch-Channel
        Normalization and Weight Standardization", https://arxiv.org/abs/1903.10520

    Examples:
        >>> import numpy as np
        >>> from keras_norms import functional as F
        >>> kernel = np.random.default_rng(0).normal(0.5, 0.1, size=(3, 3, 4, 8)).astype("float32")
        >>> w = np.asarray(F.standardize_kernel(kernel, epsilon=1e-8))
        >>> bool(np.allclose(w.mean(axis=(0, 1, 2)), 0.0, atol=1e-5))
        True
        >>> print(np.round(w.var(axis=(0, 1, 2)), 3))
        [1. 1. 1. 1. 1. 1. 1. 1.]
    """
    rank = len(kernel.shape)
    mean, variance = moments(kernel, tuple(range(rank - 1)), keepdims=True)
    return normalize(kernel, mean, variance, epsilon=epsilon)


def kernel_norms(kernel, *, axis: int = -1):
    """``||kernel||`` per slice along `axis` (over every other axis), in the dtype of `kernel`.

    The lengths weight normalization starts `g` at, so that ``g * v / ||v||`` is `v`.

    Args:
        kernel: The kernel `v`, e.g. `(kernel_height, kernel_width, in, out)`.
        axis: The axis whose slices are measured (the output channels).

    Returns:
        The Euclidean norm of each slice, shape `(kernel.shape[axis],)`, in
        the dtype of `kernel`.

    Examples:
        >>> import numpy as np
        >>> from keras_norms import functional as F
        >>> kernel = np.array([[3.0, 0.0], [4.0, 1.0]], dtype="float32")
        >>> print(np.asarray(F.kernel_norms(kernel)))
        [5. 1.]
        >>> print(np.asarray(F.kernel_norms(kernel, axis=0)).round(4))
        [3.     4.1231]
    """
    kernel = ops.convert_to_tensor(kernel)
    axes = [a for a in range(len(kernel.shape)) if a != axis % len(kernel.shape)]
    return ops.sqrt(ops.sum(ops.square(kernel), axis=axes))


def weight_normalized_kernel(direction, length, *, axis: int = -1, epsilon: float = 1e-12):
    """Weight normalization: ``length * direction / ||direction||`` per slice along `axis`.

    The norm is over every other axis; squared norms are floored at `epsilon`,
    as in `tf.nn.l2_normalize`. Computed in the dtype of `direction`.
    Decoupling the length `g` of each output channel from its direction `v`
    reparameterizes the kernel without any data statistics.

    Args:
        direction: The kernel `v`, e.g. `(kernel_height, kernel_width, in, out)`.
        length: `g`, one length per slice along `axis`.
        axis: The output-channel axis of the kernel.
        epsilon: Floor of the squared norms.

    Returns:
        The kernel ``g * v / ||v||`` of the shape of `direction`, each slice
        along `axis` of norm `length` (where ``||v||^2`` is at least `epsilon`).

    Reference:
        Salimans and Kingma, 2016, "Weight Normalization: A Simple
        Reparameterization to Accelerate Training of Deep Neural Networks",
        https://arxiv.org/abs/1602.07868

    Examples:
        >>> import numpy as np
        >>> from keras_norms import functional as F
        >>> direction = np.array([[3.0, 0.0], [4.0, 2.0]], dtype="float32")
        >>> length = np.array([10.0, 1.0], dtype="float32")
        >>> print(np.asarray(F.weight_normalized_kernel(direction, length)))
        [[6. 0.]
         [8. 1.]]
        >>> kernel = F.weight_normalized_kernel(direction, F.kernel_norms(direction))
        >>> bool(np.allclose(kernel, direction))
        True
    """
    direction = ops.convert_to_tensor(direction)
    rank = len(direction.shape)
    axis %= rank
    axes = [a for a in range(rank) if a != axis]
    squared_norm = ops.sum(ops.square(direction), axis=axes, keepdims=True)
    channel_shape = [-1 if a == axis else 1 for a in range(rank)]
    return direction * ops.rsqrt(ops.maximum(squared_norm, epsilon)) * ops.reshape(length, channel_shape)


# ----------------------------------------------------------------------------- convolutions
# The convolutions of the reparametrized kernels (weight normalization, weight standardization).
# TensorFlow's CPU kernels take channels-first (NCHW) convolutions only where TensorFlow runs with
# oneDNN; without it (x86 CPUs without AVX-512, or TF_ENABLE_ONEDNN_OPTS=0) they raise
# UnimplementedError. On TensorFlow, channels-first inputs are therefore convolved channels last
# between two transposes, on every machine: one graph everywhere (oneDNN transposes NCHW itself).


def _channels_first_on_tensorflow(data_format) -> bool:
    if data_format is None:
        data_format = config.image_data_format()
    return data_format == "channels_first" and backend.backend() == "tensorflow"


def _convolve_channels_last(compute, x):
    """``compute(x, "channels_last")`` for a channels-first `x`: transposed in, transposed back."""
    rank = len(x.shape)
    outputs = compute(ops.transpose(x, [0, *range(2, rank), 1]), "channels_last")
    return ops.transpose(outputs, [0, rank - 1, *range(1, rank - 1)])


def convolve(x, kernel, *, strides=1, padding: str = "valid", dilation_rate=1, data_format=None):
    """`keras.ops.conv` that also takes channels-first inputs on TensorFlow CPUs without oneDNN.

    The arguments and the result are those of `keras.ops.conv` (1D, 2D or 3D,
    grouped when the kernel has fewer input channels than `x`). With the
    TensorFlow backend and `data_format="channels_first"`, the convolution
    runs channels last between two transposes: TensorFlow's own CPU kernels
    take channels first only where TensorFlow runs with oneDNN (not on x86
    CPUs without AVX-512, nor with ``TF_ENABLE_ONEDNN_OPTS=0``). The other
    backends convolve channels first directly.

    Args:
        x: Tensor of rank 3 to 5, batch first.
        kernel: `(*kernel_size, in_channels // groups, out_channels)`.
        strides: An int or one int per spatial axis.
        padding: `"valid"` or `"same"`.
        dilation_rate: An int or one int per spatial axis.
        data_format: `"channels_last"`, `"channels_first"`, or None for
            `keras.config.image_data_format()`.

    Returns:
        The convolution, in the layout of `x`.

    Examples:
        >>> import numpy as np
        >>> from keras_norms import functional as F
        >>> x = np.arange(8.0, dtype="float32").reshape(1, 2, 4)  # channels first: 2 channels, 4 steps
        >>> kernel = np.ones((2, 2, 1), dtype="float32")  # sums two steps of both channels
        >>> print(np.asarray(F.convolve(x, kernel, data_format="channels_first")))
        [[[10. 14. 18.]]]
    """
    def compute(inputs, layout):
        outputs = ops.conv(inputs, kernel, strides=strides, padding=padding,
                           dilation_rate=dilation_rate, data_format=layout)
        return _conv_shape_for_empty_batch(outputs, inputs, kernel, strides=strides, padding=padding,
                                           dilation_rate=dilation_rate, data_format=layout)

    if _channels_first_on_tensorflow(data_format):
        return _convolve_channels_last(compute, x)
    return compute(x, data_format)


def convolve_transpose(x, kernel, *, strides, padding: str = "valid", output_padding=None,
                       dilation_rate=1, data_format=None):
    """`keras.ops.conv_transpose` that also takes channels-first inputs on TensorFlow CPUs without oneDNN.

    The arguments and the result are those of `keras.ops.conv_transpose`;
    channels-first inputs on TensorFlow run channels last between two
    transposes, as in `convolve`.

    Args:
        x: Tensor of rank 3 to 5, batch first.
        kernel: `(*kernel_size, out_channels, in_channels)`.
        strides: An int or one int per spatial axis.
        padding: `"valid"` or `"same"`.
        output_padding: None, or an int or one int per spatial axis.
        dilation_rate: An int or one int per spatial axis.
        data_format: `"channels_last"`, `"channels_first"`, or None for
            `keras.config.image_data_format()`.

    Returns:
        The transposed convolution, in the layout of `x`.

    Examples:
        >>> import numpy as np
        >>> from keras_norms import functional as F
        >>> x = np.array([[[1.0, 2.0]]], dtype="float32")  # channels first: 1 channel, 2 steps
        >>> kernel = np.ones((2, 1, 1), dtype="float32")
        >>> print(np.asarray(F.convolve_transpose(x, kernel, strides=2, data_format="channels_first")))
        [[[1. 1. 2. 2.]]]
    """
    def compute(inputs, layout):
        return ops.conv_transpose(inputs, kernel, strides=strides, padding=padding,
                                  output_padding=output_padding, dilation_rate=dilation_rate,
                                  data_format=layout)

    if _channels_first_on_tensorflow(data_format):
        return _convolve_channels_last(compute, x)
    return compute(x, data_format)
