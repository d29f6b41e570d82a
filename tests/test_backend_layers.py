"""The layers without a registry name, masks and model tools, on the active Keras backend.

`make test` runs this file beside test_backend_contract.py once per installed
backend, each in its own pytest process. The two-input layers (conditional and
adaptive), weight-standardized convolution, weight normalization and the
recurrent cells: compiled `fit` lowers the loss, the `.keras` file reloads
with identical outputs, `mixed_bfloat16` gives finite outputs in bfloat16, and
every model's outputs equal those of the same `.keras` file loaded under
TensorFlow (the reference, in one subprocess for all of them). Then masked
batch statistics against float64 NumPy, and the model tools.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
from layer_zoo import LAYERS

import keras_norms

BACKEND = keras.backend.backend()
REPO_ROOT = Path(__file__).resolve().parents[1]


def _data(name, model, rng, size=64):
    """Inputs for `model` and targets a linear function of them (learnable by every model here)."""
    condition = LAYERS[name][2]
    shapes = [tuple(i.shape[1:]) for i in model.inputs]
    x = [rng.normal(size=(size, *shapes[0])).astype("float32")]
    if condition == "ids":
        x.append(rng.integers(0, 3, size=size).astype("int32"))
    elif condition is not None:
        x.append(rng.normal(size=(size, *condition)).astype("float32"))
    flat = np.concatenate([v.reshape(size, -1).astype("float32") for v in x], axis=1)
    y = flat @ rng.normal(size=(flat.shape[1], 1)) / np.sqrt(flat.shape[1])
    return (x if len(x) > 1 else x[0]), y.astype("float32")


def _numpy(value):
    return keras.ops.convert_to_numpy(value)


@pytest.fixture(autouse=True)
def _float32_policy():
    yield
    keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("name", list(LAYERS))
def test_compiled_fit_save_reload_and_mixed_bfloat16(name, tmp_path):
    make_layer, build, _ = LAYERS[name]
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    model = build(make_layer())
    x, y = _data(name, model, rng)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse", jit_compile=BACKEND == "jax")
    losses = model.fit(x, y, batch_size=16, epochs=8, verbose=0).history["loss"]
    assert np.all(np.isfinite(losses)) and losses[-1] < 0.7 * losses[0], losses

    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    for training in (False, True):
        np.testing.assert_array_equal(_numpy(loaded(x, training=training)),
                                      _numpy(model(x, training=training)))

    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    layer = make_layer()
    mixed = build(layer)
    mixed.compile(optimizer="adam", loss="mse", jit_compile=BACKEND == "jax")
    mixed.fit(x, y, batch_size=16, epochs=1, verbose=0)
    outputs = mixed.get_layer(layer.name)(*_layer_inputs(mixed, layer, x), training=True)
    outputs = outputs[0] if isinstance(outputs, (tuple, list)) else outputs
    assert keras.backend.standardize_dtype(outputs.dtype) == "bfloat16"
    assert np.all(np.isfinite(_numpy(keras.ops.cast(outputs, "float32"))))


def _layer_inputs(model, layer, x):
    """The values `layer` receives inside `model` for the model inputs `x`."""
    node = layer._inbound_nodes[0]
    probe = keras.Model(model.inputs, list(node.input_tensors))
    values = probe(x)
    return values if isinstance(values, (tuple, list)) else [values]


_PREDICT_IN_TENSORFLOW = textwrap.dedent(
    """
    import os, sys
    os.environ["KERAS_BACKEND"] = "tensorflow"
    import numpy as np, keras, keras_norms
    folder = sys.argv[1]
    for name in sys.argv[2:]:
        model = keras.saving.load_model(os.path.join(folder, name + ".keras"))
        inputs = np.load(os.path.join(folder, name + ".inputs.npz"))
        x = [inputs[k] for k in sorted(inputs.files)]
        np.save(os.path.join(folder, name + ".tf.npy"),
                keras.ops.convert_to_numpy(model(x if len(x) > 1 else x[0], training=False)))
    """
)


@pytest.mark.slow
@pytest.mark.skipif(BACKEND == "tensorflow", reason="compares this backend with TensorFlow")
def test_every_model_gives_tensorflow_outputs(tmp_path):
    expected = {}
    for name, (make_layer, build, _) in LAYERS.items():
        keras.utils.set_random_seed(1)
        rng = np.random.default_rng(1)
        model = build(make_layer())
        x, y = _data(name, model, rng, size=16)
        model.compile(optimizer="adam", loss="mse")
        model.fit(x, y, batch_size=8, epochs=2, verbose=0)
        model.save(tmp_path / f"{name}.keras")
        x = x if isinstance(x, list) else [x]
        np.savez(tmp_path / f"{name}.inputs.npz", **{f"input{i}": v for i, v in enumerate(x)})
        expected[name] = _numpy(model(x if len(x) > 1 else x[0], training=False))
    env = {**os.environ, "KERAS_BACKEND": "tensorflow",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run([sys.executable, "-c", _PREDICT_IN_TENSORFLOW, str(tmp_path), *LAYERS],
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    for name, outputs in expected.items():
        np.testing.assert_allclose(np.load(tmp_path / f"{name}.tf.npy"), outputs, atol=1e-5, rtol=1e-5,
                                   err_msg=f"{BACKEND} vs tensorflow: {name}")


# ----------------------------------------------------------------------------- masks, model tools


@pytest.mark.parametrize("axis", [-1, 1])
def test_masked_batch_statistics_match_float64(axis):
    rng = np.random.default_rng(3)
    x = (5.0 + 2.0 * rng.normal(size=(4, 6, 3))).astype("float32")
    mask = rng.uniform(size=(4, 6)) < 0.6
    mask[0, 0] = True
    layer = keras_norms.BatchNormalization(axis=axis, momentum=0.0, center=False, scale=False)
    outputs = _numpy(layer(x, training=True, mask=mask))
    channel = axis % 3
    moved = np.moveaxis(x.astype(np.float64), channel, -1)
    weights = np.broadcast_to(np.expand_dims(mask, -1), x.shape)
    weights = np.moveaxis(weights, channel, -1).reshape(-1, x.shape[channel])
    values = moved.reshape(-1, x.shape[channel])
    mean = (values * weights).sum(0) / weights.sum(0)
    variance = (np.square(values - mean) * weights).sum(0) / weights.sum(0)
    np.testing.assert_allclose(_numpy(layer.moving_mean), mean, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(_numpy(layer.moving_variance), variance, rtol=1e-5, atol=1e-6)
    shape = [1, 1, 1]
    shape[channel] = x.shape[channel]
    expected = (x - mean.reshape(shape)) / np.sqrt(variance.reshape(shape) + 1e-3)
    np.testing.assert_allclose(outputs, expected, atol=1e-5)


def _batch_norm_model():
    keras.utils.set_random_seed(4)
    return keras.Sequential([keras.Input((6, 6, 3)), keras.layers.Conv2D(4, 3, name="conv"),
                             keras.layers.BatchNormalization(name="bn"), keras.layers.ReLU(),
                             keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2, name="head")])


def test_model_tools_convert_freeze_and_recalibrate():
    rng = np.random.default_rng(4)
    x = (1.0 + rng.normal(size=(24, 6, 6, 3))).astype("float32")
    model = _batch_norm_model()
    before = [_numpy(w).copy() for w in model.weights]
    reference = _numpy(model(x, training=False))

    converted = keras_norms.convert_norms(model, "group", groups=2)
    assert isinstance(converted.get_layer("bn"), keras_norms.GroupNormalization)
    np.testing.assert_array_equal(_numpy(converted.get_layer("conv").kernel), before[0])

    frozen = keras_norms.freeze_batch_norms(model)
    assert isinstance(frozen.get_layer("bn"), keras_norms.BatchNormalization)
    # Frozen: training mode normalizes with the moving statistics, so it gives inference's outputs.
    np.testing.assert_allclose(_numpy(frozen(x, training=True)), reference, atol=1e-6)

    keras_norms.recalibrate_batch_norms(model, x, batch_size=8, verbose=0)
    features = _numpy(model.get_layer("conv")(x)).astype(np.float64).reshape(-1, 4)
    np.testing.assert_allclose(_numpy(model.get_layer("bn").moving_mean), features.mean(0), atol=1e-5)
    np.testing.assert_allclose(_numpy(model.get_layer("bn").moving_variance), features.var(0), rtol=1e-5)
    for weight, value in zip(model.weights, before, strict=True):
        if "moving" not in weight.name:
            np.testing.assert_array_equal(_numpy(weight), value)


def test_synchronize_batch_norms():
    model = _batch_norm_model()
    if BACKEND == "torch":
        with pytest.raises(ValueError, match="Received: synchronized=True with backend 'torch'"):
            keras_norms.synchronize_batch_norms(model)
        return
    synced = keras_norms.synchronize_batch_norms(model)
    assert synced.get_layer("bn").synchronized
    x = np.random.default_rng(5).normal(size=(8, 6, 6, 3)).astype("float32")
    # One device: the global batch is the batch, so outputs are those of the original.
    np.testing.assert_allclose(_numpy(synced(x, training=True)), _numpy(model(x, training=True)), atol=1e-5)


# ----------------------------------------------------------------------------- ids out of range


@pytest.mark.parametrize(("make", "what"), [
    (lambda: keras_norms.ConditionalBatchNormalization(num_classes=3, name="cbn"),
     "class ids (num_classes=3)"),
    (lambda: keras_norms.ConditionalInstanceNormalization(num_styles=3, name="cin"),
     "style ids (num_styles=3)"),
], ids=["class", "style"])
def test_ids_out_of_range_raise_where_the_backend_can(make, what):
    """Eagerly on every backend; in a compiled predict, TensorFlow's graph raises and jax.jit cannot
    (documented: the id selects no row, so its example's output is gamma * y + beta = 0)."""
    layer = make()
    x = np.random.default_rng(0).normal(size=(3, 2, 2, 4)).astype("float32")
    ids = np.array([0, 5, 1], "int32")
    expected = f"{type(layer).__name__} {layer.name}: {what} must be in [0, 3)"
    with pytest.raises(ValueError, match=re.escape(expected) + r".*out of range \[5\]"):
        layer(x, ids, training=False)

    image, condition = keras.Input((2, 2, 4)), keras.Input((), dtype="int32")
    model = keras.Model([image, condition], layer(image, condition))
    if BACKEND == "jax":  # predict runs jax.jit
        outputs = _numpy(model.predict([x, ids], verbose=0))
        assert np.all(outputs[1] == 0.0) and np.all(outputs[[0, 2]] != 0.0)
        return
    if BACKEND == "tensorflow":
        import tensorflow as tf

        error = tf.errors.InvalidArgumentError
    else:
        error = ValueError  # PyTorch's predict runs eagerly
    with pytest.raises(error, match=re.escape(expected)):
        model.predict([x, ids], verbose=0)
