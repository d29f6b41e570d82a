"""What every normalization layer shares: argument checks and the gamma/beta weights."""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import keras
from keras import constraints, initializers, ops, regularizers


def check_epsilon(epsilon) -> float:
    """Returns `epsilon` as a float, or raises if it is not a positive number."""
    if isinstance(epsilon, bool) or not isinstance(epsilon, numbers.Real):
        raise TypeError(f"Argument `epsilon` must be a positive float. Received: epsilon={epsilon!r}")
    if not epsilon > 0:
        raise ValueError(
            f"Argument `epsilon` must be > 0 (it keeps the division finite). Received: epsilon={epsilon!r}"
        )
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

    @property
    def statistics_dtype(self) -> str:
        """The dtype of the math: float64 for a float64 layer, float32 otherwise."""
        return "float64" if self.compute_dtype == "float64" else "float32"

    def expect_input_shape(self, input_shape, fixed_axes) -> None:
        """Records the rank of `input_shape` and its sizes on `fixed_axes` as the accepted inputs."""
        fixed = {a % len(input_shape) for a in fixed_axes}
        self._expected_input_shape = tuple(
            size if axis in fixed else None for axis, size in enumerate(input_shape)
        )

    def prepare(self, inputs):
        """Checks `inputs` against the built shape; returns them in the dtype the math reads.

        Raises:
            ValueError: `inputs` has another rank, or another size on an axis
                that carries weights, than the layer was built for.
        """
        expected = self._expected_input_shape
        received = tuple(inputs.shape)
        if expected is not None and not shape_fits(received, expected):
            raise ValueError(
                f"{type(self).__name__} {self.name!r} was built for inputs of shape {expected} "
                f"(rank {len(expected)}; None: any size) and cannot take another shape; use a new "
                f"layer for these inputs. Received: inputs.shape={received}"
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
        self.center = bool(center)
        self.scale = bool(scale)
        self.beta_initializer = initializers.get(beta_initializer)
        self.gamma_initializer = initializers.get(gamma_initializer)
        self.beta_regularizer = regularizers.get(beta_regularizer)
        self.gamma_regularizer = regularizers.get(gamma_regularizer)
        self.beta_constraint = constraints.get(beta_constraint)
        self.gamma_constraint = constraints.get(gamma_constraint)
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
