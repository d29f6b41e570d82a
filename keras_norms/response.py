"""Filter response normalization and the thresholded linear unit (tensorflow-addons compatible)."""

from __future__ import annotations

import keras
from keras import initializers, ops

from keras_norms import functional as F
from keras_norms._base import AffineNormalization, NormalizationLayer
from keras_norms._checks import check_axis_argument, check_rank


def _check_axis(axis):
    """`axis` as given (an int or a tuple), after checking its type."""
    axis = check_axis_argument(axis, allow_list=True)
    return tuple(axis) if isinstance(axis, list) else axis


def _spatial_axes(layer_name: str, axis, input_shape) -> list[int]:
    """`axis` as sorted non-negative axes, each neither the batch nor the channel (last) axis.

    The spatial sizes may be unknown: only the channel count shapes the weights.
    """
    rank = len(input_shape)
    axes = [axis] if isinstance(axis, int) else list(axis)
    if any(not -rank <= a < rank or a % rank in (0, rank - 1) for a in axes):
        raise ValueError(
            f"{layer_name}: `axis` must list spatial axes of the input, not the batch axis 0 nor "
            f"the channel axis {rank - 1}. Received: axis={axis!r} for input shape {tuple(input_shape)}"
        )
    resolved = sorted(a % rank for a in axes)
    if len(set(resolved)) != len(resolved):
        raise ValueError(f"{layer_name}: duplicate entries in `axis`. Received: axis={axis!r}")
    return resolved


@keras.saving.register_keras_serializable(package="keras_norms")
class FilterResponseNormalization(AffineNormalization):
    r"""Filter response normalization (Singh and Krishnan, 2020).

    Each channel of each example is divided by the root of its mean square
    $\nu^2$ over `axis` (the spatial axes, $N$ positions $i$):

    $$
    \nu^2 = \frac{1}{N} \sum_i x_i^2, \qquad
    y = \gamma \, \frac{x}{\sqrt{\nu^2 + |\epsilon|}} + \beta.
    $$

    The mean is not
    subtracted and no batch statistics are used, so the result does not depend
    on the batch size: an alternative to batch normalization for small
    batches. As the output is not centred, follow it with `TLU` instead of
    ReLU. With `learned_epsilon=True` a trainable `learned_epsilon`
    $\epsilon_l$ (initialized to 1e-4) is added:
    $\sqrt{\nu^2 + |\epsilon| + |\epsilon_l|}$.

    Arguments, config keys and weights are those of tensorflow-addons'
    `FilterResponseNormalization`: `gamma` and `beta` of shape
    `(1, 1, 1, channels)`, and `learned_epsilon` of shape `(1,)` created first,
    so weight lists move between the two with `set_weights`. Channels are last.
    Beyond tensorflow-addons, inputs of rank 3 and 5 work with `axis=[1]` and
    `axis=[1, 2, 3]`, and the spatial sizes need not be known.

    Args:
        epsilon: Small float added to the mean square, > 0.
        axis: The axes to take the mean square over (an int, or a list or
            tuple of ints): spatial axes, never the batch or the channel (last)
            axis.
        beta_initializer: Initializer of `beta`.
        gamma_initializer: Initializer of `gamma`.
        beta_regularizer: Optional regularizer of `beta`.
        gamma_regularizer: Optional regularizer of `gamma`.
        beta_constraint: Optional constraint of `beta`.
        gamma_constraint: Optional constraint of `gamma`.
        learned_epsilon: Add a trainable epsilon.
        learned_epsilon_constraint: Optional constraint of the learned epsilon.
        **kwargs: Base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: Tensor of rank 3 to 5, channels last.

    Input shape:
        inputs: Rank 3 to 5, channels last: `(batch, time, channels)` with
            `axis=[1]`, `(batch, height, width, channels)` with the default
            `axis=[1, 2]`, `(batch, depth, height, width, channels)` with
            `axis=[1, 2, 3]`.

    Output shape:
        The shape of the input.

    Returns:
        The normalized tensor, of the input's shape, in the layer's compute dtype.

    Raises:
        TypeError: If `epsilon` is not a real number, `axis` is not an int
            or a non-empty list or tuple of ints, or `learned_epsilon` is not
            a bool.
        ValueError: If `epsilon` is not finite and > 0, `axis` includes 0, or
            Keras cannot interpret an initializer, regularizer or constraint.
            When building: the input's rank is not 3 to 5, the channel size is
            undefined, or an entry of `axis` is out of range, names the batch
            or the channel axis, or is repeated. When called: the input's rank
            or channel size differs from the built one.

    Reference:
        - Singh and Krishnan, "Filter Response Normalization Layer: Eliminating
          Batch Dependence in the Training of Deep Neural Networks", CVPR 2020.
          [arXiv:1911.09737](https://arxiv.org/abs/1911.09737)

    Examples:
        Each channel is divided by its root mean square over the spatial axes:

        >>> import numpy as np, keras_norms
        >>> x = np.stack([np.full((2, 2), 3.0), np.full((2, 2), -0.5)], axis=-1)[None]
        >>> np.round(np.asarray(keras_norms.FilterResponseNormalization()(x))[0, 0, 0], 3)
        array([ 1., -1.], dtype=float32)
        >>> layer = keras_norms.FilterResponseNormalization(learned_epsilon=True)
        >>> y = layer(np.zeros((2, 8, 8, 16)))
        >>> [(w.name, tuple(w.shape)) for w in layer.weights]
        [('learned_epsilon', (1,)), ('gamma', (1, 1, 1, 16)), ('beta', (1, 1, 1, 16))]
    """

    # `axis` lists the spatial axes (the channels are last): convert_norms does not carry a batch
    # norm's channel axis over to it.
    axis_is_channel_axis = False
    declared_arguments = {
        "epsilon": 1e-6,
        "learned_epsilon": False,
        "beta_initializer": "zeros",
        "gamma_initializer": "ones",
        "beta_regularizer": None,
        "gamma_regularizer": None,
        "beta_constraint": None,
        "gamma_constraint": None,
        "learned_epsilon_constraint": None,
    }

    def __init__(
        self,
        epsilon: float = 1e-6,
        axis: int | tuple[int, ...] | list[int] = (1, 2),
        beta_initializer="zeros",
        gamma_initializer="ones",
        beta_regularizer=None,
        gamma_regularizer=None,
        beta_constraint=None,
        gamma_constraint=None,
        learned_epsilon: bool = False,
        learned_epsilon_constraint=None,
        **kwargs,
    ):
        super().__init__(**self.declared_values(locals()), **kwargs)
        self.axis = _check_axis(axis)
        self.eps_learned = None
        if self.learned_epsilon:
            # Created here, as in tensorflow-addons: its shape does not depend on the input.
            self.eps_learned = self.add_weight(
                name="learned_epsilon",
                shape=(1,),
                initializer=initializers.Constant(1e-4),
                constraint=self.learned_epsilon_constraint,
                trainable=True,
                autocast=False,
            )
        self._axes = None

    def build(self, input_shape):
        name = type(self).__name__
        check_rank(name, input_shape, 3, 5)
        channels = input_shape[-1]
        if channels is None:
            raise ValueError(
                f"{name}: the channel axis (the last one) must have a defined size. "
                f"Received: input_shape={tuple(input_shape)}, axis={self.axis!r}"
            )
        self._axes = _spatial_axes(name, self.axis, input_shape)
        self.expect_input_shape(input_shape, [-1])
        self.add_affine_weights((1,) * (len(input_shape) - 1) + (channels,))

    def call(self, inputs):
        outputs = F.filter_response_norm(
            self.prepare(inputs), self.gamma, self.beta, axis=self._axes, epsilon=self.epsilon,
            learned_epsilon=self.eps_learned,
        )
        return ops.cast(outputs, self.compute_dtype)

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}


@keras.saving.register_keras_serializable(package="keras_norms")
class TLU(NormalizationLayer):
    r"""Thresholded linear unit (Singh and Krishnan, 2020): $y = \max(x, \tau)$, the companion of FRN.

    A ReLU with a learned threshold `tau` (initialized to 0): since filter
    response normalization does not centre its output, a plain ReLU could
    leave a unit dead; the threshold lets the model learn where to cut. Use
    it as the activation after `FilterResponseNormalization`.
    `affine=True` is TLU-affine, $y = \max(x, \alpha x + \tau)$.

    As in tensorflow-addons (same arguments, config keys and weights), `tau`
    and `alpha` have the shape of one example (`input_shape[1:]`, which must be
    fully known). `per_channel=True` gives them the paper's shape instead, one
    value per channel (`(1, ..., 1, channels)`), for inputs of any spatial size.

    Args:
        affine: Learn `alpha` too (TLU-affine).
        tau_initializer: Initializer of `tau`.
        tau_regularizer: Optional regularizer of `tau`.
        tau_constraint: Optional constraint of `tau`.
        alpha_initializer: Initializer of `alpha` (with `affine=True`).
        alpha_regularizer: Optional regularizer of `alpha`.
        alpha_constraint: Optional constraint of `alpha`.
        per_channel: One `tau` (and `alpha`) per channel (last axis) instead
            of one per position.
        **kwargs: Base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: Tensor of rank 2 or more, channels last.

    Input shape:
        inputs: Any rank of 2 or more, channels last, e.g. `(batch,
            height, width, channels)`; the sizes `tau` takes (every
            non-batch size, or the channels with `per_channel=True`) known
            and fixed once built.

    Output shape:
        The shape of the input.

    Returns:
        ``max(inputs, tau)`` (``max(inputs, alpha * inputs + tau)`` with
        `affine=True`), of the input's shape, in the layer's compute dtype.

    Raises:
        TypeError: If `affine` or `per_channel` is not a bool.
        ValueError: If Keras cannot interpret an initializer, regularizer or
            constraint. When building: the input has rank < 2, or a size that
            `tau` takes is undefined (the channel size with `per_channel=True`,
            else any non-batch size). When called: the input's rank or those
            sizes differ from the built ones.

    Reference:
        - Singh and Krishnan, "Filter Response Normalization Layer: Eliminating
          Batch Dependence in the Training of Deep Neural Networks", CVPR 2020.
          [arXiv:1911.09737](https://arxiv.org/abs/1911.09737)

    Examples:
        >>> import numpy as np, keras_norms
        >>> layer = keras_norms.TLU(per_channel=True, tau_initializer="ones")
        >>> np.asarray(layer(np.array([[-2.0, 0.5, 3.0]])))
        array([[1., 1., 3.]], dtype=float32)
    """

    declared_arguments = {
        "affine": False,
        "tau_initializer": "zeros",
        "tau_regularizer": None,
        "tau_constraint": None,
        "alpha_initializer": "zeros",
        "alpha_regularizer": None,
        "alpha_constraint": None,
        "per_channel": False,
    }

    def __init__(
        self,
        affine: bool = False,
        tau_initializer="zeros",
        tau_regularizer=None,
        tau_constraint=None,
        alpha_initializer="zeros",
        alpha_regularizer=None,
        alpha_constraint=None,
        per_channel: bool = False,
        **kwargs,
    ):
        super().__init__(**self.declared_values(locals()), **kwargs)
        self.alpha = None

    def build(self, input_shape):
        name = type(self).__name__
        check_rank(name, input_shape, 2)
        if self.per_channel:
            shape = (1,) * (len(input_shape) - 1) + (input_shape[-1],)
            axes = [-1]
        else:
            shape = tuple(input_shape[1:])
            axes = range(1, len(input_shape))
        if any(size is None for size in shape):
            what = "the channel axis" if self.per_channel else "every axis but the batch"
            raise ValueError(
                f"{name}: {what} must have a defined size, as `tau` has shape {shape}. "
                f"Received: input_shape={tuple(input_shape)}, per_channel={self.per_channel}"
            )
        self.expect_input_shape(input_shape, axes)
        self.tau = self.add_learned_weight("tau", shape)
        if self.affine:
            self.alpha = self.add_learned_weight("alpha", shape)

    def call(self, inputs):
        return ops.cast(F.tlu(self.prepare(inputs), self.tau, self.alpha), self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape
