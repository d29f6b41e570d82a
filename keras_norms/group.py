"""Group and instance normalization."""

from __future__ import annotations

import warnings

import keras
from keras import ops

from keras_norms import functional as F
from keras_norms._base import AffineNormalization, check_axis_argument, check_rank, resolve_axes


@keras.saving.register_keras_serializable(package="keras_norms")
class GroupNormalization(AffineNormalization):
    """Group normalization (Wu and He, 2018).

    The channels are split into `groups` consecutive groups and every example
    is normalized within each group, over the group's channels and all other
    non-batch axes; then each channel gets its own `gamma` and `beta`. The
    result does not depend on the batch, so it stays stable at batch size 1 or 2
    where batch normalization degrades. `groups=1` is layer normalization over
    all non-batch axes, `groups=-1` (one channel per group) instance
    normalization.

    Arguments, config keys and weights (`gamma`, `beta`, shape `(channels,)`)
    are those of `keras.layers.GroupNormalization` and of tensorflow-addons'
    `GroupNormalization`. No intermediate tensor has a higher rank than the
    input, so exported graphs never grow a 4D image into 5D.

    Args:
        groups: Number of groups; must divide the number of channels. `-1`
            means one channel per group.
        axis: The channel axis: `-1` (channels last) or `1` (channels first).
        epsilon: Small float added to the variance, > 0.
        center: If `True`, add the learned offset `beta`.
        scale: If `True`, multiply by the learned scale `gamma`.
        beta_initializer, gamma_initializer: Initializers of beta and gamma.
        beta_regularizer, gamma_regularizer: Optional regularizers.
        beta_constraint, gamma_constraint: Optional constraints.
        **kwargs: Base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: Tensor of rank 2 to 5, batch first.

    Reference:
        Wu and He, 2018, "Group Normalization", https://arxiv.org/abs/1803.08494

    Example:

    >>> import keras, keras_norms
    >>> layer = keras_norms.GroupNormalization(groups=4)
    >>> y = layer(keras.random.normal((2, 8, 8, 16)))
    >>> tuple(y.shape), tuple(layer.gamma.shape)
    ((2, 8, 8, 16), (16,))
    """

    def __init__(self, groups: int = 32, axis: int = -1, epsilon: float = 1e-3, **kwargs):
        if isinstance(groups, bool) or not isinstance(groups, int):
            raise TypeError(
                "Argument `groups` must be a positive int, or -1 for one channel per group. "
                f"Received: groups={groups!r}"
            )
        if groups == 0 or groups < -1:
            raise ValueError(
                "Argument `groups` must be a positive int, or -1 for one channel per group. "
                f"Received: groups={groups}"
            )
        super().__init__(epsilon=epsilon, **kwargs)
        self.groups = groups
        self.axis = check_axis_argument(axis)

    def build(self, input_shape):
        name = type(self).__name__
        check_rank(name, input_shape, 2, 5)
        (axis,) = resolve_axes(name, self.axis, input_shape)
        channels = input_shape[axis]
        if self.groups > channels:
            raise ValueError(
                f"{name}: the number of groups cannot exceed the number of channels "
                f"({channels}, on axis {self.axis} of input shape {tuple(input_shape)}). "
                f"Received: groups={self.groups}"
            )
        if self.groups != -1 and channels % self.groups:
            raise ValueError(
                f"{name}: the number of groups must divide the number of channels "
                f"({channels}, on axis {self.axis} of input shape {tuple(input_shape)}). "
                f"Received: groups={self.groups}"
            )
        if len(input_shape) == 2 and self.groups in (-1, channels):
            warnings.warn(
                f"{name} with one channel per group on rank-2 inputs normalizes every value alone, so "
                "its output is `beta`: it needs an axis besides batch and channels. Received: "
                f"input_shape={tuple(input_shape)}, groups={self.groups}",
                stacklevel=2,
            )
        self.expect_input_shape(input_shape, [axis])
        self.add_affine_weights((channels,))

    def call(self, inputs):
        inputs = self.prepare(inputs)
        outputs = F.group_norm(
            inputs, self.groups, self.gamma, self.beta, axis=self.axis, epsilon=self.epsilon
        )
        return ops.cast(outputs, self.compute_dtype)

    def get_config(self):
        return {**super().get_config(), "groups": self.groups, "axis": self.axis}


@keras.saving.register_keras_serializable(package="keras_norms")
class InstanceNormalization(GroupNormalization):
    """Instance normalization (Ulyanov et al., 2016): group normalization with one channel per group.

    Each channel of each example is normalized over its spatial (or time) axes,
    then scaled and shifted per channel. It is the norm of style transfer: it
    removes each image's contrast. tensorflow-addons-compatible arguments,
    config keys and weights; building the layer never changes its config.

    Args:
        axis: The channel axis: `-1` (channels last) or `1` (channels first).
        epsilon: Small float added to the variance, > 0.
        center, scale, beta_initializer, gamma_initializer, beta_regularizer,
            gamma_regularizer, beta_constraint, gamma_constraint: As in
            `GroupNormalization`.
        **kwargs: Base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: Tensor of rank 2 to 5. On rank 2 (no axis besides batch and
            channels) each value is normalized alone and the output is `beta`,
            as in tensorflow-addons; the layer warns.

    Reference:
        Ulyanov et al., 2016, "Instance Normalization: The Missing Ingredient
        for Fast Stylization", https://arxiv.org/abs/1607.08022

    Example:

    >>> import keras, keras_norms
    >>> y = keras_norms.InstanceNormalization()(keras.random.normal((2, 8, 8, 3)))
    >>> tuple(y.shape)
    (2, 8, 8, 3)
    """

    def __init__(self, axis: int = -1, epsilon: float = 1e-3, **kwargs):
        groups = kwargs.pop("groups", -1)
        if groups != -1:
            # As tensorflow-addons, whose configs carry `groups`: overridden, with a warning.
            warnings.warn(
                "InstanceNormalization always uses one channel per group: use GroupNormalization for "
                f"other group counts. Received: groups={groups!r} (ignored)",
                stacklevel=2,
            )
        super().__init__(groups=-1, axis=axis, epsilon=epsilon, **kwargs)


    @classmethod
    def from_config(cls, config):
        # tensorflow-addons configs carry `groups` (-1, or the channel count once built).
        config = dict(config)
        config.pop("groups", None)
        return cls(**config)

    def get_config(self):
        config = super().get_config()
        del config["groups"]
        return config
