"""Files saved by TF 2.15 + tensorflow-addons load after `import keras_norms`, with no custom_objects.

tensorflow-addons cannot be installed next to Keras 3, so the files are written
here in the formats tf.keras 2.15 wrote:

- legacy `.h5`: written with h5py, attribute by attribute (`model_config` JSON with
  tfa's registered names as class names, `model_weights/<layer>` groups with tf.keras'
  `<layer>/<weight>:0` weight names, in tf.keras' weight order);
- `.keras`: a zip whose `config.json` names the layers as tf.keras 2.13+ did
  (`module`, `class_name`, `registered_name: "Addons>..."`) and metadata of Keras 2.15.

Outputs are checked against float64 NumPy transcriptions of tfa's formulas.
"""

from __future__ import annotations

import json
import runpy
import zipfile
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest
import references as R
from test_compat import tfa_layer_config
from test_models import lstm_step_reference
from test_response import _tfa_frn_config, _tfa_tlu_config


def _input_layer(shape):
    return {"class_name": "InputLayer", "config": {"batch_input_shape": [None, *shape], "dtype": "float32",
                                                  "sparse": False, "ragged": False, "name": "input_1"}}


def _named(config, name):
    config["config"]["name"] = name
    return config


def _lstm_cell_config(units):
    """`tfa.rnn.LayerNormLSTMCell(units).get_config()` under tf.keras 2.15."""
    return {"class_name": "Addons>LayerNormLSTMCell", "config": {
        "name": "layer_norm_lstm_cell", "trainable": True, "dtype": "float32", "units": units,
        "activation": "tanh", "recurrent_activation": "sigmoid", "use_bias": True,
        "kernel_initializer": {"class_name": "GlorotUniform", "config": {"seed": None}},
        "recurrent_initializer": {"class_name": "Orthogonal", "config": {"gain": 1.0, "seed": None}},
        "bias_initializer": {"class_name": "Zeros", "config": {}}, "unit_forget_bias": True,
        "kernel_regularizer": None, "recurrent_regularizer": None, "bias_regularizer": None,
        "kernel_constraint": None, "recurrent_constraint": None, "bias_constraint": None,
        "dropout": 0.0, "recurrent_dropout": 0.0, "implementation": 2,
        "norm_gamma_initializer": {"class_name": "Ones", "config": {}},
        "norm_beta_initializer": {"class_name": "Zeros", "config": {}}, "norm_epsilon": 1e-3,
    }}


def _image_model_config():
    layers = [
        _input_layer((6, 6, 8)),
        _named(tfa_layer_config("GroupNormalization", 4, epsilon=1e-5), "gn"),
        _named(tfa_layer_config("InstanceNormalization", -1), "inorm"),
        _named(_tfa_frn_config(learned_epsilon=True), "frn"),
        _named(_tfa_tlu_config(affine=True), "tlu"),
    ]
    return {"class_name": "Sequential", "config": {"name": "tfa_images", "layers": layers}}


def _sequence_model_config():
    # tf.keras 2 also wrote "time_major": False here, which Keras 3's RNN refuses whatever the cell
    # ("Unrecognized keyword arguments passed to RNN"); docs/guides/migrating-from-tfa.md says to delete it.
    rnn = {"class_name": "RNN", "config": {
        "name": "rnn", "trainable": True, "dtype": "float32", "return_sequences": True,
        "return_state": False, "go_backwards": False, "stateful": False, "unroll": False,
        "cell": _lstm_cell_config(4)}}
    return {"class_name": "Sequential", "config": {"name": "tfa_sequences",
                                                   "layers": [_input_layer((5, 3)), rnn]}}


def _image_weights(rng):
    """tf.keras 2 weights by layer, in its order (trainable, then non-trainable), and their names."""
    return [
        ("gn", [("gamma", rng.normal(1.0, 0.3, 8)), ("beta", rng.normal(0.0, 0.3, 8))]),
        ("inorm", [("gamma", rng.normal(1.0, 0.3, 8)), ("beta", rng.normal(0.0, 0.3, 8))]),
        ("frn", [("learned_epsilon", np.array([1e-3])), ("gamma", rng.normal(1.0, 0.3, (1, 1, 1, 8))),
                 ("beta", rng.normal(0.0, 0.3, (1, 1, 1, 8)))]),
        ("tlu", [("tau", rng.normal(0.0, 0.3, (6, 6, 8))), ("alpha", rng.normal(0.5, 0.2, (6, 6, 8)))]),
    ]


def _sequence_weights(rng):
    names = ["kernel", "recurrent_kernel", "bias", "kernel_norm/gamma", "kernel_norm/beta",
             "recurrent_norm/gamma", "recurrent_norm/beta", "state_norm/gamma", "state_norm/beta"]
    shapes = [(3, 16), (4, 16), (16,), (16,), (16,), (16,), (16,), (4,), (4,)]
    weights = [(n, rng.normal(1.0 if n.endswith("gamma") else 0.0, 0.4, s)) for n, s in zip(names, shapes,
                                                                                          strict=True)]
    return [("rnn", weights)]


def _write_tfa_h5(path, config, weights):
    """The legacy `.h5` file `tf.keras.Model.save("...h5")` wrote under TF 2.15."""
    with h5py.File(path, "w") as f:
        f.attrs["keras_version"] = "2.15.0"
        f.attrs["backend"] = "tensorflow"
        f.attrs["model_config"] = json.dumps(config)
        group = f.create_group("model_weights")
        group.attrs["layer_names"] = [name.encode() for name, _ in weights]
        group.attrs["backend"] = "tensorflow"
        group.attrs["keras_version"] = "2.15.0"
        for layer_name, layer_weights in weights:
            layer_group = group.create_group(layer_name)
            names = [f"{layer_name}/{name}:0" for name, _ in layer_weights]
            layer_group.attrs["weight_names"] = [name.encode() for name in names]
            for name, (_, value) in zip(names, layer_weights, strict=True):
                layer_group.create_dataset(name, data=np.asarray(value, np.float32))


def _expected_images(x, weights):
    w = {layer: {name: np.asarray(v, np.float64) for name, v in values} for layer, values in weights}
    y = R.group_norm(x, 4, w["gn"]["gamma"], w["gn"]["beta"], epsilon=1e-5)
    y = R.instance_norm(y, w["inorm"]["gamma"], w["inorm"]["beta"], epsilon=1e-3)
    frn = w["frn"]
    y = R.filter_response_norm(y, frn["gamma"], frn["beta"], epsilon=1e-6,
                               learned_epsilon=frn["learned_epsilon"])
    return R.tlu(y, w["tlu"]["tau"], w["tlu"]["alpha"])


def _expected_sequences(x, weights):
    w = dict(weights[0][1])
    step = {"kernel": w["kernel"], "recurrent_kernel": w["recurrent_kernel"], "bias": w["bias"],
            "kernel_gamma": w["kernel_norm/gamma"], "kernel_beta": w["kernel_norm/beta"],
            "recurrent_gamma": w["recurrent_norm/gamma"], "recurrent_beta": w["recurrent_norm/beta"],
            "state_gamma": w["state_norm/gamma"], "state_beta": w["state_norm/beta"]}
    h, c, outputs = np.zeros((len(x), 4)), np.zeros((len(x), 4)), []
    for t in range(x.shape[1]):
        h, c = lstm_step_reference(x[:, t], h, c, step)
        outputs.append(h)
    return np.stack(outputs, axis=1)


def _dense_config(name, units):
    return {"class_name": "Dense", "config": {
        "name": name, "trainable": True, "dtype": "float32", "units": units, "activation": "linear",
        "use_bias": True, "kernel_initializer": {"class_name": "GlorotUniform", "config": {"seed": None}},
        "bias_initializer": {"class_name": "Zeros", "config": {}}, "kernel_regularizer": None,
        "bias_regularizer": None, "activity_regularizer": None, "kernel_constraint": None,
        "bias_constraint": None}}


def _conv1d_config(name, filters, kernel_size):
    config = _dense_config(name, 0)
    del config["config"]["units"]
    config["class_name"] = "Conv1D"
    config["config"].update({"filters": filters, "kernel_size": [kernel_size], "strides": [1],
                             "padding": "causal", "data_format": "channels_last", "dilation_rate": [1],
                             "groups": 1})
    return config


def _weight_norm_config(name, layer, data_init):
    return {"class_name": "Addons>WeightNormalization", "config": {
        "name": name, "trainable": True, "dtype": "float32", "layer": layer, "data_init": data_init}}


def _wrapped_model_config():
    cell = {"class_name": "Addons>LayerNormSimpleRNNCell", "config": {
        "name": "layer_norm_simple_rnn_cell", "trainable": True, "dtype": "float32", "units": 4,
        "activation": "tanh", "use_bias": True,
        "kernel_initializer": {"class_name": "GlorotUniform", "config": {"seed": None}},
        "recurrent_initializer": {"class_name": "Orthogonal", "config": {"gain": 1.0, "seed": None}},
        "bias_initializer": {"class_name": "Zeros", "config": {}}, "kernel_regularizer": None,
        "recurrent_regularizer": None, "bias_regularizer": None, "kernel_constraint": None,
        "recurrent_constraint": None, "bias_constraint": None, "dropout": 0.0, "recurrent_dropout": 0.0,
        "layernorm_epsilon": 1e-5, "gamma_initializer": {"class_name": "Ones", "config": {}},
        "gamma_regularizer": None, "gamma_constraint": None}}
    rnn = {"class_name": "RNN", "config": {
        "name": "rnn", "trainable": True, "dtype": "float32", "return_sequences": True,
        "return_state": False, "go_backwards": False, "stateful": False, "unroll": False, "cell": cell}}
    layers = [
        _input_layer((6, 4)),
        _weight_norm_config("wn_conv", _conv1d_config("conv1d", 5, 3), data_init=False),
        _weight_norm_config("wn_dense", _dense_config("dense", 3), data_init=True),
        rnn,
    ]
    return {"class_name": "Sequential", "config": {"name": "tfa_wrapped", "layers": layers}}


def _wrapped_weights(rng):
    """tf.keras 2 saved WeightNormalization as [g, kernel, bias, initialized] and, with data_init=True,
    the weights of its internal clone of the wrapped layer after those."""
    dense_kernel = rng.normal(size=(5, 3))
    return [
        ("wn_conv", [("g", rng.uniform(0.5, 2.0, 5)), ("conv1d/kernel", rng.normal(size=(3, 4, 5))),
                     ("conv1d/bias", rng.normal(0.0, 0.3, 5)), ("initialized", np.array(True))]),
        ("wn_dense", [("g", rng.uniform(0.5, 2.0, 3)), ("dense/kernel", dense_kernel),
                      ("dense/bias", rng.normal(0.0, 0.3, 3)), ("initialized", np.array(True)),
                      ("dense/kernel_clone", rng.normal(size=(5, 3))), ("dense/bias_clone", np.zeros(3))]),
        ("rnn", [("kernel", rng.normal(0.0, 0.5, (3, 4))), ("recurrent_kernel", rng.normal(0.0, 0.5, (4, 4))),
                 ("bias", rng.normal(0.0, 0.3, 4)), ("layernorm/gamma", rng.uniform(0.5, 1.5, 4))]),
    ]


def _normalized(g, v, axes):
    return g * v / np.sqrt(np.sum(np.square(v), axis=axes, keepdims=True))


def _expected_wrapped(x, weights):
    w = {layer: {name: np.asarray(v, np.float64) for name, v in values} for layer, values in weights}
    conv = w["wn_conv"]
    kernel = _normalized(conv["g"], conv["conv1d/kernel"], (0, 1))
    padded = np.pad(x.astype(np.float64), [(0, 0), (2, 0), (0, 0)])  # causal: two steps of the past
    h = sum(padded[:, k:k + 6] @ kernel[k] for k in range(3)) + conv["conv1d/bias"]
    dense = w["wn_dense"]
    h = h @ _normalized(dense["g"], dense["dense/kernel"], (0,)) + dense["dense/bias"]
    rnn = w["rnn"]
    y, outputs = np.zeros((len(x), 4)), []
    for t in range(6):
        z = h[:, t] @ rnn["kernel"] + y @ rnn["recurrent_kernel"]
        normalized = (z - z.mean(-1, keepdims=True)) / np.sqrt(z.var(-1, keepdims=True) + 1e-5)
        y = np.tanh(normalized * rnn["layernorm/gamma"] + rnn["bias"])
        outputs.append(y)
    return np.stack(outputs, axis=1)


MODELS = {
    "images": (_image_model_config, _image_weights, (2, 6, 6, 8), _expected_images),
    "sequences": (_sequence_model_config, _sequence_weights, (2, 5, 3), _expected_sequences),
    "wrapped": (_wrapped_model_config, _wrapped_weights, (2, 6, 4), _expected_wrapped),
}


def _tfa_h5_model(kind, tmp_path, seed):
    """A tfa `.h5` file of `kind` loaded with `load_model`, the float64 reference of its outputs, and
    an input for it."""
    make_config, make_weights, shape, expected = MODELS[kind]
    rng = np.random.default_rng(seed)
    weights = make_weights(rng)
    path = tmp_path / "tfa_model.h5"
    _write_tfa_h5(path, make_config(), weights)
    x = rng.normal(0.5, 2.0, size=shape).astype("float32")
    return keras.models.load_model(path, compile=False), x, expected(x, weights)


@pytest.mark.parametrize("kind", list(MODELS))
def test_a_tfa_h5_file_loads_without_custom_objects(kind, tmp_path):
    model, x, expected = _tfa_h5_model(kind, tmp_path, seed=0)
    np.testing.assert_allclose(model(x), expected, atol=2e-5)
    assert all(type(layer).__module__.startswith("keras_norms") for layer in model.layers
               if type(layer).__name__ != "RNN")


def _tfa_keras_file(model, path):
    """`model` saved as a `.keras` file, then renamed inside the way tf.keras 2.15 + tfa named it."""
    model.save(path)
    with zipfile.ZipFile(path) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(files["config.json"])

    def rename(node):
        if isinstance(node, dict):
            if str(node.get("registered_name", "")).startswith("keras_norms>"):
                class_name = node["class_name"].removeprefix("Tfa")  # tfa's own class names
                node["class_name"], node["registered_name"] = class_name, f"Addons>{class_name}"
                node["module"] = ("tensorflow_addons.rnn" if class_name.endswith("Cell")
                                  else "tensorflow_addons.layers")
            for value in node.values():
                rename(value)
        elif isinstance(node, list):
            for value in node:
                rename(value)

    rename(config)
    files["config.json"] = json.dumps(config).encode()
    metadata = json.loads(files["metadata.json"])
    files["metadata.json"] = json.dumps({**metadata, "keras_version": "2.15.0"}).encode()
    assert b"keras_norms" not in files["config.json"]
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in files.items():
            archive.writestr(name, content)


@pytest.mark.parametrize("kind", list(MODELS))
def test_a_tfa_keras_file_loads_without_custom_objects(kind, tmp_path):
    model, x, expected = _tfa_h5_model(kind, tmp_path, seed=1)
    path = tmp_path / "tfa_model.keras"
    _tfa_keras_file(model, path)
    np.testing.assert_allclose(keras.models.load_model(path, compile=False)(x), expected, atol=2e-5)


def test_a_compiled_tf215_file_loads_with_compile_false_and_computes_what_it_holds(tmp_path):
    # examples/tfa_h5_file.py writes the file docs/guides/migrating-from-tfa.md starts from: a compiled
    # classifier, its training config and a built InstanceNormalization's `"groups": 8` included.
    writer = runpy.run_path(str(Path(__file__).resolve().parents[1] / "examples/tfa_h5_file.py"))
    path = tmp_path / "model.h5"
    w = {layer: {k: np.asarray(v, np.float64) for k, v in values.items()}
         for layer, values in writer["write"](path, seed=3).items()}
    # Loading with its training config fails on tf.keras 2's loss, as the guide says; compile=False loads.
    with pytest.raises(ValueError, match="reduction"):
        keras.models.load_model(path)
    model = keras.models.load_model(path, compile=False)
    assert type(model.get_layer("instance_normalization")).__module__.startswith("keras_norms")

    x = np.random.default_rng(4).normal(0.5, 2.0, size=(3, *writer["INPUT_SHAPE"])).astype("float32")
    y = R.conv2d_same(x.astype(np.float64), w["conv2d"]["kernel"], w["conv2d"]["bias"])
    y = R.group_norm(y, 4, w["group_normalization"]["gamma"], w["group_normalization"]["beta"], epsilon=1e-5)
    y = R.instance_norm(np.maximum(y, 0.0), w["instance_normalization"]["gamma"],
                        w["instance_normalization"]["beta"], epsilon=1e-3)
    expected = y.mean(axis=(1, 2)) @ w["dense"]["kernel"] + w["dense"]["bias"]
    np.testing.assert_allclose(model(x), expected, atol=2e-5)
