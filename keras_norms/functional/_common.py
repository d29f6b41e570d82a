"""What every part of `keras_norms.functional` shares: the dtype the math runs in, and axes.

Every function of the package computes in float32 (float16 and bfloat16
inputs are read as they are and upcast), or in float64 when an input is
float64; these helpers cast, take means in that dtype, and keep the axis
bookkeeping in one place.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import backend, ops


def _upcast(x):
    """`x` in the dtype the math runs in: float64 when it is float64, else float32."""
    dtype = "float64" if backend.standardize_dtype(x.dtype) == "float64" else "float32"
    return ops.cast(x, dtype)


def _tensor(value):
    """`value` (a tensor, a variable, an array) as a tensor of the backend, for a kernel; None stays None.

    A tensor passes as it is and a variable gives its value, without `ops.convert_to_tensor`'s
    checks: on PyTorch, eager, they would cost as much as a small kernel at every call.
    """
    if value is None or ops.is_tensor(value):
        return value
    if isinstance(value, keras.Variable):
        return value.value
    return ops.convert_to_tensor(value)


def _fused_source(x, dtype: str):
    """`x` as a tensor in the dtype a kernel should read: `dtype` if `x` has it, else float32.

    TensorFlow's fused batch norm kernel and PyTorch's native kernels read and
    write float16/bfloat16 directly (statistics in float32 inside), which
    saves two casts over the tensor.
    """
    x = _tensor(x)
    return x if backend.standardize_dtype(x.dtype) == dtype else ops.cast(x, "float32")


def _result_dtype(x, dtype) -> str:
    """`dtype` standardized, or the dtype the math runs in for `x` when None."""
    if dtype is None:
        return "float64" if backend.standardize_dtype(x.dtype) == "float64" else "float32"
    return backend.standardize_dtype(dtype)


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


def _as_axes(axes: int | Sequence[int], rank: int) -> tuple[int, ...]:
    if isinstance(axes, int):
        axes = (axes,)
    return tuple(sorted(a % rank for a in axes))


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


def _spatial_axes(rank: int, axis: int) -> tuple[int, ...]:
    """Every axis but the batch and the channel axis."""
    axis %= rank
    return tuple(i for i in range(1, rank) if i != axis)
