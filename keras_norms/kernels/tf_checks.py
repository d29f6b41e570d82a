"""Run-time value checks on TensorFlow: eager values, and assertions that fail a graph when it runs."""

from __future__ import annotations

import numpy as np
import tensorflow as tf


def values_known_now(x) -> np.ndarray | None:
    """The values of `x` when it holds them (eager), None for a tensor of a graph being traced."""
    if isinstance(x, tf.Tensor) and tf.executing_eagerly() and hasattr(x, "numpy"):
        return x.numpy()
    return None


def assert_ids_in_range(ids, rows: int, message: str):
    """`ids`, behind an assertion that raises `InvalidArgumentError` with `message` and the bad ids.

    The graph checks the ids when it runs (`tf.function`, `model.fit`). XLA
    compiles assertions to nothing, so under `jit_compile=True` nothing is checked.
    """
    ids = tf.convert_to_tensor(ids)
    outside = tf.logical_or(ids < 0, ids >= rows)
    check = tf.debugging.Assert(
        tf.logical_not(tf.reduce_any(outside)),
        [message, "Received ids:", tf.boolean_mask(ids, outside)],
        summarize=16,
    )
    with tf.control_dependencies([check]):
        return tf.identity(ids)
