"""Batch normalization, with ghost batches, batch renormalization, synchronization and frozen statistics."""

from __future__ import annotations

import math
import numbers

import keras
from keras import initializers, ops

from keras_norms import functional as F
from keras_norms._base import AffineNormalization
from keras_norms._checks import (
    broadcastable_mask,
    check_axis_argument,
    check_bool,
    check_fraction,
    check_rank,
    resolve_axes,
)

_RENORM_CLIPPING_KEYS = ("rmax", "rmin", "dmax")


def _check_renorm_clipping(renorm_clipping) -> dict:
    if renorm_clipping is None:
        return {}
    if not isinstance(renorm_clipping, dict):
        raise TypeError(
            "Argument `renorm_clipping` must be a dict with keys among "
            f"{_RENORM_CLIPPING_KEYS}. Received: renorm_clipping={renorm_clipping!r}"
        )
    unknown = set(renorm_clipping) - set(_RENORM_CLIPPING_KEYS)
    if unknown:
        raise ValueError(
            f"Argument `renorm_clipping` has unknown keys {sorted(unknown)}; the keys are "
            f"{_RENORM_CLIPPING_KEYS}. Received: renorm_clipping={renorm_clipping!r}"
        )
    for key, value in renorm_clipping.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Real)):
            raise TypeError(f"`renorm_clipping[{key!r}]` must be a number or None. "
                            f"Received: renorm_clipping={renorm_clipping!r}")
        if value is not None and math.isnan(value):
            raise ValueError(f"`renorm_clipping[{key!r}]` cannot be NaN. "
                             f"Received: renorm_clipping={renorm_clipping!r}")
    rmin, rmax, dmax = (renorm_clipping.get(k) for k in ("rmin", "rmax", "dmax"))
    if rmin is not None and rmax is not None and rmax < rmin:
        raise ValueError(f"`renorm_clipping` needs rmax >= rmin. Received: rmax={rmax}, rmin={rmin}, "
                         f"renorm_clipping={renorm_clipping!r}")
    if dmax is not None and dmax < 0:
        raise ValueError(f"`renorm_clipping` needs dmax >= 0. Received: dmax={dmax}, "
                         f"renorm_clipping={renorm_clipping!r}")
    return dict(renorm_clipping)


@keras.saving.register_keras_serializable(package="keras_norms")
class BatchNormalization(AffineNormalization):
    r"""Batch normalization (Ioffe and Szegedy, 2015), with the variants the paper discusses.

    In training, each channel is normalized with the mean $\mu_B$ and variance
    $\sigma_B^2$ of the current batch (over the batch and all non-channel axes),

    $$
    y = \frac{x - \mu_B}{\sqrt{\sigma_B^2 + \epsilon}} \, \gamma + \beta,
    $$

    and moving averages are kept for inference,
    $\hat\mu \leftarrow m \, \hat\mu + (1 - m) \, \mu_B$ and likewise
    $\hat\sigma^2$, with $m$ the `momentum`. In inference
    (`training=False`, `predict`, `evaluate`) the moving statistics
    $\hat\mu, \hat\sigma^2$ take the place of the batch's.
    Use it in convolutional networks trained with batches of a reasonable
    size; for small or per-example batches prefer `GroupNormalization` or
    `LayerNormalization`. Arguments, config keys and weights (`gamma`, `beta`,
    `moving_mean`, `moving_variance`) are those of
    `keras.layers.BatchNormalization`.

    Modes of use:

    - **`trainable=False`** freezes the layer *and* runs it in inference mode,
      as in Keras: moving statistics are used and neither they nor gamma/beta
      change.
    - **`freeze_statistics=True`** is the fine-tuning mode: the moving statistics
      are used and kept as they are, while gamma and beta still train. Set it in
      the constructor or on a built layer (`layer.freeze_statistics = True`,
      then compile again).
    - **`virtual_batch_size=k`** (ghost batch norm, Hoffer et al. 2017): in
      training the batch is cut into consecutive groups of `k` examples, each
      normalized with its own statistics; the batch size must be a multiple of
      `k`. The moving averages follow the mean of the groups' statistics.
    - **`renorm=True`** (batch renormalization, Ioffe 2017): the batch-normalized
      value is corrected by `r` and `d` (clipped by `renorm_clipping`) towards
      the moving statistics, so training and inference agree even for small or
      non-i.i.d. batches. Same variables and update rule as Keras (the layer
      then also holds `moving_stddev`, `renorm_mean` and `renorm_stddev`).
    - **`synchronized=True`**: mean and variance are those of the global
      batch of all devices. On TensorFlow, under a `tf.distribute` strategy,
      each replica's sums are all-reduced (the mean first, then the squared
      deviations from it). On JAX, under `keras.distribution.DataParallel`
      (one process or several), the jitted step sees the global batch as one
      sharded array, so the statistics are global with or without the flag
      (Keras' own layer refuses the flag on JAX; this one accepts it, so one
      model runs on both). PyTorch has no multi-device Keras training: the
      constructor raises.

    Args:
        axis: The channel axis (`-1` channels last, `1` channels first).
        momentum: Momentum of the moving averages, in [0, 1].
        epsilon: Small float added to the variance, > 0.
        center: If `True`, add the learned offset `beta`.
        scale: If `True`, multiply by the learned scale `gamma`.
        beta_initializer: Initializer of `beta`.
        gamma_initializer: Initializer of `gamma`.
        moving_mean_initializer: Initializer of the moving mean.
        moving_variance_initializer: Initializer of the moving variance.
        beta_regularizer: Optional regularizer of `beta`.
        gamma_regularizer: Optional regularizer of `gamma`.
        beta_constraint: Optional constraint of `beta`.
        gamma_constraint: Optional constraint of `gamma`.
        renorm: Use batch renormalization in training.
        renorm_clipping: Dict with optional keys `"rmax"`, `"rmin"`, `"dmax"`
            clipping `r` to `[rmin, rmax]` and `d` to `[-dmax, dmax]`; `None`
            (no clipping) by default.
        renorm_momentum: Momentum of the statistics that `r` and `d` use, in [0, 1].
        synchronized: Statistics over the global batch of all devices
            (TensorFlow and JAX; see above).
        virtual_batch_size: Examples per virtual batch (ghost batch norm), or `None`.
        freeze_statistics: Normalize with the moving statistics even in
            training, and do not update them.
        **kwargs: Base layer arguments (`name`, `dtype`, `trainable`, ...).

    Call arguments:
        inputs: Tensor of rank 2 or more, batch first.
        training: Python bool; `True` uses batch statistics and updates the
            moving ones (unless frozen, or the layer is not trainable).
        mask: Optional boolean tensor, as Keras' `Masking` and
            `Embedding(mask_zero=True)` produce it: the input's shape without
            its last axis (each entry masks the positions along that axis), or
            the input's full shape; sizes of 1 broadcast. Masked positions do
            not count in the batch statistics; all positions are normalized.
            Inference ignores it.

    Input shape:
        inputs: Any rank of 2 or more, batch first, e.g. `(batch, features)`
            or `(batch, height, width, channels)`; the channels on `axis`.

    Output shape:
        The shape of the input.

    Returns:
        The normalized tensor, of the input's shape, in the layer's compute dtype.

    Raises:
        TypeError: If `epsilon`, `momentum` or `renorm_momentum` is not a real
            number, `axis` is not an int, `renorm_clipping` is not a dict or
            `None` or holds a value that is not a number, `virtual_batch_size`
            is not an int or `None` (booleans are refused), or `center`,
            `scale`, `renorm`, `synchronized` or `freeze_statistics` is not a bool.
        ValueError: If `epsilon` is not finite and > 0; `momentum` or
            `renorm_momentum` is outside [0, 1]; `axis` is 0; `renorm_clipping`
            has keys other than `"rmax"`, `"rmin"`, `"dmax"`, a NaN value, or
            `rmax < rmin`, or `dmax < 0`; Keras cannot interpret an
            initializer, regularizer or constraint;
            `synchronized=True` on a backend other than TensorFlow or JAX;
            `virtual_batch_size` is < 1 or is combined with `synchronized=True`.
            When building: the input has rank < 2, `axis` is out of range or
            names the batch axis, the channel size is undefined, or a known
            batch size is not a multiple of `virtual_batch_size`. When called:
            the input's rank or channel size differs from the built one, a
            training batch is not a multiple of `virtual_batch_size`, or `mask`
            does not broadcast against the input.
        tf.errors.InvalidArgumentError: On TensorFlow, in a graph where the
            batch size is unknown, when a training batch is not a multiple of
            `virtual_batch_size` (checked as the graph runs).

    References:
        - Ioffe and Szegedy, "Batch Normalization: Accelerating Deep Network
          Training by Reducing Internal Covariate Shift", ICML 2015.
          [arXiv:1502.03167](https://arxiv.org/abs/1502.03167)
        - Ioffe, "Batch Renormalization: Towards Reducing Minibatch Dependence
          in Batch-Normalized Models", NIPS 2017.
          [arXiv:1702.03275](https://arxiv.org/abs/1702.03275)
        - Hoffer, Hubara and Soudry, "Train longer, generalize better: closing
          the generalization gap in large batch training of neural networks",
          NIPS 2017. [arXiv:1705.08741](https://arxiv.org/abs/1705.08741)

    Examples:
        >>> import numpy as np, keras_norms
        >>> layer = keras_norms.BatchNormalization(momentum=0.9)
        >>> x = np.array([[4.0], [6.0]])  # one channel: batch mean 5, variance 1
        >>> np.round(np.asarray(layer(x, training=True)), 3)
        array([[-1.],
               [ 1.]], dtype=float32)
        >>> round(float(layer.moving_mean[0]), 4), round(float(layer.moving_variance[0]), 4)
        (0.5, 1.0)
        >>> np.round(np.asarray(layer(x, training=False)), 3)  # (x - 0.5) / sqrt(1 + 1e-3)
        array([[3.498],
               [5.497]], dtype=float32)
        >>> [w.name for w in layer.weights]
        ['gamma', 'beta', 'moving_mean', 'moving_variance']
    """

    declared_arguments = {
        **AffineNormalization.declared_arguments,
        "moving_mean_initializer": "zeros",
        "moving_variance_initializer": "ones",
    }

    def __init__(
        self,
        axis: int = -1,
        momentum: float = 0.99,
        epsilon: float = 1e-3,
        center: bool = True,
        scale: bool = True,
        beta_initializer="zeros",
        gamma_initializer="ones",
        moving_mean_initializer="zeros",
        moving_variance_initializer="ones",
        beta_regularizer=None,
        gamma_regularizer=None,
        beta_constraint=None,
        gamma_constraint=None,
        renorm: bool = False,
        renorm_clipping: dict | None = None,
        renorm_momentum: float = 0.99,
        synchronized: bool = False,
        virtual_batch_size: int | None = None,
        freeze_statistics: bool = False,
        **kwargs,
    ):
        super().__init__(**self.declared_values(locals()), **kwargs)
        self.axis = check_axis_argument(axis)
        self.momentum = check_fraction("momentum", momentum)
        self.renorm = check_bool("renorm", renorm)
        self.renorm_clipping = _check_renorm_clipping(renorm_clipping)
        self.renorm_momentum = check_fraction("renorm_momentum", renorm_momentum)
        if check_bool("synchronized", synchronized) and keras.backend.backend() not in ("tensorflow", "jax"):
            raise ValueError(
                "synchronized=True needs the TensorFlow backend (a tf.distribute strategy) or JAX "
                "(keras.distribution.DataParallel); Keras has no multi-device training on "
                f"{keras.backend.backend()}. Received: synchronized=True with backend "
                f"{keras.backend.backend()!r}"
            )
        self.synchronized = bool(synchronized)
        if virtual_batch_size is not None:
            if isinstance(virtual_batch_size, bool) or not isinstance(virtual_batch_size, numbers.Integral):
                raise TypeError(
                    "Argument `virtual_batch_size` must be a positive int or None. "
                    f"Received: virtual_batch_size={virtual_batch_size!r}"
                )
            if virtual_batch_size < 1:
                raise ValueError(
                    "Argument `virtual_batch_size` must be a positive int or None. "
                    f"Received: virtual_batch_size={virtual_batch_size}"
                )
            if self.synchronized:
                raise ValueError(
                    "virtual_batch_size normalizes sub-batches of each replica's batch and cannot be "
                    "combined with synchronized=True. "
                    f"Received: virtual_batch_size={virtual_batch_size}, synchronized=True"
                )
            virtual_batch_size = int(virtual_batch_size)
        self.virtual_batch_size = virtual_batch_size
        self.freeze_statistics = check_bool("freeze_statistics", freeze_statistics)
        self.moving_mean = None
        self.moving_variance = None
        self._axis = None
        self._reduction_axes = None

    def build(self, input_shape):
        name = type(self).__name__
        check_rank(name, input_shape, 2)
        (self._axis,) = resolve_axes(name, self.axis, input_shape)
        self._reduction_axes = [a for a in range(len(input_shape)) if a != self._axis]
        channels = input_shape[self._axis]
        batch = input_shape[0]
        if self.virtual_batch_size is not None and batch is not None and batch % self.virtual_batch_size:
            raise ValueError(
                f"{name}: the batch size ({batch}) must be a multiple of virtual_batch_size. "
                f"Received: virtual_batch_size={self.virtual_batch_size}"
            )
        self.expect_input_shape(input_shape, [self._axis])
        shape = (channels,)
        self.add_affine_weights(shape)

        def statistic(name, initializer):
            return self.add_weight(
                name=name, shape=shape, initializer=initializer, trainable=False, autocast=False
            )

        self.moving_mean = statistic("moving_mean", self.moving_mean_initializer)
        self.moving_variance = statistic("moving_variance", self.moving_variance_initializer)
        if self.renorm:
            # As in Keras: renorm tracks the moving standard deviation, and a second pair of
            # averages (renorm_momentum) that r and d are measured against in training.
            variance_config = initializers.serialize(self.moving_variance_initializer)

            def stddev_initializer(shape, dtype=None):
                return ops.sqrt(initializers.get(variance_config)(shape, dtype=dtype))

            mean_config = initializers.serialize(self.moving_mean_initializer)
            self.moving_stddev = statistic("moving_stddev", stddev_initializer)
            self.renorm_mean = statistic("renorm_mean", initializers.get(mean_config))
            self.renorm_stddev = statistic("renorm_stddev", stddev_initializer)

    def call(self, inputs, training=None, mask=None):
        inputs = self.prepare(inputs)
        use_batch_statistics = bool(training) and self.trainable and not self.freeze_statistics
        if not use_batch_statistics:
            outputs = F.batch_norm(
                inputs, self.moving_mean, self.moving_variance, self.gamma, self.beta,
                axis=self._axis, epsilon=self.epsilon, dtype=self.compute_dtype,
            )
            return ops.cast(outputs, self.compute_dtype)
        if mask is not None:
            mask = broadcastable_mask(type(self).__name__, inputs, mask)
        if self.virtual_batch_size is not None:
            outputs = self._virtual_batch_norm(inputs, mask)
        elif mask is None and not self.synchronized and not self.renorm:
            # Statistics and normalization in one (on TensorFlow: the fused kernel).
            outputs, mean, variance = F.batch_norm_train(
                inputs, self.gamma, self.beta, axis=self._axis, epsilon=self.epsilon,
                dtype=self.compute_dtype,
            )
            self._update_statistics(mean, variance, inputs)
        else:
            mean, variance = F.moments(
                inputs, self._reduction_axes, mask=mask, synchronized=self.synchronized
            )
            gamma, beta = self._training_affine(mean, variance)
            self._update_statistics(mean, variance, inputs)
            if mask is None and not self.synchronized:
                # Renorm: the statistics above only set r and d; normalizing (and its gradient
                # through the statistics) is batch_norm_train's job, as without renorm.
                outputs, _, _ = F.batch_norm_train(
                    inputs, gamma, beta, axis=self._axis, epsilon=self.epsilon, dtype=self.compute_dtype
                )
            else:
                outputs = F.batch_norm(
                    inputs, mean, variance, gamma, beta, axis=self._axis, epsilon=self.epsilon
                )
        return ops.cast(outputs, self.compute_dtype)

    def _virtual_batch_norm(self, inputs, mask):
        self._check_virtual_batch(inputs)
        if not self.renorm:
            outputs, mean, variance = F.virtual_batch_norm(
                inputs, self.virtual_batch_size, self.gamma, self.beta, axis=self._axis,
                epsilon=self.epsilon, mask=mask,
            )
            # The moving averages follow the average statistics of the virtual batches.
            self._update_statistics(ops.mean(mean, axis=0), ops.mean(variance, axis=0), inputs)
            return outputs
        # With renorm, r and d (and so gamma and beta) differ from one virtual batch to the next.
        grouped, mean, variance = F.virtual_batch_moments(
            inputs, self.virtual_batch_size, axis=self._axis, mask=mask
        )
        gamma, beta = self._training_affine(mean, variance)
        # The moving averages follow the average statistics of the virtual batches.
        self._update_statistics(ops.mean(mean, axis=(0, 1)), ops.mean(variance, axis=(0, 1)), inputs)
        outputs = F.normalize(grouped, mean, variance, gamma, beta, epsilon=self.epsilon)
        return F.ungroup_virtual_batches(outputs, inputs, axis=self._axis)

    def _check_virtual_batch(self, inputs):
        batch = inputs.shape[0]
        if batch is not None:
            if batch % self.virtual_batch_size:
                raise ValueError(
                    f"BatchNormalization: the batch size ({batch}) must be a multiple of "
                    f"virtual_batch_size. Received: virtual_batch_size={self.virtual_batch_size}"
                )
        elif keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            tf.debugging.assert_equal(
                tf.shape(inputs)[0] % self.virtual_batch_size, 0,
                message=(
                    "BatchNormalization: the batch size must be a multiple of virtual_batch_size="
                    f"{self.virtual_batch_size} (use drop_remainder=True or a batch size that is one)"
                ),
            )

    def _training_affine(self, mean, variance):
        """gamma and beta for training; with renorm, they absorb the corrections r and d."""
        if not self.renorm:
            return self.gamma, self.beta
        stddev = ops.sqrt(variance + self.epsilon)
        renorm_stddev = ops.maximum(ops.cast(self.renorm_stddev, stddev.dtype), math.sqrt(self.epsilon))
        r = stddev / renorm_stddev
        d = (mean - ops.cast(self.renorm_mean, mean.dtype)) / renorm_stddev
        clip = self.renorm_clipping
        if clip.get("rmin") is not None:
            r = ops.maximum(r, clip["rmin"])
        if clip.get("rmax") is not None:
            r = ops.minimum(r, clip["rmax"])
        if clip.get("dmax") is not None:
            d = ops.clip(d, -clip["dmax"], clip["dmax"])
        r, d = ops.stop_gradient(r), ops.stop_gradient(d)
        # (x_hat * r + d) * gamma + beta == x_hat * (r * gamma) + (d * gamma + beta)
        gamma = None if self.gamma is None else ops.cast(self.gamma, r.dtype)
        beta = None if self.beta is None else ops.cast(self.beta, d.dtype)
        if gamma is not None:
            r, d = r * gamma, d * gamma
        return r, d if beta is None else d + beta

    def _update_statistics(self, mean, variance, inputs):
        # An empty batch has no statistics: keep the moving averages as they are. Where the shape is
        # known (eager, and most traced steps) that is decided here, without two ops per variable.
        shape = tuple(inputs.shape)
        nonempty = math.prod(shape) > 0 if None not in shape else ops.size(inputs) > 0
        if nonempty is False:
            return
        mean = ops.reshape(mean, (-1,))
        variance = ops.reshape(variance, (-1,))

        def update(variable, value, momentum):
            # The statistics are float32 (float64 in a float64 layer); the variables have the variable dtype.
            current = ops.convert_to_tensor(variable)  # jax.numpy takes arrays, not Keras variables
            averaged = current * momentum + ops.cast(value, variable.dtype) * (1.0 - momentum)
            variable.assign(averaged if nonempty is True else ops.where(nonempty, averaged, current))
            return averaged

        if not self.renorm:
            update(self.moving_mean, mean, self.momentum)
            update(self.moving_variance, variance, self.momentum)
            return
        stddev = ops.sqrt(variance + self.epsilon)
        update(self.renorm_mean, mean, self.renorm_momentum)
        update(self.renorm_stddev, stddev, self.renorm_momentum)
        update(self.moving_mean, mean, self.momentum)
        moving_stddev = update(self.moving_stddev, stddev, self.momentum)
        variance = ops.relu(moving_stddev * moving_stddev - self.epsilon)
        current = ops.convert_to_tensor(self.moving_variance)
        self.moving_variance.assign(variance if nonempty is True else ops.where(nonempty, variance, current))

    def get_config(self):
        config = {
            "axis": self.axis,
            "momentum": self.momentum,
            "renorm": self.renorm,
            "renorm_clipping": self.renorm_clipping,
            "renorm_momentum": self.renorm_momentum,
            "synchronized": self.synchronized,
            "virtual_batch_size": self.virtual_batch_size,
            "freeze_statistics": self.freeze_statistics,
        }
        return {**super().get_config(), **config}
