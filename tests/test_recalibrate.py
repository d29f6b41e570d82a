"""recalibrate_batch_norms (PreciseBN) against float64 NumPy population statistics.

A batch norm's recalibrated moving mean and variance must be the mean and biased
variance of everything it normalized in the batches given (masked positions left
out), computed here in float64 over the whole data at once; nothing else in the
model may change.
"""

from __future__ import annotations

import inspect
import re

import keras
import numpy as np
import pytest
import references as R
import tensorflow as tf
from keras_norms.models import lenet

import keras_norms
from keras_norms.study.datasets import digits, fit_to_shape

TOLERANCE = 1e-5

# Keras' own BatchNormalization takes `renorm` from Keras 3.14 on (read from its signature); keras-norms'
# always does.
KERAS_HAS_RENORM = "renorm" in inspect.signature(keras.layers.BatchNormalization.__init__).parameters


def _data(shape, seed=0, loc=3.0, scale=2.0):
    return np.random.default_rng(seed).normal(loc, scale, size=shape).astype("float32")


def _single(norm):
    return keras.Sequential([keras.Input((5,)), norm])


def _assert_statistics(layer, data, axis=-1):
    mean, variance = R.batch_moments(data, axis)
    np.testing.assert_allclose(layer.moving_mean.numpy(), mean, rtol=TOLERANCE, atol=TOLERANCE)
    np.testing.assert_allclose(layer.moving_variance.numpy(), variance, rtol=TOLERANCE, atol=TOLERANCE)


@pytest.mark.parametrize("norm", [keras.layers.BatchNormalization, keras_norms.BatchNormalization],
                         ids=["keras", "keras_norms"])
def test_one_batch_norm_gets_the_statistics_of_the_whole_data(norm):
    x = _data((100, 5))
    model = _single(norm(momentum=0.99))
    counts = keras_norms.recalibrate_batch_norms(model, x, batch_size=32, verbose=0)  # 32, 32, 32, 4
    _assert_statistics(model.layers[0], x)
    assert list(counts.values()) == [100]


def test_steps_and_the_kinds_of_data():
    x = _data((96, 5), seed=1)
    model = _single(keras_norms.BatchNormalization())
    keras_norms.recalibrate_batch_norms(model, x, steps=2, batch_size=16, verbose=0)
    _assert_statistics(model.layers[0], x[:32])
    dataset = tf.data.Dataset.from_tensor_slices((x, np.zeros(96))).batch(24)  # (x, y) batches
    keras_norms.recalibrate_batch_norms(model, dataset, verbose=0)
    _assert_statistics(model.layers[0], x)
    batches = (x[i:i + 10] for i in range(0, 96, 10))  # a generator, the last batch of 6
    keras_norms.recalibrate_batch_norms(model, batches, verbose=0)
    _assert_statistics(model.layers[0], x)


def test_a_deeper_model_pools_what_each_batch_norm_sees_in_training_mode():
    """The second batch norm's statistics are those of its inputs while the first normalizes each
    batch by its own statistics (as in training), pooled over the batches."""
    rng = np.random.default_rng(2)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(6, name="d1"),
                              keras.layers.BatchNormalization(name="bn1"), keras.layers.Dense(3, name="d2"),
                              keras.layers.BatchNormalization(name="bn2")])
    for weight in model.weights:
        weight.assign(rng.normal(0.5, 1.0, size=weight.shape).astype("float32"))
    x = _data((60, 4), seed=3)
    keras_norms.recalibrate_batch_norms(model, x, batch_size=20, verbose=0)

    d1, bn1, d2 = (model.get_layer(name) for name in ("d1", "bn1", "d2"))
    h1 = x.astype(np.float64) @ d1.kernel.numpy() + d1.bias.numpy()
    h2 = []
    for batch in np.split(h1, 3):
        mean, variance = R.batch_moments(batch)
        normalized = R.batch_norm(batch, mean, variance, bn1.gamma.numpy(), bn1.beta.numpy(), epsilon=1e-3)
        h2.append(normalized @ d2.kernel.numpy() + d2.bias.numpy())
    _assert_statistics(bn1, h1)
    _assert_statistics(model.get_layer("bn2"), np.concatenate(h2))


@pytest.mark.parametrize("renorm_norm", [
    pytest.param(keras.layers.BatchNormalization, id="keras", marks=pytest.mark.skipif(
        not KERAS_HAS_RENORM,
        reason=f"Keras {keras.__version__}'s BatchNormalization has no `renorm` argument")),
    pytest.param(keras_norms.BatchNormalization, id="keras_norms"),
])
def test_nothing_else_changes(renorm_norm):
    rng = np.random.default_rng(4)
    model = keras.Sequential([
        keras.Input((4, 4, 3)), keras.layers.Conv2D(4, 3, padding="same"),
        keras_norms.SwitchableNormalization(), keras.layers.Dropout(0.5),
        renorm_norm(renorm=True), keras.layers.Flatten(), keras.layers.Dense(2),
    ])
    model.compile(optimizer="adam", loss="mse")
    x = _data((16, 4, 4, 3), seed=5)
    model.fit(x, rng.normal(size=(16, 2)), epochs=1, batch_size=8, verbose=0)
    renorm = model.layers[3]
    statistics = {id(renorm.moving_mean), id(renorm.moving_variance), id(renorm.moving_stddev)}
    before = {id(v): v.numpy().copy() for v in model.variables + model.optimizer.variables}
    keras_norms.recalibrate_batch_norms(model, x, batch_size=8, verbose=0)
    for variable in model.variables + model.optimizer.variables:
        if id(variable) not in statistics:
            np.testing.assert_array_equal(variable.numpy(), before[id(variable)], err_msg=variable.path)
    # Renorm keeps its moving standard deviation in step with the new variance.
    np.testing.assert_allclose(renorm.moving_stddev.numpy(),
                               np.sqrt(renorm.moving_variance.numpy() + renorm.epsilon), rtol=1e-6)


def test_batch_norms_inside_conditional_batch_norm_and_spade():
    image = keras.Input((4, 4, 3))
    label = keras.Input((), dtype="int32")
    segmentation = keras.Input((4, 4, 2))
    cbn = keras_norms.ConditionalBatchNormalization(num_classes=2)
    spade = keras_norms.SPADE(hidden_channels=3)
    x = cbn(image, label)
    model = keras.Model([image, label, segmentation], spade(x, segmentation))
    images, labels, maps = _data((12, 4, 4, 3), seed=6), np.arange(12) % 2, _data((12, 4, 4, 2), seed=7)
    counts = keras_norms.recalibrate_batch_norms(model, [images, labels, maps], batch_size=5, verbose=0)
    assert len(counts) == 2 and set(counts.values()) == {12 * 16}
    _assert_statistics(cbn.normalization, images)
    # SPADE's batch norm sees conditional batch norm's output under batch statistics, batch by batch.
    gamma, beta = cbn.gamma.numpy(), cbn.beta.numpy()
    seen = []
    for part in (slice(0, 5), slice(5, 10), slice(10, 12)):
        mean, variance = R.batch_moments(images[part])
        normalized = R.batch_norm(images[part], mean, variance, epsilon=1e-3)
        seen.append(normalized * gamma[labels[part]][:, None, None] + beta[labels[part]][:, None, None])
    _assert_statistics(spade.normalization, np.concatenate(seen))


def test_masked_positions_do_not_count():
    x = _data((12, 6, 3), seed=8)
    lengths = np.random.default_rng(9).integers(1, 7, size=12)
    mask = np.arange(6)[None, :] < lengths[:, None]
    x[~mask] = 0.0
    model = keras.Sequential([keras.Input((6, 3)), keras.layers.Masking(0.0),
                              keras_norms.BatchNormalization()])
    keras_norms.recalibrate_batch_norms(model, x, batch_size=5, verbose=0)
    _assert_statistics(model.layers[1], x[mask])


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(("kwargs", "match"), [({"steps": 0}, "steps=0"), ({"steps": -2}, "steps=-2"),
                                               ({"steps": 1.5}, "steps=1.5"),
                                               ({"batch_size": 0}, "batch_size=0")])
def test_bad_arguments_name_the_value_and_change_nothing(kwargs, match):
    model = _single(keras_norms.BatchNormalization())
    with pytest.raises(ValueError, match=re.escape(match)):
        keras_norms.recalibrate_batch_norms(model, _data((8, 5)), verbose=0, **kwargs)
    np.testing.assert_array_equal(model.layers[0].moving_mean.numpy(), np.zeros(5))


def test_data_that_does_not_fit_changes_nothing():
    model = _single(keras_norms.BatchNormalization())
    good, bad = _data((8, 5)), _data((8, 7))
    for data in ([good[:4], bad], bad):
        with pytest.raises(ValueError, match="Argument `data`"):
            keras_norms.recalibrate_batch_norms(model, iter(data) if isinstance(data, list) else data,
                                                verbose=0)
        np.testing.assert_array_equal(model.layers[0].moving_mean.numpy(), np.zeros(5))
        np.testing.assert_array_equal(model.layers[0].moving_variance.numpy(), np.ones(5))
    with pytest.raises(ValueError, match="no batch"):
        keras_norms.recalibrate_batch_norms(model, iter([]), verbose=0)


def test_models_without_batch_norm_or_not_built():
    with pytest.raises(ValueError, match="no batch normalization"):
        keras_norms.recalibrate_batch_norms(_single(keras_norms.LayerNormalization()), _data((4, 5)))
    with pytest.raises(ValueError, match="built=False"):
        keras_norms.recalibrate_batch_norms(keras.Sequential([keras.layers.BatchNormalization()]),
                                            _data((4, 5)))


# ----------------------------------------------------------------------------- PreciseBN on digits


def _accuracy(model, x, y, training):
    logits = np.concatenate([np.asarray(model(x[i:i + 64], training=training)) for i in range(0, len(x), 64)])
    return float(np.mean(logits.argmax(axis=1) == y))


def test_recalibration_recovers_the_accuracy_of_batch_statistics_on_digits():
    """LeNet with batch norm at Keras' momentum 0.99, trained 2 epochs: its moving averages lag
    behind; recomputed over the training set they give the accuracy of batch statistics."""
    keras.utils.set_random_seed(0)
    data = digits(seed=0)
    x_train, x_test = fit_to_shape(data.x_train, (16, 16, 1)), fit_to_shape(data.x_test, (16, 16, 1))
    model = lenet("batch", input_shape=(16, 16, 1), momentum=0.99)
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x_train, data.y_train, batch_size=32, epochs=2, verbose=0)
    moving = _accuracy(model, x_test, data.y_test, training=False)
    batch = _accuracy(model, x_test, data.y_test, training=True)
    keras_norms.recalibrate_batch_norms(model, x_train, batch_size=64, verbose=0)
    recalibrated = _accuracy(model, x_test, data.y_test, training=False)
    print(f"digits LeNet test accuracy: moving averages {moving:.3f}, batch statistics {batch:.3f}, "
          f"recalibrated {recalibrated:.3f}")
    assert abs(recalibrated - batch) <= 0.02, (moving, batch, recalibrated)
