"""What this machine's TensorFlow can run, probed at run time (never guessed from the CPU's brand)."""

from __future__ import annotations

import functools

import numpy as np
import tensorflow as tf


@functools.cache
def nchw_convolutions_on_cpu() -> bool:
    """Whether TensorFlow's CPU kernels run a channels-first (NCHW) convolution eagerly.

    They do where TensorFlow runs with oneDNN; without it (x86 CPUs without
    AVX-512, or ``TF_ENABLE_ONEDNN_OPTS=0``) `Conv2D` raises `UnimplementedError`.
    """
    x = np.ones((1, 1, 2, 2), "float32")
    kernel = np.ones((1, 1, 1, 1), "float32")
    try:
        with tf.device("/CPU:0"):
            tf.nn.conv2d(x, kernel, strides=1, padding="VALID", data_format="NCHW")
    except (tf.errors.UnimplementedError, tf.errors.InvalidArgumentError):
        return False
    return True


NO_NCHW_REASON = (
    "TensorFlow's CPU kernels on this machine take NHWC convolutions only "
    "(TensorFlow runs without oneDNN: an x86 CPU without AVX-512, or TF_ENABLE_ONEDNN_OPTS=0)"
)
