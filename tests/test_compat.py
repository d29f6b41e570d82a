"""Compatibility: configs and models saved by tensorflow-addons code, and Keras' built-in layers.

tensorflow-addons cannot be installed next to Keras 3, so its serialized form is written out
here the way its `get_config` produced it (tf.keras 2 serialization of initializers,
regularizers and constraints). Keras' own `GroupNormalization`, `LayerNormalization` and
`BatchNormalization` are independent implementations of the same math and serve as
references for weight layout and outputs.
"""

from __future__ import annotations

import copy
import json
import re

import keras
import numpy as np
import pytest
import references

import keras_norms

TFA_MODULE = "tensorflow_addons.layers.normalizations"
DESERIALIZERS = {
    "layers.deserialize": keras.layers.deserialize,
    "saving.deserialize_keras_object": keras.saving.deserialize_keras_object,
}


def tfa_layer_config(class_name, groups, **overrides):
    """A layer config exactly as tensorflow-addons' `get_config` and tf.keras 2 wrote it."""
    config = {
        "name": "group_normalization",
        "trainable": True,
        "dtype": "float32",
        "groups": groups,
        "axis": -1,
        "epsilon": 1e-3,
        "center": True,
        "scale": True,
        "beta_initializer": {"class_name": "Zeros", "config": {}},
        "gamma_initializer": {"class_name": "Ones", "config": {}},
        "beta_regularizer": None,
        "gamma_regularizer": None,
        "beta_constraint": None,
        "gamma_constraint": None,
    }
    config.update(overrides)
    return {"class_name": f"Addons>{class_name}", "config": config}


def _input(shape, seed=0):
    return np.random.default_rng(seed).normal(loc=1.0, scale=2.0, size=shape).astype("float32")


# --- tensorflow-addons configs ------------------------------------------------------------


@pytest.mark.parametrize("deserialize", list(DESERIALIZERS.values()), ids=list(DESERIALIZERS))
def test_tfa_group_normalization_config_loads(deserialize):
    config = tfa_layer_config(
        "GroupNormalization",
        groups=2,
        axis=1,
        epsilon=1e-5,
        name="gn_from_tfa",
        beta_initializer={"class_name": "Constant", "config": {"value": 0.5}},
        gamma_initializer={"class_name": "Constant", "config": {"value": 2.0}},
        gamma_regularizer={"class_name": "L2", "config": {"l2": 0.01}},
        beta_regularizer={"class_name": "L1", "config": {"l1": 0.1}},
        gamma_constraint={"class_name": "MaxNorm", "config": {"max_value": 3.0, "axis": 0}},
        beta_constraint={"class_name": "NonNeg", "config": {}},
    )
    layer = deserialize(copy.deepcopy(config), custom_objects=keras_norms.tfa_custom_objects())
    assert type(layer) is keras_norms.GroupNormalization
    assert (layer.groups, layer.axis, layer.epsilon, layer.center, layer.scale) == (2, 1, 1e-5, True, True)
    assert (layer.name, layer.trainable, layer.dtype) == ("gn_from_tfa", True, "float32")
    assert isinstance(layer.gamma_constraint, keras.constraints.MaxNorm)
    assert layer.gamma_constraint.max_value == 3.0
    assert isinstance(layer.beta_constraint, keras.constraints.NonNeg)

    x = _input((2, 4, 3, 3))  # channels first: 4 channels, 2 groups
    outputs = np.asarray(layer(x))
    gamma, beta = np.full(4, 2.0), np.full(4, 0.5)
    np.testing.assert_allclose(
        outputs, references.group_norm(x, 2, gamma, beta, axis=1, epsilon=1e-5), atol=1e-5
    )
    # The regularizers act: 0.01 * sum(gamma^2) + 0.1 * sum(|beta|).
    np.testing.assert_allclose(float(sum(layer.losses)), 0.01 * 4 * 4.0 + 0.1 * 4 * 0.5, rtol=1e-6)


@pytest.mark.parametrize("deserialize", list(DESERIALIZERS.values()), ids=list(DESERIALIZERS))
@pytest.mark.parametrize("groups", [-1, 3], ids=["groups-1", "groups-after-build"])
def test_tfa_instance_normalization_config_loads(deserialize, groups):
    # tfa's InstanceNormalization wrote groups=-1, or the channel count once its build had
    # overwritten self.groups.
    config = tfa_layer_config(
        "InstanceNormalization", groups=groups, name="instance_normalization", center=False
    )
    layer = deserialize(config, custom_objects=keras_norms.tfa_custom_objects())
    assert type(layer) is keras_norms.InstanceNormalization
    assert "groups" not in layer.get_config()
    assert (layer.center, layer.scale) == (False, True)
    x = _input((2, 5, 5, 3))
    np.testing.assert_allclose(np.asarray(layer(x)), references.instance_norm(x), atol=1e-5)
    assert [w.name for w in layer.weights] == ["gamma"]


def test_tfa_names_load_without_custom_objects_and_ours_save_under_their_own():
    layer = keras.layers.deserialize(tfa_layer_config("GroupNormalization", groups=2))
    assert type(layer) is keras_norms.GroupNormalization and layer.groups == 2
    assert keras.layers.serialize(layer)["registered_name"] == "keras_norms>GroupNormalization"


def _tfa_style_json(model, style):
    """`model.to_json()` with our layers renamed the way a tensorflow-addons model names them.

    "legacy": tf.keras <= 2.12 wrote the registered name as `class_name` and no module;
    "module": tf.keras 2.13+ wrote module, class name and registered name separately.
    """
    config = json.loads(model.to_json())
    for layer in config["config"]["layers"]:
        if layer["class_name"] not in ("GroupNormalization", "InstanceNormalization"):
            continue
        registered = "Addons>" + layer["class_name"]
        if style == "legacy":
            del layer["module"], layer["registered_name"]
            layer["class_name"] = registered
        else:
            layer["module"] = TFA_MODULE
            layer["registered_name"] = registered
        if layer["class_name"].endswith("InstanceNormalization"):
            layer["config"]["groups"] = -1
    text = json.dumps(config)
    assert "keras_norms" not in text
    return text


@pytest.mark.parametrize("style", ["legacy", "module"])
def test_a_tfa_model_json_loads_and_runs_with_its_weights(style):
    model = keras.Sequential(
        [
            keras.Input((6, 6, 8)),
            keras.layers.Conv2D(8, 3, padding="same", name="conv"),
            keras_norms.GroupNormalization(groups=4, epsilon=1e-5, name="gn"),
            keras_norms.InstanceNormalization(name="inorm"),
            keras.layers.Dense(3, name="head"),
        ]
    )
    rng = np.random.default_rng(0)
    model.set_weights([rng.normal(size=w.shape) for w in model.weights])

    loaded = keras.models.model_from_json(
        _tfa_style_json(model, style), custom_objects=keras_norms.tfa_custom_objects()
    )
    assert [type(layer) for layer in loaded.layers] == [type(layer) for layer in model.layers]
    assert [(w.name, tuple(w.shape)) for w in loaded.weights] == [
        (w.name, tuple(w.shape)) for w in model.weights
    ]
    assert loaded.get_layer("gn").groups == 4
    assert loaded.get_layer("gn").epsilon == 1e-5
    loaded.set_weights(model.get_weights())
    x = _input((2, 6, 6, 8))
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)
    # Importing keras_norms registered tfa's names: no custom_objects needed.
    plain = keras.models.model_from_json(_tfa_style_json(model, style))
    assert [type(layer) for layer in plain.layers] == [type(layer) for layer in model.layers]


# --- Keras' built-in layers as references -------------------------------------------------


def _randomize(layer, rng):
    layer.set_weights([rng.uniform(0.5, 1.5, size=w.shape) for w in layer.weights])


def _build_pair(ours, theirs, shape, seed=0):
    ours.build(shape)
    theirs.build(shape)
    assert [(w.name, tuple(w.shape)) for w in ours.weights] == [
        (w.name, tuple(w.shape)) for w in theirs.weights
    ]
    _randomize(theirs, np.random.default_rng(seed))
    ours.set_weights(theirs.get_weights())


@pytest.mark.parametrize(
    "shape, axis, groups",
    [
        ((2, 6, 6, 8), -1, 4),
        ((2, 8, 5, 5), 1, 2),
        ((2, 7, 12), -1, 3),
        ((2, 3, 4, 5, 8), -1, 8),
        ((2, 6, 8), -1, -1),
        ((3, 8), -1, 2),
    ],
)
@pytest.mark.parametrize("center, scale", [(True, True), (False, True), (True, False)])
def test_group_normalization_matches_keras(shape, axis, groups, center, scale):
    kwargs = {"groups": groups, "axis": axis, "center": center, "scale": scale}
    ours = keras_norms.GroupNormalization(**kwargs)
    theirs = keras.layers.GroupNormalization(**kwargs)
    _build_pair(ours, theirs, shape)
    channels = shape[axis]
    expected_names = [name for name, on in (("gamma", scale), ("beta", center)) if on]
    assert [(w.name, tuple(w.shape)) for w in ours.weights] == [(n, (channels,)) for n in expected_names]
    x = _input(shape)
    np.testing.assert_allclose(np.asarray(ours(x)), np.asarray(theirs(x)), atol=1e-5)


@pytest.mark.parametrize("shape, axis", [((2, 5, 8), -1), ((2, 5, 8), [1, 2]), ((2, 4, 4, 3), 1)])
def test_layer_normalization_matches_keras(shape, axis):
    ours = keras_norms.LayerNormalization(axis=axis)
    theirs = keras.layers.LayerNormalization(axis=axis)
    _build_pair(ours, theirs, shape)
    x = _input(shape)
    np.testing.assert_allclose(np.asarray(ours(x)), np.asarray(theirs(x)), atol=1e-5)


@pytest.mark.parametrize("name", ["LayerNormalization", "RMSNormalization"])
@pytest.mark.parametrize("axis", [-1, [-2, -1]], ids=["axis=-1", "axis=[-2,-1]"])
def test_built_for_rank_3_and_called_on_rank_4_and_2_as_keras(name, axis):
    """As Keras' own `test_correctness`: built for rank 3, called on another rank, the axes counted
    from the end (and the float64 reference decides)."""
    ours, theirs = getattr(keras_norms, name)(axis=axis), getattr(keras.layers, name)(axis=axis)
    ours.build((2, 5, 4))
    theirs.build((2, 5, 4))
    rng = np.random.default_rng(3)
    ours.set_weights([rng.normal(1.0, 0.5, size=w.shape).astype("float32") for w in ours.get_weights()])
    theirs.set_weights(ours.get_weights())
    weights = [np.asarray(w, np.float64) for w in ours.get_weights()]
    shapes = [(3, 2, 5, 4)] + ([(7, 4)] if axis == -1 else [])
    for shape in shapes:
        x = (2.0 + 3.0 * rng.normal(size=shape)).astype("float32")
        if name == "LayerNormalization":
            expected = references.layer_norm(x, *weights, axis=axis, epsilon=ours.epsilon)
        else:
            expected = references.rms_norm(x, *weights, axis=axis, epsilon=ours.epsilon)
        np.testing.assert_allclose(np.asarray(ours(x)), expected, atol=1e-5, err_msg=str(shape))
        np.testing.assert_allclose(np.asarray(ours(x)), np.asarray(theirs(x)), atol=1e-4, err_msg=str(shape))
    assert ours.get_config()["axis"] == axis  # as passed (Keras' turns it into a list at build time)


def test_a_layer_whose_axis_would_move_refuses_another_rank():
    """Keras' LayerNormalization(axis=1) built for rank 3 normalizes axis 1 of a rank-4 input, which is
    another axis counted from the end; ours refuses."""
    ours = keras_norms.LayerNormalization(axis=1)
    ours(_input((2, 5, 4)))
    with pytest.raises(ValueError, match=re.escape("Received: inputs.shape=(2, 5, 3, 4)")):
        ours(_input((2, 5, 3, 4)))


@pytest.mark.parametrize("training", [False, True], ids=["inference", "training"])
@pytest.mark.parametrize("shape, axis", [((8, 4, 4, 6), -1), ((8, 6, 3, 3), 1), ((16, 5), -1)])
def test_batch_normalization_matches_keras(shape, axis, training):
    ours = keras_norms.BatchNormalization(axis=axis, momentum=0.9)
    theirs = keras.layers.BatchNormalization(axis=axis, momentum=0.9)
    _build_pair(ours, theirs, shape)
    assert [w.name for w in ours.weights] == ["gamma", "beta", "moving_mean", "moving_variance"]
    initial_mean = ours.moving_mean.numpy()
    x = _input(shape)
    np.testing.assert_allclose(
        np.asarray(ours(x, training=training)), np.asarray(theirs(x, training=training)), atol=1e-5
    )
    # The moving statistics move the same way in training and stay put in inference.
    assert np.allclose(ours.moving_mean.numpy(), initial_mean) != training
    for mine, keras_weight in zip(ours.get_weights(), theirs.get_weights(), strict=True):
        np.testing.assert_allclose(mine, keras_weight, atol=1e-5)


def test_keras_weights_load_into_our_layers_through_a_weights_file(tmp_path):
    """A model saved with Keras' norms loads its weights into the same model built with ours."""

    def build(norms):
        return keras.Sequential(
            [
                keras.Input((5, 5, 8)),
                keras.layers.Conv2D(8, 3, padding="same"),
                norms.BatchNormalization(),
                norms.GroupNormalization(groups=4),
                keras.layers.Reshape((25, 8)),
                norms.LayerNormalization(),
            ]
        )

    theirs = build(keras.layers)
    rng = np.random.default_rng(1)
    theirs.set_weights([rng.uniform(0.5, 1.5, size=w.shape) for w in theirs.weights])
    path = tmp_path / "keras_norms_from_keras.weights.h5"
    theirs.save_weights(path)
    ours = build(keras_norms)
    ours.load_weights(path)
    x = _input((2, 5, 5, 8))
    np.testing.assert_allclose(ours.predict(x, verbose=0), theirs.predict(x, verbose=0), atol=1e-5)


@pytest.mark.parametrize("axis", [-1, 1])
def test_instance_normalization_config_is_unchanged_by_build(axis):
    layer = keras_norms.InstanceNormalization(axis=axis, epsilon=1e-4, center=False)
    before = layer.get_config()
    layer(_input((2, 3, 4, 5)))
    assert layer.get_config() == before
    rebuilt = keras_norms.InstanceNormalization.from_config(layer.get_config())
    assert rebuilt.get_config() == before


def test_instance_normalization_warns_and_ignores_groups_as_tfa_did():
    with pytest.warns(UserWarning, match=r"groups=2 \(ignored\)"):
        layer = keras_norms.InstanceNormalization(groups=2)
    x = _input((2, 5, 5, 4))
    np.testing.assert_allclose(np.asarray(layer(x)), references.instance_norm(x), atol=1e-5)


def test_instance_normalization_of_flat_inputs_warns_and_gives_beta_as_tfa_did():
    layer = keras_norms.InstanceNormalization(beta_initializer="random_normal")
    with pytest.warns(UserWarning, match=r"output is `beta`"):
        outputs = layer(_input((3, 6)))
    np.testing.assert_allclose(np.asarray(outputs), np.broadcast_to(layer.beta.numpy(), (3, 6)), atol=1e-6)
