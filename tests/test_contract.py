"""The layer contract: every registry name passes the same battery (docs/contributing.md, the contract).

Parametrized over `keras_norms.names()`; the configurations and float64
references live in tests/layer_cases.py, and a registry name without an entry
there fails. Items: (1) config round trip and `.keras` save/load, (2) graph-mode
`fit` and XLA, (3) forward and gradients against float64 references, (4) mixed
precision with float32 inputs up to 1e15 and float64 layers, (6) bad arguments
and calls with another shape than built. (5, TFLite, is tested elsewhere.) The
numerics items (2: XLA, 3, 4) run twice: on the TensorFlow fast paths and on the plain
`keras.ops` path (`functional.use_fast_paths(False)`).
"""

from __future__ import annotations

import inspect
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
import references as R
import tensorflow as tf
from dtype_checks import as_float64, assert_float64_close, assert_rounded_to, large_inputs
from layer_cases import SPECS, Bad, Case, spec_for
from layer_checks import assert_arguments_are_attributes

import keras_norms
from keras_norms import functional as F

NAMES = keras_norms.names()
REPO_ROOT = Path(__file__).resolve().parents[1]
TOLERANCE = 1e-5


# ----------------------------------------------------------------------------- helpers


def _case_params():
    params = []
    for name in NAMES:
        spec = SPECS.get(name)
        if spec is None or not spec.cases:
            params.append(pytest.param(name, None, id=f"{name}-NO-CASE"))
        else:
            params.extend(pytest.param(name, case, id=case.id) for case in spec.cases)
    return params


each_case = pytest.mark.parametrize(("name", "case"), _case_params())
each_name = pytest.mark.parametrize("name", NAMES)


@pytest.fixture(params=[True, False], ids=["fast", "plain"])
def fast_paths(request):
    """Runs the test on the TensorFlow fast paths, then on the plain keras.ops path."""
    with F.use_fast_paths(request.param):
        yield request.param


def _require(name: str, case: Case | None) -> Case:
    spec_for(name)  # fails with "add a case" when the name has none
    assert case is not None
    return case


def _sample(shape, rng, *, loc=0.0, scale=1.0) -> np.ndarray:
    return (loc + scale * rng.normal(size=shape)).astype("float32")


def _channel_axis(case: Case) -> int:
    axis = case.kwargs.get("axis", -1)
    return axis if isinstance(axis, int) else -1


def _randomize_weights(layer, rng, x=None, axis=-1) -> None:
    """Gives every weight a non-trivial value, so that a lost or ignored weight shows.

    Moving statistics are drawn around the statistics of `x` (when given) so
    that inference-mode outputs stay of order one.
    """
    if x is not None:
        mean, variance = R.batch_moments(x, axis)
    for weight in layer.weights:
        shape = tuple(weight.shape)
        if weight.name == "moving_mean" and x is not None:
            value = mean + 0.3 * np.sqrt(variance) * rng.normal(size=shape)
        elif weight.name == "moving_variance" and x is not None:
            value = variance * rng.uniform(0.5, 2.0, size=shape)
        elif "variance" in weight.name or "stddev" in weight.name:
            value = rng.uniform(0.5, 2.0, size=shape)
        elif weight.name == "gamma":
            value = rng.normal(1.0, 0.5, size=shape)
        else:
            value = rng.normal(0.0, 0.5, size=shape)
        weight.assign(value.astype(weight.dtype))


def _weights(layer) -> dict[str, np.ndarray]:
    return {w.name: np.asarray(w.numpy(), dtype=np.float64) for w in layer.weights}


def _built_layer(name: str, case: Case, rng, x=None):
    """A layer of `case`, built on `x`, with random non-trivial weights."""
    layer = keras_norms.get(name, **case.kwargs)
    x = _sample(case.input_shape, rng) if x is None else x
    layer(x, training=False)
    _randomize_weights(layer, rng, x, _channel_axis(case))
    return layer, x


def _assert_close(actual, expected, atol, what):
    actual = np.asarray(actual, dtype=np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    error = np.max(np.abs(actual - expected)) if actual.size else 0.0
    assert error <= atol, f"{what}: max abs error {error:.3g} > {atol:g}"


# ----------------------------------------------------------------------------- 1. serialization


@each_case
def test_config_round_trip(name, case):
    case = _require(name, case)
    rng = np.random.default_rng(1)
    layer, x = _built_layer(name, case, rng)
    config = layer.get_config()
    json.dumps(config)  # a .keras file stores it as JSON

    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    clone(x, training=False)
    clone.set_weights(layer.get_weights())
    np.testing.assert_array_equal(
        clone(x, training=case.training), layer(x, training=case.training)
    )

    restored = keras.layers.deserialize(keras.layers.serialize(layer))
    assert type(restored) is type(layer)
    assert restored.get_config() == config


@each_case
def test_keras_file_round_trip(name, case, tmp_path):
    case = _require(name, case)
    rng = np.random.default_rng(2)
    norm = keras_norms.get(name, **case.kwargs)
    model = keras.Sequential([keras.Input(case.input_shape[1:]), norm, keras.layers.Dense(3)])
    x = _sample(case.input_shape, rng)
    _randomize_weights(norm, rng, x, _channel_axis(case))
    path = tmp_path / "model.keras"
    model.save(path)

    loaded = keras.saving.load_model(path)
    loaded_norm = loaded.layers[0]
    assert type(loaded_norm) is type(norm)
    assert loaded_norm.get_config() == norm.get_config()
    assert [w.name for w in loaded_norm.weights] == [w.name for w in norm.weights]
    for saved, restored in zip(norm.weights, loaded_norm.weights, strict=True):
        np.testing.assert_array_equal(restored.numpy(), saved.numpy(), err_msg=saved.name)
    # Inference first (it reads the moving statistics a training call would update).
    for training in dict.fromkeys([False, case.training]):
        np.testing.assert_array_equal(loaded(x, training=training), model(x, training=training))


_LOAD_SCRIPT = textwrap.dedent(
    """
    import os, sys
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import keras
    import keras_norms  # registers the layers, as any user of the file does

    folder = sys.argv[1]
    count = int(sys.argv[2])
    model = keras.saving.load_model(os.path.join(folder, "all.keras"))
    inputs = [np.load(os.path.join(folder, f"x{i}.npy")) for i in range(count)]
    for mode, training in (("infer", False), ("train", True)):
        for i, y in enumerate(model(inputs, training=training)):
            np.save(os.path.join(folder, f"{mode}{i}_loaded.npy"), keras.ops.convert_to_numpy(y))
    """
)


@pytest.mark.slow
def test_keras_file_loads_in_new_process(tmp_path):
    specs = {name: spec_for(name) for name in NAMES}
    rng = np.random.default_rng(3)
    inputs, outputs, norms, xs = [], [], [], []
    for name, spec in specs.items():
        case = spec.primary
        inp = keras.Input(case.input_shape[1:], name=f"input_{name}")
        norm = keras_norms.get(name, **case.kwargs)
        inputs.append(inp)
        outputs.append(keras.layers.Dense(3)(norm(inp)))
        norms.append((norm, case))
        xs.append(_sample(case.input_shape, rng))
    model = keras.Model(inputs, outputs)
    for (norm, case), x in zip(norms, xs, strict=True):
        _randomize_weights(norm, rng, x, _channel_axis(case))
    model.save(tmp_path / "all.keras")
    for i, x in enumerate(xs):
        np.save(tmp_path / f"x{i}.npy", x)
    expected = {mode: [np.asarray(y) for y in model(xs, training=training)]
                for mode, training in (("infer", False), ("train", True))}

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT),
                                                                    os.environ.get("PYTHONPATH")]))}
    result = subprocess.run(
        [sys.executable, "-c", _LOAD_SCRIPT, str(tmp_path), str(len(xs))],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    for mode, ys in expected.items():
        for i, (name, y) in enumerate(zip(specs, ys, strict=True)):
            loaded = np.load(tmp_path / f"{mode}{i}_loaded.npy")
            np.testing.assert_array_equal(loaded, y, err_msg=f"{name} ({mode})")


@each_case
def test_constructor_arguments_are_attributes(name, case):
    case = _require(name, case)
    layer, _ = _built_layer(name, case, np.random.default_rng(10))
    assert_arguments_are_attributes(layer)


# ----------------------------------------------------------------------------- 2. training, XLA


@each_name
def test_graph_mode_fit_lowers_loss(name):
    spec = spec_for(name)
    case = spec.primary
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    features = case.input_shape[1:]
    x = _sample((64, *features), rng)
    w_true = rng.normal(size=(int(np.prod(features)), 1)) / np.sqrt(np.prod(features))
    y = (x.reshape(64, -1) @ w_true).astype("float32")

    norm = keras_norms.get(name, **case.kwargs)
    model = keras.Sequential([
        keras.Input(features),
        keras.layers.Dense(features[-1]),  # gradients must flow through the norm
        norm,
        keras.layers.Flatten(),
        keras.layers.Dense(1),
    ])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse", run_eagerly=False, jit_compile=False)
    statistics = {w.name: w.numpy().copy() for w in norm.non_trainable_weights}
    before = model.evaluate(x, y, batch_size=64, verbose=0)
    history = model.fit(x, y, batch_size=16, epochs=8, verbose=0)
    after = model.evaluate(x, y, batch_size=64, verbose=0)

    assert not model.run_eagerly
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses))
    assert losses[-1] < 0.5 * losses[0], losses
    # Inference mode (moving statistics for batch norm) must have learned too.
    assert after < 0.5 * before, (before, after)
    for weight in norm.non_trainable_weights:
        assert not np.allclose(weight.numpy(), statistics[weight.name]), (
            f"{weight.name} was not updated by graph-mode fit"
        )


@each_case
def test_xla_matches_graph_mode(name, case, fast_paths):
    case = _require(name, case)
    rng = np.random.default_rng(4)
    layer, x = _built_layer(name, case, rng)
    upstream = tf.constant(rng.normal(size=case.input_shape), tf.float32)

    def forward(inputs):
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            outputs = layer(inputs, training=case.training)
            loss = tf.reduce_sum(outputs * upstream)
        return outputs, tape.gradient(loss, [inputs, *layer.trainable_weights])

    x = tf.constant(x)
    graph_out, graph_grads = tf.function(forward)(x)
    xla_out, xla_grads = tf.function(forward, jit_compile=True)(x)
    _assert_close(xla_out, np.asarray(graph_out, np.float64), TOLERANCE, "XLA output")
    names = ["input"] + [w.name for w in layer.trainable_weights]
    for what, xla_grad, graph_grad in zip(names, xla_grads, graph_grads, strict=True):
        _assert_close(xla_grad, np.asarray(graph_grad, np.float64), TOLERANCE, f"XLA d/d{what}")


# ----------------------------------------------------------------------------- 3. numerics


@each_case
def test_forward_matches_reference(name, case, fast_paths):
    case = _require(name, case)
    rng = np.random.default_rng(5)
    layer, x = _built_layer(name, case, rng)
    weights = _weights(layer)
    names = set(weights)
    if "center" in case.kwargs:
        assert ("beta" in names) == case.kwargs["center"], names
    if "scale" in case.kwargs:
        assert ("gamma" in names) == case.kwargs["scale"], names

    outputs = layer(x, training=case.training)
    assert outputs.dtype == "float32"
    _assert_close(outputs, case.reference(x, weights), TOLERANCE, f"{case.id} output")


@each_case
def test_gradients_match_reference(name, case, fast_paths):
    case = _require(name, case)
    rng = np.random.default_rng(6)
    layer, x = _built_layer(name, case, rng)
    weights = _weights(layer)
    upstream = rng.normal(size=case.input_shape)

    inputs = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        outputs = layer(inputs, training=case.training)
        loss = tf.reduce_sum(outputs * tf.constant(upstream, tf.float32))
    trainable = layer.trainable_weights
    grads = tape.gradient(loss, [inputs, *trainable])

    expected = R.numerical_gradient(lambda v: case.reference(v, weights), x, upstream)
    _assert_close(grads[0], expected, TOLERANCE, f"{case.id} d/dinput")
    for weight, grad in zip(trainable, grads[1:], strict=True):
        assert grad is not None, f"no gradient for {weight.name}"

        def reference_of(value, weight_name=weight.name):
            return case.reference(x, {**weights, weight_name: value})

        expected = R.numerical_gradient(reference_of, weights[weight.name], upstream)
        _assert_close(grad, expected, TOLERANCE, f"{case.id} d/d{weight.name}")


# ----------------------------------------------------------------------------- 4. dtypes


@each_case
@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision(name, case, policy, fast_paths):
    """float32 inputs up to 1e15 reach the float32 math unrounded; the output is rounded once at the end."""
    case = _require(name, case)
    keras.mixed_precision.set_global_policy(policy)
    compute_dtype = policy.removeprefix("mixed_")
    rng = np.random.default_rng(7)
    layer = keras_norms.get(name, **case.kwargs)
    assert layer.compute_dtype == compute_dtype
    inputs = large_inputs(case.input_shape, rng)
    # An input already in the compute dtype (what a mixed-precision layer before it returns) is
    # read as it is: the reference is that of its rounded values.
    inputs[f"normal*1e4 in {compute_dtype}"] = keras.ops.cast(inputs["normal*1e4"], compute_dtype)
    for label, x in inputs.items():
        values = as_float64(x)
        layer(x, training=False)
        _randomize_weights(layer, rng, values, _channel_axis(case))
        weights = _weights(layer)
        outputs = layer(x, training=case.training)
        for weight in layer.weights:
            assert weight.dtype == "float32", (weight.name, weight.dtype)
            assert np.all(np.isfinite(weight.numpy())), (label, weight.name)
        assert_rounded_to(outputs, case.reference(values, weights), compute_dtype, f"{policy}, {label}")


@each_case
@pytest.mark.parametrize("input_dtype", ["float64", "float32"])
def test_float64(name, case, input_dtype):
    """A float64 layer computes in float64, whatever float dtype its input has."""
    case = _require(name, case)
    rng = np.random.default_rng(8)
    layer = keras_norms.get(name, **case.kwargs, dtype="float64")
    # A large mean: float32 statistics would be off by about 1e-5 here.
    x = _sample(case.input_shape, rng, loc=100.0).astype(input_dtype)
    layer(x, training=False)
    _randomize_weights(layer, rng, x.astype(np.float64), _channel_axis(case))
    weights = _weights(layer)
    for weight in layer.weights:
        assert weight.dtype == "float64", (weight.name, weight.dtype)

    inputs = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        outputs = layer(inputs, training=case.training)
        loss = tf.reduce_sum(outputs)
    assert_float64_close(outputs, case.reference(x.astype(np.float64), weights), f"{case.id} output")
    for weight, grad in zip(layer.trainable_weights, tape.gradient(loss, layer.trainable_weights),
                            strict=True):
        assert grad is not None and grad.dtype == tf.float64, (weight.name, grad)
    statistics = {w.name: w.numpy() for w in layer.non_trainable_weights}
    if case.training and "moving_mean" in statistics:
        mean, variance = R.batch_moments(x.astype(np.float64), _channel_axis(case))
        momentum = layer.momentum
        assert_float64_close(layer.moving_mean.value,
                             momentum * weights["moving_mean"] + (1 - momentum) * mean, "moving_mean")
        if not case.kwargs.get("renorm"):
            assert_float64_close(layer.moving_variance.value,
                                 momentum * weights["moving_variance"] + (1 - momentum) * variance,
                                 "moving_variance")


# ----------------------------------------------------------------------------- built shape


def _other_shapes(name: str, case: Case) -> dict[str, tuple]:
    """Shapes a layer built for `case.input_shape` must refuse: other ranks, another channel count."""
    shape = case.input_shape
    others = {"rank+1": shape[:1] + (2,) + shape[1:]}
    if len(shape) > 2:
        others["rank-1"] = shape[:1] + shape[2:]
    # Filter response norm's `axis` lists the spatial axes; its channels are last.
    channel_axis = -1 if name == "frn" else _channel_axis(case)
    channels = list(shape)
    channels[channel_axis] += 1
    others["channels+1"] = tuple(channels)
    return others


def _follows_the_rank(name: str, case: Case, shape) -> bool:
    """A layer whose spec `follows_rank` (layer and RMS norm, as Keras' do) takes another rank where
    `axis` lands on the same axes counted from the end, of the same sizes."""
    if not SPECS[name].follows_rank:
        return False
    axis = case.kwargs.get("axis", -1)
    axes = [axis] if isinstance(axis, int) else list(axis)
    built, rank = len(case.input_shape), len(shape)
    if not all(-rank <= a < rank and a % rank != 0 for a in axes):
        return False
    from_end = sorted(a % built - built for a in axes)
    return (from_end == sorted(a % rank - rank for a in axes)
            and all(shape[a] == case.input_shape[a] for a in from_end))


@each_case
def test_call_with_another_shape_than_built_names_both(name, case):
    case = _require(name, case)
    if SPECS[name].ranks is None:
        pytest.skip(f"{name!r} takes inputs of any shape")
    rng = np.random.default_rng(9)
    layer, _ = _built_layer(name, case, rng)
    for label, shape in _other_shapes(name, case).items():
        if _follows_the_rank(name, case, shape):
            x = _sample(shape, rng)
            _assert_close(layer(x, training=case.training), case.reference(x, _weights(layer)), TOLERANCE,
                          f"{case.id}, {label} {shape}")
            continue
        with pytest.raises(ValueError, match=re.escape(f"Received: inputs.shape={shape}")) as error:
            layer(np.ones(shape, "float32"), training=case.training)
        message = str(error.value)
        assert type(layer).__name__ in message and repr(layer.name) in message, (label, message)
        assert f"rank {len(case.input_shape)}" in message, (label, message)


# ----------------------------------------------------------------------------- 6. bad arguments


def _generic_bad(name, spec) -> list[Bad]:
    """Checks every layer gets from its constructor's signature and its supported ranks."""
    base = spec.primary.kwargs
    parameters = inspect.signature(type(keras_norms.get(name, **base))).parameters
    bad = []
    if "epsilon" in parameters:
        for value in (0, -1, -1e-7):
            bad.append(Bad(f"epsilon={value}", {**base, "epsilon": value}, None, ValueError,
                           f"epsilon={value!r}"))
        for value in ("1e-3", None):
            bad.append(Bad(f"epsilon={value!r}", {**base, "epsilon": value}, None, TypeError,
                           f"epsilon={value!r}"))
    if "axis" in parameters:
        axis = base.get("axis", parameters["axis"].default)
        # The batch axis is refused by the constructor, other axes once the rank is known.
        bad.append(Bad("axis=0", {**base, "axis": 0}, None, ValueError, "axis=0"))
        for value in (4, -4):
            bad.append(Bad(f"axis={value}-rank3", {**base, "axis": value}, (2, 5, 8), ValueError,
                           f"axis={value!r}"))
        bad.append(Bad("channels-undefined", base, (None, None, None, None), ValueError,
                       f"axis={axis!r}"))
    if spec.ranks is not None:
        low, high = spec.ranks
        ranks = list(range(1, low)) + ([high + 1] if high is not None else [])
        for rank in ranks:
            shape = (2,) * (rank - 1) + (8,)
            bad.append(Bad(f"rank{rank}", base, shape, ValueError, f"input_shape={shape}"))
    return bad


def _bad_params():
    params = []
    for name in NAMES:
        spec = SPECS.get(name)
        if spec is None or not spec.cases:
            params.append(pytest.param(name, None, id=f"{name}-NO-CASE"))
            continue
        for bad in [*_generic_bad(name, spec), *spec.bad]:
            params.append(pytest.param(name, bad, id=f"{name}-{bad.id}"))
    return params


@pytest.mark.parametrize(("name", "bad"), _bad_params())
def test_bad_argument_names_argument_and_value(name, bad):
    spec_for(name)
    assert bad is not None
    with pytest.raises(bad.error, match=re.escape(bad.match)):
        layer = keras_norms.get(name, **bad.kwargs)
        if bad.input_shape is not None:
            if any(size is None for size in bad.input_shape):
                layer(keras.Input(bad.input_shape[1:]))
            else:
                layer(np.zeros(bad.input_shape, "float32"))


@pytest.mark.parametrize("name", ["layer", "rms"])
@pytest.mark.parametrize("axis", [2, -3, [1, 5]], ids=str)
def test_output_shape_of_an_axis_out_of_range_raises(name, axis):
    layer = keras_norms.get(name, axis=axis)
    with pytest.raises(ValueError, match=re.escape(f"axis={axis!r}")):
        layer.compute_output_shape((4, 6))


@each_name
def test_unknown_registry_name_lists_valid_names(name):
    spec_for(name)
    unknown = f"{name}_norm"
    with pytest.raises(ValueError, match=re.escape(f"spec={unknown!r}")) as error:
        keras_norms.get(unknown)
    for valid in NAMES:
        assert valid in str(error.value)
