"""Writes a legacy `.h5` file the way `model.save("model.h5")` wrote it under TF 2.15 with tensorflow-addons.

tensorflow-addons cannot be installed next to Keras 3, so this stands in for a file you have: a
compiled image classifier (Conv2D, tfa's GroupNormalization and InstanceNormalization, Dense),
saved with its training config, as tf.keras 2.15 wrote it attribute by attribute:

- `model_config`: the model as JSON, tfa's layers under their registered names (`Addons>...`);
  a built `InstanceNormalization` saved its number of channels as `groups`;
- `model_weights/<layer>/<layer>/<weight>:0`: the weights, in tf.keras' order;
- `training_config`: the optimizer, the loss (with tf.keras 2's `reduction="auto"`) and the metrics.

Usage: python examples/tfa_h5_file.py PATH [SEED]. `write(path, seed)` returns the weights written,
by layer, for checking a loaded model against them.
"""

from __future__ import annotations

import json
import sys

import h5py
import numpy as np

INPUT_SHAPE = (8, 8, 3)
CHANNELS = 8
CLASSES = 10

_ZEROS = {"class_name": "Zeros", "config": {}}
_ONES = {"class_name": "Ones", "config": {}}
_GLOROT = {"class_name": "GlorotUniform", "config": {"seed": None}}
_SHARED = {"trainable": True, "dtype": "float32"}


def _tfa_norm(class_name: str, name: str, groups: int, epsilon: float) -> dict:
    return {"class_name": f"Addons>{class_name}", "config": {
        "name": name, **_SHARED, "groups": groups, "axis": -1, "epsilon": epsilon, "center": True,
        "scale": True, "beta_initializer": _ZEROS, "gamma_initializer": _ONES, "beta_regularizer": None,
        "gamma_regularizer": None, "beta_constraint": None, "gamma_constraint": None}}


def model_config() -> dict:
    """`model.get_config()` of the classifier under tf.keras 2.15, as the file holds it."""
    kernel = {"kernel_initializer": _GLOROT, "bias_initializer": _ZEROS, "kernel_regularizer": None,
              "bias_regularizer": None, "activity_regularizer": None, "kernel_constraint": None,
              "bias_constraint": None}
    layers = [
        {"class_name": "InputLayer", "config": {"batch_input_shape": [None, *INPUT_SHAPE], "dtype": "float32",
                                                "sparse": False, "ragged": False, "name": "input_1"}},
        {"class_name": "Conv2D", "config": {
            "name": "conv2d", **_SHARED, "filters": CHANNELS, "kernel_size": [3, 3], "strides": [1, 1],
            "padding": "same", "data_format": "channels_last", "dilation_rate": [1, 1], "groups": 1,
            "activation": "linear", "use_bias": True, **kernel}},
        _tfa_norm("GroupNormalization", "group_normalization", 4, 1e-5),
        {"class_name": "ReLU", "config": {"name": "re_lu", **_SHARED, "max_value": None,
                                          "negative_slope": 0.0, "threshold": 0.0}},
        # Built, tfa's InstanceNormalization had set `groups` from -1 to the number of channels.
        _tfa_norm("InstanceNormalization", "instance_normalization", CHANNELS, 1e-3),
        {"class_name": "GlobalAveragePooling2D", "config": {"name": "global_average_pooling2d", **_SHARED,
                                                            "data_format": "channels_last",
                                                            "keepdims": False}},
        {"class_name": "Dense", "config": {"name": "dense", **_SHARED, "units": CLASSES,
                                           "activation": "linear", "use_bias": True, **kernel}},
    ]
    return {"class_name": "Sequential", "config": {"name": "tfa_classifier", "layers": layers}}


def training_config() -> dict:
    """What `model.compile(Adam(), SparseCategoricalCrossentropy(from_logits=True), ["accuracy"])` saved."""
    return {
        "loss": {"class_name": "SparseCategoricalCrossentropy", "config": {
            "reduction": "auto", "name": "sparse_categorical_crossentropy", "from_logits": True,
            "ignore_class": None}},
        "metrics": [[{"class_name": "MeanMetricWrapper", "config": {
            "name": "accuracy", "dtype": "float32", "fn": "sparse_categorical_accuracy"}}]],
        "weighted_metrics": None, "loss_weights": None,
        "optimizer_config": {"class_name": "Custom>Adam", "config": {
            "name": "Adam", "weight_decay": None, "clipnorm": None, "global_clipnorm": None,
            "clipvalue": None, "use_ema": False, "ema_momentum": 0.99, "ema_overwrite_frequency": None,
            "jit_compile": False, "is_legacy_optimizer": False, "learning_rate": 0.001, "beta_1": 0.9,
            "beta_2": 0.999, "epsilon": 1e-07, "amsgrad": False}},
    }


def weights(seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """The weights of each layer, by tf.keras 2's weight name, in its order."""
    rng = np.random.default_rng(seed)
    return {
        "conv2d": {"kernel": rng.normal(0.0, 0.3, (3, 3, INPUT_SHAPE[-1], CHANNELS)),
                   "bias": rng.normal(0.0, 0.1, CHANNELS)},
        "group_normalization": {"gamma": rng.normal(1.0, 0.2, CHANNELS),
                                "beta": rng.normal(0.0, 0.2, CHANNELS)},
        "instance_normalization": {"gamma": rng.normal(1.0, 0.2, CHANNELS),
                                   "beta": rng.normal(0.0, 0.2, CHANNELS)},
        "dense": {"kernel": rng.normal(0.0, 0.3, (CHANNELS, CLASSES)), "bias": rng.normal(0.0, 0.1, CLASSES)},
    }


def write(path, seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """Writes the file to `path`; returns the weights it holds."""
    values = weights(seed)
    with h5py.File(path, "w") as file:
        file.attrs["keras_version"] = "2.15.0"
        file.attrs["backend"] = "tensorflow"
        file.attrs["model_config"] = json.dumps(model_config())
        file.attrs["training_config"] = json.dumps(training_config())
        group = file.create_group("model_weights")
        group.attrs["backend"] = "tensorflow"
        group.attrs["keras_version"] = "2.15.0"
        layer_names = ["input_1", "conv2d", "group_normalization", "re_lu", "instance_normalization",
                       "global_average_pooling2d", "dense"]
        group.attrs["layer_names"] = [name.encode() for name in layer_names]
        for layer_name in layer_names:
            layer_group = group.create_group(layer_name)
            layer_weights = values.get(layer_name, {})
            names = [f"{layer_name}/{name}:0" for name in layer_weights]
            layer_group.attrs["weight_names"] = [name.encode() for name in names]
            for name, value in zip(names, layer_weights.values(), strict=True):
                layer_group.create_dataset(name, data=np.asarray(value, np.float32))
    return values


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__.split("\n\n")[-1].split(". `write")[0])
    write(sys.argv[1], int(sys.argv[2]) if len(sys.argv) == 3 else 0)
    print(f"wrote {sys.argv[1]}: a TF 2.15 + tensorflow-addons classifier with its training config")
