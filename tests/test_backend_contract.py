"""The layer contract on the active Keras backend other than TensorFlow: JAX or PyTorch.

`make test` runs this file once per installed backend, each in its own pytest
process (`KERAS_BACKEND` is read when Keras is imported). Under TensorFlow,
tests/test_contract.py checks all of this and more (both paths in every
compile mode), so the file skips itself there. Nothing here is specific to a
backend but `gradients`. For every registry name (tests/layer_cases.py): config and `.keras`
round trips, compiled `fit` lowering the loss, forward and gradients against the
float64 references, mixed precision with large float32 inputs, float64, bad
input; and a `.keras` file trained on this backend loading under TensorFlow.
"""

from __future__ import annotations

import inspect
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
from dtype_checks import as_float64, assert_float64_close, assert_rounded_to, large_inputs
from layer_cases import SPECS, Case, spec_for

import keras_norms
from keras_norms import functional as F

BACKEND = keras.backend.backend()
if BACKEND == "tensorflow":
    pytest.skip("on TensorFlow, tests/test_contract.py checks the same and more", allow_module_level=True)
NAMES = keras_norms.names()
REPO_ROOT = Path(__file__).resolve().parents[1]
# Each backend's fast paths (keras_norms/kernels/) and the plain keras.ops path are checked separately.
each_path = pytest.mark.parametrize("fast", [True, False], ids=lambda f: "fast" if f else "plain")
each_case = pytest.mark.parametrize(
    ("name", "case"), [pytest.param(n, c, id=c.id) for n in NAMES for c in spec_for(n).cases]
)


def _sample(shape, rng, loc=0.0):
    return (loc + rng.normal(size=shape)).astype("float32")


def _channel_axis(case: Case) -> int:
    axis = case.kwargs.get("axis", -1)
    return axis if isinstance(axis, int) else -1


def _built(name, case, rng, dtype=None):
    """A layer of `case`, built, with non-trivial weights (moving statistics near those of `x`)."""
    layer = keras_norms.get(name, **case.kwargs, **({"dtype": dtype} if dtype else {}))
    x = _sample(case.input_shape, rng)
    layer(x, training=False)
    mean, variance = R.batch_moments(x, _channel_axis(case))
    for weight in layer.weights:
        if weight.name == "moving_mean":
            value = mean + 0.3 * np.sqrt(variance) * rng.normal(size=weight.shape)
        elif weight.name == "moving_variance":
            value = variance * rng.uniform(0.5, 2.0, size=weight.shape)
        elif "variance" in weight.name or "stddev" in weight.name:
            value = rng.uniform(0.5, 2.0, size=weight.shape)
        else:
            value = rng.normal(1.0 if weight.name == "gamma" else 0.0, 0.5, size=weight.shape)
        weight.assign(value.astype(weight.dtype))
    return layer, x


def _weights(layer):
    return {w.name: np.asarray(keras.ops.convert_to_numpy(w), np.float64) for w in layer.weights}


def gradients(layer, x, upstream, training):
    """d sum(layer(x) * upstream) / d(x, trainable weights), on the active backend."""
    weights = layer.trainable_weights
    if BACKEND == "jax":
        import jax

        # Layer.__call__ drops `training` for a layer whose call does not take it; stateless_call does not.
        kwargs = {"training": training} if "training" in inspect.signature(layer.call).parameters else {}

        def loss(x, trainable, non_trainable):
            outputs, _ = layer.stateless_call(trainable, non_trainable, x, **kwargs)
            return (outputs * upstream).sum()

        values = [w.value for w in weights]
        others = [w.value for w in layer.non_trainable_weights]
        dx, dweights = jax.grad(loss, argnums=(0, 1))(x, values, others)
        return [dx, *dweights]
    import torch

    x = torch.tensor(x, requires_grad=True)
    for weight in weights:
        weight.value.grad = None
    (layer(x, training=training) * torch.tensor(upstream, dtype=torch.float32)).sum().backward()
    return [x.grad, *[weight.value.grad for weight in weights]]


# ----------------------------------------------------------------------------- numerics


@each_case
@each_path
def test_forward_and_gradients_match_the_references(name, case, fast):
    rng = np.random.default_rng(5)
    layer, x = _built(name, case, rng)
    weights = _weights(layer)
    with F.use_fast_paths(fast):
        outputs = layer(x, training=case.training)
    assert keras.backend.standardize_dtype(outputs.dtype) == "float32"
    expected = case.reference(x, weights)
    np.testing.assert_allclose(as_float64(outputs), expected, atol=1e-5, err_msg=f"{BACKEND}: output")

    upstream = rng.normal(size=case.input_shape).astype("float32")
    with F.use_fast_paths(fast):
        grads = gradients(layer, x, upstream, case.training)
    np.testing.assert_allclose(
        as_float64(grads[0]), R.numerical_gradient(lambda v: case.reference(v, weights), x, upstream),
        atol=1e-5, err_msg=f"{BACKEND}: d/dinput")
    for weight, grad in zip(layer.trainable_weights, grads[1:], strict=True):
        expected = R.numerical_gradient(lambda v, n=weight.name: case.reference(x, {**weights, n: v}),
                                        weights[weight.name], upstream)
        np.testing.assert_allclose(as_float64(grad), expected, atol=1e-5,
                                   err_msg=f"{BACKEND}: d/d{weight.name}")


@each_case
@each_path
@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_with_large_float32_inputs(name, case, policy, fast):
    keras.mixed_precision.set_global_policy(policy)
    compute_dtype = policy.removeprefix("mixed_")
    rng = np.random.default_rng(7)
    inputs = large_inputs(case.input_shape, rng)
    # An input already in the compute dtype (what a mixed-precision layer before it returns) is read as
    # it is (on PyTorch by the native kernels themselves): the reference is that of its rounded values.
    inputs[f"normal*1e4 in {compute_dtype}"] = keras.ops.cast(inputs["normal*1e4"], compute_dtype)
    for label, x in inputs.items():
        layer = keras_norms.get(name, **case.kwargs)
        layer(x, training=False)
        values = as_float64(x)
        mean, variance = R.batch_moments(values, _channel_axis(case))
        for weight in layer.weights:
            if weight.name == "moving_mean":
                weight.assign(mean.astype("float32"))
            elif weight.name == "moving_variance":
                weight.assign(variance.astype("float32"))
        assert all(w.dtype == "float32" for w in layer.weights)
        with F.use_fast_paths(fast):
            outputs = layer(x, training=case.training)
        assert_rounded_to(outputs, case.reference(values, _weights(layer)), compute_dtype,
                          f"{BACKEND}, {policy}, {label}")


def _float64_available() -> bool:
    if BACKEND != "jax":
        return True
    import jax

    return bool(jax.config.jax_enable_x64)


@each_case
@pytest.mark.skipif(not _float64_available(), reason="JAX computes in float32 unless jax_enable_x64 is set")
def test_float64(name, case):
    rng = np.random.default_rng(8)
    layer, _ = _built(name, case, rng, dtype="float64")
    x = _sample(case.input_shape, rng, loc=100.0).astype("float64")
    assert all(w.dtype == "float64" for w in layer.weights)
    # A float64 tensor: Keras' PyTorch backend turns float64 NumPy arrays into float32 tensors.
    outputs = layer(keras.ops.convert_to_tensor(x, dtype="float64"), training=case.training)
    assert_float64_close(outputs, case.reference(x, _weights(layer)), f"{BACKEND}: {case.id}")


# ----------------------------------------------------------------------------- training, files


def _model(name, case, features):
    norm = keras_norms.get(name, **case.kwargs)
    return keras.Sequential([keras.Input(features), keras.layers.Dense(features[-1]), norm,
                             keras.layers.Flatten(), keras.layers.Dense(1)])


@pytest.mark.parametrize("name", NAMES)
def test_compiled_fit_lowers_the_loss_and_the_keras_file_reloads(name, tmp_path):
    case = spec_for(name).primary
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    features = case.input_shape[1:]
    x = _sample((64, *features), rng)
    y = (x.reshape(64, -1) @ (rng.normal(size=(int(np.prod(features)), 1)) / np.sqrt(np.prod(features))))
    model = _model(name, case, features)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse", jit_compile=BACKEND == "jax")
    losses = model.fit(x, y.astype("float32"), batch_size=16, epochs=8, verbose=0).history["loss"]
    assert np.all(np.isfinite(losses)) and losses[-1] < 0.5 * losses[0], losses

    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded.layers[1]) is type(model.layers[1])
    assert loaded.layers[1].get_config() == model.layers[1].get_config()
    for training in (False, True):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded(x[:8], training=training)),
                                      keras.ops.convert_to_numpy(model(x[:8], training=training)))


@each_case
def test_config_round_trip(name, case):
    layer, x = _built(name, case, np.random.default_rng(1))
    clone = type(layer).from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    clone(x, training=False)
    clone.set_weights(layer.get_weights())
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(clone(x, training=case.training)),
                                  keras.ops.convert_to_numpy(layer(x, training=case.training)))


_LOAD_IN_TENSORFLOW = textwrap.dedent(
    """
    import os, sys
    os.environ["KERAS_BACKEND"] = "tensorflow"
    import numpy as np, keras, keras_norms
    for folder in sys.argv[1:]:
        model = keras.saving.load_model(os.path.join(folder, "model.keras"))
        x = np.load(os.path.join(folder, "x.npy"))
        np.save(os.path.join(folder, "y.npy"), keras.ops.convert_to_numpy(model(x, training=False)))
    """
)


@pytest.mark.slow
@pytest.mark.skipif(BACKEND == "tensorflow", reason="saves on another backend than TensorFlow")
def test_keras_files_from_this_backend_load_under_tensorflow(tmp_path):
    # One model per registry name, trained and saved here, all loaded by one TensorFlow process.
    expected = {}
    for name in NAMES:
        case = spec_for(name).primary
        rng = np.random.default_rng(2)
        features = case.input_shape[1:]
        model = _model(name, case, features)
        x = _sample((16, *features), rng)
        model.compile(optimizer="adam", loss="mse")
        model.fit(x, rng.normal(size=(16, 1)).astype("float32"), epochs=2, batch_size=8, verbose=0)
        (tmp_path / name).mkdir()
        model.save(tmp_path / name / "model.keras")
        np.save(tmp_path / name / "x.npy", x)
        expected[name] = keras.ops.convert_to_numpy(model(x, training=False))
    env = {**os.environ, "KERAS_BACKEND": "tensorflow",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run([sys.executable, "-c", _LOAD_IN_TENSORFLOW, *(str(tmp_path / n) for n in NAMES)],
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    for name in NAMES:
        # Two backends, two kernels: equal to float32 rounding (summation orders differ).
        np.testing.assert_allclose(np.load(tmp_path / name / "y.npy"), expected[name], rtol=1e-5, atol=1e-6,
                                   err_msg=f"{name}: the .keras file from {BACKEND} under TensorFlow")


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("name", [n for n in NAMES if SPECS[n].ranks is not None])
def test_another_shape_than_built_and_bad_arguments_raise(name):
    case = spec_for(name).primary
    rng = np.random.default_rng(3)
    layer, _ = _built(name, case, rng)
    other_rank = case.input_shape[:1] + (2,) + case.input_shape[1:]
    other_channels = list(case.input_shape)
    other_channels[-1 if name == "frn" else _channel_axis(case)] += 1
    for shape in (other_rank, tuple(other_channels)):
        if SPECS[name].follows_rank and shape == other_rank:  # axis=-1 follows the rank, as in Keras
            x = _sample(shape, rng)
            outputs = keras.ops.convert_to_numpy(layer(x))
            np.testing.assert_allclose(outputs, case.reference(x, _weights(layer)), atol=1e-5)
            continue
        with pytest.raises(ValueError, match=re.escape(f"Received: inputs.shape={shape}")):
            layer(np.ones(shape, "float32"))
    for bad in SPECS[name].bad:
        with pytest.raises(bad.error, match=re.escape(bad.match)):
            candidate = keras_norms.get(name, **bad.kwargs)
            if bad.input_shape is not None:
                candidate(np.zeros(bad.input_shape, "float32"))


# ----------------------------------------------------------------------------- export from another backend


@pytest.mark.skipif(BACKEND == "tensorflow", reason="the exporter's own backend")
def test_export_from_another_backend_says_to_export_the_keras_file(tmp_path):
    from keras_norms.export import export_model

    model = _model("group", spec_for("group").primary, spec_for("group").primary.input_shape[1:])
    with pytest.raises(ValueError, match=f"this process uses '{BACKEND}'.*keras-norms export"):
        export_model(model, tmp_path / "exported")
    assert not (tmp_path / "exported").exists()


@pytest.mark.slow
@pytest.mark.skipif(BACKEND == "tensorflow", reason="trains on another backend than TensorFlow")
def test_a_model_trained_on_this_backend_exports_with_the_cli(tmp_path):
    import json

    case = spec_for("batch").primary
    rng = np.random.default_rng(4)
    features = case.input_shape[1:]
    model = _model("batch", case, features)
    model.compile(optimizer="adam", loss="mse")
    x = _sample((32, *features), rng)
    model.fit(x, rng.normal(size=(32, 1)).astype("float32"), epochs=2, batch_size=8, verbose=0)
    model.save(tmp_path / "model.keras")
    env = {**os.environ, "KERAS_BACKEND": BACKEND,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run([sys.executable, "-m", "keras_norms.cli", "export", str(tmp_path / "model.keras"),
                             "--out", str(tmp_path / "exported")],
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"KERAS_BACKEND={BACKEND} is set; exporting on TensorFlow" in result.stderr
    parity = json.loads((tmp_path / "exported" / "manifest.json").read_text())["parity"]
    assert parity["model.tflite"]["max_abs_error"] <= 1e-5, parity
