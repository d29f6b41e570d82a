"""Convolutions on TensorFlow: the shape of an empty batch."""

from __future__ import annotations

import tensorflow as tf
from keras import config


def empty_batch_in_conv_shape(outputs, x, kernel, *, strides, padding: str, dilation_rate, data_format):
    """`outputs` of a convolution of `x`, as zeros of the convolution's shape when the batch is empty.

    TensorFlow's CPU convolutions (1D to 3D) return an empty batch in the
    shape of their input (``(0, 4, 4, 3)`` for 8 filters over 3 channels).
    When the batch size is known to be 0, the zeros replace `outputs`; when it
    is unknown (a graph traced for any batch size, not an export with a fixed
    one), a `tf.cond` after the convolution picks them at run time. (Grappler
    takes a reshape to the inferred shape for a no-op and removes it.)
    """
    rank = len(x.shape)
    channels_first = (data_format or config.image_data_format()) == "channels_first"
    spatial = range(2, rank) if channels_first else range(1, rank - 1)

    def per_axis(value):
        return [value] * (rank - 2) if isinstance(value, int) else list(value)

    strides, dilation_rate = per_axis(strides), per_axis(dilation_rate)
    dynamic = tf.shape(x)
    sizes = []
    for i, axis in enumerate(spatial):
        size = dynamic[axis] if x.shape[axis] is None else x.shape[axis]
        if padding.lower() == "same":
            sizes.append((size + strides[i] - 1) // strides[i])
        else:
            sizes.append((size - dilation_rate[i] * (kernel.shape[i] - 1) - 1) // strides[i] + 1)
    channels = kernel.shape[-1]
    shape = [0, channels, *sizes] if channels_first else [0, *sizes, channels]
    if x.shape[0] == 0:
        return tf.zeros(shape, outputs.dtype)
    return tf.cond(dynamic[0] > 0, lambda: tf.identity(outputs), lambda: tf.zeros(shape, outputs.dtype))
