"""What every normalization layer shares: argument checks and the gamma/beta weights."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import keras
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


_KERAS_OBJECTS = {
    "initializer": initializers,
    "regularizer": regularizers,
    "constraint": constraints,
    "activation": activations,
}


def _keras_object(kind: str, name: str, identifier):
    try:
        return _KERAS_OBJECTS[kind].get(identifier)
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


class NormalizationLayer(keras.layers.Layer):
    """Base of every layer of the package: the dtypes it computes in, and the input shapes it accepts.

    - Inputs are not autocast to the compute dtype. Under a mixed policy a
      float32 input reaches the statistics unrounded (float16 holds nothing
      above 65504), and a float16/bfloat16 input is read as it is; the math in
      `functional.py` runs in float32 either way. A float64 layer computes in
      float64. Statistics never run in less than float32, the weights are
      never autocast, and the output has the compute dtype.
    - A built layer accepts inputs of the rank it was built for, with the
      sizes it was built for on the axes that carry its weights
      (`expect_input_shape` in `build`, `prepare` in `call`).
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.autocast = False
        self.supports_masking = True
        self._expected_input_shape = None
        self._fixed_axes = None
        self._axis_argument = None

    @property
    def statistics_dtype(self) -> str:
        """The dtype of the math: float64 for a float64 layer, float32 otherwise."""
        return "float64" if self.compute_dtype == "float64" else "float32"

    def expect_input_shape(self, input_shape, fixed_axes, *, axis=None) -> None:
        """Records the rank of `input_shape` and its sizes on `fixed_axes` as the accepted inputs.

        With `axis` (the layer's `axis` argument, which resolved to
        `fixed_axes`), inputs of another rank are accepted too where `axis`
        resolves to the same axes counted from the end, of the same sizes: a
        layer built with `axis=-1` for `(batch, time, 8)` takes `(batch, h, w,
        8)`, as Keras' layers do; one built with `axis=1` does not (its axis
        would move).
        """
        fixed = sorted({a % len(input_shape) for a in fixed_axes})
        self._expected_input_shape = tuple(
            size if a in fixed else None for a, size in enumerate(input_shape)
        )
        self._fixed_axes = fixed
        self._axis_argument = axis

    def fixed_axes_of(self, shape) -> list[int] | None:
        """The axes of an input of `shape` that carry the weights, or None if the layer cannot take it."""
        expected = tuple(self._expected_input_shape)
        shape = tuple(shape)
        if shape_fits(shape, expected):
            return list(self._fixed_axes)
        if self._axis_argument is None or len(shape) == len(expected):
            return None
        try:
            axes = resolve_axes(type(self).__name__, self._axis_argument, shape)
        except ValueError:
            return None
        from_end = [a - len(shape) for a in axes]
        if from_end != [a - len(expected) for a in self._fixed_axes]:
            return None
        if any(shape[a] != expected[b] for a, b in zip(axes, self._fixed_axes, strict=True)):
            return None
        return axes

    def prepare(self, inputs):
        """Checks `inputs` against the built shape; returns them in the dtype the math reads.

        Raises:
            ValueError: `inputs` has another rank (unless the layer's axes
                follow it, see `expect_input_shape`), or another size on an
                axis that carries weights, than the layer was built for.
        """
        expected = self._expected_input_shape
        received = tuple(inputs.shape)
        if expected is not None and self.fixed_axes_of(received) is None:
            other_ranks = (
                f"; other ranks only where axis={self._axis_argument!r} lands on the same axes counted "
                f"from the end" if self._axis_argument is not None else ""
            )
            raise ValueError(
                f"{type(self).__name__} {self.name!r} was built for inputs of shape {expected} "
                f"(rank {len(expected)}; None: any size{other_ranks}) and cannot take another shape; "
                f"use a new layer for these inputs. Received: inputs.shape={received}"
            )
        return self.cast_for_math(inputs)

    def cast_for_math(self, tensor):
        """`tensor` as the math reads it: float64 in a float64 layer, never float64 in another.

        Other dtypes pass unchanged (the math upcasts float16 and bfloat16 to
        float32 itself, so a float32 input is never rounded to them).
        """
        dtype = keras.backend.standardize_dtype(tensor.dtype)
        if dtype != self.statistics_dtype and "float64" in (dtype, self.statistics_dtype):
            return ops.cast(tensor, self.statistics_dtype)
        return tensor


class AffineNormalization(NormalizationLayer):
    """Base of the layers with an optional learned scale (gamma) and offset (beta).

    It stores and serializes the shared arguments; subclasses add their own,
    say which axes carry the parameters (`build`) and call `functional.py`.
    """

    def __init__(
        self,
        *,
        epsilon: float = 1e-3,
        center: bool = True,
        scale: bool = True,
        beta_initializer="zeros",
        gamma_initializer="ones",
        beta_regularizer=None,
        gamma_regularizer=None,
        beta_constraint=None,
        gamma_constraint=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.epsilon = check_epsilon(epsilon)
        self.center = check_bool("center", center)
        self.scale = check_bool("scale", scale)
        self.beta_initializer = get_initializer("beta_initializer", beta_initializer)
        self.gamma_initializer = get_initializer("gamma_initializer", gamma_initializer)
        self.beta_regularizer = get_regularizer("beta_regularizer", beta_regularizer)
        self.gamma_regularizer = get_regularizer("gamma_regularizer", gamma_regularizer)
        self.beta_constraint = get_constraint("beta_constraint", beta_constraint)
        self.gamma_constraint = get_constraint("gamma_constraint", gamma_constraint)
        self.gamma = None
        self.beta = None

    def add_affine_weights(self, shape: tuple[int, ...]) -> None:
        """Creates `gamma` (if `scale`) and `beta` (if `center`) of `shape`, never autocast."""
        if self.scale:
            self.gamma = self.add_weight(
                name="gamma",
                shape=shape,
                initializer=self.gamma_initializer,
                regularizer=self.gamma_regularizer,
                constraint=self.gamma_constraint,
                trainable=True,
                autocast=False,
            )
        if self.center:
            self.beta = self.add_weight(
                name="beta",
                shape=shape,
                initializer=self.beta_initializer,
                regularizer=self.beta_regularizer,
                constraint=self.beta_constraint,
                trainable=True,
                autocast=False,
            )

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = {
            "epsilon": self.epsilon,
            "center": self.center,
            "scale": self.scale,
            "beta_initializer": initializers.serialize(self.beta_initializer),
            "gamma_initializer": initializers.serialize(self.gamma_initializer),
            "beta_regularizer": regularizers.serialize(self.beta_regularizer),
            "gamma_regularizer": regularizers.serialize(self.gamma_regularizer),
            "beta_constraint": constraints.serialize(self.beta_constraint),
            "gamma_constraint": constraints.serialize(self.gamma_constraint),
        }
        return {**super().get_config(), **config}
