"""SPADE: spatially-adaptive normalization, gamma and beta per pixel from a conditioning map.

Like the layers of `keras_norms.conditional`, it is called as
`layer(inputs, condition)` and has no registry name; like them, it is a
`keras_norms.ConditionedNormalization` (the condition check, the projections, frozen statistics).
"""

from __future__ import annotations

import keras
from keras import ops

from keras_norms import functional as F
from keras_norms._base import ConditionedNormalization
from keras_norms._checks import check_bool, check_count, check_fraction, check_rank, resolve_axes
from keras_norms.batch import BatchNormalization

_PARAM_FREE_NORMS = ("batch", "instance")


@keras.saving.register_keras_serializable(package="keras_norms")
class SPADE(ConditionedNormalization):
    r"""Spatially-adaptive normalization (Park et al., 2019): a gamma and beta per pixel from a map.

    `x` is normalized without parameters (batch norm with moving statistics,
    or instance norm). The conditioning map (a one-hot segmentation map, say)
    is resized to the size of `x` by nearest neighbour
    (`keras_norms.functional.resize_nearest`), goes through a shared
    convolution and a ReLU, then through one convolution for gamma and one
    for beta (all `kernel_size` square, stride 1, "same" padding):

    $$
    h = \operatorname{relu}(\operatorname{conv}(\operatorname{resize}(m))), \qquad
    y = \operatorname{norm}(x) \, (1 + \operatorname{conv}_\gamma(h)) + \operatorname{conv}_\beta(h).
    $$

    Images are channels last. Use it in generators that synthesize images
    from a semantic layout (GauGAN): the layout modulates every resolution,
    instead of being washed out by the normalization layers.

    Args:
        param_free_norm: `"batch"` or `"instance"`: the normalization of `x`.
        hidden_channels: Channels of the shared convolution (128 in the paper).
        kernel_size: Size of the square convolution kernels.
        epsilon: Small float added to the variance, > 0.
        momentum: Momentum of the moving statistics, in [0, 1] (`"batch"` only).
        synchronized: Batch statistics over all replicas (`"batch"` only;
            TensorFlow and JAX).
        kernel_initializer: Initializer of the three convolution kernels.
        bias_initializer: Initializer of the three convolution biases.
        kernel_regularizer: Optional regularizer of the convolution kernels.
        freeze_statistics: Normalize with the moving statistics and leave
            them as they are, also in training (`"batch"` only; fine-tuning).
        **kwargs: Base layer arguments (`name`, `dtype`, `trainable`, ...).

    Call arguments:
        inputs: Images `(batch, height, width, channels)`.
        condition: Maps `(batch, map_height, map_width, map_channels)` of any
            spatial size (read as floats), with the batch size of `inputs`.
        training: Python bool, for `"batch"` (as in `BatchNormalization`):
            batch statistics when `True`, moving statistics otherwise.

    Input shape:
        inputs: `(batch, height, width, channels)`.
        condition: `(batch, map_height, map_width, map_channels)`, any spatial
            size.

    Output shape:
        The shape of `inputs`.

    Returns:
        The modulated images, of the shape of `inputs`, in the layer's compute dtype.

    Raises:
        TypeError: If `hidden_channels` or `kernel_size` is not an int,
            `epsilon` or `momentum` is not a number, or `synchronized` or
            `freeze_statistics` is not a bool.
        ValueError: In the constructor, if `param_free_norm` is not `"batch"`
            or `"instance"`, `hidden_channels` or `kernel_size` is < 1,
            `epsilon` is not finite and > 0, `momentum` is outside [0, 1],
            `synchronized=True` with `"batch"` is used on a backend other than
            TensorFlow and JAX, or Keras cannot interpret an initializer or
            regularizer. When the layer is built, if `inputs` is not of rank 4
            or its channel axis has an undefined size. When it is built or
            called, if `condition` is not of rank 4, has an undefined or (once
            built) another number of channels, or a batch size other than that
            of `inputs`. When it is called, if `inputs` has another rank or
            channel count than the layer was built for.

    Reference:
        - Park, Liu, Wang and Zhu, "Semantic Image Synthesis with
          Spatially-Adaptive Normalization", CVPR 2019.
          [arXiv:1903.07291](https://arxiv.org/abs/1903.07291)

    Examples:
        >>> import numpy as np, keras_norms
        >>> layer = keras_norms.SPADE(param_free_norm="instance", hidden_channels=16)
        >>> x = np.repeat(np.random.default_rng(0).normal(size=(1, 8, 8, 4)), 3, axis=0).astype("float32")
        >>> labels = np.ones((3, 32, 32), int) * np.array([0, 0, 2])[:, None, None]  # one class per map
        >>> segmentation = np.eye(5, dtype="float32")[labels]  # one-hot, resized to 8 x 8
        >>> y = np.asarray(layer(x, segmentation))  # the same x three times: only the maps differ
        >>> y.shape, bool(np.allclose(y[0], y[1])), bool(np.allclose(y[0], y[2]))
        ((3, 8, 8, 4), True, False)
        >>> tuple(layer.shared_kernel.shape), tuple(layer.gamma_kernel.shape)
        ((3, 3, 5, 16), (3, 3, 16, 4))
    """

    declared_arguments = {
        "epsilon": 1e-3,
        "kernel_initializer": "glorot_uniform",
        "bias_initializer": "zeros",
        "kernel_regularizer": None,
    }
    _restate_shapes = True

    def __init__(
        self,
        param_free_norm: str = "batch",
        hidden_channels: int = 128,
        kernel_size: int = 3,
        epsilon: float = 1e-3,
        momentum: float = 0.99,
        synchronized: bool = False,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        freeze_statistics: bool = False,
        **kwargs,
    ):
        super().__init__(**self.declared_values(locals()), **kwargs)
        if param_free_norm not in _PARAM_FREE_NORMS:
            raise ValueError(
                f"Argument `param_free_norm` must be one of {_PARAM_FREE_NORMS}. "
                f"Received: param_free_norm={param_free_norm!r}"
            )
        self.param_free_norm = param_free_norm
        self.hidden_channels = check_count("hidden_channels", hidden_channels)
        self.kernel_size = check_count("kernel_size", kernel_size)
        synchronized = check_bool("synchronized", synchronized)
        freeze_statistics = check_bool("freeze_statistics", freeze_statistics)
        if param_free_norm == "batch":
            self.normalization = BatchNormalization(
                momentum=momentum, epsilon=epsilon, center=False, scale=False,
                synchronized=synchronized, freeze_statistics=freeze_statistics,
                dtype=self.statistics_dtype, name="batch_normalization",
            )
            self.normalization.trainable = self.trainable
        self.momentum = check_fraction("momentum", momentum)
        self.synchronized = bool(synchronized)
        self.freeze_statistics = freeze_statistics

    def condition_problem(self, inputs_shape, condition_shape, integer):
        if len(condition_shape) != 4:
            return f"the condition must be a batch of maps, of rank 4, not rank {len(condition_shape)}"
        if condition_shape[-1] is None:
            return "the condition's channel axis must have a defined size"
        if self.condition_features is not None and condition_shape[-1] != self.condition_features:
            return (f"the layer was built for maps of {self.condition_features} channels, "
                    f"not {condition_shape[-1]}")
        return None

    def build(self, inputs_shape, condition_shape):
        name = type(self).__name__
        check_rank(name, inputs_shape, 4, 4)
        (axis,) = resolve_axes(name, -1, inputs_shape)
        self.check_condition(inputs_shape, condition_shape)
        self.expect_input_shape(inputs_shape, [axis])
        if self.normalization is not None:
            self.normalization.build(inputs_shape)
        self.condition_features = condition_shape[-1]
        channels, hidden, size = inputs_shape[axis], self.hidden_channels, self.kernel_size
        self.shared_kernel, self.shared_bias = self.add_projection(
            (size, size, self.condition_features, hidden), name="shared")
        self.gamma_kernel, self.gamma_bias = self.add_projection((size, size, hidden, channels), name="gamma")
        self.beta_kernel, self.beta_bias = self.add_projection((size, size, hidden, channels), name="beta")

    def call(self, inputs, condition, training=None):
        inputs = self.prepare(inputs)
        self.check_condition(inputs.shape, condition.shape)
        if self.normalization is not None:
            normalized = self.normalization(inputs, training=training)
        else:
            normalized = F.group_norm(inputs, -1, epsilon=self.epsilon)
        height, width = inputs.shape[1:3]
        dynamic = ops.shape(inputs)
        size = (dynamic[1] if height is None else height, dynamic[2] if width is None else width)
        segmentation = F.resize_nearest(ops.cast(condition, self.statistics_dtype), size)
        hidden = ops.relu(F.conv2d(segmentation, self.shared_kernel, self.shared_bias))
        gamma = F.conv2d(hidden, self.gamma_kernel, self.gamma_bias)
        beta = F.conv2d(hidden, self.beta_kernel, self.beta_bias)
        return ops.cast(F.modulate(normalized, 1.0 + gamma, beta), self.compute_dtype)

    def get_config(self):
        config = {
            "param_free_norm": self.param_free_norm,
            "hidden_channels": self.hidden_channels,
            "kernel_size": self.kernel_size,
            "momentum": self.momentum,
            "synchronized": self.synchronized,
            "freeze_statistics": self.freeze_statistics,
        }
        return {**super().get_config(), **config}
