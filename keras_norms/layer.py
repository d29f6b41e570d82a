"""Layer normalization and RMS normalization."""

from __future__ import annotations

import keras
from keras import constraints, initializers, ops, regularizers

from keras_norms import functional as F
from keras_norms._base import (
    AffineNormalization,
    NormalizationLayer,
    check_axes_in_range,
    check_axis_argument,
    check_epsilon,
    check_rank,
    resolve_axes,
)


def _param_shape(input_shape, axes):
    return tuple(input_shape[a] for a in axes)


@keras.saving.register_keras_serializable(package="keras_norms")
class LayerNormalization(AffineNormalization):
    """Layer normalization (Ba et al., 2016).

    Each example is normalized over `axis` (by default its last axis), then
    scaled by `gamma` and shifted by `beta`, which have the shape of the input
    along `axis`. The result does not depend on the batch: the norm of choice
    for recurrent networks and transformers. Arguments, config keys and
    weights are those of `keras.layers.LayerNormalization`.

    Args:
        axis: Axis or list of axes to normalize over (never the batch axis).
        epsilon: Small float added to the variance, > 0.
        center: If `True`, add the learned offset `beta`.
        scale: If `True`, multiply by the learned scale `gamma`.
        beta_initializer, gamma_initializer: Initializers of beta and gamma.
        beta_regularizer, gamma_regularizer: Optional regularizers.
        beta_constraint, gamma_constraint: Optional constraints.
        **kwargs: Base layer arguments (`name`, `dtype`, ...). Keras'
            deprecated `rms_scaling=True` is refused: use `RMSNormalization`.

    Call arguments:
        inputs: Tensor of rank 2 or more, batch first.

    Reference:
        Ba et al., 2016, "Layer Normalization", https://arxiv.org/abs/1607.06450

    Example:

    >>> import keras, keras_norms
    >>> layer = keras_norms.LayerNormalization(axis=[1, 2])
    >>> y = layer(keras.random.normal((4, 10, 16)))
    >>> tuple(layer.gamma.shape)
    (10, 16)
    """

    def __init__(self, axis: int | list[int] = -1, epsilon: float = 1e-3, **kwargs):
        if kwargs.pop("rms_scaling", False):
            raise ValueError(
                "LayerNormalization does not take rms_scaling=True (in Keras it scaled by the "
                "variance, not the root mean square); use keras_norms.RMSNormalization. "
                "Received: rms_scaling=True"
            )
        super().__init__(epsilon=epsilon, **kwargs)
        self.axis = check_axis_argument(axis, allow_list=True)
        self._axes = None

    def build(self, input_shape):
        name = type(self).__name__
        check_rank(name, input_shape, 2)
        self._axes = resolve_axes(name, self.axis, input_shape)
        self.expect_input_shape(input_shape, self._axes)
        self.add_affine_weights(_param_shape(input_shape, self._axes))

    def compute_output_shape(self, input_shape):
        check_axes_in_range(type(self).__name__, self.axis, input_shape)
        return input_shape

    def call(self, inputs):
        inputs = self.prepare(inputs)
        outputs = F.layer_norm(inputs, self.gamma, self.beta, axis=self._axes, epsilon=self.epsilon)
        return ops.cast(outputs, self.compute_dtype)

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}


@keras.saving.register_keras_serializable(package="keras_norms")
class RMSNormalization(NormalizationLayer):
    """Root mean square normalization (Zhang and Sennrich, 2019).

    ``x / sqrt(mean(x^2) + epsilon) * gamma`` over `axis`: the root mean
    square, not the standard deviation (the mean is not subtracted), and no
    offset. Cheaper than layer normalization, and what most current
    transformers use.

    Args:
        axis: Axis or list of axes to normalize over (never the batch axis).
        epsilon: Small float added to the mean square, > 0.
        scale: If `True`, multiply by the learned scale `gamma`.
        gamma_initializer: Initializer of gamma.
        gamma_regularizer: Optional regularizer of gamma.
        gamma_constraint: Optional constraint of gamma.
        **kwargs: Base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: Tensor of rank 2 or more, batch first.

    Reference:
        Zhang and Sennrich, 2019, "Root Mean Square Layer Normalization",
        https://arxiv.org/abs/1910.07467

    Example:

    >>> import keras, keras_norms
    >>> y = keras_norms.RMSNormalization()(keras.random.normal((4, 10, 16)))
    >>> tuple(y.shape)
    (4, 10, 16)
    """

    def __init__(
        self,
        axis: int | list[int] = -1,
        epsilon: float = 1e-6,
        scale: bool = True,
        gamma_initializer="ones",
        gamma_regularizer=None,
        gamma_constraint=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.axis = check_axis_argument(axis, allow_list=True)
        self.epsilon = check_epsilon(epsilon)
        self.scale = bool(scale)
        self.gamma_initializer = initializers.get(gamma_initializer)
        self.gamma_regularizer = regularizers.get(gamma_regularizer)
        self.gamma_constraint = constraints.get(gamma_constraint)
        self.gamma = None
        self._axes = None

    def build(self, input_shape):
        name = type(self).__name__
        check_rank(name, input_shape, 2)
        self._axes = resolve_axes(name, self.axis, input_shape)
        self.expect_input_shape(input_shape, self._axes)
        if self.scale:
            self.gamma = self.add_weight(
                name="gamma",
                shape=_param_shape(input_shape, self._axes),
                initializer=self.gamma_initializer,
                regularizer=self.gamma_regularizer,
                constraint=self.gamma_constraint,
                trainable=True,
                autocast=False,
            )

    def call(self, inputs):
        inputs = self.prepare(inputs)
        outputs = F.rms_norm(inputs, self.gamma, axis=self._axes, epsilon=self.epsilon)
        return ops.cast(outputs, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        check_axes_in_range(type(self).__name__, self.axis, input_shape)
        return input_shape

    def get_config(self):
        config = {
            "axis": self.axis,
            "epsilon": self.epsilon,
            "scale": self.scale,
            "gamma_initializer": initializers.serialize(self.gamma_initializer),
            "gamma_regularizer": regularizers.serialize(self.gamma_regularizer),
            "gamma_constraint": constraints.serialize(self.gamma_constraint),
        }
        return {**super().get_config(), **config}
