"""What every normalization layer shares: argument checks, declared arguments and the base classes.

`NormalizationLayer` (every layer), `AffineNormalization` (the layers with gamma and beta) and
`ConditionedNormalization` (the layers called as `layer(inputs, condition)`) are public, as
`keras_norms.NormalizationLayer`, `keras_norms.AffineNormalization` and
`keras_norms.ConditionedNormalization`.
"""

from __future__ import annotations

import keras
from keras import ops

from keras_norms._checks import (
    GETTERS,
    KERAS_OBJECTS,
    check_bool,
    check_epsilon,
    resolve_axes,
    shape_fits,
)


def _kind(argument: str) -> str:
    """The kind of a declared argument, from its name: `*_initializer` an initializer, and so on."""
    return argument.rpartition("_")[2]


def _checked_argument(argument: str, value):
    if argument == "epsilon":
        return check_epsilon(value)
    getter = GETTERS.get(_kind(argument))
    return check_bool(argument, value) if getter is None else getter(argument, value)


def _argument_config(argument: str, value):
    kind = _kind(argument)
    return KERAS_OBJECTS[kind].serialize(value) if kind in KERAS_OBJECTS else value


class NormalizationLayer(keras.layers.Layer):
    """Base of every layer of the package: its dtypes, the input shapes it accepts, its declared arguments.

    - Inputs are not autocast to the compute dtype. Under a mixed policy a
      float32 input reaches the statistics unrounded (float16 holds nothing
      above 65504), and a float16/bfloat16 input is read as it is; the math in
      `keras_norms.functional` runs in float32 either way. A float64 layer computes in
      float64. Statistics never run in less than float32, the weights are
      never autocast, and the output has the compute dtype.
    - A built layer accepts inputs of the rank it was built for, with the
      sizes it was built for on the axes that carry its weights
      (`expect_input_shape` in `build`, `prepare` in `call`).
    - The arguments a subclass lists in `declared_arguments` are checked,
      stored as attributes of their names and written to the config here,
      each the way its name says: `epsilon` a float > 0; `*_initializer`,
      `*_regularizer`, `*_constraint` and `activation` Keras objects (the
      config holds them serialized); any other name a bool (a switch such as
      `scale`). `add_learned_weight` creates a weight from its
      `<weight>_initializer`, `<weight>_regularizer` and `<weight>_constraint`.

    A subclass whose signature lists its declared arguments passes them on
    with `super().__init__(**self.declared_values(locals()), **kwargs)`; one
    whose signature does not takes them in `**kwargs`, with the defaults of
    `declared_arguments`.

    Args:
        **kwargs: The declared arguments, and the base layer arguments
            (`name`, `dtype`, `trainable`, ...).

    Call arguments:
        inputs: As the subclass defines them; `prepare(inputs)` checks them
            against the shape the layer was built for.

    Input shape:
        inputs: As the subclass defines it; once built, the layer takes the
            rank and the sizes it was built for on the axes that carry its
            weights.

    Output shape:
        As the subclass defines it: the shape of the input for the
        normalizations of the package.

    Raises:
        TypeError: If a declared bool is not a bool, or `epsilon` is not a number.
        ValueError: If `epsilon` is not finite and > 0, or Keras cannot
            interpret a declared initializer, regularizer, constraint or
            activation (each error names the argument and its value). When
            called, if `prepare` gets inputs of a shape the layer was not
            built for.

    Examples:
        A layer that subtracts the mean over the last axis and adds a learned
        offset, whose initializer and regularizer are arguments:

        >>> import keras, keras_norms, numpy as np
        >>> class MeanCentering(keras_norms.NormalizationLayer):
        ...     declared_arguments = {"offset_initializer": "zeros", "offset_regularizer": None}
        ...
        ...     def build(self, input_shape):
        ...         self.expect_input_shape(input_shape, [-1])
        ...         self.offset = self.add_learned_weight("offset", (input_shape[-1],))
        ...
        ...     def call(self, inputs):
        ...         inputs = self.prepare(inputs)
        ...         centered = inputs - keras.ops.mean(inputs, axis=-1, keepdims=True)
        ...         return keras.ops.cast(centered + self.offset, self.compute_dtype)
        >>> layer = MeanCentering(offset_initializer="ones")
        >>> np.asarray(layer(np.array([[1.0, 2.0, 6.0]])))
        array([[-1.,  0.,  4.]], dtype=float32)
        >>> type(layer.offset_initializer).__name__, layer.get_config()["offset_initializer"]["class_name"]
        ('Ones', 'Ones')
    """

    declared_arguments: dict = {}
    """The constructor arguments this class checks, stores and writes to the config, with their defaults.

    In the order of the config; the class docstring says how a name is checked.
    """

    def __init__(self, **kwargs):
        arguments = {name: kwargs.pop(name, default) for name, default in self.declared_arguments.items()}
        super().__init__(**kwargs)
        self.autocast = False
        self.supports_masking = True
        self._expected_input_shape = None
        self._fixed_axes = None
        self._axis_argument = None
        for name, value in arguments.items():
            setattr(self, name, _checked_argument(name, value))

    @classmethod
    def declared_values(cls, arguments: dict) -> dict:
        """The entries of `arguments` that `declared_arguments` names, for the base constructor.

        Args:
            arguments: A constructor's arguments by name (its `locals()` as its body starts).

        Returns:
            The declared arguments among them, by name.
        """
        return {name: arguments[name] for name in cls.declared_arguments if name in arguments}

    def add_learned_weight(self, name: str, shape, *, arguments: str | None = None):
        """Creates the trainable weight `name` of `shape` (never autocast) from its declared arguments.

        Args:
            name: The weight's name.
            shape: Its shape.
            arguments: The prefix of its arguments, `name` by default: the
                initializer is the attribute `<arguments>_initializer`, the
                regularizer and constraint `<arguments>_regularizer` and
                `<arguments>_constraint` where the layer has them (None otherwise).

        Returns:
            The new variable.
        """
        prefix = name if arguments is None else arguments
        return self.add_weight(
            name=name,
            shape=tuple(shape),
            initializer=getattr(self, f"{prefix}_initializer"),
            regularizer=getattr(self, f"{prefix}_regularizer", None),
            constraint=getattr(self, f"{prefix}_constraint", None),
            trainable=True,
            autocast=False,
        )

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
        if shape == expected:  # the built shape itself, the common case (eager PyTorch asks at every call)
            return list(self._fixed_axes)
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

    def get_config(self):
        declared = {name: _argument_config(name, getattr(self, name)) for name in self.declared_arguments}
        return {**super().get_config(), **declared}


class AffineNormalization(NormalizationLayer):
    """Base of the layers with a learned scale `gamma` and offset `beta`, each of the given shape.

    By default a subclass takes the arguments of Keras' normalization layers,
    in `**kwargs` or in its own signature: `epsilon`, `center` (`beta`),
    `scale` (`gamma`), and an initializer, a regularizer and a constraint for
    each weight. A layer with other affine weights or defaults declares its
    own `declared_arguments`: `keras_norms.RMSNormalization` declares `scale`
    and the `gamma_*` arguments alone (it has no `beta`, and refuses
    `center`), `keras_norms.FilterResponseNormalization` both weights
    without the switches. In `build`, `add_affine_weights(shape)` creates
    the declared weights, `gamma` then `beta`, each unless its switch is
    off; they are `None` otherwise.

    Args:
        **kwargs: The arguments below that the subclass declares, and the base
            layer arguments (`name`, `dtype`, `trainable`, ...).

    Keyword Args:
        epsilon: Small float added to the variance, > 0 (default 1e-3).
        center: If `True` (default), add the learned offset `beta`.
        scale: If `True` (default), multiply by the learned scale `gamma`.
        beta_initializer: Initializer of `beta` (default `"zeros"`).
        gamma_initializer: Initializer of `gamma` (default `"ones"`).
        beta_regularizer: Optional regularizer of `beta`.
        gamma_regularizer: Optional regularizer of `gamma`.
        beta_constraint: Optional constraint of `beta`.
        gamma_constraint: Optional constraint of `gamma`.

    Call arguments:
        inputs: As the subclass defines them.

    Input shape:
        inputs: As the subclass defines it.

    Output shape:
        As the subclass defines it.

    Raises:
        TypeError: If `epsilon` is not a number, or `center` or `scale` is not a bool.
        ValueError: If `epsilon` is not finite and > 0, or Keras cannot
            interpret an initializer, regularizer or constraint; if the
            subclass does not declare an argument it is given, Keras refuses
            it as an unrecognized keyword argument.

    Examples:
        A layer normalization with a scale and no offset, declaring `gamma`
        alone (the layer refuses `center`):

        >>> import keras, keras_norms, numpy as np
        >>> class ScaledLayerNormalization(keras_norms.AffineNormalization):
        ...     declared_arguments = {"epsilon": 1e-3, "scale": True, "gamma_initializer": "ones",
        ...                           "gamma_regularizer": None, "gamma_constraint": None}
        ...
        ...     def build(self, input_shape):
        ...         self.expect_input_shape(input_shape, [-1])
        ...         self.add_affine_weights((input_shape[-1],))
        ...
        ...     def call(self, inputs):
        ...         outputs = keras_norms.functional.layer_norm(self.prepare(inputs), self.gamma,
        ...                                                     axis=-1, epsilon=self.epsilon)
        ...         return keras.ops.cast(outputs, self.compute_dtype)
        >>> layer = ScaledLayerNormalization(gamma_initializer="ones")
        >>> np.round(np.asarray(layer(np.array([[1.0, 2.0, 3.0, 4.0]]))), 3)
        array([[-1.341, -0.447,  0.447,  1.341]], dtype=float32)
        >>> [w.name for w in layer.weights], layer.beta, "center" in layer.get_config()
        (['gamma'], None, False)
    """

    declared_arguments = {
        "epsilon": 1e-3,
        "center": True,
        "scale": True,
        "beta_initializer": "zeros",
        "gamma_initializer": "ones",
        "beta_regularizer": None,
        "gamma_regularizer": None,
        "beta_constraint": None,
        "gamma_constraint": None,
    }

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.gamma = None
        self.beta = None

    def add_affine_weights(self, shape) -> None:
        """Creates the declared affine weights of `shape`: `gamma` (unless `scale=False`), then `beta`.

        Args:
            shape: The shape of each weight.
        """
        declared = self.declared_arguments
        for weight, switch in (("gamma", "scale"), ("beta", "center")):
            if f"{weight}_initializer" in declared and (switch not in declared or getattr(self, switch)):
                setattr(self, weight, self.add_learned_weight(weight, shape))

    def compute_output_shape(self, input_shape):
        return input_shape


class ConditionedNormalization(NormalizationLayer):
    """Base of the layers called as `layer(inputs, condition)`: the condition check, projections, statistics.

    The conditional, adaptive and SPADE layers take their parameters from a
    second input, the condition. A subclass:

    - says which conditions fit in `condition_problem` (by default a vector
      per example, `vector_problem`), and calls `check_condition` in `build`
      and `call`: a condition that does not fit, or whose batch size differs
      from that of the inputs, raises a `ValueError` naming both shapes. It
      records the condition's feature count in `condition_features` when it
      is built, so that later conditions must have it too;
    - creates its projections of the condition with `add_projection`, from
      its declared `kernel_*` and `bias_*` arguments;
    - if it normalizes with the moving statistics of a
      `keras_norms.BatchNormalization`, holds that layer in `normalization`:
      `freeze_statistics` then reads and sets its `freeze_statistics`.

    Attributes:
        condition_name: What the errors call the condition (`"condition"`, or
            `"style"` in `AdaptiveInstanceNormalization`).
        condition_features: The size of the last axis of the condition the
            layer was built for, or `None`.
        normalization: The batch normalization that computes the
            statistics, or `None`.

    Args:
        **kwargs: The declared arguments (see `keras_norms.NormalizationLayer`)
            and the base layer arguments (`name`, `dtype`, `trainable`, ...).

    Call arguments:
        inputs: The tensor to normalize, as the subclass defines it.
        condition: The condition, of the batch size of `inputs`.

    Input shape:
        inputs: As the subclass defines it.
        condition: By default (`vector_problem`) `(batch, features)`, with
            the `condition_features` of the built layer.

    Output shape:
        As the subclass defines it.

    Raises:
        ValueError: From `check_condition`, if the condition does not fit the
            inputs (see `condition_problem`) or has another batch size.

    Examples:
        A scale per example and channel projected from a conditioning vector,
        ``x * (1 + c @ kernel + bias)``:

        >>> import keras, keras_norms, numpy as np
        >>> class ConditionalScale(keras_norms.ConditionedNormalization):
        ...     declared_arguments = {"kernel_initializer": "zeros", "bias_initializer": "zeros"}
        ...
        ...     def build(self, inputs_shape, condition_shape):
        ...         self.check_condition(inputs_shape, condition_shape)
        ...         self.expect_input_shape(inputs_shape, [-1])
        ...         self.condition_features = condition_shape[-1]
        ...         self.kernel, self.bias = self.add_projection((self.condition_features, inputs_shape[-1]))
        ...
        ...     def call(self, inputs, condition):
        ...         inputs = self.prepare(inputs)
        ...         self.check_condition(inputs.shape, condition.shape)
        ...         scale = 1.0 + keras.ops.matmul(condition, self.kernel) + self.bias
        ...         return keras.ops.cast(inputs * scale[:, None, :], self.compute_dtype)
        >>> layer = ConditionalScale()
        >>> x, c = np.ones((2, 5, 8), "float32"), np.ones((2, 3), "float32")
        >>> bool((np.asarray(layer(x, c)) == x).all()), tuple(layer.kernel.shape)
        (True, (3, 8))
        >>> layer.check_condition((2, 5, 8), (3, 3))  # as a call with another batch size of conditions
        Traceback (most recent call last):
        ...
        ValueError: ConditionalScale: the condition must have the batch size of the inputs. Received: ...
    """

    condition_name = "condition"
    # The layers of keras_norms.conditional and SPADE restate both shapes before the problem, and word
    # some problems otherwise: their messages stay as they were.
    _restate_shapes = False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.condition_features = None
        self.normalization = None
        self._freeze_statistics = False

    @property
    def freeze_statistics(self) -> bool:
        """Normalize with the moving statistics and leave them as they are, also in training.

        The `freeze_statistics` of `normalization`; a layer without one keeps
        the value (and has no statistics to freeze). Set it on a built layer,
        then compile again.
        """
        if self.normalization is not None:
            return self.normalization.freeze_statistics
        return self._freeze_statistics

    @freeze_statistics.setter
    def freeze_statistics(self, value: bool) -> None:
        self._freeze_statistics = bool(value)
        if self.normalization is not None:
            self.normalization.freeze_statistics = bool(value)

    def condition_problem(self, inputs_shape, condition_shape, integer: bool | None) -> str | None:
        """Why a condition of `condition_shape` does not fit inputs of `inputs_shape`, or None if it fits.

        Subclasses override it; this default takes a vector per example
        (`vector_problem`). The batch sizes are compared by `check_condition`.

        Args:
            inputs_shape: The shape of the inputs.
            condition_shape: The shape of the condition.
            integer: Whether the condition has an integer dtype (None where
                it is not known, as in `build`).

        Returns:
            The problem, worded to follow "the condition does not fit:", or None.
        """
        return self.vector_problem(condition_shape)

    def vector_problem(self, condition_shape: tuple) -> str | None:
        """Why `condition_shape` is not that of a vector per example, `(batch, condition_features)`.

        Args:
            condition_shape: The shape of the condition.

        Returns:
            The problem (not of rank 2, an undefined feature count, or
            another than the layer was built for), or None.
        """
        name, features, restate = self.condition_name, self.condition_features, self._restate_shapes
        if len(condition_shape) != 2:
            if restate:
                return f"the {name} must be a batch of vectors, of rank 2, not rank {len(condition_shape)}"
            return f"the {name} must be a vector per example, of shape (batch, features)"
        if condition_shape[-1] is None:
            if restate:
                return f"the {name}'s last axis must have a defined size"
            return f"the feature axis of the {name} must have a defined size"
        if features is not None and condition_shape[-1] != features:
            if restate:
                return f"the layer was built for {name}s of {features} features, not {condition_shape[-1]}"
            return f"the layer was built for a {name} of {features} features"
        return None

    def check_condition(self, inputs_shape, condition_shape, integer: bool | None = None) -> None:
        """Raises unless a condition of `condition_shape` fits inputs of `inputs_shape`.

        Args:
            inputs_shape: The shape of the inputs.
            condition_shape: The shape of the condition.
            integer: Whether the condition has an integer dtype, if known.

        Raises:
            ValueError: If `condition_problem` finds a problem, or the known
                batch sizes differ; the message names both shapes.
        """
        inputs_shape, condition_shape = tuple(inputs_shape), tuple(condition_shape)
        problem = self.condition_problem(inputs_shape, condition_shape, integer)
        if problem is None and condition_shape:
            batch, condition_batch = inputs_shape[0], condition_shape[0]
            if batch is not None and condition_batch is not None and batch != condition_batch:
                problem = (f"the batch sizes differ ({condition_batch} != {batch})" if self._restate_shapes
                           else f"the {self.condition_name} must have the batch size of the inputs")
        if problem is not None:
            raise self.condition_error(inputs_shape, condition_shape, problem)

    def condition_error(self, inputs_shape, condition_shape, problem: str) -> ValueError:
        """The error for a condition that does not fit the inputs, naming both shapes.

        Args:
            inputs_shape: The shape of the inputs.
            condition_shape: The shape of the condition.
            problem: What does not fit.

        Returns:
            The `ValueError` to raise.
        """
        inputs_shape, condition_shape = tuple(inputs_shape), tuple(condition_shape)
        if self._restate_shapes:
            problem = (f"a {self.condition_name} of shape {condition_shape} does not fit inputs of shape "
                       f"{inputs_shape}: {problem}")
        return ValueError(
            f"{type(self).__name__}: {problem}. Received: inputs.shape={inputs_shape}, "
            f"{self.condition_name}.shape={condition_shape}"
        )

    def add_projection(self, kernel_shape, *, name: str | None = None) -> tuple:
        """Creates a projection of the condition: a kernel, and a bias of its last size.

        Their initializers and regularizers are the declared `kernel_*` and
        `bias_*` arguments; both are trainable and never autocast.

        Args:
            kernel_shape: The shape of the kernel (`(features, units)` for a
                dense projection, `(height, width, in, out)` for a convolution).
            name: Names the weights `<name>_kernel` and `<name>_bias`
                (`kernel` and `bias` without it).

        Returns:
            `(kernel, bias)`.
        """
        prefix = "" if name is None else f"{name}_"
        kernel = self.add_learned_weight(f"{prefix}kernel", kernel_shape, arguments="kernel")
        bias = self.add_learned_weight(f"{prefix}bias", (kernel_shape[-1],), arguments="bias")
        return kernel, bias
