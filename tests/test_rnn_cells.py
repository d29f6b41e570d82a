"""LayerNormSimpleRNNCell (the successor of tensorflow-addons') against a float64 NumPy loop."""

from __future__ import annotations

import re

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras_norms.models import LayerNormSimpleRNNCell
from layer_checks import assert_arguments_are_attributes, assert_close, assert_gradients_match, weights_of

import keras_norms

UNITS, FEATURES = 4, 3


def simple_rnn_step_reference(x, y, w, epsilon=1e-5):
    """``tanh(LN(x W + y U) + b)`` in float64; LN scales by gamma and has no offset (tfa's equations)."""
    w = {name: np.asarray(value, np.float64) for name, value in w.items()}
    z = np.asarray(x, np.float64) @ w["kernel"] + np.asarray(y, np.float64) @ w["recurrent_kernel"]
    mean = z.mean(axis=-1, keepdims=True)
    variance = z.var(axis=-1, keepdims=True)
    return np.tanh(w["gamma"] * (z - mean) / np.sqrt(variance + epsilon) + w["bias"])


def _random_cell(epsilon=1e-5, seed=1, **kwargs):
    cell = LayerNormSimpleRNNCell(UNITS, layernorm_epsilon=epsilon, **kwargs)
    cell.build((None, FEATURES))
    rng = np.random.default_rng(seed)
    for variable in cell.weights:
        value = rng.normal(scale=0.7, size=variable.shape)
        variable.assign((1.0 + value / 2 if variable.name == "gamma" else value).astype("float32"))
    return cell


@pytest.mark.parametrize("epsilon", [1e-5, 0.5])
def test_sequence_matches_the_float64_loop(epsilon):
    cell = _random_cell(epsilon)
    x = np.random.default_rng(2).normal(size=(3, 5, FEATURES)).astype("float32")
    outputs, state = keras.layers.RNN(cell, return_sequences=True, return_state=True)(x)
    y = np.zeros((3, UNITS))
    for t in range(5):
        y = simple_rnn_step_reference(x[:, t], y, weights_of(cell), epsilon)
        assert_close(outputs[:, t], y, 2e-5, f"step {t}")
    assert_close(state, y, 2e-5, "final state")


def test_the_bias_comes_after_the_norm():
    cell = _random_cell()
    cell.layernorm.gamma.assign(np.ones(UNITS, "float32"))
    bias = np.array([0.5, -0.3, 0.2, 0.1])
    cell.bias.assign(bias.astype("float32"))
    rng = np.random.default_rng(3)
    x = rng.normal(size=(6, FEATURES)).astype("float32")
    y = rng.normal(size=(6, UNITS)).astype("float32")
    # With gamma = 1, atanh(output) - bias is the normalized sum itself: mean 0, variance ~1 per row
    # (a bias added before the norm would have been subtracted out with the mean).
    normalized = np.arctanh(np.asarray(cell(x, [y])[0], np.float64)) - bias
    assert_close(normalized.mean(axis=-1), np.zeros(6), 1e-4, "row means")
    assert_close(normalized.var(axis=-1), np.ones(6), 1e-3, "row variances")


def test_step_gradients_are_finite_and_match_central_differences():
    cell = _random_cell()
    rng = np.random.default_rng(5)
    x = rng.normal(size=(3, FEATURES))
    y = rng.normal(size=(3, UNITS))

    def reference(arrays, w):
        return simple_rnn_step_reference(arrays[0], arrays[1], w)

    assert_gradients_match(lambda a, b: cell(a, [b])[0], reference, [x, y], cell, atol=2e-5)

    sequence = rng.normal(size=(2, 6, FEATURES)).astype("float32")
    rnn = keras.layers.RNN(cell)
    with tf.GradientTape() as tape:
        loss = keras.ops.sum(rnn(sequence, training=True) ** 2)
    grads = tape.gradient(loss, rnn.trainable_weights)
    assert len(grads) == 4 and all(np.all(np.isfinite(g)) for g in grads)


def test_weights_config_and_tfa_keys():
    cell = _random_cell(1e-6, gamma_regularizer="l2", gamma_constraint=keras.constraints.MaxNorm(2.0))
    assert [w.name for w in cell.weights] == ["kernel", "recurrent_kernel", "bias", "gamma"]
    assert isinstance(cell.layernorm, keras_norms.LayerNormalization) and not cell.layernorm.center
    assert cell.layernorm.gamma.constraint is cell.gamma_constraint
    config = cell.get_config()
    tfa_keys = {"units", "activation", "use_bias", "layernorm_epsilon", "kernel_initializer",
                "recurrent_initializer", "bias_initializer", "gamma_initializer", "kernel_regularizer",
                "recurrent_regularizer", "bias_regularizer", "gamma_regularizer", "kernel_constraint",
                "recurrent_constraint", "bias_constraint", "gamma_constraint", "dropout", "recurrent_dropout"}
    assert tfa_keys <= set(config)
    assert config["layernorm_epsilon"] == 1e-6
    clone = LayerNormSimpleRNNCell.from_config(config)
    assert clone.get_config() == config
    assert_arguments_are_attributes(cell)
    # tensorflow-addons' get_config() had no "name": such configs load too.
    tfa_config = {k: v for k, v in config.items() if k != "name"}
    assert LayerNormSimpleRNNCell.from_config(tfa_config).layernorm_epsilon == 1e-6
    # Regularizers of the kernel, the recurrent kernel, the bias and gamma, as tfa's own test counts them.
    regularized = LayerNormSimpleRNNCell(5, kernel_regularizer="l1", recurrent_regularizer="l1",
                                         bias_regularizer="l2", gamma_regularizer="l2")
    keras.layers.RNN(regularized).build((None, None, 2))
    assert len(regularized.losses) == 4


def test_keras_file_round_trip_after_graph_mode_training(tmp_path):
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(6)
    x = rng.normal(size=(32, 5, FEATURES)).astype("float32")
    target = x.sum(axis=(1, 2))[:, None] / 4
    model = keras.Sequential([
        keras.Input((5, FEATURES)),
        keras.layers.RNN(LayerNormSimpleRNNCell(UNITS, dropout=0.1)),
        keras.layers.Dense(1),
    ])
    model.compile(optimizer=keras.optimizers.Adam(0.02), loss="mse")
    before = model.evaluate(x, target, verbose=0)
    model.fit(x, target, batch_size=8, epochs=4, verbose=0)
    assert model.evaluate(x, target, verbose=0) < before
    model.save(tmp_path / "cell.keras")
    loaded = keras.saving.load_model(tmp_path / "cell.keras")
    assert type(loaded.layers[0].cell) is LayerNormSimpleRNNCell
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_dropout_acts_in_training_only():
    cell = _random_cell(dropout=0.5, recurrent_dropout=0.5)
    plain = _random_cell()
    x = np.random.default_rng(7).normal(size=(8, 6, FEATURES)).astype("float32")
    assert_close(keras.layers.RNN(cell)(x, training=False), keras.layers.RNN(plain)(x), 1e-6, "inference")
    assert not np.allclose(keras.layers.RNN(cell)(x, training=True), keras.layers.RNN(plain)(x), atol=1e-3)


def test_mixed_bfloat16_outputs_bfloat16_with_float32_weights():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    cell = _random_cell()
    x = np.random.default_rng(8).normal(size=(2, 4, FEATURES)).astype("float32")
    outputs = keras.layers.RNN(cell)(x)
    assert outputs.dtype == "bfloat16"
    assert {w.dtype for w in cell.weights} == {"float32"}
    y = np.zeros((2, UNITS))
    for t in range(4):
        y = simple_rnn_step_reference(x[:, t], y, weights_of(cell))
    assert_close(keras.ops.cast(outputs, "float32"), y, 5e-2, "bfloat16 output")


@pytest.mark.parametrize(("epsilon", "error"), [(0.0, ValueError), (-1.0, ValueError), ("1e-5", TypeError)])
def test_bad_epsilon_names_the_argument_and_value(epsilon, error):
    with pytest.raises(error, match=re.escape(f"layernorm_epsilon={epsilon!r}")):
        LayerNormSimpleRNNCell(4, layernorm_epsilon=epsilon)
