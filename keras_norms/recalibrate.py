"""PreciseBN: batch norm moving statistics recomputed as population statistics of the data.

Moving averages lag behind the weights while a model trains, most with a high
momentum and few steps; Wu and Johnson (2021) show how much accuracy that
costs, and that recomputing the statistics over many batches recovers it.

Examples:
    >>> import numpy as np, keras, keras_norms
    >>> model = keras.Sequential([keras.Input((3,)), keras.layers.BatchNormalization()])
    >>> data = np.random.default_rng(0).normal(5.0, 2.0, size=(64, 3)).astype("float32")
    >>> counts = keras_norms.recalibrate_batch_norms(model, data, batch_size=16, verbose=0)
    >>> bool(np.allclose(model.layers[0].moving_mean.numpy(), data.mean(axis=0), atol=1e-5))
    True
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable

import keras
import numpy as np
from keras import ops

from keras_norms import functional as F
from keras_norms.convert import check_model, is_batch_norm

__all__ = ["recalibrate_batch_norms"]


class _Population:
    """Count, mean and sum of squared deviations per channel, merged batch by batch (Chan et al.)."""

    def __init__(self):
        self.count = self.mean = self.m2 = None

    def add(self, count, mean, m2) -> None:
        # stop_gradient: on PyTorch, statistics of a layer's output after trainable weights require grad.
        count, mean, m2 = (np.asarray(ops.convert_to_numpy(ops.stop_gradient(a)), np.float64)
                           for a in (count, mean, m2))
        if self.count is None:
            self.count, self.mean, self.m2 = count, mean, m2
            return
        total = self.count + count
        safe = np.maximum(total, 1.0)
        delta = mean - self.mean
        self.mean = self.mean + delta * count / safe
        self.m2 = self.m2 + m2 + delta**2 * self.count * count / safe
        self.count = total


def _batch_statistics(layer, inputs, mask):
    """Per-channel count, mean and sum of squared deviations of what `layer` normalizes."""
    rank = len(inputs.shape)
    axes = tuple(a for a in range(rank) if a != layer.axis % rank)
    if mask is not None:
        # Keras' convention: a mask of one rank less covers the positions along the last axis.
        mask = ops.expand_dims(mask, -1) if len(mask.shape) == rank - 1 else mask
        mask = ops.broadcast_to(ops.cast(mask, "bool"), ops.shape(inputs))
    mean, variance = F.moments(inputs, axes, mask=mask)
    if mask is None:
        per_channel = ops.size(inputs) // ops.shape(inputs)[layer.axis % rank]
        count = ops.ones_like(mean) * ops.cast(per_channel, mean.dtype)
    else:
        count = ops.sum(ops.cast(mask, mean.dtype), axis=axes)
    return count, mean, variance * count


def _record_calls(layers, records):
    """Makes each layer of `layers` normalize with batch statistics and append its statistics to
    `records[i]`; returns a function that undoes it."""
    originals = []
    for index, layer in enumerate(layers):
        original = layer.call

        def call(inputs, training=None, mask=None, _layer=layer, _original=original, _index=index):
            records[_index].append(_batch_statistics(_layer, inputs, mask))
            return _original(inputs, training=True, mask=mask)

        originals.append(original)
        layer.call = call

    def restore():
        for layer in layers:
            del layer.call

    return restore


def _inputs_of(element):
    # Keras' convention: a tuple is (x, y) or (x, y, sample_weight); anything else is x.
    return element[0] if isinstance(element, tuple) else element


def _batches(data, batch_size: int) -> Iterable:
    if hasattr(data, "__array__") or isinstance(data, (list, dict)):
        arrays = data if isinstance(data, (list, dict)) else [data]
        flat = list(arrays.values()) if isinstance(arrays, dict) else arrays
        total = len(flat[0])
        for start in range(0, total, batch_size):
            part = {k: v[start:start + batch_size] for k, v in arrays.items()} if isinstance(arrays, dict) \
                else [a[start:start + batch_size] for a in arrays]
            yield part if isinstance(data, (list, dict)) else part[0]
        return
    for element in data:
        yield _inputs_of(element)


def _check_steps(steps):
    if steps is None:
        return None
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 1:
        raise ValueError(f"Argument `steps` must be a positive int or None (all of `data`). Received: "
                         f"steps={steps!r}")
    return int(steps)


def recalibrate_batch_norms(model, data, steps: int | None = None, *, batch_size: int = 32,
                            verbose: int = 1) -> dict[str, int]:
    """Sets every batch norm's moving mean and variance to population statistics over `data` (PreciseBN).

    The model runs forward on `steps` batches of `data` with each batch norm
    normalizing by batch statistics, as in training (other layers, such as
    dropout, in inference mode). Each batch norm's inputs are pooled over all
    batches, each weighted by its number of elements (masked positions left
    out), and the pooled mean and biased variance replace its moving
    statistics. Nothing else changes: no trainable weight, no other
    statistic, no optimizer state. Keras' and keras-norms' batch norms count,
    including those inside `ConditionalBatchNormalization` and `SPADE`.

    Use it after training (most of all with a high momentum or few steps),
    after `convert_norms` or weight changes that leave the moving statistics
    stale, or to adapt a model to new data without training it.

    Args:
        model: A built Sequential or functional model.
        data: Model inputs: a `tf.data.Dataset` or another iterable of batches
            (a tuple is read as `(x, y[, sample_weight])`), or arrays (a NumPy
            array, or a list or dict of them for several inputs) cut into
            batches of `batch_size`.
        steps: How many batches to use; `None` uses all of `data`.
        batch_size: The batch size for array `data`.
        verbose: 1 shows a progress bar, 0 nothing.

    Returns:
        The number of positions each batch norm's statistics pooled, by layer path.

    Raises:
        TypeError: `model` is not a Keras model.
        ValueError: `model` is not built or has no batch norm, `steps` or
            `batch_size` is not a positive int, or `data` is empty or does not
            fit the model. The model is then left as it was.

    Reference:
        - Wu and Johnson, "Rethinking 'Batch' in BatchNorm", 2021.
          [arXiv:2105.07576](https://arxiv.org/abs/2105.07576)

    Examples:
        >>> import numpy as np, keras, keras_norms
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8),
        ...                           keras.layers.BatchNormalization()])
        >>> x = np.random.default_rng(0).normal(size=(100, 4)).astype("float32")
        >>> counts = keras_norms.recalibrate_batch_norms(model, x, verbose=0)
        >>> list(counts.values())
        [100]
    """
    check_model(model)
    steps = _check_steps(steps)
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError(f"Argument `batch_size` must be a positive int. Received: batch_size={batch_size!r}")
    layers = [layer for layer in model._flatten_layers(include_self=False) if is_batch_norm(layer)]
    if not layers:
        raise ValueError(f"The model has no batch normalization layer to recalibrate. Received: "
                         f"model={model.name!r}")
    records = [[] for _ in layers]

    def forward(batch):
        # Per layer, the (count, mean, m2) of each of its calls (a shared layer is called more than once).
        for record in records:
            record.clear()
        model(batch, training=False)
        return [list(record) for record in records]

    step, errors = forward, (ValueError, TypeError)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        step, errors = tf.function(forward, reduce_retracing=True), (*errors, tf.errors.InvalidArgumentError)
    populations = [_Population() for _ in layers]
    saved = [(variable, ops.convert_to_numpy(variable)) for variable in model.non_trainable_variables]
    restore_calls = _record_calls(layers, records)
    progress = keras.utils.Progbar(steps, verbose=verbose, unit_name="batch")
    seen = 0
    try:
        for batch in _batches(data, batch_size):
            if steps is not None and seen >= steps:
                break
            try:
                recorded = step(batch)
            except errors as error:
                raise ValueError(f"Argument `data` does not fit the model: batch {seen} failed with: "
                                 f"{error}") from None
            for population, calls in zip(populations, recorded, strict=True):
                for count, mean, m2 in calls:
                    population.add(count, mean, m2)
            seen += 1
            progress.update(seen)
    finally:
        restore_calls()
        for variable, value in saved:
            variable.assign(value)
    if seen == 0:
        raise ValueError("Argument `data` gave no batch: there is nothing to recalibrate with.")
    counts = {}
    for layer, population in zip(layers, populations, strict=True):
        variance = population.m2 / np.maximum(population.count, 1.0)
        layer.moving_mean.assign(population.mean.astype(layer.moving_mean.dtype))
        layer.moving_variance.assign(variance.astype(layer.moving_variance.dtype))
        if getattr(layer, "renorm", False):
            # Batch renormalization derives its moving variance from the moving standard deviation.
            layer.moving_stddev.assign(np.sqrt(variance + layer.epsilon).astype(layer.moving_stddev.dtype))
        counts[layer.path] = int(math.floor(population.count.max()))
    return counts
