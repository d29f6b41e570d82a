"""Layer normalization and RMS normalization."""

from __future__ import annotations

import keras
from keras import ops

from keras_norms import functional as F
from keras_norms._base import AffineNormalization
from keras_norms._checks import check_axes_in_range, check_axis_argument, check_rank, resolve_axes


def _param_shape(input_shape, axes):
    return tuple(input_shape[a] for a in axes)


@keras.saving.register_keras_serializable(package="keras_norms")
class LayerNormalization(AffineNormalization):
    r"""Layer normalization (Ba et al., 2016).

    Each example is normalized over `axis` (by default its last axis),

    $$
    y = \frac{x - \mu}{\sqrt{\sigma^2 + \epsilon}} \, \gamma + \beta,
    $$

    with $\mu$ and $\sigma^2$ the mean and variance of that example over
    `axis`; `gamma` and `beta` have the
    shape of the input along `axis`. The result does not depend on the batch:
    the norm of choice for recurrent networks and transformers, and wherever
    batches are small. Arguments, config keys and weights are those of
    `keras.layers.LayerNormalization`.

    Args:
        axis: Axis or list of axes to normalize over (never the batch axis).
        epsilon: Small float added to the variance, > 0.
        **kwargs: The keyword arguments below, and the base layer arguments
            (`name`, `dtype`, ...).

    Keyword Args:
        center: If `True` (default), add the learned offset `beta`.
        scale: If `True` (default), multiply by the learned scale `gamma`.
        beta_initializer: Initializer of `beta` (default `"zeros"`).
        gamma_initializer: Initializer of `gamma` (default `"ones"`).
        beta_regularizer: Optional regularizer of `beta`.
        gamma_regularizer: Optional regularizer of `gamma`.
        beta_constraint: Optional constraint of `beta`.
        gamma_constraint: Optional constraint of `gamma`.
        rms_scaling: Keras' deprecated argument; only `False` is accepted (use
            `RMSNormalization`).

    Call arguments:
        inputs: Tensor of rank 2 or more, batch first. A built layer takes
            another rank too where `axis` lands on the same axes counted from
            the end, of the same sizes (as the default `axis=-1` does: built
            for `(batch, time, 8)`, it takes `(batch, height, width, 8)`).

    Input shape:
        inputs: Any rank of 2 or more, batch first, e.g. `(batch, features)`
            or `(batch, tokens, features)`; the sizes along `axis` fixed once
            built.

    Output shape:
        The shape of the input.

    Returns:
        The normalized tensor, of the input's shape, in the layer's compute dtype.

    Raises:
        TypeError: If `epsilon` is not a real number, `axis` is not an int
            or a non-empty list of ints, or `center` or `scale` is not a bool.
        ValueError: If `rms_scaling=True`, `epsilon` is not finite and > 0,
            `axis` includes 0, or Keras cannot interpret an initializer,
            regularizer or constraint. When building: the input has rank < 2, or an entry of
            `axis` is out of range, names the batch axis, is repeated or has
            an undefined size. When called: the input's sizes along `axis`
            differ from the built ones, or its rank differs and `axis` would
            land on other axes counted from the end.

    Reference:
        - Ba, Kiros and Hinton, "Layer Normalization", 2016.
          [arXiv:1607.06450](https://arxiv.org/abs/1607.06450)

    Examples:
        >>> import numpy as np, keras_norms
        >>> x = np.array([[1.0, 2.0, 3.0, 4.0]])  # mean 2.5, variance 1.25
        >>> np.round(np.asarray(keras_norms.LayerNormalization()(x)), 3)
        array([[-1.341, -0.447,  0.447,  1.341]], dtype=float32)
        >>> layer = keras_norms.LayerNormalization(axis=[1, 2])
        >>> y = layer(np.zeros((4, 10, 16)))
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
        self.expect_input_shape(input_shape, self._axes, axis=self.axis)
        self.add_affine_weights(_param_shape(input_shape, self._axes))

    def compute_output_shape(self, input_shape):
        check_axes_in_range(type(self).__name__, self.axis, input_shape)
        return input_shape

    def call(self, inputs):
        inputs = self.prepare(inputs)
        axes = self.fixed_axes_of(inputs.shape)
        outputs = F.layer_norm(inputs, self.gamma, self.beta, axis=axes, epsilon=self.epsilon,
                               dtype=self.compute_dtype)
        return ops.cast(outputs, self.compute_dtype)

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}


@keras.saving.register_keras_serializable(package="keras_norms")
class RMSNormalization(AffineNormalization):
    r"""Root mean square normalization (Zhang and Sennrich, 2019).

    Each example is divided by its root mean square over `axis`, the $n$
    values $x_i$ there:

    $$
    y = \frac{x}{\sqrt{\frac{1}{n} \sum_{i=1}^{n} x_i^2 + \epsilon}} \, \gamma.
    $$

    The root mean square, not the standard deviation (the mean is not
    subtracted), and no offset. Cheaper than layer normalization, and what
    most current transformers use.

    Args:
        axis: Axis or list of axes to normalize over (never the batch axis).
        epsilon: Small float added to the mean square, > 0.
        scale: If `True`, multiply by the learned scale `gamma` (shape of the
            input along `axis`).
        gamma_initializer: Initializer of `gamma`.
        gamma_regularizer: Optional regularizer of `gamma`.
        gamma_constraint: Optional constraint of `gamma`.
        **kwargs: Base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: Tensor of rank 2 or more, batch first. A built layer takes
            another rank too where `axis` lands on the same axes counted from
            the end, of the same sizes (as the default `axis=-1` does: built
            for `(batch, time, 8)`, it takes `(batch, height, width, 8)`).

    Input shape:
        inputs: Any rank of 2 or more, batch first, e.g. `(batch, features)`
            or `(batch, tokens, features)`; the sizes along `axis` fixed once
            built.

    Output shape:
        The shape of the input.

    Returns:
        The normalized tensor, of the input's shape, in the layer's compute dtype.

    Raises:
        TypeError: If `epsilon` is not a real number, `axis` is not an int
            or a non-empty list of ints, or `scale` is not a bool.
        ValueError: If `epsilon` is not finite and > 0, `axis` includes 0, or
            Keras cannot interpret an initializer, regularizer or constraint.
            When building: the input has rank < 2, or an entry of `axis` is out of
            range, names the batch axis, is repeated or has an undefined size.
            When called: the input's sizes along `axis` differ from the built
            ones, or its rank differs and `axis` would land on other axes
            counted from the end.

    Reference:
        - Zhang and Sennrich, "Root Mean Square Layer Normalization", NeurIPS 2019.
          [arXiv:1910.07467](https://arxiv.org/abs/1910.07467)

    Examples:
        The mean is not subtracted: a constant row becomes ones (layer
        normalization would make it zeros).

        >>> import numpy as np, keras_norms
        >>> x = np.array([[2.0, 2.0, 2.0, 2.0], [3.0, 4.0, 3.0, 4.0]])
        >>> np.round(np.asarray(keras_norms.RMSNormalization()(x)), 3)
        array([[1.   , 1.   , 1.   , 1.   ],
               [0.849, 1.131, 0.849, 1.131]], dtype=float32)
    """

    declared_arguments = {
        "epsilon": 1e-6,
        "scale": True,
        "gamma_initializer": "ones",
        "gamma_regularizer": None,
        "gamma_constraint": None,
    }

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
        super().__init__(**self.declared_values(locals()), **kwargs)
        self.axis = check_axis_argument(axis, allow_list=True)
        self._axes = None

    def build(self, input_shape):
        name = type(self).__name__
        check_rank(name, input_shape, 2)
        self._axes = resolve_axes(name, self.axis, input_shape)
        self.expect_input_shape(input_shape, self._axes, axis=self.axis)
        self.add_affine_weights(_param_shape(input_shape, self._axes))

    def call(self, inputs):
        inputs = self.prepare(inputs)
        outputs = F.rms_norm(inputs, self.gamma, axis=self.fixed_axes_of(inputs.shape), epsilon=self.epsilon,
                             dtype=self.compute_dtype)
        return ops.cast(outputs, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        check_axes_in_range(type(self).__name__, self.axis, input_shape)
        return input_shape

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}
