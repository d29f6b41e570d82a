"""Weight standardization: convolutions whose kernels are standardized on every call."""

from __future__ import annotations

import numbers

import keras
from keras import ops

from keras_norms import functional as F
from keras_norms._checks import check_count, check_epsilon


@keras.saving.register_keras_serializable(package="keras_norms")
class WeightStandardizedConv2D(keras.layers.Conv2D):
    r"""A `Conv2D` whose kernel is standardized per output channel on every call (Qiao et al., 2019).

    $$
    \hat W = \frac{W - \mu_W}{\sqrt{\sigma_W^2 + \epsilon}},
    $$

    with the mean $\mu_W$ and
    variance $\sigma_W^2$ of each output channel's kernel over `(kernel_height,
    kernel_width, input_channels)`; the convolution uses $\hat W$. The
    trained variable stays the raw $W$, so gradients flow through the
    standardization. Weight standardization smooths the loss landscape and
    is the companion of group normalization for micro-batch training
    (GN + WS, as in BiT): put a `GroupNormalization` after it.

    All `keras.layers.Conv2D` arguments apply; the kernel is standardized in
    float32 (float64 under the float64 policy) and is never autocast. Under
    mixed precision the standardized kernel is cast to the compute dtype and,
    as in any Keras convolution, so are the inputs: the convolution runs in
    float16/bfloat16, which is what mixed precision is for.

    Args:
        filters: Number of output channels, as in `keras.layers.Conv2D`.
        kernel_size: Size of the kernel (an int or a pair), as in
            `keras.layers.Conv2D`.
        *args: The other positional arguments of `keras.layers.Conv2D`
            (`strides`, `padding`, ...), in its order.
        epsilon: Small float added to the kernel variance, > 0 (keyword only).
        **kwargs: The other `keras.layers.Conv2D` arguments (`padding`,
            `use_bias`, `data_format`, ...) and the base layer arguments.

    Call arguments:
        inputs: Tensor of rank 4, `(batch, height, width, channels)` (or
            channels first with `data_format="channels_first"`).

    Input shape:
        inputs: `(batch, height, width, channels)`, or `(batch, channels,
            height, width)` with `data_format="channels_first"`.

    Output shape:
        `(batch, new_height, new_width, filters)`, or `(batch, filters,
        new_height, new_width)` with `data_format="channels_first"`; the new
        sizes as `keras.layers.Conv2D` computes them from `padding`,
        `strides` and `dilation_rate`.

    Returns:
        The convolution of the inputs with the standardized kernel (plus the
        bias, then the activation), in the layer's compute dtype.

    Raises:
        TypeError: If `epsilon` is not a real number, or `filters` or an entry
            of `kernel_size` is not an int (booleans are refused).
        ValueError: If `epsilon` is not finite and > 0, or `filters` or an
            entry of `kernel_size` is < 1.

    Reference:
        - Qiao, Wang, Liu, Shen and Yuille, "Micro-Batch Training with
          Batch-Channel Normalization and Weight Standardization", 2019.
          [arXiv:1903.10520](https://arxiv.org/abs/1903.10520)

    Examples:
        The output does not change when the kernel is scaled or shifted:

        >>> import numpy as np, keras_norms
        >>> conv = keras_norms.WeightStandardizedConv2D(1, 1, use_bias=False)
        >>> x = np.array([[[[0.0, 1.0]]]], dtype="float32")  # one pixel, two input channels
        >>> _ = conv(x)
        >>> conv.set_weights([np.array([1.0, 3.0]).reshape(1, 1, 2, 1)])  # standardized: [-1, 1]
        >>> round(float(conv(x)[0, 0, 0, 0]), 4)
        1.0
        >>> conv.set_weights([np.array([20.0, 60.0]).reshape(1, 1, 2, 1)])
        >>> round(float(conv(x)[0, 0, 0, 0]), 4)
        1.0

        The usual block, GN + WS:

        >>> import keras
        >>> model = keras.Sequential([
        ...     keras.Input((16, 16, 3)),
        ...     keras_norms.WeightStandardizedConv2D(32, 3, padding="same", use_bias=False),
        ...     keras_norms.GroupNormalization(groups=8),
        ...     keras.layers.ReLU(),
        ... ])
        >>> tuple(model.output_shape)
        (None, 16, 16, 32)
    """

    def __init__(self, filters, kernel_size, *args, epsilon: float = 1e-5, **kwargs):
        filters = check_count("filters", filters)
        for size in kernel_size if isinstance(kernel_size, (tuple, list)) else [kernel_size]:
            integer = isinstance(size, numbers.Integral) and not isinstance(size, bool)
            if not integer or size < 1:
                raise (ValueError if integer else TypeError)(
                    "Argument `kernel_size` must be a positive int or a pair of positive ints. "
                    f"Received: kernel_size={kernel_size!r}"
                )
        super().__init__(filters, kernel_size, *args, **kwargs)
        self.epsilon = check_epsilon(epsilon)

    def add_weight(self, *args, **kwargs):
        # The standardization must see the float32 kernel, not its float16 copy.
        if kwargs.get("name") == "kernel":
            kwargs["autocast"] = False
        return super().add_weight(*args, **kwargs)

    def convolution_op(self, inputs, kernel):
        inputs = ops.cast(inputs, self.compute_dtype)  # integer inputs too (Keras casts only floats)
        standardized = ops.cast(F.standardize_kernel(kernel, epsilon=self.epsilon), self.compute_dtype)
        return F.convolve(
            inputs,
            standardized,
            strides=list(self.strides),
            padding=self.padding,
            dilation_rate=self.dilation_rate,
            data_format=self.data_format,
        )

    def call(self, inputs):
        outputs = self.convolution_op(inputs, self.kernel)
        if self.use_bias and self.data_format == "channels_last":
            outputs = ops.add(outputs, self.bias)  # TensorFlow: a BiasAdd, fused with the convolution
        elif self.use_bias:
            # `+`, not ops.add as Keras' Conv2D: on TensorFlow, ops.add turns a (1, C, 1, 1) bias into
            # a channels-last BiasAdd when the width also has C entries, adding it along the width.
            outputs = outputs + ops.reshape(self.bias, (1, self.filters, 1, 1))
        return outputs if self.activation is None else self.activation(outputs)

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}
