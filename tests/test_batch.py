"""Behaviour of keras_norms.BatchNormalization against float64 NumPy simulations.

Every expectation is computed here in float64 from the formulas of the papers (and
the documented Keras update rules): the moving averages, ghost batches, batch
renormalization are simulated step by step in NumPy (masks: tests/test_masks.py).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from references import batch_moments, batch_norm, numerical_gradient

import keras_norms

EPSILON = 1e-3
ATOL = 1e-5


def random_batches(rng, count, shape, axis=-1):
    """Batches whose per-channel mean and scale differ from step to step (so the steps matter)."""
    channels = shape[axis]
    cshape = [1] * len(shape)
    cshape[axis] = channels
    batches = []
    for _ in range(count):
        mean = rng.normal(scale=2.0, size=cshape)
        scale = rng.uniform(0.5, 3.0, size=cshape)
        batches.append((rng.normal(size=shape) * scale + mean).astype("float32"))
    return batches


def moving_average(moving, value, momentum):
    return moving * momentum + value * (1.0 - momentum)


def simulate_moving_statistics(batches, momentum, axis=-1, mean=0.0, variance=1.0):
    """Keras' rule: ``moving = moving * momentum + batch_statistic * (1 - momentum)``."""
    channels = batches[0].shape[axis]
    mean = np.full(channels, mean, np.float64)
    variance = np.full(channels, variance, np.float64)
    for x in batches:
        batch_mean, batch_variance = batch_moments(x, axis)
        mean = moving_average(mean, batch_mean, momentum)
        variance = moving_average(variance, batch_variance, momentum)
    return mean, variance


def virtual_batch_train(x, k, gamma, beta, axis=-1):
    """Ghost batch norm: each consecutive group of k examples normalized on its own."""
    outputs, means, variances = [], [], []
    for start in range(0, x.shape[0], k):
        group = x[start : start + k]
        mean, variance = batch_moments(group, axis)
        outputs.append(batch_norm(group, mean, variance, gamma, beta, axis, EPSILON))
        means.append(mean)
        variances.append(variance)
    return np.concatenate(outputs), np.mean(means, axis=0), np.mean(variances, axis=0)


class RenormSimulation:
    """Batch renormalization (Ioffe 2017, Algorithm 1) with Keras' variables and update rule.

    Training: ``r = clip(sigma_B / s, rmin, rmax)``, ``d = clip((mu_B - m) / s, -dmax, dmax)``
    with ``sigma_B = sqrt(var_B + eps)``, ``m``/``s`` the renorm mean/stddev (``s`` floored at
    ``sqrt(eps)``); ``y = ((x - mu_B) / sigma_B * r + d) * gamma + beta``. Then the renorm
    averages move with ``renorm_momentum``, the moving mean and stddev with ``momentum``,
    and ``moving_variance = max(moving_stddev**2 - eps, 0)``.
    """

    def __init__(self, channels, momentum, renorm_momentum, clipping, mean=0.0, variance=1.0):
        self.momentum = momentum
        self.renorm_momentum = renorm_momentum
        self.clipping = clipping
        self.moving_mean = np.full(channels, mean, np.float64)
        self.moving_variance = np.full(channels, variance, np.float64)
        self.moving_stddev = np.sqrt(self.moving_variance)
        self.renorm_mean = self.moving_mean.copy()
        self.renorm_stddev = self.moving_stddev.copy()

    def corrections(self, batch_mean, batch_stddev):
        stddev = np.maximum(self.renorm_stddev, np.sqrt(EPSILON))
        r = batch_stddev / stddev
        d = (batch_mean - self.renorm_mean) / stddev
        if "rmin" in self.clipping:
            r = np.maximum(r, self.clipping["rmin"])
        if "rmax" in self.clipping:
            r = np.minimum(r, self.clipping["rmax"])
        if "dmax" in self.clipping:
            d = np.clip(d, -self.clipping["dmax"], self.clipping["dmax"])
        return r, d

    def step(self, x, gamma, beta, axis=-1):
        batch_mean, batch_variance = batch_moments(x, axis)
        batch_stddev = np.sqrt(batch_variance + EPSILON)
        r, d = self.corrections(batch_mean, batch_stddev)
        outputs = renorm_output(x, batch_mean, batch_stddev, r, d, gamma, beta, axis)
        self.renorm_mean = moving_average(self.renorm_mean, batch_mean, self.renorm_momentum)
        self.renorm_stddev = moving_average(self.renorm_stddev, batch_stddev, self.renorm_momentum)
        self.moving_mean = moving_average(self.moving_mean, batch_mean, self.momentum)
        self.moving_stddev = moving_average(self.moving_stddev, batch_stddev, self.momentum)
        self.moving_variance = np.maximum(self.moving_stddev**2 - EPSILON, 0.0)
        return outputs, r, d

    def statistics(self):
        names = ("moving_mean", "moving_variance", "moving_stddev", "renorm_mean", "renorm_stddev")
        return {name: getattr(self, name) for name in names}


def renorm_output(x, mean, stddev, r, d, gamma, beta, axis=-1):
    x = np.asarray(x, np.float64)
    shape = [1] * x.ndim
    shape[axis] = x.shape[axis]

    def per_channel(v):
        return np.reshape(v, shape)

    normalized = (x - per_channel(mean)) / per_channel(stddev)
    return (normalized * per_channel(r) + per_channel(d)) * per_channel(gamma) + per_channel(beta)


def numpy_of(variable):
    return keras.ops.convert_to_numpy(variable).astype(np.float64)


def set_affine(layer, rng):
    channels = layer.gamma.shape[0]
    gamma = rng.uniform(0.5, 2.0, size=channels).astype("float32")
    beta = rng.normal(size=channels).astype("float32")
    layer.gamma.assign(gamma)
    layer.beta.assign(beta)
    return gamma, beta


def assert_close(actual, expected, atol=ATOL, rtol=ATOL, err_msg=""):
    actual = keras.ops.convert_to_numpy(actual)
    np.testing.assert_allclose(actual, expected, atol=atol, rtol=rtol, err_msg=err_msg)


# --- moving statistics ------------------------------------------------------------------


def test_moving_statistics_follow_momentum_rule_over_training_calls():
    rng = np.random.default_rng(0)
    batches = random_batches(rng, 4, (8, 3, 5))
    layer = keras_norms.BatchNormalization(momentum=0.7)
    layer.build(batches[0].shape)
    gamma, beta = set_affine(layer, rng)
    for step, x in enumerate(batches, start=1):
        outputs = layer(x, training=True)
        mean, variance = batch_moments(x)
        assert_close(outputs, batch_norm(x, mean, variance, gamma, beta, epsilon=EPSILON))
        expected_mean, expected_variance = simulate_moving_statistics(batches[:step], 0.7)
        assert_close(layer.moving_mean, expected_mean, rtol=0)
        assert_close(layer.moving_variance, expected_variance, rtol=0)
    # Inference uses the moving statistics and does not move them.
    x = random_batches(rng, 1, (6, 3, 5))[0]
    inference = batch_norm(x, expected_mean, expected_variance, gamma, beta, epsilon=EPSILON)
    assert_close(layer(x, training=False), inference)
    assert_close(layer(x), inference)
    assert_close(layer.moving_mean, expected_mean, rtol=0)


def test_moving_statistics_through_model_fit():
    rng = np.random.default_rng(1)
    batches = random_batches(rng, 4, (8, 4))
    x = np.concatenate(batches)
    model = keras.Sequential([keras.Input((4,)), keras_norms.BatchNormalization(momentum=0.8)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0), loss="mse")
    model.fit(x, np.zeros_like(x), batch_size=8, epochs=1, shuffle=False, verbose=0)
    layer = model.layers[-1]
    expected_mean, expected_variance = simulate_moving_statistics(batches, 0.8)
    assert_close(layer.moving_mean, expected_mean, rtol=0)
    assert_close(layer.moving_variance, expected_variance, rtol=0)
    # lr=0: gamma and beta keep their initial values, and predict uses the moving statistics.
    expected = batch_norm(x, expected_mean, expected_variance, epsilon=EPSILON)
    assert_close(model.predict(x, verbose=0), expected)


@pytest.mark.parametrize(
    "shape, axis",
    [
        ((10, 4), -1),
        ((10, 4), 1),
        ((6, 5, 3), -1),
        ((6, 3, 5), 1),
        ((4, 3, 5, 5), 1),
        ((3, 2, 3, 4, 5), -1),
        ((3, 4, 2, 3, 3), 1),
    ],
    ids=lambda v: str(v),
)
def test_axes_and_ranks_match_reference(shape, axis):
    rng = np.random.default_rng(2)
    batches = random_batches(rng, 2, shape, axis)
    layer = keras_norms.BatchNormalization(axis=axis, momentum=0.6)
    layer.build(shape)
    gamma, beta = set_affine(layer, rng)
    for x in batches:
        mean, variance = batch_moments(x, axis)
        assert_close(layer(x, training=True), batch_norm(x, mean, variance, gamma, beta, axis, EPSILON))
    expected_mean, expected_variance = simulate_moving_statistics(batches, 0.6, axis)
    assert_close(layer.moving_mean, expected_mean, rtol=0)
    assert_close(layer.moving_variance, expected_variance, rtol=0)
    x = batches[0]
    assert_close(
        layer(x, training=False), batch_norm(x, expected_mean, expected_variance, gamma, beta, axis, EPSILON)
    )


def test_synchronized_without_a_strategy_is_local_batch_norm():
    rng = np.random.default_rng(14)
    x = random_batches(rng, 1, (4, 5, 3))[0]
    mask = rng.uniform(size=(4, 5)) < 0.7
    layer = keras_norms.BatchNormalization(momentum=0.5, synchronized=True)
    layer.build(x.shape)
    gamma, beta = set_affine(layer, rng)
    mean, variance = batch_moments(x[mask])
    expected = batch_norm(x, mean, variance, gamma, beta, epsilon=EPSILON)
    assert_close(layer(x, mask=mask, training=True), expected)
    assert_close(layer.moving_mean, 0.5 * mean, rtol=0)
    assert_close(layer.moving_variance, 0.5 + 0.5 * variance, rtol=0)


# --- trainable=False and freeze_statistics ----------------------------------------------


def _layer_with_statistics(rng, channels, **kwargs):
    layer = keras_norms.BatchNormalization(**kwargs)
    layer.build((None, channels))
    mean = rng.normal(size=channels).astype("float32")
    variance = rng.uniform(0.5, 4.0, size=channels).astype("float32")
    layer.moving_mean.assign(mean)
    layer.moving_variance.assign(variance)
    gamma, beta = set_affine(layer, rng)
    return layer, mean, variance, gamma, beta


@pytest.mark.parametrize("how", ["constructor", "attribute"])
def test_trainable_false_is_inference_mode(how):
    rng = np.random.default_rng(3)
    kwargs = {"trainable": False} if how == "constructor" else {}
    layer, mean, variance, gamma, beta = _layer_with_statistics(rng, 3, **kwargs)
    if how == "attribute":
        layer.trainable = False
    x = random_batches(rng, 1, (8, 3))[0]
    assert_close(layer(x, training=True), batch_norm(x, mean, variance, gamma, beta, epsilon=EPSILON))
    np.testing.assert_array_equal(numpy_of(layer.moving_mean), mean)
    np.testing.assert_array_equal(numpy_of(layer.moving_variance), variance)
    assert layer.trainable_weights == []


def _mse_sgd_step(x, y, mean, variance, gamma, beta, learning_rate):
    """One SGD step on mean squared error for y_hat = x_hat * gamma + beta, x_hat with fixed statistics."""
    x_hat = (x - mean) / np.sqrt(variance + EPSILON)
    residual = 2.0 * (x_hat * gamma + beta - y) / y.size
    gamma = gamma - learning_rate * np.sum(residual * x_hat, axis=0)
    beta = beta - learning_rate * np.sum(residual, axis=0)
    return gamma, beta


def test_freeze_statistics_trains_gamma_beta_and_keeps_moving_statistics():
    rng = np.random.default_rng(4)
    layer, mean, variance, gamma, beta = _layer_with_statistics(rng, 3, freeze_statistics=True)
    model = keras.Sequential([keras.Input((3,)), layer])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.5), loss="mse")
    x = random_batches(rng, 1, (8, 3))[0]
    y = rng.normal(size=(8, 3)).astype("float32")
    model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    # The statistics stay exactly as they were.
    np.testing.assert_array_equal(numpy_of(layer.moving_mean), mean)
    np.testing.assert_array_equal(numpy_of(layer.moving_variance), variance)
    # gamma and beta took the SGD step of a layer normalized with the moving statistics.
    expected_gamma, expected_beta = _mse_sgd_step(x, y, mean, variance, gamma, beta, 0.5)
    assert np.abs(expected_gamma - gamma).min() > 1e-3 and np.abs(expected_beta - beta).min() > 1e-3
    assert_close(layer.gamma, expected_gamma)
    assert_close(layer.beta, expected_beta)
    expected = batch_norm(x, mean, variance, expected_gamma, expected_beta, epsilon=EPSILON)
    assert_close(layer(x, training=True), expected)


def test_freeze_statistics_can_be_switched_on_a_built_layer():
    rng = np.random.default_rng(5)
    batches = random_batches(rng, 2, (8, 3))
    layer = keras_norms.BatchNormalization(momentum=0.5)
    model = keras.Sequential([keras.Input((3,)), layer])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0), loss="mse")
    model.fit(batches[0], batches[0], batch_size=8, shuffle=False, verbose=0)
    mean, variance = simulate_moving_statistics(batches[:1], 0.5)
    assert_close(layer.moving_mean, mean, rtol=0)
    assert_close(layer.moving_variance, variance, rtol=0)

    layer.freeze_statistics = True
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.5), loss="mse")
    before = [numpy_of(layer.moving_mean), numpy_of(layer.moving_variance)]
    gamma, beta = numpy_of(layer.gamma), numpy_of(layer.beta)
    y = rng.normal(size=(8, 3)).astype("float32")
    model.fit(batches[1], y, batch_size=8, shuffle=False, verbose=0)
    np.testing.assert_array_equal(numpy_of(layer.moving_mean), before[0])
    np.testing.assert_array_equal(numpy_of(layer.moving_variance), before[1])
    expected_gamma, expected_beta = _mse_sgd_step(batches[1], y, *before, gamma, beta, 0.5)
    assert_close(layer.gamma, expected_gamma)
    assert_close(layer.beta, expected_beta)
    expected = batch_norm(batches[1], *before, expected_gamma, expected_beta, epsilon=EPSILON)
    assert_close(layer(batches[1], training=True), expected)


# --- virtual batches (ghost batch norm) --------------------------------------------------


@pytest.mark.parametrize(
    "shape, axis, k", [((12, 5, 3), -1, 4), ((8, 3), -1, 2), ((6, 3, 4, 2), 1, 3)], ids=str
)
def test_virtual_batches_match_per_group_reference(shape, axis, k):
    rng = np.random.default_rng(6)
    batches = random_batches(rng, 2, shape, axis)
    # Give each virtual batch its own offset, so that a whole-batch normalization cannot pass.
    for x in batches:
        x += np.repeat(rng.normal(scale=3.0, size=shape[0] // k), k).reshape((-1,) + (1,) * (len(shape) - 1))
    layer = keras_norms.BatchNormalization(axis=axis, momentum=0.75, virtual_batch_size=k)
    layer.build(shape)
    gamma, beta = set_affine(layer, rng)
    channels = shape[axis]
    mean, variance = np.zeros(channels), np.ones(channels)
    for x in batches:
        expected, batch_mean, batch_variance = virtual_batch_train(x, k, gamma, beta, axis)
        assert_close(layer(x, training=True), expected)
        mean = moving_average(mean, batch_mean, 0.75)
        variance = moving_average(variance, batch_variance, 0.75)
    assert_close(layer.moving_mean, mean, rtol=0)
    assert_close(layer.moving_variance, variance, rtol=0)
    # Inference ignores the virtual batches.
    x = batches[0]
    assert_close(layer(x, training=False), batch_norm(x, mean, variance, gamma, beta, axis, EPSILON))


def test_virtual_batches_through_model_fit():
    rng = np.random.default_rng(13)
    batches = random_batches(rng, 3, (8, 3))
    x = np.concatenate(batches)
    layer = keras_norms.BatchNormalization(momentum=0.6, virtual_batch_size=4)
    model = keras.Sequential([keras.Input((3,)), layer])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0), loss="mse")
    model.fit(x, np.zeros_like(x), batch_size=8, shuffle=False, verbose=0)
    mean, variance = np.zeros(3), np.ones(3)
    for batch in batches:
        _, batch_mean, batch_variance = virtual_batch_train(batch, 4, None, None)
        mean = moving_average(mean, batch_mean, 0.6)
        variance = moving_average(variance, batch_variance, 0.6)
    assert_close(layer.moving_mean, mean, rtol=0)
    assert_close(layer.moving_variance, variance, rtol=0)


def test_virtual_batch_size_must_divide_the_batch():
    layer = keras_norms.BatchNormalization(virtual_batch_size=4)
    layer(np.ones((8, 3), "float32"), training=True)
    with pytest.raises(ValueError, match=r"virtual_batch_size=4"):
        layer(np.ones((6, 3), "float32"), training=True)
    with pytest.raises(ValueError, match=r"virtual_batch_size=4"):
        keras_norms.BatchNormalization(virtual_batch_size=4)(np.ones((6, 3), "float32"), training=True)


def test_virtual_batch_size_must_divide_a_dynamic_batch():
    layer = keras_norms.BatchNormalization(virtual_batch_size=4)
    layer.build((None, 3))
    train = tf.function(lambda x: layer(x, training=True), input_signature=[tf.TensorSpec((None, 3))])
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"virtual_batch_size=4"):
        train(tf.ones((6, 3)))


@pytest.mark.parametrize(
    "kwargs, error, fragment",
    [
        ({"virtual_batch_size": 0}, ValueError, "virtual_batch_size=0"),
        ({"virtual_batch_size": -1}, ValueError, "virtual_batch_size=-1"),
        ({"virtual_batch_size": 2.5}, TypeError, "virtual_batch_size=2.5"),
        ({"virtual_batch_size": 2, "synchronized": True}, ValueError, "virtual_batch_size=2"),
    ],
    ids=str,
)
def test_virtual_batch_size_bad_values(kwargs, error, fragment):
    with pytest.raises(error, match=fragment):
        keras_norms.BatchNormalization(**kwargs)


# --- batch renormalization ----------------------------------------------------------------


RENORM_CASES = {
    "clipped": dict(clipping={"rmax": 1.5, "rmin": 0.7, "dmax": 0.5}, kwargs={}),
    "unclipped": dict(clipping={}, kwargs={}),
    # A zero initial variance makes the renorm stddev start at 0: the sqrt(eps) floor sets the
    # first r and d (clipped loosely enough that an unfloored inf would show).
    "zero-variance-start": dict(
        clipping={"rmax": 1e3, "dmax": 1e3}, kwargs={"moving_variance_initializer": "zeros"}
    ),
}


@pytest.mark.parametrize("case", list(RENORM_CASES))
def test_renorm_matches_simulation_over_steps(case):
    clipping, kwargs = RENORM_CASES[case]["clipping"], RENORM_CASES[case]["kwargs"]
    rng = np.random.default_rng(7)
    batches = random_batches(rng, 5, (8, 2, 3))
    layer = keras_norms.BatchNormalization(
        momentum=0.8, renorm=True, renorm_clipping=clipping, renorm_momentum=0.6, **kwargs
    )
    layer.build(batches[0].shape)
    gamma, beta = set_affine(layer, rng)
    variance = 0.0 if kwargs else 1.0
    simulation = RenormSimulation(3, 0.8, 0.6, clipping, variance=variance)
    rs, ds = [], []
    for x in batches:
        expected, r, d = simulation.step(x, gamma, beta)
        assert_close(layer(x, training=True), expected)
        for name, value in simulation.statistics().items():
            assert_close(getattr(layer, name), value, err_msg=name)
        rs.append(r)
        ds.append(d)
    rs, ds = np.concatenate(rs), np.concatenate(ds)
    # The corrections are not trivial (and, where clipping is on, it bites somewhere).
    assert np.abs(rs - 1).max() > 0.1 and np.abs(ds).max() > 0.1
    if case == "clipped":
        assert np.any(np.isclose(rs, clipping["rmax"])) and np.any(np.isclose(ds, clipping["dmax"]))
        assert np.any(np.isclose(rs, clipping["rmin"]))
        assert np.any((rs > clipping["rmin"]) & (rs < clipping["rmax"]))
    # Inference: the moving mean and variance (derived from the moving stddev).
    x = batches[-1]
    expected = batch_norm(x, simulation.moving_mean, simulation.moving_variance, gamma, beta, epsilon=EPSILON)
    assert_close(layer(x, training=False), expected)


def test_renorm_with_identity_clipping_is_batch_norm():
    rng = np.random.default_rng(8)
    layer = keras_norms.BatchNormalization(
        momentum=0.5,
        renorm=True,
        renorm_clipping={"rmax": 1.0, "rmin": 1.0, "dmax": 0.0},
        renorm_momentum=0.5,
    )
    layer.build((6, 4))
    gamma, beta = set_affine(layer, rng)
    for x in random_batches(rng, 3, (6, 4)):
        mean, variance = batch_moments(x)
        assert_close(layer(x, training=True), batch_norm(x, mean, variance, gamma, beta, epsilon=EPSILON))
    # The renorm statistics did move away from the batch statistics, so r and d were clipped.
    assert np.abs(numpy_of(layer.renorm_mean) - mean).max() > 0.1


def test_renorm_gradient_treats_r_and_d_as_constants():
    rng = np.random.default_rng(9)
    x = random_batches(rng, 1, (5, 3))[0]
    upstream = rng.normal(size=x.shape)
    layer = keras_norms.BatchNormalization(renorm=True, renorm_momentum=0.9)
    layer.build(x.shape)
    gamma, beta = set_affine(layer, rng)
    simulation = RenormSimulation(3, 0.99, 0.9, {})
    simulation.renorm_mean = rng.normal(size=3)
    simulation.renorm_stddev = rng.uniform(0.5, 2.0, size=3)
    layer.renorm_mean.assign(simulation.renorm_mean.astype("float32"))
    layer.renorm_stddev.assign(simulation.renorm_stddev.astype("float32"))

    x_tensor = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x_tensor)
        loss = tf.reduce_sum(layer(x_tensor, training=True) * tf.constant(upstream, tf.float32))
    gradient = tape.gradient(loss, x_tensor).numpy()

    def renorm_forward(hold_corrections):
        mean, variance = batch_moments(x)
        fixed_r, fixed_d = simulation.corrections(mean, np.sqrt(variance + EPSILON))

        def forward(x_new):
            mean, variance = batch_moments(x_new)
            stddev = np.sqrt(variance + EPSILON)
            r, d = (fixed_r, fixed_d) if hold_corrections else simulation.corrections(mean, stddev)
            return renorm_output(x_new, mean, stddev, r, d, gamma, beta)

        return forward

    expected = numerical_gradient(renorm_forward(hold_corrections=True), x, upstream)
    np.testing.assert_allclose(gradient, expected, atol=ATOL, rtol=ATOL)
    # Control: letting r and d depend on x gives a different gradient, so the check can fail.
    through_corrections = numerical_gradient(renorm_forward(hold_corrections=False), x, upstream)
    assert np.abs(through_corrections - expected).max() > 0.1


# --- empty batches ----------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs", [{}, {"renorm": True}, {"virtual_batch_size": 2}], ids=str)
@pytest.mark.parametrize("mode", ["eager", "graph"])
def test_empty_batch_leaves_statistics_unchanged(kwargs, mode):
    rng = np.random.default_rng(12)
    layer = keras_norms.BatchNormalization(momentum=0.5, **kwargs)
    layer(random_batches(rng, 1, (4, 3))[0], training=True)
    before = [numpy_of(v) for v in layer.non_trainable_weights]
    call = lambda x: layer(x, training=True)
    if mode == "graph":
        call = tf.function(call, input_signature=[tf.TensorSpec((None, 3))])
    outputs = keras.ops.convert_to_numpy(call(np.zeros((0, 3), "float32")))
    assert outputs.shape == (0, 3)
    after = [numpy_of(v) for v in layer.non_trainable_weights]
    names = [v.name for v in layer.non_trainable_weights]
    for name, old, new in zip(names, before, after, strict=True):
        assert np.all(np.isfinite(new)), name
        np.testing.assert_array_equal(new, old, err_msg=name)


@pytest.mark.parametrize("mode", ["eager", "graph"])
def test_switchable_norm_on_an_empty_batch_leaves_its_statistics_unchanged(mode):
    rng = np.random.default_rng(13)
    layer = keras_norms.SwitchableNormalization(momentum=0.5)
    layer(rng.normal(size=(2, 3, 3, 4)).astype("float32"), training=True)
    before = [numpy_of(v) for v in layer.non_trainable_weights]
    call = lambda x: layer(x, training=True)
    if mode == "graph":
        call = tf.function(call, input_signature=[tf.TensorSpec((None, 3, 3, 4))])
    assert keras.ops.convert_to_numpy(call(np.zeros((0, 3, 3, 4), "float32"))).shape == (0, 3, 3, 4)
    for old, new in zip(before, [numpy_of(v) for v in layer.non_trainable_weights], strict=True):
        np.testing.assert_array_equal(new, old)


# --- bad configuration ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, error, fragments",
    [
        ({"momentum": -0.1}, ValueError, ["momentum", "-0.1"]),
        ({"momentum": 1.5}, ValueError, ["momentum", "1.5"]),
        ({"momentum": "a"}, TypeError, ["momentum", "'a'"]),
        ({"renorm_momentum": 2}, ValueError, ["renorm_momentum", "2"]),
        ({"renorm": True, "renorm_clipping": {"rmax": 0.5, "rmin": 2.0}}, ValueError,
         ["renorm_clipping", "rmax=0.5", "rmin=2.0"]),
        ({"renorm": True, "renorm_clipping": {"dmax": -1.0}}, ValueError, ["renorm_clipping", "dmax=-1.0"]),
        ({"renorm": True, "renorm_clipping": {"rmaxx": 3.0}}, ValueError, ["renorm_clipping", "rmaxx"]),
        ({"epsilon": 0}, ValueError, ["epsilon", "0"]),
    ],
    ids=str,
)
def test_bad_configuration_raises_naming_argument_and_value(kwargs, error, fragments):
    with pytest.raises(error) as info:
        keras_norms.BatchNormalization(**kwargs)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, (fragment, message)


# --- synchronized batch norm under tf.distribute ------------------------------------------------


@pytest.mark.slow
def test_synchronized_mirrored_training_equals_single_device(tmp_path):
    out = tmp_path / "sync.npz"
    worker = Path(__file__).with_name("_sync_bn_worker.py")
    # The worker imports keras_norms from this checkout even where it is not installed.
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    completed = subprocess.run(
        [sys.executable, str(worker), str(out)], capture_output=True, text=True, timeout=120, env=env
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    results = np.load(out)
    reference = {k.split("/", 1)[1]: results[k] for k in results.files if k.startswith("reference/")}
    (moving_mean,) = [k for k in reference if k.endswith("moving_mean")]
    assert "predictions" in reference
    # Training did move the statistics away from their initial zeros.
    assert np.abs(reference[moving_mean]).max() > 0.1
    for key, expected in reference.items():
        # Our synchronized batch norm, and Keras' own made global by synchronize_batch_norms.
        for run in ("synced", "tool"):
            np.testing.assert_allclose(results[f"{run}/{key}"], expected, atol=1e-5, rtol=1e-5,
                                       err_msg=f"{run}: {key}")
    # Control: without synchronization each replica normalizes its half batch, and the
    # moving statistics differ from those of the global batch.
    for key in [k for k in reference if "moving_" in k]:
        assert np.abs(results[f"unsynced/{key}"] - reference[key]).max() > 1e-2, key
    assert np.abs(results["unsynced/predictions"] - reference["predictions"]).max() > 1e-3


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
def test_jax_data_parallel_batch_norm_uses_the_global_batch(tmp_path):
    out = tmp_path / "sync_jax.npz"
    worker = Path(__file__).with_name("_sync_bn_jax_worker.py")
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    completed = subprocess.run(
        [sys.executable, str(worker), str(out)], capture_output=True, text=True, timeout=180, env=env
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    results = np.load(out)
    # One step with momentum 0: the moving statistics are the float64 statistics of the global batch,
    # which differ from those of either device's half.
    batch = results["first_step/batch"].astype(np.float64)
    np.testing.assert_allclose(results["first_step/moving_mean"], batch.mean(0), atol=1e-6, rtol=1e-6)
    np.testing.assert_allclose(results["first_step/moving_variance"], batch.var(0), atol=1e-6, rtol=1e-6)
    for half in (batch[:8], batch[8:]):
        assert np.abs(half.mean(0) - batch.mean(0)).min() > 1.0
    # Three steps of fit: weights, moving statistics and predictions equal those of one device.
    reference = {k.split("/", 1)[1]: results[k] for k in results.files if k.startswith("reference/")}
    (moving_mean,) = [k for k in reference if k.endswith("moving_mean")]
    assert np.abs(reference[moving_mean]).max() > 0.1
    for key, expected in reference.items():
        for run in ("synced", "unsynced", "tool"):
            np.testing.assert_allclose(results[f"{run}/{key}"], expected, atol=1e-6, rtol=1e-6,
                                       err_msg=f"{run}: {key}")
