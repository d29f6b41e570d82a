"""Keras masks in the layers that take them: batch norm and conditional batch norm.

Keras' `Masking` and `Embedding(mask_zero=True)` give a mask of the input's
shape without its last axis; a mask may also have the input's full shape. Masked
positions must not count in the batch statistics, for every channel axis, and
inference (moving statistics) must accept the mask. Expectations are float64
NumPy statistics over the unmasked positions; masked positions hold huge values,
so a leak into the statistics shows.
"""

from __future__ import annotations

import re

import keras
import numpy as np
import pytest
import references as R

import keras_norms

ATOL = 1e-5
EPSILON = 1e-3


def masked_moments(x, weights, axis):
    """Per-channel mean and biased variance of `x` over the positions where `weights` (0/1) is 1."""
    channels = x.shape[axis]
    x = np.moveaxis(np.asarray(x, np.float64), axis, -1).reshape(-1, channels)
    weights = np.moveaxis(np.asarray(weights, np.float64), axis, -1).reshape(-1, channels)
    count = weights.sum(axis=0)
    mean = (x * weights).sum(axis=0) / count
    variance = (np.square(x - mean) * weights).sum(axis=0) / count
    return mean, variance


def _full_weights(x, mask):
    """`mask` (the input's shape without the last axis, or the full shape) broadcast to `x`."""
    mask = mask[..., None] if mask.ndim == x.ndim - 1 else mask
    return np.broadcast_to(mask, x.shape)


def _poisoned(rng, shape, mask):
    x = rng.normal(loc=2.0, scale=1.5, size=shape).astype("float32")
    weights = _full_weights(x, mask)
    return np.where(weights, x, np.float32(1e3)).astype("float32"), weights


SHAPES_AND_AXES = [((4, 5, 3), -1), ((4, 3, 5), 1), ((4, 3, 3, 2), -1), ((4, 3, 3, 2), 1),
                   ((5, 2, 3), 1), ((5, 3, 3, 2), 1)]


def _mask(rng, shape, kind):
    mask_shape = shape[:-1] if kind == "without-last-axis" else shape
    mask = rng.uniform(size=mask_shape) < 0.6
    mask.reshape(-1)[:2] = True  # every channel keeps positions
    return mask


@pytest.mark.parametrize(("shape", "axis"), SHAPES_AND_AXES, ids=str)
@pytest.mark.parametrize("kind", ["without-last-axis", "full"])
def test_masked_positions_do_not_count_in_the_statistics(shape, axis, kind):
    rng = np.random.default_rng(0)
    mask = _mask(rng, shape, kind)
    x, weights = _poisoned(rng, shape, mask)
    mean, variance = masked_moments(x, weights, axis)
    layer = keras_norms.BatchNormalization(axis=axis, momentum=0.5)
    layer.build(shape)
    gamma = rng.uniform(0.5, 2.0, size=shape[axis])
    beta = rng.normal(size=shape[axis])
    layer.set_weights([gamma, beta, np.zeros(shape[axis]), np.ones(shape[axis])])

    outputs = layer(x, mask=mask, training=True)
    expected = R.batch_norm(x, mean, variance, gamma, beta, axis, EPSILON)
    np.testing.assert_allclose(np.asarray(outputs)[weights], expected[weights], atol=ATOL, rtol=ATOL)
    np.testing.assert_allclose(layer.moving_mean.numpy(), 0.5 * mean, atol=ATOL, rtol=ATOL)
    np.testing.assert_allclose(layer.moving_variance.numpy(), 0.5 + 0.5 * variance, atol=ATOL, rtol=ATOL)
    # Inference normalizes with the moving statistics, mask or not.
    inference = layer(x, mask=mask, training=False)
    np.testing.assert_allclose(
        inference, R.batch_norm(x, 0.5 * mean, 0.5 + 0.5 * variance, gamma, beta, axis, EPSILON),
        atol=ATOL, rtol=ATOL,
    )


def _masking_model(shape, axis, layer):
    return keras.Sequential([keras.Input(shape[1:]), keras.layers.Masking(0.0), layer])


@pytest.mark.parametrize(("shape", "axis"), SHAPES_AND_AXES, ids=str)
@pytest.mark.parametrize("training", [True, False])
def test_the_mask_of_a_masking_layer(shape, axis, training):
    rng = np.random.default_rng(1)
    mask = _mask(rng, shape, "without-last-axis")
    x = rng.normal(loc=2.0, scale=1.5, size=shape).astype("float32")
    x[~mask] = 0.0  # what Masking(0.0) masks
    weights = _full_weights(x, mask)
    norm = keras_norms.BatchNormalization(axis=axis, momentum=0.0)
    model = _masking_model(shape, axis, norm)
    outputs = np.asarray(model(x, training=training))
    mean, variance = masked_moments(x, weights, axis)
    if not training:
        mean, variance = np.zeros(shape[axis]), np.ones(shape[axis])
    np.testing.assert_allclose(outputs[weights], R.batch_norm(x, mean, variance, axis=axis)[weights],
                               atol=ATOL, rtol=ATOL)
    if training:  # momentum 0: the moving statistics are the masked batch statistics
        np.testing.assert_allclose(norm.moving_mean.numpy(), mean, atol=ATOL, rtol=ATOL)


@pytest.mark.parametrize("axis", [-1, 1])
def test_the_mask_of_an_embedding_with_mask_zero_in_graph_mode_fit(axis):
    rng = np.random.default_rng(2)
    ids = rng.integers(1, 10, size=(8, 6))
    for row, length in enumerate([6, 2, 4, 3, 1, 5, 6, 2]):
        ids[row, length:] = 0
    embedding = keras.layers.Embedding(10, 4, mask_zero=True)
    norm = keras_norms.BatchNormalization(axis=axis, momentum=0.0)
    model = keras.Sequential([keras.Input((6,), dtype="int32"), embedding, norm,
                              keras.layers.GlobalAveragePooling1D(), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
    model.fit(ids, np.zeros((8, 1)), batch_size=8, epochs=1, verbose=0)
    x = embedding.embeddings.numpy()[ids]
    weights = _full_weights(x, ids != 0)
    mean, _ = masked_moments(x, weights, axis)
    np.testing.assert_allclose(norm.moving_mean.numpy(), mean, atol=ATOL, rtol=ATOL)


def test_virtual_batches_take_the_mask():
    rng = np.random.default_rng(3)
    shape, k = (8, 5, 3), 4
    mask = _mask(rng, shape, "without-last-axis")
    mask[:, 0] = True
    x, weights = _poisoned(rng, shape, mask)
    layer = keras_norms.BatchNormalization(virtual_batch_size=k, momentum=0.0, center=False, scale=False)
    outputs = np.asarray(layer(x, mask=mask, training=True))
    means, variances = [], []
    for start in range(0, shape[0], k):
        part = slice(start, start + k)
        mean, variance = masked_moments(x[part], weights[part], -1)
        expected = R.batch_norm(x[part], mean, variance, epsilon=EPSILON)
        kept = weights[part]
        np.testing.assert_allclose(outputs[part][kept], expected[kept], atol=ATOL, rtol=ATOL)
        means.append(mean)
        variances.append(variance)
    np.testing.assert_allclose(layer.moving_mean.numpy(), np.mean(means, axis=0), atol=ATOL, rtol=ATOL)


@pytest.mark.parametrize("mask_shape", [(4, 1, 3), (1, 5, 1), (4, 1, 3, 2), (4, 5, 1, 1)], ids=str)
def test_a_mask_with_sizes_of_one_broadcasts(mask_shape):
    rng = np.random.default_rng(5)
    shape = (4, 5, 3, 2)
    mask = rng.uniform(size=mask_shape) < 0.7
    mask.reshape(-1)[0] = True
    x, weights = _poisoned(rng, shape, mask)
    mean, variance = masked_moments(x, weights, -1)
    layer = keras_norms.BatchNormalization(center=False, scale=False, momentum=0.0)
    outputs = np.asarray(layer(x, mask=mask, training=True))
    expected = R.batch_norm(x, mean, variance, epsilon=EPSILON)
    np.testing.assert_allclose(outputs[weights], expected[weights], atol=ATOL, rtol=ATOL)
    np.testing.assert_allclose(layer.moving_mean.numpy(), mean, atol=ATOL, rtol=ATOL)


@pytest.mark.parametrize("mask_shape", [(4,), (4, 6), (4, 5, 2), (4, 5, 3, 1)], ids=str)
def test_a_mask_of_another_shape_names_both_shapes(mask_shape):
    layer = keras_norms.BatchNormalization()
    x = np.ones((4, 5, 3), "float32")
    message = f"mask.shape={mask_shape}, inputs.shape=(4, 5, 3)"
    with pytest.raises(ValueError, match=re.escape(message)):
        layer(x, mask=np.ones(mask_shape, bool), training=True)


@pytest.mark.parametrize("axis", [-1, 1])
def test_conditional_batch_norm_takes_the_mask_of_its_inputs(axis):
    rng = np.random.default_rng(4)
    shape = (6, 4, 3)
    mask = _mask(rng, shape, "without-last-axis")
    x = rng.normal(loc=2.0, scale=1.5, size=shape).astype("float32")
    x[~mask] = 0.0
    sequence = keras.Input(shape[1:])
    label = keras.Input((), dtype="int32")
    norm = keras_norms.ConditionalBatchNormalization(num_classes=2, axis=axis, momentum=0.0)
    model = keras.Model([sequence, label], norm(keras.layers.Masking(0.0)(sequence), label))
    labels = np.array([0, 1, 1, 0, 1, 0], "int32")
    outputs = np.asarray(model([x, labels], training=True))
    weights = _full_weights(x, mask)
    mean, variance = masked_moments(x, weights, axis)
    # The per-class gamma and beta start at ones and zeros: the output is batch norm's.
    assert np.all(norm.gamma.numpy() == 1.0) and np.all(norm.beta.numpy() == 0.0)
    expected = R.batch_norm(x, mean, variance, axis=axis, epsilon=EPSILON)
    np.testing.assert_allclose(outputs[weights], expected[weights], atol=ATOL, rtol=ATOL)
    # The mask is also passed explicitly.
    direct = norm(x, labels, training=True, inputs_mask=mask)
    np.testing.assert_allclose(np.asarray(direct)[weights], expected[weights], atol=ATOL, rtol=ATOL)
