"""WeightStandardizedConv2D against a float64 convolution of the standardized kernel (Qiao et al. 2019)."""

from __future__ import annotations

import re

import keras
import numpy as np
import pytest
import references as R
import tensorflow as tf
from layer_checks import assert_close, assert_gradients_match, convert_builtin_only, run_litert, weights_of
from platform_checks import nchw_convolutions_on_cpu

import keras_norms


def _conv(seed=0, epsilon=1e-5, use_bias=True):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(2, 5, 5, 3)).astype("float32")
    layer = keras_norms.WeightStandardizedConv2D(4, 3, epsilon=epsilon, use_bias=use_bias)
    layer(x)
    # A kernel with a large mean and scale: standardization has to undo both.
    layer.kernel.assign(rng.normal(0.7, 3.0, size=(3, 3, 3, 4)).astype("float32"))
    if use_bias:
        layer.bias.assign(rng.normal(size=4).astype("float32"))
    return layer, x


def _reference(epsilon=1e-5):
    def reference(arrays, w):
        return R.conv2d_valid(arrays[0], R.standardize_kernel(w["kernel"], epsilon), w.get("bias"))

    return reference


@pytest.mark.parametrize(("epsilon", "use_bias"), [(1e-5, True), (1e-2, False)])
def test_forward_and_gradients_match_the_reference(epsilon, use_bias):
    layer, x = _conv(epsilon=epsilon, use_bias=use_bias)
    reference = _reference(epsilon)
    assert_close(layer(x), reference([x], weights_of(layer)), 1e-5, "output")
    assert_gradients_match(layer, reference, [x], layer)


def test_the_output_ignores_a_per_filter_affine_change_of_the_kernel():
    layer, x = _conv(epsilon=1e-9)
    before = layer(x)
    scale = np.array([0.5, 2.0, 3.0, 10.0], "float32")
    layer.kernel.assign(layer.kernel.numpy() * scale + np.array([1.0, -2.0, 0.0, 5.0], "float32"))
    assert_close(layer(x), before, 1e-4, "after scaling and shifting each filter")


def test_config_keeps_epsilon_and_every_conv2d_argument():
    layer = keras_norms.WeightStandardizedConv2D(8, (3, 1), strides=2, padding="same", epsilon=1e-4,
                                                 use_bias=False, name="ws")
    config = layer.get_config()
    assert config["epsilon"] == 1e-4
    clone = keras.layers.deserialize(keras.layers.serialize(layer))
    assert type(clone) is keras_norms.WeightStandardizedConv2D
    assert clone.get_config() == config


@pytest.mark.data_format
@pytest.mark.parametrize("mode", ["eager", "graph", "xla"])
def test_channels_first_matches_the_reference_on_every_machine(mode):
    """Channels first runs where TensorFlow's CPU kernels take NHWC only, unlike Keras' own Conv2D.

    The output width equals the filter count (4): the bias must still go on the channel axis.
    """
    layer, x = _conv(seed=4)
    first = keras_norms.WeightStandardizedConv2D(4, 3, data_format="channels_first")
    x = np.moveaxis(np.pad(x, [(0, 0), (0, 1), (0, 1), (0, 0)]), -1, 1)  # (2, 3, 6, 6)
    first(x)
    first.set_weights(layer.get_weights())
    reference = _reference()

    def channels_first_reference(arrays, w):
        return np.moveaxis(reference([np.moveaxis(arrays[0], 1, -1)], w), -1, 1)

    call = first if mode == "eager" else tf.function(first, jit_compile=mode == "xla")
    assert_close(call(tf.constant(x)), channels_first_reference([x], weights_of(first)), 1e-5, mode)
    assert_gradients_match(call, channels_first_reference, [x], first)
    if not nchw_convolutions_on_cpu():
        keras_conv = keras.layers.Conv2D(4, 3, data_format="channels_first")
        with pytest.raises(tf.errors.UnimplementedError, match="NHWC"):
            keras_conv(x)


def _gn_ws_model():
    """GN + WS, the combination of Qiao et al. (2019) for micro-batch training."""
    inputs = keras.Input((8, 8, 3), name="image")
    h = keras_norms.WeightStandardizedConv2D(8, 3, padding="same", use_bias=False)(inputs)
    h = keras_norms.GroupNormalization(groups=4)(h)
    h = keras.layers.ReLU()(h)
    h = keras_norms.WeightStandardizedConv2D(8, 3, strides=2, padding="same")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    return keras.Model(inputs, keras.layers.Dense(2)(h))


def _images(count, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(count, 8, 8, 3)).astype("float32")
    return x, (x[..., 0].mean(axis=(1, 2)) > x[..., 2].mean(axis=(1, 2))).astype("int32")


def test_gn_ws_model_trains_in_graph_mode_and_round_trips(tmp_path):
    keras.utils.set_random_seed(0)
    x, y = _images(128)
    model = _gn_ws_model()
    model.compile(optimizer=keras.optimizers.Adam(0.01),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = model.evaluate(x, y, verbose=0)
    model.fit(x, y, batch_size=8, epochs=6, verbose=0)
    after = model.evaluate(x, y, verbose=0)
    assert after < 0.5 * before, (before, after)

    model.save(tmp_path / "ws.keras")
    loaded = keras.saving.load_model(tmp_path / "ws.keras")
    assert [type(layer) for layer in loaded.layers] == [type(layer) for layer in model.layers]
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_xla_matches_graph_mode():
    model = _gn_ws_model()
    x = tf.constant(_images(4, seed=1)[0])
    upstream = tf.constant(np.random.default_rng(1).normal(size=(4, 2)), tf.float32)

    def forward(inputs):
        with tf.GradientTape() as tape:
            outputs = model(inputs, training=True)
            loss = tf.reduce_sum(outputs * upstream)
        return outputs, tape.gradient(loss, model.trainable_weights)

    graph_out, graph_grads = tf.function(forward)(x)
    xla_out, xla_grads = tf.function(forward, jit_compile=True)(x)
    assert_close(xla_out, graph_out, 1e-5, "XLA output")
    for weight, a, b in zip(model.trainable_weights, xla_grads, graph_grads, strict=True):
        assert_close(a, b, 1e-5, f"XLA d/d{weight.path}")


@pytest.mark.parametrize(("policy", "atol"), [("mixed_float16", 2e-2), ("mixed_bfloat16", 1e-1)])
def test_mixed_precision_standardizes_the_float32_kernel(policy, atol):
    keras.mixed_precision.set_global_policy(policy)
    layer, x = _conv(seed=2)
    outputs = layer(x)
    assert outputs.dtype == policy.removeprefix("mixed_")
    assert layer.kernel.dtype == "float32" and layer.bias.dtype == "float32"
    outputs = keras.ops.convert_to_numpy(keras.ops.cast(outputs, "float32"))
    assert np.all(np.isfinite(outputs))
    assert_close(outputs, _reference()([x], weights_of(layer)), atol, policy)


def test_converts_to_tflite_builtins_and_matches_litert():
    model = _gn_ws_model()
    x, _ = _images(2, seed=3)
    content = convert_builtin_only(model, {"image": x})
    (outputs,), max_rank, ops = run_litert(content, {"image": x})
    assert max_rank <= 4 and "CONV_2D" in ops, (max_rank, ops)
    assert_close(outputs, model(x), 1e-5, "LiteRT vs Keras")


@pytest.mark.parametrize(
    ("epsilon", "error"), [(0.0, ValueError), (-1e-5, ValueError), ("1e-5", TypeError)]
)
def test_bad_epsilon_names_the_value(epsilon, error):
    with pytest.raises(error, match=re.escape(f"epsilon={epsilon!r}")):
        keras_norms.WeightStandardizedConv2D(4, 3, epsilon=epsilon)
