"""Keras masks in the layers that take them: batch, conditional batch, group, instance and switchable norm.

Keras' `Masking` and `Embedding(mask_zero=True)` give a mask of the input's
shape without its last axis; a mask may also have the input's full shape. Masked
positions must not count in the batch statistics, for every channel axis, and
inference (moving statistics) must accept the mask. Group, instance and
switchable norm take each example's (group's) statistics over its unmasked
positions of padded sequences. Expectations are float64 NumPy statistics over
the unmasked positions; masked positions hold huge values, so a leak into the
statistics shows.
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
    np.testing.assert_allclose(_numpy(outputs)[weights], expected[weights], atol=ATOL, rtol=ATOL)
    np.testing.assert_allclose(layer.moving_mean.numpy(), 0.5 * mean, atol=ATOL, rtol=ATOL)
    np.testing.assert_allclose(layer.moving_variance.numpy(), 0.5 + 0.5 * variance, atol=ATOL, rtol=ATOL)
    # Inference normalizes with the moving statistics, mask or not.
    inference = layer(x, mask=mask, training=False)
    np.testing.assert_allclose(
        _numpy(inference), R.batch_norm(x, 0.5 * mean, 0.5 + 0.5 * variance, gamma, beta, axis, EPSILON),
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
    outputs = _numpy(model(x, training=training))
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
    outputs = _numpy(layer(x, mask=mask, training=True))
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
    outputs = _numpy(layer(x, mask=mask, training=True))
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
    outputs = _numpy(model([x, labels], training=True))
    weights = _full_weights(x, mask)
    mean, variance = masked_moments(x, weights, axis)
    # The per-class gamma and beta start at ones and zeros: the output is batch norm's.
    assert np.all(norm.gamma.numpy() == 1.0) and np.all(norm.beta.numpy() == 0.0)
    expected = R.batch_norm(x, mean, variance, axis=axis, epsilon=EPSILON)
    np.testing.assert_allclose(outputs[weights], expected[weights], atol=ATOL, rtol=ATOL)
    # The mask is also passed explicitly.
    direct = norm(x, labels, training=True, inputs_mask=mask)
    np.testing.assert_allclose(_numpy(direct)[weights], expected[weights], atol=ATOL, rtol=ATOL)


# Group, instance and switchable norm on padded sequences: (batch, time, channels), a (batch, time) mask.

SEQUENCE_SHAPE = (4, 6, 4)
SEQUENCE_NORMS = ["group", "instance", "switchable"]
MEAN_LOGITS = np.array([0.3, -0.2, 0.5])  # switchable norm's mixtures (instance, layer, batch)
VARIANCE_LOGITS = np.array([-0.4, 0.1, 0.6])


def _numpy(tensor):
    return keras.ops.convert_to_numpy(tensor)  # also a PyTorch tensor that requires grad


def _lengths_mask(lengths, steps=SEQUENCE_SHAPE[1]):
    return np.arange(steps)[None, :] < np.asarray(lengths)[:, None]


def _stats(values):
    """Mean and biased variance of the float64 `values`; 0 and 0 when there are none."""
    values = np.asarray(values, np.float64).reshape(-1)
    return (values.mean(), values.var()) if values.size else (0.0, 0.0)


def _softmax(logits):
    e = np.exp(logits - np.max(logits))
    return e / e.sum()


def _group_norm_reference(x, weights, groups, gamma, beta, axis=-1, epsilon=EPSILON):
    """Each group of each example normalized with the statistics of its positions where `weights` is True."""
    x = np.moveaxis(np.asarray(x, np.float64), axis, -1)
    weights = np.moveaxis(np.asarray(weights, bool), axis, -1)
    channels = x.shape[-1]
    size = channels // groups
    y = np.empty_like(x)
    for b in range(x.shape[0]):
        for g in range(groups):
            cs = slice(g * size, (g + 1) * size)
            mean, variance = _stats(x[b][..., cs][weights[b][..., cs]])
            y[b][..., cs] = (x[b][..., cs] - mean) / np.sqrt(variance + epsilon) * gamma[cs] + beta[cs]
    return np.moveaxis(y, -1, axis)


def _switchable_reference(x, valid, gamma, beta, mean_logits, variance_logits, moving=None, epsilon=EPSILON):
    """(batch, time, channels) `x`, `valid` (batch, time): instance, layer and batch statistics over the
    valid steps only, mixed by the softmax of the logits; `moving` (mean, variance) replaces the batch's."""
    x = np.asarray(x, np.float64)
    batch, _, channels = x.shape
    if moving is None:
        batch_mean, batch_variance = np.array([_stats(x[:, :, c][valid]) for c in range(channels)]).T
    else:
        batch_mean, batch_variance = moving
    wm, wv = _softmax(mean_logits), _softmax(variance_logits)
    y = np.empty_like(x)
    for b in range(batch):
        steps = x[b][valid[b]]  # (valid steps, channels)
        layer_mean, layer_variance = _stats(steps)
        for c in range(channels):
            instance_mean, instance_variance = _stats(steps[:, c])
            mean = wm[0] * instance_mean + wm[1] * layer_mean + wm[2] * batch_mean[c]
            variance = wv[0] * instance_variance + wv[1] * layer_variance + wv[2] * batch_variance[c]
            y[b, :, c] = (x[b, :, c] - mean) / np.sqrt(variance + epsilon) * gamma[c] + beta[c]
    return y, (batch_mean, batch_variance)


def _sequence_norm(name, rng=None):
    """The layer, built for SEQUENCE_SHAPE, with random weights when `rng` is given; and its call kwargs."""
    channels = SEQUENCE_SHAPE[-1]
    if name == "group":
        layer = keras_norms.GroupNormalization(groups=2, epsilon=EPSILON)
    elif name == "instance":
        layer = keras_norms.InstanceNormalization(epsilon=EPSILON)
    else:
        layer = keras_norms.SwitchableNormalization(momentum=0.5, epsilon=EPSILON)
    layer.build(SEQUENCE_SHAPE)
    if rng is not None:
        gamma, beta = rng.uniform(0.5, 2.0, size=channels), rng.normal(size=channels)
        extra = [MEAN_LOGITS, VARIANCE_LOGITS, np.zeros(channels), np.ones(channels)]
        layer.set_weights([gamma, beta, *(extra if name == "switchable" else [])])
    return layer, ({"training": True} if name == "switchable" else {})


def _sequence_reference(name, layer, x, valid):
    gamma, beta = (np.asarray(w, np.float64) for w in layer.get_weights()[:2])
    if name == "switchable":
        mean_logits, variance_logits = (np.asarray(w, np.float64) for w in layer.get_weights()[2:4])
        return _switchable_reference(x, valid, gamma, beta, mean_logits, variance_logits)[0]
    groups = 2 if name == "group" else SEQUENCE_SHAPE[-1]
    return _group_norm_reference(x, np.broadcast_to(valid[..., None], x.shape), groups, gamma, beta)


@pytest.mark.parametrize("name", SEQUENCE_NORMS)
def test_padded_steps_do_not_change_the_statistics_of_a_sequence_norm(name):
    rng = np.random.default_rng(10)
    valid = _lengths_mask([6, 4, 2, 5])
    x = rng.normal(loc=2.0, scale=1.5, size=SEQUENCE_SHAPE).astype("float32")
    zero_padded = np.where(valid[..., None], x, 0.0).astype("float32")
    poisoned = np.where(valid[..., None], x, rng.normal(scale=1e3, size=x.shape)).astype("float32")
    layer, kwargs = _sequence_norm(name, rng)
    expected = _sequence_reference(name, layer, x, valid)
    outputs = _numpy(layer(poisoned, mask=valid, **kwargs))
    assert np.isfinite(outputs).all()
    np.testing.assert_allclose(outputs[valid], expected[valid], atol=ATOL, rtol=ATOL)
    # The padding's values do not reach the unmasked outputs.
    np.testing.assert_allclose(_numpy(layer(zero_padded, mask=valid, **kwargs))[valid], outputs[valid],
                               atol=ATOL, rtol=ATOL)
    if name == "switchable":  # the moving averages follow the masked batch statistics (momentum 0.5)
        valid_steps = np.asarray(x, np.float64)[valid]  # (valid steps of the batch, channels)
        mean, variance = valid_steps.mean(axis=0), valid_steps.var(axis=0)
        np.testing.assert_allclose(_numpy(layer.moving_mean), 0.75 * mean, atol=ATOL, rtol=ATOL)
        np.testing.assert_allclose(_numpy(layer.moving_variance), 0.25 + 0.75 * variance,
                                   atol=ATOL, rtol=ATOL)


@pytest.mark.parametrize("name", SEQUENCE_NORMS)
def test_the_mask_of_a_masking_layer_reaches_a_sequence_norm_and_goes_on(name):
    rng = np.random.default_rng(11)
    valid = _lengths_mask([3, 6, 1, 4])
    x = np.where(valid[..., None], rng.normal(loc=2.0, scale=1.5, size=SEQUENCE_SHAPE), 0.0).astype("float32")
    norm, kwargs = _sequence_norm(name)
    model = keras.Sequential([keras.Input(SEQUENCE_SHAPE[1:]), keras.layers.Masking(0.0), norm])
    expected = _sequence_reference(name, norm, x, valid)
    outputs = _numpy(model(x, **kwargs))
    np.testing.assert_allclose(outputs[valid], expected[valid], atol=ATOL, rtol=ATOL)
    # The mask goes on: a masked average after the norm takes the valid steps only.
    pooled = keras.Sequential([model, keras.layers.GlobalAveragePooling1D()])
    expected_pooled = np.stack([expected[b][valid[b]].mean(axis=0) for b in range(len(x))])
    np.testing.assert_allclose(_numpy(pooled(x, **kwargs)), expected_pooled, atol=ATOL, rtol=ATOL)


@pytest.mark.parametrize("name", SEQUENCE_NORMS)
def test_an_all_masked_example_is_finite(name):
    rng = np.random.default_rng(12)
    valid = _lengths_mask([5, 0, 3, 6])
    x = rng.normal(loc=2.0, scale=1.5, size=SEQUENCE_SHAPE).astype("float32")
    layer, kwargs = _sequence_norm(name, rng)
    expected = _sequence_reference(name, layer, x, valid)
    outputs = _numpy(layer(x, mask=valid, **kwargs))
    assert np.isfinite(outputs).all()
    np.testing.assert_allclose(outputs[valid], expected[valid], atol=ATOL, rtol=ATOL)
    if name == "switchable":  # a batch with no valid step leaves the moving averages as they are
        moving = [_numpy(w).copy() for w in (layer.moving_mean, layer.moving_variance)]
        nothing = np.zeros(valid.shape, bool)
        assert np.isfinite(_numpy(layer(x, mask=nothing, training=True))).all()
        np.testing.assert_array_equal(_numpy(layer.moving_mean), moving[0])
        np.testing.assert_array_equal(_numpy(layer.moving_variance), moving[1])


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="uses tf.GradientTape")
@pytest.mark.parametrize("name", SEQUENCE_NORMS)
def test_padded_steps_get_no_gradient(name):
    import tensorflow as tf

    rng = np.random.default_rng(13)
    valid = _lengths_mask([6, 2, 0, 4])
    x = tf.constant(rng.normal(loc=2.0, scale=1.5, size=SEQUENCE_SHAPE).astype("float32"))
    upstream = tf.constant(rng.normal(size=SEQUENCE_SHAPE).astype("float32"))
    layer, kwargs = _sequence_norm(name, rng)
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(layer(x, mask=valid, **kwargs) * upstream)  # every output, masked ones too
    gradient, *weight_gradients = tape.gradient(loss, [x, *layer.trainable_variables])
    gradient = gradient.numpy()
    assert np.all(gradient[~valid] == 0.0)
    assert np.all(np.abs(gradient[valid]).sum(axis=-1) > 0.0)
    # The all-masked example gives finite gradients to gamma, beta (and the mixture logits).
    assert len(weight_gradients) == (4 if name == "switchable" else 2)
    assert all(np.isfinite(g.numpy()).all() for g in weight_gradients)


def test_group_norm_channels_first_with_a_mask_of_the_full_shape():
    rng = np.random.default_rng(14)
    shape = (3, 4, 5, 5)  # (batch, channels, height, width)
    weights = rng.uniform(size=shape) < 0.6
    weights[2, :2] = False  # the first group of example 2 has no position
    x = np.where(weights, rng.normal(loc=2.0, scale=1.5, size=shape), 1e3).astype("float32")
    layer = keras_norms.GroupNormalization(groups=2, axis=1, epsilon=EPSILON)
    layer.build(shape)
    gamma, beta = rng.uniform(0.5, 2.0, size=4), rng.normal(size=4)
    layer.set_weights([gamma, beta])
    outputs = _numpy(layer(x, mask=weights))
    assert np.isfinite(outputs).all()
    expected = _group_norm_reference(x, weights, 2, gamma, beta, axis=1)
    np.testing.assert_allclose(outputs[weights], expected[weights], atol=ATOL, rtol=ATOL)


def test_switchable_norm_inference_masks_the_instance_and_layer_statistics():
    rng = np.random.default_rng(15)
    valid = _lengths_mask([2, 6, 5, 3])
    x = np.where(valid[..., None], rng.normal(loc=2.0, scale=1.5, size=SEQUENCE_SHAPE), 1e3).astype("float32")
    layer, _ = _sequence_norm("switchable", rng)
    channels = SEQUENCE_SHAPE[-1]
    moving = rng.normal(size=channels), rng.uniform(0.5, 2.0, size=channels)
    gamma, beta = layer.get_weights()[:2]
    layer.set_weights([gamma, beta, MEAN_LOGITS, VARIANCE_LOGITS, *moving])
    outputs = _numpy(layer(x, mask=valid, training=False))
    expected, _ = _switchable_reference(x, valid, gamma, beta, MEAN_LOGITS, VARIANCE_LOGITS, moving=moving)
    np.testing.assert_allclose(outputs[valid], expected[valid], atol=ATOL, rtol=ATOL)
    np.testing.assert_allclose(_numpy(layer.moving_mean), moving[0], rtol=1e-6)  # inference: no update


@pytest.mark.parametrize("name", SEQUENCE_NORMS)
def test_a_mask_that_does_not_fit_a_sequence_norm_names_both_shapes(name):
    layer, kwargs = _sequence_norm(name)
    x = np.ones(SEQUENCE_SHAPE, "float32")
    for mask_shape in [(4, 5), (4, 6, 3), (4,)]:
        message = f"mask.shape={mask_shape}, inputs.shape={SEQUENCE_SHAPE}"
        with pytest.raises(ValueError, match=re.escape(message)):
            layer(x, mask=np.ones(mask_shape, bool), **kwargs)
