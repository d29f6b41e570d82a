"""Switchable normalization: a learned mixture of instance, layer and batch statistics."""

from __future__ import annotations

import keras
from keras import ops

from keras_norms import functional as F
from keras_norms._base import AffineNormalization
from keras_norms._checks import (
    broadcastable_mask,
    check_axis_argument,
    check_fraction,
    check_rank,
    resolve_axes,
)


@keras.saving.register_keras_serializable(package="keras_norms")
class SwitchableNormalization(AffineNormalization):
    r"""Switchable normalization (Luo et al., 2019): a learned mixture of instance, layer and batch norm.

    The mean and the variance are softmax-weighted sums of the instance, layer
    and batch statistics ($k \in \{\mathrm{in}, \mathrm{ln}, \mathrm{bn}\}$),
    with separate learned weights for means and variances ($w$ and $v$, the
    softmax of `mean_weights` and `variance_weights`, shape `(3,)`, in that
    order; all start equal):

    $$
    y = \frac{x - \sum_k w_k \mu_k}{\sqrt{\sum_k v_k \sigma_k^2 + \epsilon}} \, \gamma + \beta.
    $$

    Each layer of a network can so learn which normalization suits it, when
    the best choice is not known in advance. As in batch norm, moving averages
    of the batch statistics
    ($\hat\mu \leftarrow m \, \hat\mu + (1 - m) \, \mu_{\mathrm{bn}}$, $m$ the
    `momentum`) replace them in inference; `trainable=False` also means inference.

    Args:
        axis: The channel axis (`-1` channels last, `1` channels first).
        momentum: Momentum of the moving averages, in [0, 1].
        epsilon: Small float added to the variance, > 0.
        moving_mean_initializer: Initializer of the moving mean.
        moving_variance_initializer: Initializer of the moving variance.
        **kwargs: The keyword arguments below, and the base layer arguments
            (`name`, `dtype`, `trainable`, ...).

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
        inputs: Tensor of rank 3 to 5, batch first.
        training: Python bool; `True` uses the batch statistics and updates the
            moving ones (if the layer is trainable).
        mask: Optional boolean tensor, as Keras' `Masking` and
            `Embedding(mask_zero=True)` produce it (Keras passes it by
            itself): the input's shape without its last axis, e.g. `(batch,
            time)` for `(batch, time, channels)`, or the input's full shape;
            sizes of 1 broadcast. The instance, layer and batch statistics are
            taken over the unmasked positions only (those of each example and
            channel, of each example, of the whole batch), and in training the
            moving averages follow those batch statistics; a batch with no
            unmasked position leaves them as they are. Statistics with no
            unmasked position are 0 (finite outputs). The output at masked
            positions is finite but unspecified (it does not depend on the
            values there); the mask is passed on to the next layer.

    Input shape:
        inputs: Rank 3 to 5, batch first, e.g. `(batch, time, channels)` or
            `(batch, height, width, channels)`; the channels on `axis`.

    Output shape:
        The shape of the input.

    Returns:
        The normalized tensor, of the input's shape, in the layer's compute dtype.

    Raises:
        TypeError: If `axis` is not an int, `epsilon` or `momentum` is not a
            real number (booleans are refused), or `center` or `scale` is not
            a bool.
        ValueError: If `epsilon` is not finite and > 0, `momentum` is outside
            [0, 1], `axis` is 0, or Keras cannot interpret an initializer,
            regularizer or constraint. When building: the input's rank is not 3 to 5, `axis`
            is out of range or names the batch axis, or the channel size is
            undefined. When called: the input's rank or channel size differs
            from the built one, or `mask` fits neither the input's shape
            without its last axis nor its full shape.

    Reference:
        - Luo, Ren, Peng, Zhang and Li, "Differentiable Learning-to-Normalize via
          Switchable Normalization", ICLR 2019.
          [arXiv:1806.10779](https://arxiv.org/abs/1806.10779)

    Examples:
        >>> import keras, keras_norms, numpy as np
        >>> layer = keras_norms.SwitchableNormalization(momentum=0.9)
        >>> y = layer(keras.random.normal((8, 4, 4, 16)), training=True)
        >>> [w.name for w in layer.weights]
        ['gamma', 'beta', 'mean_weights', 'variance_weights', 'moving_mean', 'moving_variance']
        >>> np.round(np.asarray(keras.ops.softmax(layer.mean_weights)), 3)  # instance, layer, batch
        array([0.333, 0.333, 0.333], dtype=float32)
    """

    declared_arguments = {
        **AffineNormalization.declared_arguments,
        "epsilon": 1e-5,
        "moving_mean_initializer": "zeros",
        "moving_variance_initializer": "ones",
    }

    def __init__(self, axis: int = -1, momentum: float = 0.99, epsilon: float = 1e-5,
                 moving_mean_initializer="zeros", moving_variance_initializer="ones", **kwargs):
        super().__init__(**self.declared_values(locals()), **kwargs)
        self.axis = check_axis_argument(axis)
        self.momentum = check_fraction("momentum", momentum)
        self._axis = None

    def build(self, input_shape):
        name = type(self).__name__
        check_rank(name, input_shape, 3, 5)
        (self._axis,) = resolve_axes(name, self.axis, input_shape)
        channels = input_shape[self._axis]
        self.expect_input_shape(input_shape, [self._axis])
        self.add_affine_weights((channels,))

        def weight(name, shape, initializer, trainable=True):
            return self.add_weight(name=name, shape=shape, initializer=initializer, trainable=trainable,
                                   autocast=False)

        self.mean_weights = weight("mean_weights", (3,), "ones")
        self.variance_weights = weight("variance_weights", (3,), "ones")
        self.moving_mean = weight("moving_mean", (channels,), self.moving_mean_initializer, False)
        self.moving_variance = weight("moving_variance", (channels,), self.moving_variance_initializer, False)

    def call(self, inputs, training=None, mask=None):
        inputs = self.prepare(inputs)
        if mask is not None:
            mask = broadcastable_mask(type(self).__name__, inputs, mask)
        use_batch_statistics = bool(training) and self.trainable
        moving = {} if use_batch_statistics else {
            "moving_mean": self.moving_mean, "moving_variance": self.moving_variance
        }
        outputs, batch_mean, batch_variance = F.switchable_norm(
            inputs, self.mean_weights, self.variance_weights, self.gamma, self.beta,
            axis=self._axis, epsilon=self.epsilon, mask=mask, **moving,
        )
        if use_batch_statistics:
            # An empty batch (or one all masked) has no statistics: keep the moving averages as they are.
            nonempty = ops.size(inputs) > 0
            if mask is not None:
                nonempty = ops.logical_and(nonempty, ops.any(mask))
            for variable, value in ((self.moving_mean, batch_mean), (self.moving_variance, batch_variance)):
                current = ops.convert_to_tensor(variable)
                averaged = current * self.momentum + ops.cast(value, variable.dtype) * (1.0 - self.momentum)
                variable.assign(ops.where(nonempty, averaged, current))
        return ops.cast(outputs, self.compute_dtype)

    def get_config(self):
        return {**super().get_config(), "axis": self.axis, "momentum": self.momentum}
