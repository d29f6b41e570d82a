"""DynamicTanh, DynamicErf and LayerScale beyond the contract battery: the builtin-op erf, the
papers' initial values, LayerScale against a float64 reference and folded away at export."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
import references
from keras_norms.export import fold_batch_norms
from platform_checks import nchw_convolutions_on_cpu

import keras_norms
from keras_norms import functional as F

_exact_erf = np.vectorize(math.erf, otypes=[np.float64])


def test_erf_from_builtin_ops_is_within_float32_rounding_of_the_exact_function():
    x = np.linspace(-7.0, 7.0, 20001).astype("float32")
    ours = np.asarray(F.erf(keras.ops.convert_to_tensor(x)), np.float64)
    error = np.abs(ours - _exact_erf(x.astype(np.float64)))
    assert error.max() < 6e-7  # 1.5e-7 in exact arithmetic, plus float32 rounding
    assert ours[0] == -1.0 and ours[-1] == 1.0 and ours[10000] == 0.0
    np.testing.assert_array_equal(ours[::-1], -ours)  # odd, exactly


def test_erf_gradient_is_the_exact_derivative():
    x = np.linspace(-4.0, 4.0, 81).astype("float32")
    if keras.backend.backend() != "tensorflow":
        pytest.skip("the builtin-op erf is TensorFlow's")
    import tensorflow as tf

    variable = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(variable)
        y = F.erf(variable)
    gradient = tape.gradient(y, variable).numpy()
    np.testing.assert_allclose(gradient, 2.0 / np.sqrt(np.pi) * np.exp(-x.astype(np.float64) ** 2),
                               rtol=1e-6, atol=1e-7)


def test_erf_in_float64_is_exact():
    x = keras.ops.convert_to_tensor(np.linspace(-3.0, 3.0, 61), "float64")
    if keras.backend.standardize_dtype(x.dtype) != "float64":
        pytest.skip("this backend runs without float64 (JAX without jax_enable_x64)")
    expected = _exact_erf(np.linspace(-3.0, 3.0, 61))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(F.erf(x)), expected, rtol=0, atol=1e-15)


def test_the_papers_initial_values():
    dyt, derf = keras_norms.DynamicTanh(), keras_norms.DynamicErf()
    x = np.random.default_rng(0).normal(size=(2, 6)).astype("float32")
    dyt(x), derf(x)
    assert float(dyt.alpha.numpy()[0]) == 0.5  # jiachenzhu/DyT: alpha_init_value=0.5
    assert (float(derf.alpha.numpy()[0]), float(derf.shift.numpy()[0])) == (0.5, 0.0)
    np.testing.assert_allclose(np.asarray(dyt(x)), np.tanh(0.5 * x.astype(np.float64)), atol=1e-6)
    np.testing.assert_allclose(np.asarray(derf(x)), _exact_erf(0.5 * x.astype(np.float64)), atol=1e-6)


def test_dyt_matches_torch_style_channels_first_weights():
    """Per-channel gamma and beta on axis 1, as the reference code's channels-first branch."""
    rng = np.random.default_rng(1)
    x = rng.normal(0.0, 3.0, size=(2, 5, 4, 4)).astype("float32")
    layer = keras_norms.DynamicTanh(axis=1, alpha_init_value=0.8)
    layer.build(x.shape)
    gamma, beta = rng.normal(size=5), rng.normal(size=5)
    layer.set_weights([np.array([0.8]), gamma, beta])
    expected = references.dynamic_tanh(x, 0.8, gamma, beta, axis=1)
    np.testing.assert_allclose(np.asarray(layer(x)), expected, atol=2e-6)


def test_pointwise_norms_ignore_the_rest_of_the_batch():
    """No statistics: an example's output is the same alone and in any batch."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(4, 3, 8)).astype("float32")
    for layer in (keras_norms.DynamicTanh(), keras_norms.DynamicErf()):
        whole = np.asarray(layer(x))
        np.testing.assert_allclose(np.asarray(layer(x[2:3])), whole[2:3], atol=0)


# ---------------------------------------------------------------------------------------------
# LayerScale

def test_layer_scale_forward_and_gradients_against_float64():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 5, 6)).astype("float32")
    layer = keras_norms.LayerScale()
    layer.build(x.shape)
    np.testing.assert_allclose(layer.gamma.numpy(), np.full(6, 1e-5, "float32"))
    gamma = rng.normal(size=6)
    layer.set_weights([gamma])
    np.testing.assert_allclose(np.asarray(layer(x)), x.astype(np.float64) * gamma, atol=1e-6)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tx = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(tx)
            y = tf.reduce_sum(layer(tx) * np.arange(6, dtype="float32"))
        dx, dgamma = tape.gradient(y, [tx, layer.gamma])
        np.testing.assert_allclose(dx.numpy(), np.broadcast_to(gamma * np.arange(6), x.shape), atol=1e-5)
        np.testing.assert_allclose(dgamma.numpy(), (x * np.arange(6)).sum(axis=(0, 1)), atol=1e-4)


def test_layer_scale_checks_its_arguments():
    with pytest.raises(TypeError, match="init_values='small'"):
        keras_norms.LayerScale(init_values="small")
    with pytest.raises(ValueError, match="init_values=nan"):
        keras_norms.LayerScale(init_values=float("nan"))
    with pytest.raises(ValueError, match="axis"):
        keras_norms.LayerScale(axis=0)


def _randomized(model, seed=0):
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        weight.assign(rng.normal(0.0, 0.5, weight.shape).astype("float32"))
    return model


@pytest.mark.parametrize("kind", ["dense", "conv2d", "conv2d-nchw"])
def test_layer_scale_folds_into_the_layer_before_it(kind):
    if kind == "dense":
        inputs, producer = keras.Input((7, 5)), keras.layers.Dense(6)
        scale = keras_norms.LayerScale()
    elif kind == "conv2d":
        inputs, producer = keras.Input((6, 6, 3)), keras.layers.Conv2D(6, 3, use_bias=False)
        scale = keras_norms.LayerScale()
    else:
        inputs = keras.Input((3, 6, 6))
        producer = keras.layers.Conv2D(6, 3, data_format="channels_first")
        scale = keras_norms.LayerScale(axis=1)
    model = _randomized(keras.Model(inputs, scale(producer(inputs))))
    folded = fold_batch_norms(model)
    assert [type(layer).__name__ for layer in folded.layers[1:]] == [type(producer).__name__, "Identity"]
    gamma = scale.gamma.numpy().astype(np.float64)
    np.testing.assert_allclose(folded.layers[1].kernel.numpy(), producer.kernel.numpy() * gamma, rtol=1e-6)
    x = np.random.default_rng(4).normal(size=(2, *inputs.shape[1:])).astype("float32")
    if kind != "conv2d-nchw" or keras.backend.backend() != "tensorflow" or nchw_convolutions_on_cpu():
        np.testing.assert_allclose(np.asarray(folded(x)), np.asarray(model(x)), atol=1e-5)


def test_layer_scale_that_cannot_fold_stays():
    inputs = keras.Input((5,))
    hidden = keras.layers.Dense(6, activation="relu")(inputs)  # an activation between: no fold
    model = _randomized(keras.Model(inputs, keras_norms.LayerScale()(hidden)))
    folded = fold_batch_norms(model)
    assert type(folded.layers[-1]) is keras_norms.LayerScale
    x = np.random.default_rng(5).normal(size=(3, 5)).astype("float32")
    np.testing.assert_allclose(np.asarray(folded(x)), np.asarray(model(x)), atol=1e-6)
