
"""Adaptive normalization: AdaIN, adaLN(-Zero), adaptive group norm and switchable normalization.

Each layer against a float64 NumPy reference of its paper's formula (tests/references.py),
forward and gradients; inside a small functional model (graph-mode fit on dict and tuple
inputs, `.keras` round trip, XLA, mixed precision, TFLite builtins with LiteRT parity); the
properties the papers rely on; and the errors for conditions that do not fit. The registry
name "switchable" also runs the layer contract suite (tests/test_contract.py).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable

import keras
import numpy as np
import pytest
import references as R
import tensorflow as tf
from dtype_checks import assert_float64_close, assert_rounded_to, large_inputs
from layer_checks import (
    assert_arguments_are_attributes,
    assert_close,
    assert_gradients_match,
    convert_builtin_only,
    run_litert,
    weights_of,
)

import keras_norms


@dataclasses.dataclass(frozen=True)
class Kind:
    """A conditioned layer configuration: how to make it, its input shapes, its float64 reference."""

    make: Callable[[], keras.layers.Layer]
    x_shape: tuple[int, ...]
    condition_shape: tuple[int, ...]
    # reference(x, condition, weights) -> output (adaLN-Zero: (output, gate))
    reference: Callable
    gated: bool = False


KINDS = {
    "adain-features": Kind(
        lambda: keras_norms.AdaptiveInstanceNormalization(alpha=0.8), (2, 4, 4, 4), (2, 3, 5, 4),
        lambda x, c, w: R.adain(x, c, alpha=0.8),
    ),
    "adain-vector": Kind(
        lambda: keras_norms.AdaptiveInstanceNormalization(mode="vector"), (2, 4, 4, 4), (2, 5),
        lambda x, c, w: R.adain_vector(x, c, w),
    ),
    "adaln": Kind(
        lambda: keras_norms.AdaptiveLayerNormalization(), (2, 5, 8), (2, 6),
        lambda x, c, w: R.adaptive_layer_norm(x, c, w),
    ),
    "adaln-zero": Kind(
        lambda: keras_norms.AdaptiveLayerNormalization(zero=True, epsilon=1e-5), (2, 5, 8), (2, 6),
        lambda x, c, w: R.adaptive_layer_norm(x, c, w, zero=True, epsilon=1e-5), gated=True,
    ),
    "adagn": Kind(
        lambda: keras_norms.AdaptiveGroupNormalization(groups=2), (2, 4, 4, 4), (2, 6),
        lambda x, c, w: R.adaptive_group_norm(x, c, w, groups=2),
    ),
}
each_kind = pytest.mark.parametrize("kind", list(KINDS))


def _sample(shape, rng, scale=1.0, loc=0.0):
    return (loc + scale * rng.normal(size=shape)).astype("float32")


def _randomize(layer, rng):
    for weight in layer.weights:
        weight.assign(rng.normal(0.0, 0.5, size=weight.shape).astype("float32"))


def _built(kind: Kind, seed: int):
    """A layer of `kind`, built, with random non-trivial weights, and inputs for it."""
    rng = np.random.default_rng(seed)
    x, condition = _sample(kind.x_shape, rng), _sample(kind.condition_shape, rng, loc=0.5)
    layer = kind.make()
    layer(x, condition)
    _randomize(layer, rng)
    return layer, x, condition


def _summed(outputs):
    """adaLN-Zero's `(modulated, gate)` as one tensor, so one upstream gradient reaches both."""
    return outputs[0] + outputs[1] if isinstance(outputs, (tuple, list)) else outputs


# ----------------------------------------------------------------------------- numerics


@each_kind
def test_forward_and_gradients_match_the_reference(kind):
    spec = KINDS[kind]
    layer, x, condition = _built(spec, seed=0)
    weights = weights_of(layer)
    outputs = layer(x, condition)
    expected = spec.reference(x, condition, weights)
    if spec.gated:
        assert_close(outputs[0], expected[0], 1e-5, "modulated")
        assert_close(outputs[1], expected[1], 1e-5, "gate")
    else:
        assert outputs.dtype == "float32"
        assert_close(outputs, expected, 1e-5, "output")

    def reference(arrays, w):
        return _summed(spec.reference(arrays[0], arrays[1], w))

    assert_gradients_match(lambda a, b: _summed(layer(a, b)), reference, [x, condition], layer)


@each_kind
def test_constructor_arguments_are_attributes(kind):
    layer, _, _ = _built(KINDS[kind], seed=1)
    assert_arguments_are_attributes(layer)


def test_tlu_and_weight_standardized_conv_arguments_are_attributes():
    tlu = keras_norms.TLU(affine=True, per_channel=True, tau_initializer="ones")
    tlu(np.zeros((2, 3, 3, 4), "float32"))
    conv = keras_norms.WeightStandardizedConv2D(4, 3, epsilon=1e-4)
    conv(np.zeros((2, 5, 5, 3), "float32"))
    for layer in (tlu, conv):
        assert_arguments_are_attributes(layer)


def test_adain_gives_the_content_the_per_channel_statistics_of_the_style():
    rng = np.random.default_rng(1)
    content = _sample((2, 8, 8, 4), rng, scale=3.0, loc=-1.0)
    style = _sample((2, 5, 6, 4), rng) * rng.uniform(0.5, 4.0, size=(2, 1, 1, 4)).astype("float32") + 2.0
    outputs = np.asarray(keras_norms.AdaptiveInstanceNormalization()(content, style), np.float64)
    style = style.astype(np.float64)
    assert_close(outputs.mean(axis=(1, 2)), style.mean(axis=(1, 2)), 1e-5, "mean")
    assert_close(outputs.std(axis=(1, 2)), style.std(axis=(1, 2)), 1e-4, "standard deviation")


@pytest.mark.parametrize("alpha", [0.0, 0.25, 0.6, 1.0])
def test_adain_alpha_blends_the_rescaled_instance_norm_with_the_content(alpha):
    rng = np.random.default_rng(2)
    content, style = _sample((2, 6, 6, 3), rng, scale=2.0), _sample((2, 4, 4, 3), rng, loc=1.0)
    s = style.astype(np.float64)
    rescaled = (R.instance_norm(content, epsilon=1e-5) * np.sqrt(s.var(axis=(1, 2), keepdims=True) + 1e-5)
                + s.mean(axis=(1, 2), keepdims=True))
    expected = alpha * rescaled + (1.0 - alpha) * content
    assert_close(keras_norms.AdaptiveInstanceNormalization(alpha=alpha)(content, style), expected, 1e-5,
                 "constructor alpha")
    assert_close(keras_norms.AdaptiveInstanceNormalization()(content, style, alpha=alpha), expected, 1e-5,
                 "call alpha")


def _dit_block(dim=8, tokens=5, condition_dim=6):
    """A DiT block: attention and MLP, each behind adaLN-Zero and gated into the residual stream."""
    x = keras.Input((tokens, dim), name="x")
    c = keras.Input((condition_dim,), name="c")
    h, gate = keras_norms.AdaptiveLayerNormalization(zero=True)(x, c)
    attention = keras.layers.MultiHeadAttention(num_heads=2, key_dim=dim // 2)(h, h)
    x1 = x + gate * attention
    h, gate = keras_norms.AdaptiveLayerNormalization(zero=True)(x1, c)
    mlp = keras.layers.Dense(dim)(keras.layers.Dense(4 * dim, activation="gelu")(h))
    return keras.Model({"x": x, "c": c}, x1 + gate * mlp)


def test_adaln_zero_block_is_exactly_the_identity_at_initialization_and_then_trains():
    keras.utils.set_random_seed(3)
    rng = np.random.default_rng(3)
    inputs = {"x": _sample((16, 5, 8), rng, scale=3.0), "c": _sample((16, 6), rng)}
    model = _dit_block()
    np.testing.assert_array_equal(model(inputs), inputs["x"])
    np.testing.assert_array_equal(model.predict(inputs, verbose=0), inputs["x"])

    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    model.fit(inputs, np.tanh(inputs["x"]), batch_size=8, epochs=1, verbose=0)
    assert np.max(np.abs(model.predict(inputs, verbose=0) - inputs["x"])) > 1e-3


def test_adaln_zero_refuses_initializers_that_are_not_zero():
    with pytest.raises(ValueError, match="kernel_initializer"):
        keras_norms.AdaptiveLayerNormalization(zero=True, kernel_initializer="glorot_uniform")
    with pytest.raises(ValueError, match="bias_initializer"):
        keras_norms.AdaptiveLayerNormalization(zero=True, bias_initializer="ones")
    layer = keras_norms.AdaptiveLayerNormalization(zero=True)
    assert keras_norms.AdaptiveLayerNormalization.from_config(layer.get_config()).zero


# ----------------------------------------------------------------------------- switchable normalization


def _switchable(seed, shape=(4, 3, 3, 6), **kwargs):
    rng = np.random.default_rng(seed)
    x = _sample(shape, rng, scale=2.0, loc=1.0)
    layer = keras_norms.SwitchableNormalization(**kwargs)
    layer(x)
    for weight in layer.weights:
        low, high = (0.5, 2.0) if weight.name == "moving_variance" else (-1.0, 1.0)
        weight.assign(rng.uniform(low, high, size=weight.shape).astype("float32"))
    return layer, x


def test_switchable_inference_uses_the_moving_batch_statistics():
    layer, x = _switchable(4)
    weights = weights_of(layer)
    inference = layer(x, training=False)
    assert_close(inference, R.switchable_norm(x, weights, training=False), 1e-5, "inference")
    assert not np.allclose(inference, R.switchable_norm(x, weights, training=True), atol=1e-2)
    layer.trainable = False
    assert_close(layer(x, training=True), inference, 1e-6, "trainable=False")
    layer.trainable = True
    # In inference an example does not depend on the rest of its batch; in training it does.
    assert_close(layer(x[:1], training=False), inference[:1], 1e-5, "one example, inference")
    assert not np.allclose(layer(x[:2], training=True)[:1], layer(x, training=True)[:1], atol=1e-3)


def test_switchable_training_updates_the_moving_averages_with_the_batch_statistics():
    layer, x = _switchable(5, momentum=0.75)
    moving_mean, moving_variance = layer.moving_mean.numpy(), layer.moving_variance.numpy()
    weights = weights_of(layer)
    assert_close(layer(x, training=True), R.switchable_norm(x, weights, training=True), 1e-5, "training")
    batch_mean, batch_variance = R.batch_moments(x)
    assert_close(layer.moving_mean.numpy(), 0.75 * moving_mean + 0.25 * batch_mean, 1e-6, "moving_mean")
    assert_close(layer.moving_variance.numpy(), 0.75 * moving_variance + 0.25 * batch_variance, 1e-5,
                 "moving_variance")


@pytest.mark.parametrize(
    ("winner", "reference"),
    [
        (0, lambda x: R.instance_norm(x, epsilon=1e-5)),
        (1, lambda x: R.layer_norm(x, axis=[1, 2, 3], epsilon=1e-5)),
        (2, lambda x: R.batch_norm_train(x, epsilon=1e-5)),
    ],
    ids=["instance", "layer", "batch"],
)
def test_switchable_norm_becomes_the_norm_its_weights_select(winner, reference):
    x = _sample((4, 3, 3, 6), np.random.default_rng(6), scale=2.0, loc=1.0)
    layer = keras_norms.SwitchableNormalization()
    layer(x)
    logits = np.full(3, -30.0, "float32")
    logits[winner] = 30.0
    layer.mean_weights.assign(logits)
    layer.variance_weights.assign(logits)
    assert_close(layer(x, training=True), reference(x), 1e-5, f"component {winner}")


# ----------------------------------------------------------------------------- in a model


def _model(kind: Kind, structure="dict"):
    """Dense -> the layer (conditioned on `c`) -> head; adaLN-Zero as a gated residual block."""
    x = keras.Input(kind.x_shape[1:], name="x")
    c = keras.Input(kind.condition_shape[1:], name="c")
    h = keras.layers.Dense(kind.x_shape[-1])(x)  # gradients must flow through the norm
    outputs = kind.make()(h, c)
    if kind.gated:
        modulated, gate = outputs
        outputs = h + gate * keras.layers.Dense(kind.x_shape[-1])(modulated)
    y = keras.layers.Dense(1)(keras.layers.Flatten()(outputs))
    return keras.Model({"x": x, "c": c} if structure == "dict" else [x, c], y)


def _data(kind: Kind, count, seed):
    rng = np.random.default_rng(seed)
    x = _sample((count, *kind.x_shape[1:]), rng)
    c = _sample((count, *kind.condition_shape[1:]), rng)
    w_x = rng.normal(size=(x[0].size, 1)) / np.sqrt(x[0].size)
    w_c = rng.normal(size=(c[0].size, 1)) / np.sqrt(c[0].size)
    y = np.tanh(x.reshape(count, -1) @ w_x) * (c.reshape(count, -1) @ w_c)
    return x, c, y.astype("float32")


@pytest.mark.parametrize(
    ("kind", "structure"),
    [*((name, "dict") for name in KINDS), ("adaln-zero", "tuple"), ("adain-features", "tuple")],
)
def test_model_fit_lowers_the_loss_in_graph_mode(kind, structure):
    spec = KINDS[kind]
    keras.utils.set_random_seed(0)
    x, c, y = _data(spec, 64, seed=7)
    inputs = {"x": x, "c": c} if structure == "dict" else (x, c)
    model = _model(spec, structure)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse", run_eagerly=False)
    before = model.evaluate(inputs, y, batch_size=64, verbose=0)
    history = model.fit(inputs, y, batch_size=16, epochs=10, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    after = model.evaluate(inputs, y, batch_size=64, verbose=0)
    assert after < 0.5 * before, (before, after)


@each_kind
def test_model_keras_file_round_trip_gives_identical_outputs(kind, tmp_path):
    spec = KINDS[kind]
    model = _model(spec)
    for layer in model.layers:
        _randomize(layer, np.random.default_rng(8))
    x, c, _ = _data(spec, 4, seed=8)
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    for ours, theirs in zip(model.layers, loaded.layers, strict=True):
        assert type(ours) is type(theirs) and ours.get_config() == theirs.get_config()
    np.testing.assert_array_equal(loaded({"x": x, "c": c}), model({"x": x, "c": c}))


@each_kind
def test_xla_matches_graph_mode(kind):
    layer, x, condition = _built(KINDS[kind], seed=9)
    upstream = tf.constant(np.random.default_rng(9).normal(size=x.shape), tf.float32)

    def forward(a, b):
        with tf.GradientTape() as tape:
            tape.watch([a, b])
            outputs = _summed(layer(a, b))
            loss = tf.reduce_sum(outputs * upstream)
        return outputs, tape.gradient(loss, [a, b, *layer.trainable_weights])

    args = tf.constant(x), tf.constant(condition)
    graph_out, graph_grads = tf.function(forward)(*args)
    xla_out, xla_grads = tf.function(forward, jit_compile=True)(*args)
    assert_close(xla_out, graph_out, 1e-5, "XLA output")
    names = ["x", "condition"] + [w.name for w in layer.trainable_weights]
    for name, a, b in zip(names, xla_grads, graph_grads, strict=True):
        assert_close(a, b, 1e-5, f"XLA d/d{name}")


def _pairs(outputs, expected, gated: bool):
    return zip(*((outputs, expected) if gated else ((outputs,), (expected,))), strict=True)


@each_kind
@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision(kind, policy):
    """float32 inputs up to 1e15 reach the float32 math unrounded; the output is rounded once at the end."""
    spec = KINDS[kind]
    keras.mixed_precision.set_global_policy(policy)
    compute_dtype = policy.removeprefix("mixed_")
    layer, _, condition = _built(spec, seed=10)
    rng = np.random.default_rng(10)
    inputs = large_inputs(spec.x_shape, rng)
    for label, x in inputs.items():
        # AdaIN's style is a second feature map: it gets large values too.
        style = large_inputs(spec.condition_shape, rng)[label] if kind == "adain-features" else condition
        expected = spec.reference(x, style, weights_of(layer))
        for output, reference in _pairs(layer(x, style), expected, spec.gated):
            assert_rounded_to(output, reference, compute_dtype, f"{policy}, {label}")
    assert all(w.dtype == "float32" for w in layer.weights)


@each_kind
@pytest.mark.parametrize("input_dtype", ["float64", "float32"])
def test_float64(kind, input_dtype):
    """Under the float64 policy the layer computes in float64, whatever float dtype its input has."""
    spec = KINDS[kind]
    keras.mixed_precision.set_global_policy("float64")
    layer, _, condition = _built(spec, seed=11)
    assert all(w.dtype == "float64" for w in layer.weights)
    rng = np.random.default_rng(11)
    # A large mean: float32 statistics would be off by about 1e-5 here.
    x = _sample(spec.x_shape, rng, loc=100.0).astype(input_dtype)
    condition = (condition + 100.0 if kind == "adain-features" else condition).astype(input_dtype)
    expected = spec.reference(x.astype(np.float64), condition.astype(np.float64), weights_of(layer))
    for output, reference in _pairs(layer(x, condition), expected, spec.gated):
        assert_float64_close(output, reference, f"{kind} from {input_dtype}")


@each_kind
def test_call_with_another_shape_than_built_names_both(kind):
    spec = KINDS[kind]
    layer, x, condition = _built(spec, seed=12)
    channels = x.shape[:-1] + (x.shape[-1] + 1,)
    for other in (x.shape[:1] + (2,) + x.shape[1:], channels):
        with pytest.raises(ValueError, match=re.escape(f"Received: inputs.shape={other}")) as error:
            layer(np.ones(other, "float32"), condition)
        assert type(layer).__name__ in str(error.value) and f"rank {len(x.shape)}" in str(error.value)


@pytest.mark.parametrize("kind", [*KINDS, "switchable"])
def test_tflite_builtins_and_litert_match_keras(kind):
    if kind == "switchable":
        layer, x = _switchable(11)
        inputs = keras.Input(x.shape[1:], name="x")
        model, feed = keras.Model(inputs, layer(inputs)), {"x": x}
    else:
        spec = KINDS[kind]
        model = _model(spec)
        for layer in model.layers:
            _randomize(layer, np.random.default_rng(11))
        x, c, _ = _data(spec, 2, seed=11)
        feed = {"x": x, "c": c}
    content = convert_builtin_only(model, feed)
    (outputs,), max_rank, ops = run_litert(content, feed)
    assert max_rank <= len(x.shape), (max_rank, ops)
    assert_close(outputs, model(feed if kind != "switchable" else x), 1e-5, "LiteRT vs Keras")


# ----------------------------------------------------------------------------- conditions that do not fit


def _message(x_shape, condition_shape, condition="condition"):
    return f"inputs.shape={x_shape}, {condition}.shape={condition_shape}"


@pytest.mark.parametrize(
    ("make", "x_shape", "condition_shape", "name"),
    [
        # batch size
        (lambda: keras_norms.AdaptiveLayerNormalization(), (2, 5, 8), (3, 6), "condition"),
        (lambda: keras_norms.AdaptiveGroupNormalization(groups=2), (2, 4, 4, 4), (1, 6), "condition"),
        (lambda: keras_norms.AdaptiveInstanceNormalization(), (2, 4, 4, 4), (3, 4, 4, 4), "style"),
        (lambda: keras_norms.AdaptiveInstanceNormalization(mode="vector"), (2, 4, 4, 4), (3, 5), "style"),
        # rank
        (lambda: keras_norms.AdaptiveLayerNormalization(zero=True), (2, 5, 8), (2, 1, 6), "condition"),
        (lambda: keras_norms.AdaptiveGroupNormalization(groups=2), (2, 4, 4, 4), (2,), "condition"),
        (lambda: keras_norms.AdaptiveInstanceNormalization(), (2, 4, 4, 4), (2, 4), "style"),
        (lambda: keras_norms.AdaptiveInstanceNormalization(mode="vector"), (2, 4, 4, 4), (2, 4, 4, 4),
         "style"),
        # channels
        (lambda: keras_norms.AdaptiveInstanceNormalization(), (2, 4, 4, 4), (2, 4, 4, 5), "style"),
    ],
)
def test_a_condition_that_does_not_fit_names_both_shapes(make, x_shape, condition_shape, name):
    with pytest.raises(ValueError, match=re.escape(_message(x_shape, condition_shape, name))):
        make()(np.zeros(x_shape, "float32"), np.zeros(condition_shape, "float32"))


def test_a_condition_of_other_features_than_the_built_layer_names_both_shapes():
    layer = keras_norms.AdaptiveLayerNormalization()
    layer(np.zeros((2, 5, 8), "float32"), np.zeros((2, 6), "float32"))
    with pytest.raises(ValueError, match=re.escape(_message((2, 5, 8), (2, 7)))):
        layer(np.zeros((2, 5, 8), "float32"), np.zeros((2, 7), "float32"))


def test_symbolic_inputs_are_checked_when_the_model_is_built():
    with pytest.raises(ValueError, match=re.escape(_message((None, 4, 4, 8), (None, 4, 6)))):
        keras_norms.AdaptiveGroupNormalization(groups=4)(keras.Input((4, 4, 8)), keras.Input((4, 6)))
    with pytest.raises(ValueError, match=re.escape(_message((None, 5, 8), (None, None)))):
        keras_norms.AdaptiveLayerNormalization()(keras.Input((5, 8)), keras.Input((None,)))


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: keras_norms.AdaptiveInstanceNormalization(mode="style"), ValueError, "mode='style'"),
        (lambda: keras_norms.AdaptiveInstanceNormalization(alpha=1.5), ValueError, "alpha=1.5"),
        (lambda: keras_norms.AdaptiveInstanceNormalization(epsilon=0), ValueError, "epsilon=0"),
        (lambda: keras_norms.AdaptiveLayerNormalization(epsilon="1e-6"), TypeError, "epsilon='1e-6'"),
        (lambda: keras_norms.AdaptiveGroupNormalization(groups=0), ValueError, "groups=0"),
        (lambda: keras_norms.AdaptiveGroupNormalization(groups=2.0), TypeError, "groups=2.0"),
        (lambda: keras_norms.AdaptiveGroupNormalization(groups=3)(np.zeros((2, 4, 4, 8), "float32"),
                                                                  np.zeros((2, 6), "float32")),
         ValueError, "groups=3"),
        (lambda: keras_norms.AdaptiveInstanceNormalization()(np.zeros((2, 8), "float32"),
                                                             np.zeros((2, 8), "float32")),
         ValueError, "input_shape=(2, 8)"),
        (lambda: keras_norms.AdaptiveInstanceNormalization()(np.zeros((2, 4, 4, 3), "float32"),
                                                             np.zeros((2, 4, 4, 3), "float32"), alpha=-1),
         ValueError, "alpha=-1"),
    ],
)
def test_bad_arguments_name_the_value(make, error, match):
    with pytest.raises(error, match=re.escape(match)):
        make()


@pytest.mark.parametrize("layer_class",
                         [keras_norms.GroupNormalization, keras_norms.AdaptiveGroupNormalization])
def test_groups_takes_numpy_integers_and_saves_a_python_int(layer_class):
    layer = layer_class(groups=np.int64(4))
    assert layer.get_config()["groups"] == 4 and type(layer.get_config()["groups"]) is int
    json.dumps(layer.get_config())
    with pytest.raises(TypeError, match="groups=True"):
        layer_class(groups=True)
