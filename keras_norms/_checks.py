"""Argument checks shared by every layer: each error names the argument and the value received."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import numpy as np
from keras import activations, constraints, initializers, ops, regularizers


def check_epsilon(epsilon, name: str = "epsilon") -> float:
    """Returns `epsilon` as a float, or raises (naming the argument `name`) unless it is finite and > 0."""
    if isinstance(epsilon, bool) or not isinstance(epsilon, numbers.Real):
        raise TypeError(f"Argument `{name}` must be a positive float. Received: {name}={epsilon!r}")
    if not epsilon > 0:
        raise ValueError(
            f"Argument `{name}` must be > 0 (it keeps the division finite). Received: {name}={epsilon!r}"
        )
    if not math.isfinite(epsilon):
        raise ValueError(f"Argument `{name}` must be a finite float > 0. Received: {name}={epsilon!r}")
    return float(epsilon)


def check_groups(groups) -> int:
    """Returns `groups` as an int (a positive count, or -1 for one channel per group), or raises."""
    message = "Argument `groups` must be a positive int, or -1 for one channel per group. "
    if isinstance(groups, bool) or not isinstance(groups, numbers.Integral):
        raise TypeError(message + f"Received: groups={groups!r}")
    if groups == 0 or groups < -1:
        raise ValueError(message + f"Received: groups={groups}")
    return int(groups)


def check_fraction(name: str, value) -> float:
    """Returns `value` as a float in [0, 1] (a momentum), or raises naming `name`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"Argument `{name}` must be a float in [0, 1]. Received: {name}={value!r}")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"Argument `{name}` must be in [0, 1]. Received: {name}={value!r}")
    return float(value)


def check_finite(name: str, value) -> float:
    """Returns `value` as a float (an initial value), or raises naming `name` unless it is a finite number."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"Argument `{name}` must be a float. Received: {name}={value!r}")
    if not math.isfinite(value):
        raise ValueError(f"Argument `{name}` must be a finite float. Received: {name}={value!r}")
    return float(value)


def check_axis_argument(axis, *, allow_list: bool = False) -> int | list[int]:
    """Validates an `axis` argument: its type, and not the batch axis 0 (`build` checks the range)."""
    if allow_list and isinstance(axis, (list, tuple)):
        if not axis or not all(isinstance(a, int) and not isinstance(a, bool) for a in axis):
            raise TypeError(
                f"Argument `axis` must be an int or a non-empty list of ints. Received: axis={axis!r}"
            )
        axes = list(axis)
    elif isinstance(axis, bool) or not isinstance(axis, int):
        expected = "an int or a list of ints" if allow_list else "an int"
        raise TypeError(f"Argument `axis` must be {expected}. Received: axis={axis!r}")
    else:
        axes = [axis]
    if 0 in axes:
        raise ValueError(f"Argument `axis` cannot include the batch axis 0. Received: axis={axis!r}")
    return axes if allow_list and isinstance(axis, (list, tuple)) else axis


def check_axes_in_range(layer_name: str, axis: int | Sequence[int], input_shape) -> None:
    """Raises if an entry of `axis` is not an axis of an input of `input_shape`."""
    rank = len(input_shape)
    for a in [axis] if isinstance(axis, int) else axis:
        if not -rank <= a < rank:
            raise ValueError(
                f"{layer_name}: axis {a} is out of range for an input of rank {rank} "
                f"(shape {tuple(input_shape)}). Received: axis={axis!r}"
            )


def resolve_axes(layer_name: str, axis: int | Sequence[int], input_shape) -> list[int]:
    """Maps `axis` to non-negative axes of `input_shape`, which must be defined and not the batch.

    Raises:
        ValueError: an axis out of range, the batch axis, or an undefined dimension.
    """
    check_axes_in_range(layer_name, axis, input_shape)
    rank = len(input_shape)
    resolved = []
    for a in [axis] if isinstance(axis, int) else axis:
        a %= rank
        if a == 0:
            raise ValueError(
                f"{layer_name}: axis 0 is the batch axis and cannot be normalized over. "
                f"Received: axis={axis!r} for input shape {tuple(input_shape)}"
            )
        if input_shape[a] is None:
            raise ValueError(
                f"{layer_name}: the normalized axis {a} of the input must have a defined size, "
                f"but the input shape is {tuple(input_shape)}. Give the model an input shape "
                f"with this dimension set. Received: axis={axis!r}"
            )
        resolved.append(a)
    if len(set(resolved)) != len(resolved):
        raise ValueError(f"{layer_name}: duplicate entries in `axis`. Received: axis={axis!r}")
    return sorted(resolved)


def check_rank(layer_name: str, input_shape, min_rank: int, max_rank: int | None = None) -> None:
    """Raises if the rank of `input_shape` is outside [min_rank, max_rank]."""
    rank = len(input_shape)
    if rank < min_rank or (max_rank is not None and rank > max_rank):
        supported = f"{min_rank} to {max_rank}" if max_rank else f"{min_rank} or more"
        raise ValueError(
            f"{layer_name} supports inputs of rank {supported} (batch axis included). "
            f"Received: input_shape={tuple(input_shape)} (rank {rank})"
        )


def shape_fits(shape, expected, *, broadcast: bool = False) -> bool:
    """Whether `shape` has the rank of `expected` and its sizes (None: any; with `broadcast`, also 1)."""
    if len(shape) != len(expected):
        return False
    sizes = (1, None) if broadcast else (None,)
    return all(e is None or s in sizes or s == e for s, e in zip(shape, expected, strict=True))


def check_bool(name: str, value) -> bool:
    """Returns `value` as a bool if it is one (a NumPy bool too), or raises a TypeError naming `name`."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"Argument `{name}` must be a bool. Received: {name}={value!r}")
    return bool(value)


def check_count(name: str, value, *, allow_none: bool = False) -> int | None:
    """Returns `value` as a positive int (None passes with `allow_none`), or raises naming `name`.

    Raises:
        TypeError: `value` is not an int (booleans, floats such as 2.0 or NaN, and strings are refused).
        ValueError: `value` is < 1.
    """
    if value is None and allow_none:
        return None
    expected = "a positive int" + (" or None" if allow_none else "")
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"Argument `{name}` must be {expected}. Received: {name}={value!r}")
    if value < 1:
        raise ValueError(f"Argument `{name}` must be {expected}. Received: {name}={value!r}")
    return int(value)


KERAS_OBJECTS = {
    "initializer": initializers,
    "regularizer": regularizers,
    "constraint": constraints,
    "activation": activations,
}


def _keras_object(kind: str, name: str, identifier):
    try:
        return KERAS_OBJECTS[kind].get(identifier)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"Argument `{name}` must be a Keras {kind}: a name, a config dict, an instance or None "
            f"({error}). Received: {name}={identifier!r}"
        ) from error


def get_initializer(name: str, identifier):
    """`keras.initializers.get(identifier)`, or a ValueError naming the argument `name`."""
    return _keras_object("initializer", name, identifier)


def get_regularizer(name: str, identifier):
    """`keras.regularizers.get(identifier)`, or a ValueError naming the argument `name`."""
    return _keras_object("regularizer", name, identifier)


def get_constraint(name: str, identifier):
    """`keras.constraints.get(identifier)`, or a ValueError naming the argument `name`."""
    return _keras_object("constraint", name, identifier)


def get_activation(name: str, identifier):
    """`keras.activations.get(identifier)`, or a ValueError naming the argument `name`."""
    return _keras_object("activation", name, identifier)


GETTERS = {
    "initializer": get_initializer,
    "regularizer": get_regularizer,
    "constraint": get_constraint,
    "activation": get_activation,
}


def broadcastable_mask(layer_name: str, inputs, mask):
    """A Keras mask as a boolean tensor of the input's rank that broadcasts against it.

    A mask of one rank less than the input (as `keras.layers.Masking` and
    `Embedding(mask_zero=True)` make it: one entry per position along the last
    axis) is expanded on the last axis, as Keras does; a mask of the input's
    rank passes. Sizes of 1 broadcast.

    Raises:
        ValueError: If `mask` fits neither form.
    """
    inputs_shape, mask_shape = tuple(inputs.shape), tuple(mask.shape)
    mask = ops.cast(mask, "bool")
    if len(mask_shape) == len(inputs_shape) - 1:
        fits = shape_fits(mask_shape, inputs_shape[:-1], broadcast=True)
        mask = ops.expand_dims(mask, -1)
    else:
        fits = shape_fits(mask_shape, inputs_shape, broadcast=True)
    if not fits:
        raise ValueError(
            f"{layer_name}: the mask must broadcast against the input's shape without its last axis "
            "(as keras.layers.Masking and Embedding(mask_zero=True) make it) or against the input's "
            f"full shape. Received: mask.shape={mask_shape}, inputs.shape={inputs_shape}"
        )
    return mask
