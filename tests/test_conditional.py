"""The conditional layers (keras_norms/conditional.py) against float64 references of their papers' formulas.

They take two inputs, so they have no registry name and are not in the contract
suite; this file gives them the same battery: forward and gradients (input,
condition, every weight) against tests/references.py, config and `.keras`
round trips, graph-mode `fit` on dict and tuple inputs, XLA, mixed precision,
TFLite through `keras_norms.export.export_model` checked with LiteRT, and
conditions of the wrong shape.
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
from layer_checks import assert_arguments_are_attributes

import keras_norms
from keras_norms import SPADE, ConditionalBatchNormalization, ConditionalInstanceNormalization, FiLM

TOLERANCE = 1e-5


def _scaled_tolerance(expected, atol=TOLERANCE):
    """`atol` for values of order one, relative beyond (sums of many terms, large activations)."""
    return atol * max(1.0, float(np.max(np.abs(expected), initial=0.0)))


def _assert_close(actual, expected, what, atol=TOLERANCE):
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    error = float(np.max(np.abs(actual - expected), initial=0.0))
    bound = _scaled_tolerance(expected, atol)
    assert error <= bound, f"{what}: max abs error {error:.3g} > {bound:.3g}"


# ----------------------------------------------------------------------------- cases


def _ids(count, shape=None):
    return lambda rng, batch: rng.integers(0, count, size=shape or (batch,)).astype("int32")


def _vectors(features):
    return lambda rng, batch: rng.normal(size=(batch, features)).astype("float32")


def _style_weights(styles):
    return lambda rng, batch: rng.dirichlet(np.ones(styles), size=batch).astype("float32")


def _maps(height, width, channels):
    return lambda rng, batch: rng.normal(size=(batch, height, width, channels)).astype("float32")


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    make: Callable[[], keras.layers.Layer]
    input_shape: tuple[int, ...]
    condition: Callable  # (rng, batch) -> condition array
    reference: Callable  # (x, condition, weights) -> float64 output
    training: bool = False
    axis: int = -1


def _cbn(axis=-1, epsilon=1e-3, training=True, virtual_batch_size=None):
    return lambda x, c, w: R.conditional_batch_norm(
        x, c, w, axis=axis, epsilon=epsilon, training=training, virtual_batch_size=virtual_batch_size
    )


def _cin(axis=-1, epsilon=1e-3):
    return lambda x, c, w: R.conditional_instance_norm(x, c, w["gamma"], w["beta"], axis, epsilon)


def _film(axis=-1):
    return lambda x, c, w: R.film(x, c, w, axis)


def _spade(norm="batch", epsilon=1e-3, training=True):
    return lambda x, c, w: R.spade(x, c, w, norm, epsilon, training)


CASES = [
    Case("cbn-classes-train", lambda: ConditionalBatchNormalization(num_classes=3, momentum=0.9),
         (6, 3, 3, 4), _ids(3), _cbn(), training=True),
    Case("cbn-classes-infer-ids-column", lambda: ConditionalBatchNormalization(num_classes=3),
         (4, 3, 3, 4), _ids(3, (4, 1)), _cbn(training=False)),
    Case("cbn-vector-nchw-train", lambda: ConditionalBatchNormalization(axis=1, epsilon=1e-2),
         (4, 4, 3, 3), _vectors(5), _cbn(axis=1, epsilon=1e-2), training=True, axis=1),
    Case("cbn-ghost-batch", lambda: ConditionalBatchNormalization(num_classes=2, virtual_batch_size=2),
         (4, 2, 2, 3), _ids(2), _cbn(virtual_batch_size=2), training=True),
    Case("cbn-vector-rank2-infer", lambda: ConditionalBatchNormalization(), (5, 6), _vectors(3),
         _cbn(training=False)),
    Case("cin-ids", lambda: ConditionalInstanceNormalization(num_styles=3), (3, 4, 4, 2),
         _ids(3, (3, 1)), _cin()),
    Case("cin-weights-nchw", lambda: ConditionalInstanceNormalization(3, axis=1, epsilon=1e-5),
         (2, 3, 4, 4), _style_weights(3), _cin(axis=1, epsilon=1e-5), axis=1),
    Case("cin-sequence-ids", lambda: ConditionalInstanceNormalization(num_styles=4), (2, 5, 3),
         _ids(4), _cin()),
    Case("film-sequence", lambda: FiLM(), (3, 5, 4), _vectors(6), _film()),
    Case("film-nchw", lambda: FiLM(axis=1), (2, 3, 2, 2), _vectors(2), _film(axis=1), axis=1),
    Case("spade-batch-train-downsample", lambda: SPADE(hidden_channels=4), (2, 4, 4, 3),
         _maps(8, 8, 2), _spade(), training=True),
    Case("spade-batch-infer-odd-sizes", lambda: SPADE(hidden_channels=3), (2, 4, 4, 2),
         _maps(5, 7, 3), _spade(training=False)),
    Case("spade-instance-upsample-k5",
         lambda: SPADE("instance", hidden_channels=3, kernel_size=5, epsilon=1e-5),
         (2, 6, 6, 2), _maps(3, 3, 2), _spade("instance", epsilon=1e-5)),
]
each_case = pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])


def _randomize_weights(layer, rng, x=None, axis=-1) -> None:
    """Non-trivial values for every weight (moving statistics near those of `x`, when given)."""
    if x is not None:
        mean, variance = R.batch_moments(x, axis)
    for weight in layer.weights:
        shape = tuple(weight.shape)
        if weight.name == "moving_mean":
            value = 0.3 * rng.normal(size=shape)
            value = value if x is None else mean + np.sqrt(variance) * value
        elif weight.name == "moving_variance":
            value = rng.uniform(0.5, 2.0, shape) * (1.0 if x is None else variance)
        elif weight.name == "gamma":
            value = rng.normal(1.0, 0.5, shape)
        else:
            value = rng.normal(0.0, 0.4, shape)
        weight.assign(value.astype("float32"))


def _weights(layer) -> dict[str, np.ndarray]:
    return {w.name: np.asarray(w.numpy(), dtype=np.float64) for w in layer.weights}


def _built(case: Case, rng, x=None, condition=None):
    x = rng.normal(size=case.input_shape).astype("float32") if x is None else x
    condition = case.condition(rng, case.input_shape[0]) if condition is None else condition
    layer = case.make()
    layer(x, condition, training=False)
    _randomize_weights(layer, rng, x, case.axis)
    return layer, x, condition


def _is_float(array) -> bool:
    return np.issubdtype(np.asarray(array).dtype, np.floating)


# ----------------------------------------------------------------------------- numerics


@each_case
def test_forward_matches_reference(case):
    rng = np.random.default_rng(0)
    layer, x, condition = _built(case, rng)
    outputs = layer(x, condition, training=case.training)
    assert outputs.dtype == "float32"
    _assert_close(outputs, case.reference(x, condition, _weights(layer)), f"{case.id} output")


@each_case
def test_gradients_match_reference(case):
    rng = np.random.default_rng(1)
    layer, x, condition = _built(case, rng)
    weights = _weights(layer)
    upstream = rng.normal(size=case.input_shape)

    inputs, cond = tf.constant(x), tf.constant(condition)
    with tf.GradientTape() as tape:
        tape.watch([inputs, cond])
        outputs = layer(inputs, cond, training=case.training)
        loss = tf.reduce_sum(outputs * tf.constant(upstream, tf.float32))
    trainable = layer.trainable_weights
    assert trainable, "no trainable weights"
    grads = tape.gradient(loss, [inputs, cond, *trainable])

    def check(grad, f, at, what):
        assert grad is not None, f"no gradient for {what}"
        _assert_close(grad, R.numerical_gradient(f, at, upstream), f"{case.id} d/d{what}")

    check(grads[0], lambda v: case.reference(v, condition, weights), x, "input")
    if _is_float(condition):
        check(grads[1], lambda v: case.reference(x, v, weights), condition, "condition")
    for weight, grad in zip(trainable, grads[2:], strict=True):
        check(grad, lambda v, n=weight.name: case.reference(x, condition, {**weights, n: v}),
              weights[weight.name], weight.name)


@each_case
@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision(case, policy):
    """float32 inputs up to 1e15 reach the float32 math unrounded; the output is rounded once at the end."""
    keras.mixed_precision.set_global_policy(policy)
    compute_dtype = policy.removeprefix("mixed_")
    rng = np.random.default_rng(2)
    condition = case.condition(rng, case.input_shape[0])
    for label, x in large_inputs(case.input_shape, rng).items():
        layer, _, _ = _built(case, rng, x, condition)
        assert layer.compute_dtype == compute_dtype
        outputs = layer(x, condition, training=case.training)
        for weight in layer.weights:
            assert weight.dtype == "float32", (weight.name, weight.dtype)
        # FiLM does not normalize: where x * gamma is beyond float16's range, so is its output.
        assert_rounded_to(outputs, case.reference(x, condition, _weights(layer)), compute_dtype,
                          f"{case.id} under {policy}, {label}")


@each_case
@pytest.mark.parametrize("input_dtype", ["float64", "float32"])
def test_float64(case, input_dtype):
    """Under the float64 policy the layer computes in float64, whatever float dtype its input has."""
    keras.mixed_precision.set_global_policy("float64")
    rng = np.random.default_rng(3)
    # A large mean: float32 statistics would be off by about 1e-5 here.
    x = (100.0 + rng.normal(size=case.input_shape)).astype(input_dtype)
    condition = case.condition(rng, case.input_shape[0])
    if _is_float(condition):
        condition = condition.astype(input_dtype)
    layer, _, _ = _built(case, rng, x, condition)
    assert all(w.dtype == "float64" for w in layer.weights), [(w.name, w.dtype) for w in layer.weights]
    outputs = layer(x, condition, training=case.training)
    expected = case.reference(x.astype(np.float64), condition, _weights(layer))
    assert_float64_close(outputs, expected, f"{case.id} output")


@each_case
def test_call_with_another_shape_than_built_names_both(case):
    rng = np.random.default_rng(4)
    layer, x, condition = _built(case, rng)
    shape = x.shape
    channels = list(shape)
    channels[case.axis] += 1
    for other in (shape[:1] + (2,) + shape[1:], tuple(channels)):
        with pytest.raises(ValueError, match=re.escape(f"Received: inputs.shape={other}")) as error:
            layer(np.ones(other, "float32"), condition, training=case.training)
        assert type(layer).__name__ in str(error.value) and f"rank {len(shape)}" in str(error.value)


@each_case
def test_constructor_arguments_are_attributes(case):
    layer, _, _ = _built(case, np.random.default_rng(6))
    assert_arguments_are_attributes(layer)


# name -> (a layer taking ids among 3, what its ids are, the float64 reference of in-range ids)
ID_LAYERS = {
    "class": (lambda: ConditionalBatchNormalization(num_classes=3, name="cbn"), "class ids (num_classes=3)",
              lambda x, ids, w: R.conditional_batch_norm(x, ids, w, training=False)),
    "style": (lambda: ConditionalInstanceNormalization(num_styles=3, name="cin"), "style ids (num_styles=3)",
              lambda x, ids, w: R.conditional_instance_norm(x, ids, w["gamma"], w["beta"])),
}


def _id_layer(kind):
    make, what, reference = ID_LAYERS[kind]
    layer = make()
    rng = np.random.default_rng(3)
    x = rng.normal(size=(3, 2, 2, 4)).astype("float32")
    layer(x, np.array([0, 1, 2], "int32"))
    _randomize_weights(layer, rng, x)
    return layer, x, what, reference


def _ids_error(layer, what, outside):
    return re.escape(f"{type(layer).__name__} {layer.name}: {what} must be in [0, 3)") + r".*" + re.escape(
        str(outside))


@pytest.mark.parametrize("kind", list(ID_LAYERS))
@pytest.mark.parametrize("ids", [[0, 3, 1], [-1, 0, 2]], ids=["id=3", "id=-1"])
def test_ids_out_of_range_raise_eagerly_and_when_a_graph_runs(kind, ids):
    layer, x, what, _ = _id_layer(kind)
    ids = np.array(ids, "int32")
    outside = [int(i) for i in ids if not 0 <= i < 3]
    with pytest.raises(ValueError, match=_ids_error(layer, what, f"Received: ids out of range {outside}")):
        layer(x, ids, training=False)
    graph = tf.function(lambda inputs, condition: layer(inputs, condition, training=False))
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=_ids_error(layer, what, f"Received ids:] [{outside[0]}]")):
        graph(tf.constant(x), tf.constant(ids))

    image, condition = keras.Input((2, 2, 4)), keras.Input((), dtype="int32")
    model = keras.Model([image, condition], layer(image, condition))
    with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape(what)):
        model.predict([x, ids], verbose=0)


@pytest.mark.parametrize("kind", list(ID_LAYERS))
def test_ids_out_of_range_under_xla_select_no_row(kind):
    """Documented: XLA compiles the assertion away; an id outside [0, 3) then gives gamma = beta = 0."""
    layer, x, _, reference = _id_layer(kind)
    ids = np.array([0, 3, -1], "int32")
    compiled = tf.function(lambda inputs, condition: layer(inputs, condition, training=False),
                           jit_compile=True)
    outputs = np.asarray(compiled(tf.constant(x), tf.constant(ids)))
    assert np.all(outputs[1:] == 0.0)
    _assert_close(outputs[:1], reference(x[:1], ids[:1], _weights(layer)), "in-range id")


# ----------------------------------------------------------------------------- batch statistics


def test_conditional_batch_norm_has_batch_norm_statistics():
    """Moving averages with `momentum`, then `freeze_statistics` and `trainable=False` as in batch norm."""
    rng = np.random.default_rng(4)
    layer = ConditionalBatchNormalization(num_classes=2, momentum=0.8)
    x = (2.0 + 3.0 * rng.normal(size=(6, 3, 3, 4))).astype("float32")
    ids = np.array([0, 1, 1, 0, 1, 0], "int32")
    layer(x, ids, training=True)
    mean, variance = R.batch_moments(x)
    _assert_close(layer.normalization.moving_mean, 0.2 * mean, "moving_mean")
    _assert_close(layer.normalization.moving_variance, 0.8 + 0.2 * variance, "moving_variance")

    weights = _weights(layer)
    layer.freeze_statistics = True
    assert layer.get_config()["freeze_statistics"] is True
    outputs = layer(x, ids, training=True)
    _assert_close(outputs, R.conditional_batch_norm(x, ids, weights, training=False), "frozen statistics")
    _assert_close(layer.normalization.moving_mean, weights["moving_mean"], "frozen moving_mean")

    layer.freeze_statistics = False
    layer.trainable = False
    outputs = layer(x, ids, training=True)
    _assert_close(outputs, R.conditional_batch_norm(x, ids, weights, training=False), "trainable=False")


# ----------------------------------------------------------------------------- serialization


@each_case
def test_config_round_trip(case):
    rng = np.random.default_rng(5)
    layer, x, condition = _built(case, rng)
    config = layer.get_config()
    json.dumps(config)
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    restored = keras.layers.deserialize(keras.layers.serialize(layer))
    assert type(restored) is type(layer) and restored.get_config() == config
    clone(x, condition, training=False)
    clone.set_weights(layer.get_weights())
    np.testing.assert_array_equal(clone(x, condition, training=case.training),
                                  layer(x, condition, training=case.training))


# ----------------------------------------------------------------------------- models


def _cbn_model():
    image = keras.Input((4, 4, 3), name="image")
    label = keras.Input((), dtype="int32", name="label")
    norm = ConditionalBatchNormalization(num_classes=3, momentum=0.9)
    features = norm(keras.layers.Conv2D(4, 3, padding="same")(image), label)
    outputs = keras.layers.Dense(1)(keras.layers.Flatten()(features))
    return keras.Model({"image": image, "label": label}, outputs), norm, _ids(3)


def _cin_model():
    image = keras.Input((4, 4, 3), name="image")
    style = keras.Input((3,), name="style")
    norm = ConditionalInstanceNormalization(num_styles=3)
    features = norm(keras.layers.Conv2D(4, 3, padding="same")(image), style)
    outputs = keras.layers.Dense(1)(keras.layers.Flatten()(features))
    return keras.Model([image, style], outputs), norm, _style_weights(3)


def _film_model():
    sequence = keras.Input((5, 4), name="sequence")
    condition = keras.Input((6,), name="condition")
    norm = FiLM()
    features = norm(keras.layers.Dense(4)(sequence), condition)
    outputs = keras.layers.Dense(1)(keras.layers.Flatten()(features))
    return keras.Model({"sequence": sequence, "condition": condition}, outputs), norm, _vectors(6)


def _spade_model():
    image = keras.Input((4, 4, 3), name="image")
    segmentation = keras.Input((8, 8, 2), name="segmentation")
    norm = SPADE(hidden_channels=4, momentum=0.9)
    features = norm(keras.layers.Conv2D(4, 3, padding="same")(image), segmentation)
    outputs = keras.layers.Dense(1)(keras.layers.Flatten()(features))
    return keras.Model([image, segmentation], outputs), norm, _maps(8, 8, 2)


# Each returns (model, its conditional layer, a condition sampler); dict models take a dict of
# inputs by name, the others a tuple (input, condition).
MODELS = {"cbn": _cbn_model, "cin": _cin_model, "film": _film_model, "spade": _spade_model}
each_model = pytest.mark.parametrize("kind", list(MODELS))


def _model_data(model, sample_condition, rng, count):
    """Inputs for `model` (a dict or a tuple, as it takes them) and a target that needs the condition."""
    condition_names = {"label", "style", "condition", "segmentation"}  # the keras.Input names above
    condition_input = next(t for t in model.inputs if t.name in condition_names)
    x_input = next(t for t in model.inputs if t.name not in condition_names)
    x = rng.normal(size=(count, *x_input.shape[1:])).astype("float32")
    condition = sample_condition(rng, count)
    w = rng.normal(size=(int(np.prod(x.shape[1:])), 1)) / np.sqrt(np.prod(x.shape[1:]))
    c = condition.reshape(count, -1).astype("float64")
    v = rng.normal(size=(c.shape[1], 1))
    y = (x.reshape(count, -1) @ w + (c - c.mean(axis=0)) @ v).astype("float32")
    if isinstance(model.input, dict):
        return {x_input.name: x, condition_input.name: condition}, y
    return (x, condition), y


def _inputs(model, sample_condition, rng, count):
    return _model_data(model, sample_condition, rng, count)[0]


@each_model
def test_graph_mode_fit_lowers_loss(kind):
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    model, norm, sample = MODELS[kind]()
    inputs, y = _model_data(model, sample, rng, 64)
    assert isinstance(inputs, {"cbn": dict, "film": dict, "cin": tuple, "spade": tuple}[kind])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse", run_eagerly=False, jit_compile=False)
    before = {w.path: w.numpy().copy() for w in norm.weights}
    history = model.fit(inputs, y, batch_size=16, epochs=8, verbose=0)

    assert not model.run_eagerly
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses))
    assert losses[-1] < 0.5 * losses[0], losses
    for weight in norm.weights:  # trainable weights and moving statistics alike
        assert not np.allclose(weight.numpy(), before[weight.path]), f"{weight.path} did not change"


@each_model
def test_keras_file_round_trip(kind, tmp_path):
    rng = np.random.default_rng(6)
    model, norm, sample = MODELS[kind]()
    _randomize_weights(norm, rng)
    inputs = _inputs(model, sample, rng, 8)
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    loaded_norm = next(layer for layer in loaded.layers if type(layer) is type(norm))
    assert loaded_norm.get_config() == norm.get_config()
    for saved, restored in zip(norm.weights, loaded_norm.weights, strict=True):
        assert saved.path == restored.path
        np.testing.assert_array_equal(restored.numpy(), saved.numpy(), err_msg=saved.path)
    for training in (False, True):  # inference first: a training call updates moving statistics
        np.testing.assert_array_equal(loaded(inputs, training=training), model(inputs, training=training))


@each_model
def test_xla_matches_graph_mode(kind):
    rng = np.random.default_rng(7)
    model, norm, sample = MODELS[kind]()
    _randomize_weights(norm, rng)
    inputs = keras.tree.map_structure(tf.constant, _inputs(model, sample, rng, 4))
    upstream = tf.constant(rng.normal(size=(4, 1)), tf.float32)

    def forward(inputs, training):
        with tf.GradientTape() as tape:
            outputs = model(inputs, training=training)
            loss = tf.reduce_sum(outputs * upstream)
        return outputs, tape.gradient(loss, model.trainable_weights)

    for training in (False, True):
        graph_out, graph_grads = tf.function(forward)(inputs, training)
        xla_out, xla_grads = tf.function(forward, jit_compile=True)(inputs, training)
        _assert_close(xla_out, graph_out, f"XLA output (training={training})")
        for weight, xla_grad, graph_grad in zip(model.trainable_weights, xla_grads, graph_grads, strict=True):
            _assert_close(xla_grad, graph_grad, f"XLA d/d{weight.path} (training={training})")


@each_model
def test_tflite_builtin_ops_match_keras(kind, tmp_path):
    from ai_edge_litert.interpreter import Interpreter
    from keras_norms.export import export_model

    rng = np.random.default_rng(8)
    model, norm, sample = MODELS[kind]()
    _randomize_weights(norm, rng)
    result = export_model(model, tmp_path / "export", formats=("tflite",), batch_size=4)
    ops = result.ops["model.tflite"]
    assert not [op for op in ops if op.startswith("Flex") or op == "CUSTOM"], ops
    rank = max(len(t.shape) for t in model.inputs)
    assert result.manifest["tflite"]["model.tflite"]["max_tensor_rank"] <= rank

    inputs = _inputs(model, sample, rng, 4)
    expected = np.asarray(model(inputs, training=False))
    if not isinstance(inputs, dict):  # the exported signature names the inputs after keras.Input
        inputs = {t.name: a for t, a in zip(model.inputs, inputs, strict=True)}
    runner = Interpreter(model_path=str(result.paths["model.tflite"])).get_signature_runner()
    (outputs,) = runner(**inputs).values()
    # An absolute bound, as the exporter's own check (outputs are of order one).
    assert np.max(np.abs(outputs - expected)) <= TOLERANCE


# ----------------------------------------------------------------------------- bad conditions, arguments

# (id, layer, input shape, condition shape, condition dtype)
BAD_CONDITIONS = [
    ("cbn-ids-matrix", lambda: ConditionalBatchNormalization(num_classes=3), (4, 2, 2, 3), (4, 3), "int32"),
    ("cbn-ids-batch", lambda: ConditionalBatchNormalization(num_classes=3), (4, 2, 2, 3), (2,), "int32"),
    ("cbn-vector-rank3", lambda: ConditionalBatchNormalization(), (4, 2, 2, 3), (4, 2, 5), "float32"),
    ("cbn-vector-batch", lambda: ConditionalBatchNormalization(), (4, 2, 2, 3), (3, 5), "float32"),
    ("cin-weights-styles", lambda: ConditionalInstanceNormalization(3), (2, 4, 4, 2), (2, 4), "float32"),
    ("cin-ids-matrix", lambda: ConditionalInstanceNormalization(3), (2, 4, 4, 2), (2, 3), "int32"),
    ("cin-batch", lambda: ConditionalInstanceNormalization(3), (2, 4, 4, 2), (3,), "int32"),
    ("film-rank1", lambda: FiLM(), (2, 5, 4), (2,), "float32"),
    ("film-batch", lambda: FiLM(), (2, 5, 4), (3, 6), "float32"),
    ("spade-rank3", lambda: SPADE(hidden_channels=2), (2, 4, 4, 3), (2, 8, 8), "float32"),
    ("spade-batch", lambda: SPADE(hidden_channels=2), (2, 4, 4, 3), (1, 8, 8, 2), "float32"),
]


def _raises_naming_both(inputs_shape, condition_shape):
    return pytest.raises(ValueError, match=re.escape(
        f"inputs.shape={tuple(inputs_shape)}, condition.shape={tuple(condition_shape)}"))


@pytest.mark.parametrize(("make", "x_shape", "c_shape", "dtype"),
                         [pytest.param(*bad[1:], id=bad[0]) for bad in BAD_CONDITIONS])
def test_bad_condition_names_both_shapes(make, x_shape, c_shape, dtype):
    with _raises_naming_both(x_shape, c_shape):
        make()(np.zeros(x_shape, "float32"), np.zeros(c_shape, dtype))


@pytest.mark.parametrize(("make", "x_shape", "good", "bad"), [
    pytest.param(ConditionalBatchNormalization, (4, 3), (4, 5), (4, 6), id="cbn-features"),
    pytest.param(FiLM, (2, 5, 4), (2, 6), (2, 7), id="film-features"),
    pytest.param(lambda: SPADE(hidden_channels=2), (2, 4, 4, 3), (2, 8, 8, 2), (2, 8, 8, 3),
                 id="spade-map-channels"),
])
def test_condition_of_another_width_after_build(make, x_shape, good, bad):
    layer = make()
    x = np.zeros(x_shape, "float32")
    layer(x, np.zeros(good, "float32"))
    with _raises_naming_both(x_shape, bad):
        layer(x, np.zeros(bad, "float32"))


def test_bad_condition_in_functional_api():
    image = keras.Input((4, 4, 8))
    label = keras.Input((2,), dtype="int32")
    with _raises_naming_both((None, 4, 4, 8), (None, 2)):
        ConditionalBatchNormalization(num_classes=10)(image, label)


@pytest.mark.parametrize(("build", "error", "match"), [
    pytest.param(lambda: ConditionalBatchNormalization(num_classes=0), ValueError, "num_classes=0",
                 id="num_classes=0"),
    pytest.param(lambda: ConditionalBatchNormalization(num_classes=2.0), TypeError, "num_classes=2.0",
                 id="num_classes=2.0"),
    pytest.param(lambda: ConditionalBatchNormalization(momentum=1.5), ValueError, "momentum=1.5",
                 id="cbn-momentum"),
    pytest.param(lambda: ConditionalBatchNormalization(virtual_batch_size=0), ValueError,
                 "virtual_batch_size=0", id="cbn-virtual_batch_size"),
    pytest.param(lambda: ConditionalBatchNormalization(axis=0)(np.zeros((2, 3), "float32"),
                                                              np.zeros((2, 4), "float32")),
                 ValueError, "axis=0", id="cbn-axis=0"),
    pytest.param(lambda: ConditionalInstanceNormalization("3"), TypeError, "num_styles='3'",
                 id="num_styles=str"),
    pytest.param(lambda: ConditionalInstanceNormalization(3, epsilon=0), ValueError, "epsilon=0",
                 id="cin-epsilon"),
    pytest.param(lambda: ConditionalInstanceNormalization(3)(np.zeros((2, 4), "float32"),
                                                             np.zeros((2,), "int32")),
                 ValueError, "input_shape=(2, 4)", id="cin-rank2"),
    pytest.param(lambda: FiLM(axis=4)(np.zeros((2, 5, 4), "float32"), np.zeros((2, 3), "float32")),
                 ValueError, "axis=4", id="film-axis=4"),
    pytest.param(lambda: FiLM(axis="channels"), TypeError, "axis='channels'", id="film-axis=str"),
    pytest.param(lambda: SPADE("group"), ValueError, "param_free_norm='group'", id="param_free_norm"),
    pytest.param(lambda: SPADE(hidden_channels=0), ValueError, "hidden_channels=0", id="hidden_channels"),
    pytest.param(lambda: SPADE(kernel_size=2.5), TypeError, "kernel_size=2.5", id="kernel_size"),
    pytest.param(lambda: SPADE("instance", momentum=2), ValueError, "momentum=2", id="spade-momentum"),
    pytest.param(lambda: SPADE(epsilon=-1.0), ValueError, "epsilon=-1.0", id="spade-epsilon"),
    pytest.param(lambda: SPADE()(np.zeros((2, 4, 4), "float32"), np.zeros((2, 4, 4, 2), "float32")),
                 ValueError, "input_shape=(2, 4, 4)", id="spade-rank3-input"),
])
def test_bad_argument_names_argument_and_value(build, error, match):
    with pytest.raises(error, match=re.escape(match)):
        build()


def test_conditional_layers_have_no_registry_name():
    assert not {"conditional_batch", "conditional_instance", "film", "spade"} & set(keras_norms.names())


def test_resize_nearest_matches_tf_image_resize():
    """functional.resize_nearest follows TensorFlow's rule and the reference's, static and dynamic sizes."""
    from keras_norms import functional as F

    sizes = [1, 2, 3, 4, 5, 7, 8, 12]
    dynamic = tf.function(F.resize_nearest, input_signature=[
        tf.TensorSpec((1, None, None, 1)), (tf.TensorSpec((), tf.int32), tf.TensorSpec((), tf.int32))])
    for height in sizes:
        for out_height, out_width in zip(sizes, sizes[::-1], strict=True):
            images = np.arange(height * 5, dtype="float32").reshape(1, height, 5, 1)
            size = (out_height, out_width)
            expected = R.resize_nearest(images, *size)
            np.testing.assert_array_equal(tf.image.resize(images, size, "nearest"), expected)
            np.testing.assert_array_equal(F.resize_nearest(images, size), expected)
            np.testing.assert_array_equal(dynamic(images, size), expected)
