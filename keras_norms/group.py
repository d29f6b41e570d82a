"""Group and instance normalization."""

from __future__ import annotations

import warnings

import keras
from keras import ops

from keras_norms import functional as F
from keras_norms._base import AffineNormalization
from keras_norms._checks import (
    broadcastable_mask,
    check_axis_argument,
    check_groups,
    check_rank,
    resolve_axes,
)


@keras.saving.register_keras_serializable(package="keras_norms")
class GroupNormalization(AffineNormalization):
    r"""Group normalization (Wu and He, 2018).

    The channels are split into `groups` consecutive groups and every example
    is normalized within each group $g$, over the group's channels and all
    other non-batch axes, then each channel $c$ gets its own `gamma` and `beta`:

    $$
    y_c = \frac{x_c - \mu_g}{\sqrt{\sigma_g^2 + \epsilon}} \, \gamma_c + \beta_c.
    $$

    The result does not
    depend on the batch, so it stays stable at batch size 1 or 2 where batch
    normalization degrades (detection, segmentation, video, micro-batch
    training). `groups=1` is layer normalization over all non-batch axes,
    `groups=-1` (one channel per group) instance normalization.

    Arguments, config keys and weights (`gamma`, `beta`, shape `(channels,)`)
    are those of `keras.layers.GroupNormalization` and of tensorflow-addons'
    `GroupNormalization`. No intermediate tensor has a higher rank than the
    input, so exported graphs never grow a 4D image into 5D.

    Args:
        groups: Number of groups; must divide the number of channels. `-1`
            means one channel per group.
        axis: The channel axis: `-1` (channels last) or `1` (channels first).
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

    Call arguments:
        inputs: Tensor of rank 2 to 5, batch first. On rank 2 with one channel
            per group each value is normalized alone and the output is `beta`;
            the layer warns when it is built so.
        mask: Optional boolean tensor, as Keras' `Masking` and
            `Embedding(mask_zero=True)` produce it (Keras passes it by
            itself): the input's shape without its last axis, e.g. `(batch,
            time)` for `(batch, time, channels)` (each entry masks the
            positions along the last axis), or the input's full shape; sizes
            of 1 broadcast. Each example's group statistics are taken over its
            unmasked positions only, so padding does not change them; an
            example with none gets the statistics 0 (finite outputs). The
            output at masked positions is finite but unspecified (it does not
            depend on the values there, whose gradient is 0); the mask is
            passed on to the next layer.

    Input shape:
        inputs: Rank 2 to 5, batch first, e.g. `(batch, height, width,
            channels)`; the channels on `axis`, a multiple of `groups`.

    Output shape:
        The shape of the input.

    Returns:
        The normalized tensor, of the input's shape, in the layer's compute dtype.

    Raises:
        TypeError: If `groups` or `axis` is not an int (booleans are refused),
            `epsilon` is not a real number, or `center` or `scale` is not a bool.
        ValueError: If `groups` is 0 or less than -1, `epsilon` is not finite
            and > 0, `axis` is 0, or Keras cannot interpret an initializer,
            regularizer or constraint. When building: the input's rank is not 2 to 5, `axis`
            is out of range or names the batch axis, the channel size is
            undefined, or `groups` exceeds or does not divide the number of
            channels. When called: the input's rank or channel size differs
            from the built one, or `mask` fits neither the input's shape
            without its last axis nor its full shape.

    Reference:
        - Wu and He, "Group Normalization", ECCV 2018.
          [arXiv:1803.08494](https://arxiv.org/abs/1803.08494)

    Examples:
        Two groups of two channels, each normalized on its own, whatever its scale:

        >>> import numpy as np, keras_norms
        >>> x = np.array([[1.0, 3.0, 10.0, 30.0]])
        >>> np.round(np.asarray(keras_norms.GroupNormalization(groups=2)(x)), 2)
        array([[-1.,  1., -1.,  1.]], dtype=float32)
        >>> layer = keras_norms.GroupNormalization(groups=4)
        >>> y = layer(np.zeros((2, 8, 8, 16)))
        >>> tuple(y.shape), tuple(layer.gamma.shape)
        ((2, 8, 8, 16), (16,))
    """

    def __init__(self, groups: int = 32, axis: int = -1, epsilon: float = 1e-3, **kwargs):
        groups = check_groups(groups)
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

    def call(self, inputs, mask=None):
        inputs = self.prepare(inputs)
        if mask is not None:
            mask = broadcastable_mask(type(self).__name__, inputs, mask)
        outputs = F.group_norm(
            inputs, self.groups, self.gamma, self.beta, axis=self.axis, epsilon=self.epsilon, mask=mask,
            dtype=self.compute_dtype,
        )
        return ops.cast(outputs, self.compute_dtype)

    def get_config(self):
        return {**super().get_config(), "groups": self.groups, "axis": self.axis}


@keras.saving.register_keras_serializable(package="keras_norms")
class InstanceNormalization(GroupNormalization):
    r"""Instance normalization (Ulyanov et al., 2016): group normalization with one channel per group.

    Each channel $c$ of each example is normalized over its spatial (or time)
    axes, with their mean $\mu_c$ and variance $\sigma_c^2$, then scaled and
    shifted per channel:

    $$
    y_c = \frac{x_c - \mu_c}{\sqrt{\sigma_c^2 + \epsilon}} \, \gamma_c + \beta_c.
    $$

    It is the norm of style transfer and
    image generation: it removes each image's contrast. It takes
    tensorflow-addons' arguments and configs (whose `groups` entry is
    ignored) and has its weights (`gamma`, `beta`, shape `(channels,)`);
    building the layer never changes its config.

    Args:
        axis: The channel axis: `-1` (channels last) or `1` (channels first).
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
        groups: Accepted for tensorflow-addons configs and ignored: a value
            other than -1 gives a warning.

    Call arguments:
        inputs: Tensor of rank 2 to 5. On rank 2 (no axis besides batch and
            channels) each value is normalized alone and the output is `beta`,
            as in tensorflow-addons; the layer warns.
        mask: Optional boolean tensor, as Keras' `Masking` and
            `Embedding(mask_zero=True)` produce it (Keras passes it by
            itself): the input's shape without its last axis, e.g. `(batch,
            time)` for `(batch, time, channels)`, or the input's full shape;
            sizes of 1 broadcast. Each channel's statistics are taken over
            the example's unmasked positions only; with none they are 0
            (finite outputs). The output at masked positions is finite but
            unspecified (it does not depend on the values there); the mask is
            passed on to the next layer.

    Input shape:
        inputs: Rank 2 to 5, batch first, e.g. `(batch, height, width,
            channels)`; the channels on `axis`.

    Output shape:
        The shape of the input.

    Returns:
        The normalized tensor, of the input's shape, in the layer's compute dtype.

    Raises:
        TypeError: If `axis` is not an int (booleans are refused),
            `epsilon` is not a real number, or `center` or `scale` is not a bool.
        ValueError: If `epsilon` is not finite and > 0, `axis` is 0, or Keras
            cannot interpret an initializer, regularizer or constraint. When building:
            the input's rank is not 2 to 5, `axis` is out of range or names
            the batch axis, or the channel size is undefined. When called: the
            input's rank or channel size differs from the built one, or `mask`
            fits neither the input's shape without its last axis nor its full
            shape.

    Reference:
        - Ulyanov, Vedaldi and Lempitsky, "Instance Normalization: The Missing
          Ingredient for Fast Stylization", 2016.
          [arXiv:1607.08022](https://arxiv.org/abs/1607.08022)

    Examples:
        Every channel of every image comes out with mean 0 and standard deviation 1:

        >>> import numpy as np, keras_norms
        >>> x = np.random.default_rng(0).normal(5.0, 10.0, size=(2, 8, 8, 3))
        >>> y = np.asarray(keras_norms.InstanceNormalization()(x))
        >>> np.round(y.std(axis=(1, 2)), 2)
        array([[1., 1., 1.],
               [1., 1., 1.]], dtype=float32)
        >>> bool(np.abs(y.mean(axis=(1, 2))).max() < 1e-5)
        True
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
