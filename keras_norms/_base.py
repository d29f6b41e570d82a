"""What every normalization layer shares: argument checks and the gamma/beta weights."""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import keras
from keras import constraints, initializers, regularizers


def check_epsilon(epsilon) -> float:
    """Returns `epsilon` as a float, or raises if it is not a positive number."""
    if isinstance(epsilon, bool) or not isinstance(epsilon, numbers.Real):
        raise TypeError(f"Argument `epsilon` must be a positive float. Received: epsilon={epsilon!r}")
    if not epsilon > 0:
        raise ValueError(
            f"Argument `epsilon` must be > 0 (it keeps the division finite). Received: epsilon={epsilon!r}"
        )
    return float(epsilon)


def check_fraction(name: str, value) -> float:
    """Returns `value` as a float in [0, 1] (a momentum), or raises naming `name`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"Argument `{name}` must be a float in [0, 1]. Received: {name}={value!r}")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"Argument `{name}` must be in [0, 1]. Received: {name}={value!r}")
    return float(value)


def check_axis_argument(axis, *, allow_list: bool = False) -> int | list[int]:
    """Validates the type of an `axis` argument (the range is checked in `build`)."""
    if allow_list and isinstance(axis, (list, tuple)):
        if not axis or not all(isinstance(a, int) and not isinstance(a, bool) for a in axis):
            raise TypeError(
                f"Argument `axis` must be an int or a non-empty list of ints. Received: axis={axis!r}"
            )
        return list(axis)
    if isinstance(axis, bool) or not isinstance(axis, int):
        expected = "an int or a list of ints" if allow_list else "an int"
        raise TypeError(f"Argument `axis` must be {expected}. Received: axis={axis!r}")
    return axis


def resolve_axes(layer_name: str, axis: int | Sequence[int], input_shape) -> list[int]:
    """Maps `axis` to non-negative axes of `input_shape`, which must be defined and not the batch.

    Raises:
        ValueError: an axis out of range, the batch axis, or an undefined dimension.
    """
    rank = len(input_shape)
    axes = [axis] if isinstance(axis, int) else list(axis)
    resolved = []
    for a in axes:
        if not -rank <= a < rank:
            raise ValueError(
                f"{layer_name}: axis {a} is out of range for an input of rank {rank} "
                f"(shape {tuple(input_shape)}). Received: axis={axis!r}"
            )
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


class AffineNormalization(keras.layers.Layer):
    """Base of the layers with an optional learned scale (gamma) and offset (beta).

    It stores and serializes the shared arguments; subclasses add their own,
    say which axes carry the parameters (`build`) and call `functional.py`.
    Statistics and normalization run in float32 whatever the dtype policy; the
    weights are never autocast and the output has the compute dtype.
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
        self.center = bool(center)
        self.scale = bool(scale)
        self.beta_initializer = initializers.get(beta_initializer)
        self.gamma_initializer = initializers.get(gamma_initializer)
        self.beta_regularizer = regularizers.get(beta_regularizer)
        self.gamma_regularizer = regularizers.get(gamma_regularizer)
        self.beta_constraint = constraints.get(beta_constraint)
        self.gamma_constraint = constraints.get(gamma_constraint)
        self.supports_masking = True
        self.gamma = None
        self.beta = None

    def add_affine_weights(self, shape: tuple[int, ...]) -> None:
        """Creates `gamma` (if `scale`) and `beta` (if `center`) of `shape`, in float32."""
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
