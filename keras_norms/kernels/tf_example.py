"""Statistics by examples: the fused batch norm kernel run on each example (or virtual batch).

Group and instance norm and ghost batch norm (channels last) in training take
their statistics from the same kernel as batch norm, run on each example (or
virtual batch): the moments, and in backward the sums of its inference-mode
gradient, pooled into groups.
"""

from __future__ import annotations

import tensorflow as tf

from keras_norms.kernels.tf_base import (
    float32,
    fused_applies,
    fused_view,
    gradient_may_be_recorded,
    repeat_over_groups,
    worth_compiling,
    xla_compiled,
)

# ----------------------------------------------------------------------------- statistics by examples
# Group and instance norm (channels last) in training: the fused kernel, run on each example,
# gives exact per-(example, channel) moments and, in backward, the per-(example, channel) sums
# of dy and dy * x_hat, each in one sweep over the example while it is in cache. Those are
# pooled into groups (the law of total variance for the variance), and the two element-wise
# passes (the output, the input's gradient) run as XLA-compiled functions, which fuse each into
# one loop, or as TensorFlow ops for small tensors.


# At most this many examples are unrolled into the graph (a batch of unknown size, or more, runs
# in a loop); examples smaller than this many elements take the closed form, which is faster
# than a loop of small kernels (measured on CPU: the loop wins from about 2**17 elements).
_UNROLL_MAX_EXAMPLES = 256
_EXAMPLE_MIN_ELEMENTS = 1 << 17


def _shift_and_scale(x, mean, gain, *offset):
    """``(x - mean) * gain (+ offset)`` in float32, rounded once to the dtype of `x`."""
    outputs = (float32(x) - mean) * gain
    return tf.cast(outputs + offset[0] if offset else outputs, x.dtype)


def _standardize_input_gradient(upstream, x, mean, gain, slope, bias):
    """``upstream * gain + (x - mean) * slope + bias``, in the dtype of `x`."""
    return tf.cast(float32(upstream) * gain + (float32(x) - mean) * slope + bias, x.dtype)


def _per_example(function, tensors, outputs: tuple[int, ...], size: int):
    """Calls `function` on each example of `tensors`; stacks the `outputs` it returns, `size` values each.

    A static batch of at most `_UNROLL_MAX_EXAMPLES` examples is unrolled (slices of
    the first axis are views, not copies); any other runs in a `tf.while_loop`.
    """
    batch = tensors[0].shape[0]
    if batch is not None and batch <= _UNROLL_MAX_EXAMPLES:
        slices = [tf.split(t, batch, axis=0) for t in tensors]
        results = [function(*parts) for parts in zip(*slices, strict=True)]
        return [tf.stack([result[i] for result in results]) for i in outputs]
    count = tf.shape(tensors[0])[0]

    def body(index, *arrays):
        result = function(*(t[index:index + 1] for t in tensors))
        return (index + 1, *(array.write(index, result[i]) for array, i in zip(arrays, outputs, strict=True)))

    arrays = [tf.TensorArray(tf.float32, size=count, element_shape=[size]) for _ in outputs]
    _, *arrays = tf.while_loop(lambda index, *_: index < count, body, [0, *arrays], parallel_iterations=10)
    return [array.stack() for array in arrays]


def example_standardize(view, groups: int, scale, offset, *, epsilon: float):
    """Normalizes `view` `(batch, positions, channels)` per (example, group) with fused statistics; or None.

    Applies under a gradient tape, without XLA, to static positions and
    channels, examples of at least two positions and `_EXAMPLE_MIN_ELEMENTS`
    elements, in a dtype and with an epsilon the fused kernel takes.

    Returns:
        `(outputs, mean, variance)`: outputs in the dtype of `view`, and the
        biased statistics of each group repeated over its channels, shape
        `(batch, channels)`, without gradient.
    """
    positions, channels = view.shape[1], view.shape[2]
    if (positions is None or channels is None or positions < 2 or positions * channels < _EXAMPLE_MIN_ELEMENTS
            or (view.shape[0] is not None and view.shape[0] < 1) or not gradient_may_be_recorded()
            or not fused_applies(view, -1, epsilon)):
        return None
    gamma = tf.ones([channels]) if scale is None else tf.reshape(float32(scale), [channels])
    params = [gamma] if offset is None else [gamma, tf.reshape(float32(offset), [channels])]
    ones, zeros, empty = tf.ones([channels]), tf.zeros([channels]), tf.zeros([0])
    compiled = worth_compiling(view)
    shift_and_scale = xla_compiled(_shift_and_scale) if compiled else _shift_and_scale
    input_gradient = xla_compiled(_standardize_input_gradient) if compiled else _standardize_input_gradient

    def group_mean(per_channel):
        return repeat_over_groups(per_channel, channels, groups, tf.reduce_mean)

    def moments(example):
        return tf.raw_ops.FusedBatchNormV2(x=fused_view(example), scale=ones, offset=zeros, mean=empty,
                                           variance=empty, epsilon=epsilon, data_format="NHWC",
                                           is_training=True)

    def sums(upstream, example, mean, variance):
        # The inference-mode gradient: sums of dy and dy * x_hat, x_hat from the given statistics.
        return tf.raw_ops.FusedBatchNormGradV2(
            y_backprop=fused_view(upstream), x=fused_view(example), scale=ones,
            reserve_space_1=tf.reshape(mean, [channels]), reserve_space_2=tf.reshape(variance, [channels]),
            epsilon=epsilon, data_format="NHWC", is_training=False,
        )

    @tf.custom_gradient
    def standardize(x, gamma, *beta):
        channel_mean, channel_variance = _per_example(moments, [x], outputs=(1, 2), size=channels)
        channel_variance = channel_variance * ((positions - 1) / positions)  # the kernel's is unbiased
        mean = group_mean(channel_mean)
        variance = group_mean(channel_variance) + group_mean(tf.square(channel_mean - mean))
        inverse = tf.math.rsqrt(variance + epsilon)
        gain = (inverse * gamma)[:, None]
        outputs = shift_and_scale(x, mean[:, None], gain, *beta)

        def grad(upstream, *_):
            sum_up_normalized, sum_up = _per_example(sums, [upstream, x, mean, variance], outputs=(1, 2),
                                                     size=channels)
            # Means over each group's elements of the gradient of x_hat, and of its product with x_hat.
            mean_up = group_mean(sum_up * gamma) / positions
            mean_up_normalized = group_mean(sum_up_normalized * gamma) / positions
            slope, bias = -inverse * inverse * mean_up_normalized, -inverse * mean_up
            grads = [input_gradient(upstream, x, mean[:, None], gain, slope[:, None], bias[:, None]),
                     tf.reduce_sum(sum_up_normalized, axis=0)]
            return grads + ([tf.reduce_sum(sum_up, axis=0)] if beta else [])

        return (outputs, tf.stop_gradient(mean), tf.stop_gradient(variance)), grad

    return standardize(view, *params)
