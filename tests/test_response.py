"""FilterResponseNormalization and TLU: tensorflow-addons' formula, configs and weight layout.

tensorflow-addons cannot be installed next to Keras 3, so `references.filter_response_norm`
and `references.tlu` transcribe its `call` methods to float64 NumPy, and its configs are
written out below the way its `get_config` produced them. The registry name "frn" also runs
the layer contract suite (tests/test_contract.py).
"""

from __future__ import annotations

import re

import keras
import numpy as np
import pytest
import references as R
import tensorflow as tf
from dtype_checks import assert_float64_close, assert_rounded_to, large_inputs
from layer_checks import assert_close, assert_gradients_match, convert_builtin_only, run_litert, weights_of

import keras_norms


def _tfa_frn_config(**overrides):
    """A config exactly as tensorflow-addons' `FilterResponseNormalization.get_config` wrote it."""
    config = {
        "name": "filter_response_normalization",
        "trainable": True,
        "dtype": "float32",
        "axis": [1, 2],
        "epsilon": 1e-6,
        "learned_epsilon": False,
        "beta_initializer": {"class_name": "Zeros", "config": {}},
        "gamma_initializer": {"class_name": "Ones", "config": {}},
        "beta_regularizer": None,
        "gamma_regularizer": None,
        "beta_constraint": None,
        "gamma_constraint": None,
        "learned_epsilon_constraint": None,
    }
    return {"class_name": "Addons>FilterResponseNormalization", "config": {**config, **overrides}}


def _tfa_tlu_config(affine):
    """A config exactly as tensorflow-addons' `TLU.get_config` wrote it (alpha keys only if affine)."""
    config = {
        "name": "tlu",
        "trainable": True,
        "dtype": "float32",
        "tau_initializer": {"class_name": "Zeros", "config": {}},
        "tau_regularizer": None,
        "tau_constraint": None,
        "affine": affine,
    }
    if affine:
        config.update({
            "alpha_initializer": {"class_name": "Ones", "config": {}},
            "alpha_regularizer": None,
            "alpha_constraint": None,
        })
    return {"class_name": "Addons>TLU", "config": config}


# ----------------------------------------------------------------------------- FRN vs tensorflow-addons


@pytest.mark.parametrize(
    ("initializers", "learned_epsilon", "beta", "epsilon"),
    [
        pytest.param({"beta_initializer": "ones"}, False, 1.0, 1e-6, id="with_beta"),
        pytest.param({}, False, 0.0, 1e-6, id="with_gamma"),
        # The learned epsilon starts at 1e-4 and adds to epsilon.
        pytest.param({"beta_initializer": keras.initializers.Constant(0.5)}, True, 0.5, 1e-6 + 1e-4,
                     id="with_epsilon"),
    ],
)
def test_frn_matches_the_cases_of_tensorflow_addons_tests(initializers, learned_epsilon, beta, epsilon):
    # tensorflow-addons' normalizations_test: one 28x28x1 image, uniform in [0, 1).
    x = np.random.default_rng(0x2020).random((1, 28, 28, 1)).astype("float32")
    layer = keras_norms.FilterResponseNormalization(learned_epsilon=learned_epsilon, **initializers)
    expected = R.filter_response_norm(x, 1.0, beta, epsilon=epsilon)
    assert_close(layer(x), expected, 1e-6, "output")


def test_frn_weights_and_config_load_from_tensorflow_addons():
    """A tfa Conv2D -> FRN(learned_epsilon) -> TLU stack: configs through `tfa_custom_objects`,
    weights as tfa lists them (learned_epsilon (1,) first, then gamma, beta (1, 1, 1, C); tau
    of one example's shape), outputs equal to tfa's formulas on the same weights."""
    custom = keras_norms.tfa_custom_objects()
    frn = keras.layers.deserialize(
        _tfa_frn_config(learned_epsilon=True, epsilon=1e-5), custom_objects=custom
    )
    tlu = keras.layers.deserialize(_tfa_tlu_config(affine=True), custom_objects=custom)
    assert (type(frn), type(tlu)) == (keras_norms.FilterResponseNormalization, keras_norms.TLU)
    assert (frn.epsilon, frn.learned_epsilon, frn.axis) == (1e-5, True, (1, 2))
    assert tlu.affine and not tlu.per_channel

    model = keras.Sequential([keras.Input((6, 6, 3)), keras.layers.Conv2D(4, 3), frn, tlu])
    rng = np.random.default_rng(1)
    tfa_weights = {
        "kernel": rng.normal(size=(3, 3, 3, 4)),
        "bias": rng.normal(size=(4,)),
        "learned_epsilon": np.array([-0.3]),  # tfa takes its absolute value
        "gamma": rng.normal(1.0, 0.5, size=(1, 1, 1, 4)),
        "beta": rng.normal(size=(1, 1, 1, 4)),
        "tau": rng.normal(size=(4, 4, 4)),
        "alpha": rng.normal(size=(4, 4, 4)),
    }
    assert [(w.name, tuple(w.shape)) for w in model.weights] == [
        (name, value.shape) for name, value in tfa_weights.items()
    ]
    model.set_weights(list(tfa_weights.values()))

    x = rng.normal(size=(2, 6, 6, 3)).astype("float32")
    w = tfa_weights
    conv = R.conv2d_valid(x, w["kernel"], w["bias"])
    normalized = R.filter_response_norm(conv, w["gamma"], w["beta"], epsilon=1e-5,
                                        learned_epsilon=w["learned_epsilon"])
    assert_close(model(x), R.tlu(normalized, w["tau"], w["alpha"]), 1e-5, "tfa stack")


def test_frn_config_keys_are_those_of_tensorflow_addons():
    ours = keras_norms.FilterResponseNormalization().get_config()
    assert set(_tfa_frn_config()["config"]) == set(ours)
    assert set(_tfa_tlu_config(affine=True)["config"]) <= set(keras_norms.TLU().get_config())


@pytest.mark.parametrize("learned_epsilon", [False, True])
def test_frn_gradients_match_the_reference(learned_epsilon):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 3, 3, 4)).astype("float32")
    layer = keras_norms.FilterResponseNormalization(learned_epsilon=learned_epsilon, epsilon=1e-3)
    layer(x)
    layer.set_weights([rng.normal(size=w.shape) for w in layer.weights])

    def reference(arrays, w):
        return R.filter_response_norm(arrays[0], w["gamma"], w["beta"], epsilon=1e-3,
                                      learned_epsilon=w.get("learned_epsilon"))

    assert_close(layer(x), reference([x], weights_of(layer)), 1e-5, "output")
    assert_gradients_match(layer, reference, [x], layer)


def test_learned_epsilon_exists_before_build_as_in_tensorflow_addons():
    layer = keras_norms.FilterResponseNormalization(learned_epsilon=True)
    np.testing.assert_allclose(layer.eps_learned.numpy(), [1e-4], rtol=1e-6)
    layer(np.ones((2, 3, 3, 4), "float32"))
    assert [w.name for w in layer.weights] == ["learned_epsilon", "gamma", "beta"]


def test_learned_epsilon_trains_and_stays_in_the_divisor_as_its_absolute_value():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(32, 6, 6, 2)).astype("float32") * 1e-2  # small: epsilon matters
    y = rng.normal(size=(32, 1)).astype("float32")
    frn = keras_norms.FilterResponseNormalization(learned_epsilon=True)
    model = keras.Sequential([keras.Input((6, 6, 2)), frn, keras.layers.Flatten(), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    assert frn.eps_learned.numpy()[0] != np.float32(1e-4)
    frn.eps_learned.assign([-2e-4])
    expected = R.filter_response_norm(x, frn.gamma.numpy(), frn.beta.numpy(), epsilon=1e-6 + 2e-4)
    assert_close(frn(x), expected, 1e-5, "negative learned epsilon")


def test_frn_takes_unknown_spatial_sizes():
    model = keras.Sequential([keras.Input((None, None, 3)), keras_norms.FilterResponseNormalization()])
    x = np.random.default_rng(4).normal(size=(2, 5, 7, 3)).astype("float32")
    expected = R.filter_response_norm(x, np.ones(3), np.zeros(3))
    assert_close(model(x), expected, 1e-5, "output")


# ----------------------------------------------------------------------------- TLU


def test_tlu_matches_the_cases_of_tensorflow_addons_tests():
    x = np.array([[-2.5, 0.0, 0.3]], "float32")
    np.testing.assert_array_equal(keras_norms.TLU()(x), np.array([[0.0, 0.0, 0.3]], "float32"))
    affine = keras_norms.TLU(affine=True, alpha_initializer="ones", tau_initializer="ones")
    np.testing.assert_allclose(affine(x), [[-1.5, 1.0, 1.3]], atol=1e-7)


@pytest.mark.parametrize(("affine", "per_channel"), [(False, False), (True, False), (True, True)])
def test_tlu_forward_and_gradients_match_the_reference(affine, per_channel):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(2, 3, 3, 4)).astype("float32")
    layer = keras_norms.TLU(affine=affine, per_channel=per_channel)
    layer(x)
    expected_shape = (1, 1, 1, 4) if per_channel else (3, 3, 4)
    assert [tuple(w.shape) for w in layer.weights] == [expected_shape] * (2 if affine else 1)
    # Keep the thresholds away from the inputs: max() has no derivative at a tie.
    layer.set_weights([rng.normal(size=w.shape) for w in layer.weights])
    weights = weights_of(layer)
    threshold = weights["tau"] + (weights["alpha"] * x if affine else 0.0)
    assert np.min(np.abs(x - threshold)) > 1e-4

    def reference(arrays, w):
        return R.tlu(arrays[0], w["tau"], w.get("alpha"))

    assert_close(layer(x), reference([x], weights), 1e-6, "output")
    assert_gradients_match(layer, reference, [x], layer)


def test_tlu_needs_defined_sizes_for_its_weights():
    with pytest.raises(ValueError, match=r"input_shape=\(None, None, None, 3\)"):
        keras_norms.TLU()(keras.Input((None, None, 3)))
    with pytest.raises(ValueError, match=r"input_shape=\(None, 4, 4, None\)"):
        keras_norms.TLU(per_channel=True)(keras.Input((4, 4, None)))
    with pytest.raises(ValueError, match=r"input_shape=\(3,\)"):
        keras_norms.TLU()(np.zeros(3, "float32"))


# ----------------------------------------------------------------------------- FRN + TLU in a model


def _frn_tlu_model(learned_epsilon=True):
    """The paper's replacement of BN + ReLU by FRN + TLU, in a small CNN."""
    inputs = keras.Input((8, 8, 3), name="image")
    h = keras.layers.Conv2D(8, 3, padding="same")(inputs)
    h = keras_norms.FilterResponseNormalization(learned_epsilon=learned_epsilon)(h)
    h = keras_norms.TLU(per_channel=True)(h)
    h = keras.layers.Conv2D(8, 3, padding="same")(h)
    h = keras_norms.FilterResponseNormalization()(h)
    h = keras_norms.TLU(affine=True)(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    return keras.Model(inputs, keras.layers.Dense(2)(h))


def _images(count, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(count, 8, 8, 3)).astype("float32")
    y = (x[..., 0].mean(axis=(1, 2)) > x[..., 1].mean(axis=(1, 2))).astype("int32")
    return x, y


def _randomize(model, seed):
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, (keras_norms.FilterResponseNormalization, keras_norms.TLU)):
            layer.set_weights([rng.normal(0.5 if w.name == "gamma" else 0.0, 0.3, size=w.shape)
                               for w in layer.weights])


def test_frn_tlu_model_trains_in_graph_mode_and_round_trips(tmp_path):
    keras.utils.set_random_seed(0)
    x, y = _images(128)
    model = _frn_tlu_model()
    model.compile(optimizer=keras.optimizers.Adam(0.01),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = model.evaluate(x, y, verbose=0)
    model.fit(x, y, batch_size=16, epochs=6, verbose=0)
    after = model.evaluate(x, y, verbose=0)
    assert not model.run_eagerly
    assert after < 0.5 * before, (before, after)

    model.save(tmp_path / "frn.keras")
    loaded = keras.saving.load_model(tmp_path / "frn.keras")
    for ours, theirs in zip(model.layers, loaded.layers, strict=True):
        assert type(ours) is type(theirs) and ours.get_config() == theirs.get_config()
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_frn_tlu_model_xla_matches_graph_mode():
    model = _frn_tlu_model()
    _randomize(model, 6)
    x, y = _images(4, seed=6)
    upstream = tf.constant(np.random.default_rng(6).normal(size=(4, 2)), tf.float32)

    def forward(inputs):
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            outputs = model(inputs, training=True)
            loss = tf.reduce_sum(outputs * upstream)
        return outputs, tape.gradient(loss, [inputs, *model.trainable_weights])

    x = tf.constant(x)
    graph_out, graph_grads = tf.function(forward)(x)
    xla_out, xla_grads = tf.function(forward, jit_compile=True)(x)
    assert_close(xla_out, graph_out, 1e-5, "XLA output")
    for i, (a, b) in enumerate(zip(xla_grads, graph_grads, strict=True)):
        assert_close(a, b, 1e-5, f"XLA gradient {i}")


def _tlu_with_weights(rng, affine, per_channel, x):
    layer = keras_norms.TLU(affine=affine, per_channel=per_channel)
    layer(x)
    layer.set_weights([rng.normal(size=w.shape) for w in layer.weights])
    return layer


TLU_KINDS = pytest.mark.parametrize(("affine", "per_channel"), [(False, False), (True, True)])


@TLU_KINDS
@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_tlu_under_mixed_precision(affine, per_channel, policy):
    """float32 inputs reach the threshold unrounded. TLU does not normalize: where the input is
    beyond float16's range, so is the output (it must be inf then, never NaN)."""
    keras.mixed_precision.set_global_policy(policy)
    compute_dtype = policy.removeprefix("mixed_")
    rng = np.random.default_rng(7)
    for label, x in large_inputs((2, 4, 4, 6), rng).items():
        layer = _tlu_with_weights(rng, affine, per_channel, x)
        assert all(w.dtype == "float32" for w in layer.weights)
        weights = weights_of(layer)
        assert_rounded_to(layer(x), R.tlu(x, weights["tau"], weights.get("alpha")), compute_dtype,
                          f"{policy}, {label}")


@TLU_KINDS
def test_tlu_float64(affine, per_channel):
    keras.mixed_precision.set_global_policy("float64")
    rng = np.random.default_rng(8)
    x = 100.0 + rng.normal(size=(2, 4, 4, 6))
    layer = _tlu_with_weights(rng, affine, per_channel, x)
    assert all(w.dtype == "float64" for w in layer.weights)
    weights = weights_of(layer)
    assert_float64_close(layer(x), R.tlu(x, weights["tau"], weights.get("alpha")), "TLU float64")


@pytest.mark.parametrize(("per_channel", "other"), [(False, (2, 4, 5, 6)), (True, (2, 4, 4, 7)),
                                                    (True, (2, 3, 4, 4, 6))])
def test_tlu_call_with_another_shape_than_built_names_both(per_channel, other):
    layer = keras_norms.TLU(per_channel=per_channel)
    layer(np.zeros((2, 4, 4, 6), "float32"))
    with pytest.raises(ValueError, match=re.escape(f"Received: inputs.shape={other}")) as error:
        layer(np.zeros(other, "float32"))
    assert "TLU" in str(error.value) and "rank 4" in str(error.value)


def test_frn_tlu_model_converts_to_tflite_builtins_and_matches_litert():
    model = _frn_tlu_model()
    _randomize(model, 8)
    x, _ = _images(2, seed=8)
    content = convert_builtin_only(model, {"image": x})
    (outputs,), max_rank, ops = run_litert(content, {"image": x})
    assert max_rank <= 4, max_rank
    assert not any(op.startswith("FLEX") for op in ops), ops
    assert_close(outputs, model(x), 1e-5, "LiteRT vs Keras")


# ----------------------------------------------------------------------------- bad arguments


@pytest.mark.parametrize(
    ("kwargs", "shape", "error", "match"),
    [
        ({"epsilon": 0.0}, None, ValueError, "epsilon=0.0"),
        ({"axis": "spatial"}, None, TypeError, "axis='spatial'"),
        ({"axis": (1, 3)}, (2, 4, 4, 8), ValueError, "axis=(1, 3)"),
        ({"axis": (0, 1)}, (2, 4, 4, 8), ValueError, "axis=(0, 1)"),
        ({}, (2, 4, 4, 4, 4, 8), ValueError, "input_shape=(2, 4, 4, 4, 4, 8)"),
    ],
)
def test_frn_bad_arguments_name_the_value(kwargs, shape, error, match):
    with pytest.raises(error, match=re.escape(match)):
        layer = keras_norms.FilterResponseNormalization(**kwargs)
        layer(np.zeros(shape, "float32"))
