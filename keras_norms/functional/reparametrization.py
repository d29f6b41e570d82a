"""Reparametrization: kernels rebuilt before each convolution, and the convolutions that use them.

Weight standardization (`standardize_kernel`) and weight normalization
(`kernel_norms`, `weight_normalized_kernel`) rewrite a kernel from its
variables without any data statistics; `convolve` and `convolve_transpose`
apply it.
"""

from __future__ import annotations

from keras import backend, config, ops

from keras_norms.functional.statistics import moments, normalize


def standardize_kernel(kernel, *, epsilon: float = 1e-5):
    r"""Weight standardization: each output channel of `kernel` (its last axis) to mean 0 and variance 1.

    $$
    \hat w = \frac{w - \mu_w}{\sqrt{\sigma_w^2 + \epsilon}},
    $$

    with the mean $\mu_w$ and variance $\sigma_w^2$ over all axes but the
    last, e.g. over `(kernel_height, kernel_width, in_channels)` of a Conv2D
    kernel, in float32 (float64 for a float64 kernel). Applied to the kernel
    before each convolution, it smooths the loss landscape, which helps with
    small batches (with group norm) where batch norm cannot be used.

    Args:
        kernel: The kernel, output channels on its last axis.
        epsilon: Added to the variance.

    Returns:
        The standardized kernel of the shape of `kernel`, float32 (float64 for
        a float64 kernel).

    Reference:
        - Qiao, Wang, Liu, Shen and Yuille, "Micro-Batch Training with
          Batch-Channel Normalization and Weight Standardization", 2019.
          [arXiv:1903.10520](https://arxiv.org/abs/1903.10520)

    Examples:
        >>> import numpy as np
        >>> from keras_norms import functional as F
        >>> kernel = np.random.default_rng(0).normal(0.5, 0.1, size=(3, 3, 4, 8)).astype("float32")
        >>> w = np.asarray(F.standardize_kernel(kernel, epsilon=1e-8))
        >>> bool(np.allclose(w.mean(axis=(0, 1, 2)), 0.0, atol=1e-5))
        True
        >>> print(np.round(w.var(axis=(0, 1, 2)), 3))
        [1. 1. 1. 1. 1. 1. 1. 1.]
    """
    rank = len(kernel.shape)
    mean, variance = moments(kernel, tuple(range(rank - 1)), keepdims=True)
    return normalize(kernel, mean, variance, epsilon=epsilon)


def kernel_norms(kernel, *, axis: int = -1):
    """``||kernel||`` per slice along `axis` (over every other axis), in the dtype of `kernel`.

    The lengths weight normalization starts `g` at, so that ``g * v / ||v||`` is `v`.

    Args:
        kernel: The kernel `v`, e.g. `(kernel_height, kernel_width, in, out)`.
        axis: The axis whose slices are measured (the output channels).

    Returns:
        The Euclidean norm of each slice, shape `(kernel.shape[axis],)`, in
        the dtype of `kernel`.

    Examples:
        >>> import numpy as np
        >>> from keras_norms import functional as F
        >>> kernel = np.array([[3.0, 0.0], [4.0, 1.0]], dtype="float32")
        >>> print(np.asarray(F.kernel_norms(kernel)))
        [5. 1.]
        >>> print(np.asarray(F.kernel_norms(kernel, axis=0)).round(4))
        [3.     4.1231]
    """
    kernel = ops.convert_to_tensor(kernel)
    axes = [a for a in range(len(kernel.shape)) if a != axis % len(kernel.shape)]
    return ops.sqrt(ops.sum(ops.square(kernel), axis=axes))


def weight_normalized_kernel(direction, length, *, axis: int = -1, epsilon: float = 1e-12):
    r"""Weight normalization: ``length * direction / ||direction||`` per slice along `axis`.

    $$
    w = g \, \frac{v}{\lVert v \rVert},
    $$

    with $g$ the `length` and $v$ the `direction` of each slice.
    The norm is over every other axis; squared norms are floored at `epsilon`,
    as in `tf.nn.l2_normalize`. Computed in the dtype of `direction`.
    Decoupling the length `g` of each output channel from its direction `v`
    reparameterizes the kernel without any data statistics.

    Args:
        direction: The kernel `v`, e.g. `(kernel_height, kernel_width, in, out)`.
        length: `g`, one length per slice along `axis`.
        axis: The output-channel axis of the kernel.
        epsilon: Floor of the squared norms.

    Returns:
        The kernel ``g * v / ||v||`` of the shape of `direction`, each slice
        along `axis` of norm `length` (where ``||v||^2`` is at least `epsilon`).

    Reference:
        - Salimans and Kingma, "Weight Normalization: A Simple Reparameterization
          to Accelerate Training of Deep Neural Networks", NIPS 2016.
          [arXiv:1602.07868](https://arxiv.org/abs/1602.07868)

    Examples:
        >>> import numpy as np
        >>> from keras_norms import functional as F
        >>> direction = np.array([[3.0, 0.0], [4.0, 2.0]], dtype="float32")
        >>> length = np.array([10.0, 1.0], dtype="float32")
        >>> print(np.asarray(F.weight_normalized_kernel(direction, length)))
        [[6. 0.]
         [8. 1.]]
        >>> kernel = F.weight_normalized_kernel(direction, F.kernel_norms(direction))
        >>> bool(np.allclose(kernel, direction))
        True
    """
    direction = ops.convert_to_tensor(direction)
    rank = len(direction.shape)
    axis %= rank
    axes = [a for a in range(rank) if a != axis]
    squared_norm = ops.sum(ops.square(direction), axis=axes, keepdims=True)
    channel_shape = [-1 if a == axis else 1 for a in range(rank)]
    return direction * ops.rsqrt(ops.maximum(squared_norm, epsilon)) * ops.reshape(length, channel_shape)


# ----------------------------------------------------------------------------- convolutions
# The convolutions of the reparametrized kernels (weight normalization, weight standardization).
# TensorFlow's CPU kernels take channels-first (NCHW) convolutions only where TensorFlow runs with
# oneDNN; without it (x86 CPUs without AVX-512, or TF_ENABLE_ONEDNN_OPTS=0) they raise
# UnimplementedError. On TensorFlow, channels-first inputs are therefore convolved channels last
# between two transposes, on every machine: one graph everywhere (oneDNN transposes NCHW itself).


def _channels_first_on_tensorflow(data_format) -> bool:
    if data_format is None:
        data_format = config.image_data_format()
    return data_format == "channels_first" and backend.backend() == "tensorflow"


def _convolve_channels_last(compute, x):
    """``compute(x, "channels_last")`` for a channels-first `x`: transposed in, transposed back."""
    rank = len(x.shape)
    outputs = compute(ops.transpose(x, [0, *range(2, rank), 1]), "channels_last")
    return ops.transpose(outputs, [0, rank - 1, *range(1, rank - 1)])


def _conv_shape_for_empty_batch(outputs, x, kernel, **convolution):
    """`outputs` of ``ops.conv(x, kernel, **convolution)``, in its shape also for an empty batch.

    TensorFlow's CPU convolutions return an empty batch in the shape of their
    input, which the next op (a bias, a modulation) refuses;
    `kernels.tf_conv` gives it the convolution's shape. Other backends, and
    batches known to hold examples, pass as they are.
    """
    batch = x.shape[0]
    if backend.backend() != "tensorflow" or (batch is not None and batch > 0):
        return outputs
    from keras_norms.kernels.tf_conv import empty_batch_in_conv_shape

    return empty_batch_in_conv_shape(outputs, x, kernel, **convolution)


def convolve(x, kernel, *, strides=1, padding: str = "valid", dilation_rate=1, data_format=None):
    """`keras.ops.conv` that also takes channels-first inputs on TensorFlow CPUs without oneDNN.

    The arguments and the result are those of `keras.ops.conv` (1D, 2D or 3D,
    grouped when the kernel has fewer input channels than `x`). With the
    TensorFlow backend and `data_format="channels_first"`, the convolution
    runs channels last between two transposes: TensorFlow's own CPU kernels
    take channels first only where TensorFlow runs with oneDNN (not on x86
    CPUs without AVX-512, nor with ``TF_ENABLE_ONEDNN_OPTS=0``). The other
    backends convolve channels first directly.

    Args:
        x: Tensor of rank 3 to 5, batch first.
        kernel: `(*kernel_size, in_channels // groups, out_channels)`.
        strides: An int or one int per spatial axis.
        padding: `"valid"` or `"same"`.
        dilation_rate: An int or one int per spatial axis.
        data_format: `"channels_last"`, `"channels_first"`, or None for
            `keras.config.image_data_format()`.

    Returns:
        The convolution, in the layout of `x`.

    Examples:
        >>> import numpy as np
        >>> from keras_norms import functional as F
        >>> x = np.arange(8.0, dtype="float32").reshape(1, 2, 4)  # channels first: 2 channels, 4 steps
        >>> kernel = np.ones((2, 2, 1), dtype="float32")  # sums two steps of both channels
        >>> print(np.asarray(F.convolve(x, kernel, data_format="channels_first")))
        [[[10. 14. 18.]]]
    """
    def compute(inputs, layout):
        outputs = ops.conv(inputs, kernel, strides=strides, padding=padding,
                           dilation_rate=dilation_rate, data_format=layout)
        return _conv_shape_for_empty_batch(outputs, inputs, kernel, strides=strides, padding=padding,
                                           dilation_rate=dilation_rate, data_format=layout)

    if _channels_first_on_tensorflow(data_format):
        return _convolve_channels_last(compute, x)
    return compute(x, data_format)


def convolve_transpose(x, kernel, *, strides, padding: str = "valid", output_padding=None,
                       dilation_rate=1, data_format=None):
    """`keras.ops.conv_transpose` that also takes channels-first inputs on TensorFlow CPUs without oneDNN.

    The arguments and the result are those of `keras.ops.conv_transpose`;
    channels-first inputs on TensorFlow run channels last between two
    transposes, as in `convolve`.

    Args:
        x: Tensor of rank 3 to 5, batch first.
        kernel: `(*kernel_size, out_channels, in_channels)`.
        strides: An int or one int per spatial axis.
        padding: `"valid"` or `"same"`.
        output_padding: None, or an int or one int per spatial axis.
        dilation_rate: An int or one int per spatial axis.
        data_format: `"channels_last"`, `"channels_first"`, or None for
            `keras.config.image_data_format()`.

    Returns:
        The transposed convolution, in the layout of `x`.

    Examples:
        >>> import numpy as np
        >>> from keras_norms import functional as F
        >>> x = np.array([[[1.0, 2.0]]], dtype="float32")  # channels first: 1 channel, 2 steps
        >>> kernel = np.ones((2, 1, 1), dtype="float32")
        >>> print(np.asarray(F.convolve_transpose(x, kernel, strides=2, data_format="channels_first")))
        [[[1. 1. 2. 2.]]]
    """
    def compute(inputs, layout):
        return ops.conv_transpose(inputs, kernel, strides=strides, padding=padding,
                                  output_padding=output_padding, dilation_rate=dilation_rate,
                                  data_format=layout)

    if _channels_first_on_tensorflow(data_format):
        return _convolve_channels_last(compute, x)
    return compute(x, data_format)
