"""`keras_norms.get` / `register`: swapping a model's normalization by name."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import references

import keras_norms
from keras_norms import registry

EXPECTED_CLASSES = {
    "batch": keras_norms.BatchNormalization,
    "layer": keras_norms.LayerNormalization,
    "group": keras_norms.GroupNormalization,
    "instance": keras_norms.InstanceNormalization,
    "rms": keras_norms.RMSNormalization,
    "none": keras.layers.Identity,
}


@pytest.fixture
def clean_registry():
    """Restores the registry, whatever a test registered or replaced."""
    saved = dict(registry._REGISTRY)
    yield
    registry._REGISTRY.clear()
    registry._REGISTRY.update(saved)


def test_names_lists_the_core_norms():
    assert set(EXPECTED_CLASSES) <= set(keras_norms.names())


@pytest.mark.parametrize("name", list(EXPECTED_CLASSES))
def test_get_returns_a_new_layer_of_the_right_class(name):
    first, second = keras_norms.get(name), keras_norms.get(name)
    assert type(first) is EXPECTED_CLASSES[name]
    assert type(second) is EXPECTED_CLASSES[name]
    assert first is not second
    if name != "none":  # keras.layers.Identity has no weights and is built from the start
        assert not first.built


def test_get_is_case_and_space_insensitive():
    assert type(keras_norms.get(" Group ")) is keras_norms.GroupNormalization


def test_get_passes_kwargs_to_the_constructor():
    layer = keras_norms.get("group", groups=8, epsilon=1e-5, name="norm")
    assert (layer.groups, layer.epsilon, layer.name) == (8, 1e-5, "norm")
    x = np.random.default_rng(0).normal(size=(2, 3, 3, 16)).astype("float32")
    np.testing.assert_allclose(
        np.asarray(layer(x)), references.group_norm(x, 8, epsilon=1e-5), atol=1e-5
    )
    assert keras_norms.get("batch", momentum=0.5).momentum == 0.5


def test_get_passes_bad_kwargs_errors_through():
    with pytest.raises(ValueError, match="groups=0"):
        keras_norms.get("group", groups=0)


def test_none_is_the_identity():
    layer = keras_norms.get("none")
    x = np.random.default_rng(1).normal(size=(2, 5, 3)).astype("float32")
    np.testing.assert_array_equal(np.asarray(layer(x)), x)
    assert layer.weights == []


def test_a_layer_class_passes_through_with_kwargs():
    layer = keras_norms.get(keras.layers.LayerNormalization, epsilon=1e-4)
    assert type(layer) is keras.layers.LayerNormalization
    assert layer.epsilon == 1e-4
    layer = keras_norms.get(keras_norms.GroupNormalization, groups=2)
    assert type(layer) is keras_norms.GroupNormalization and layer.groups == 2


def test_an_instance_is_returned_as_is():
    instance = keras_norms.GroupNormalization(groups=2)
    assert keras_norms.get(instance) is instance


def test_an_instance_with_kwargs_is_refused():
    instance = keras_norms.GroupNormalization(groups=2)
    with pytest.raises(ValueError, match="groups"):
        keras_norms.get(instance, groups=4)
    assert instance.groups == 2


def test_a_callable_returning_a_layer_is_called_with_kwargs():
    received = {}

    def factory(**kwargs):
        received.update(kwargs)
        return keras.layers.Dropout(0.5)

    layer = keras_norms.get(factory, seed=3)
    assert type(layer) is keras.layers.Dropout
    assert received == {"seed": 3}


def test_a_callable_returning_a_non_layer_raises_type_error():
    with pytest.raises(TypeError, match="not a keras.layers.Layer"):
        keras_norms.get(lambda: "batch")


def test_an_unknown_name_lists_every_valid_name():
    with pytest.raises(ValueError, match="'batchnorm'") as info:
        keras_norms.get("batchnorm")
    for name in keras_norms.names():
        assert name in str(info.value)


@pytest.mark.parametrize("spec", [None, 3, 1.5, ["group"], {"name": "group"}])
def test_a_spec_of_the_wrong_type_raises_type_error(spec):
    with pytest.raises(TypeError, match="spec"):
        keras_norms.get(spec)


def test_register_adds_a_name(clean_registry):
    keras_norms.register("group8", lambda **kwargs: keras_norms.GroupNormalization(groups=8, **kwargs))
    assert "group8" in keras_norms.names()
    layer = keras_norms.get("group8", epsilon=1e-4)
    assert type(layer) is keras_norms.GroupNormalization
    assert (layer.groups, layer.epsilon) == (8, 1e-4)
    keras_norms.register("dropout", keras.layers.Dropout)
    assert type(keras_norms.get("dropout", rate=0.1)) is keras.layers.Dropout


def test_register_refuses_a_duplicate_unless_overwrite(clean_registry):
    with pytest.raises(ValueError, match="'group'"):
        keras_norms.register("group", keras_norms.InstanceNormalization)
    assert type(keras_norms.get("group")) is keras_norms.GroupNormalization
    keras_norms.register("group", keras_norms.InstanceNormalization, overwrite=True)
    assert type(keras_norms.get("group")) is keras_norms.InstanceNormalization


def test_a_registered_name_is_found_whatever_its_case(clean_registry):
    keras_norms.register(" Group8 ", lambda **kwargs: keras_norms.GroupNormalization(groups=8, **kwargs))
    assert "group8" in keras_norms.names() and " Group8 " not in keras_norms.names()
    assert keras_norms.get("GROUP8").groups == 8
    with pytest.raises(ValueError, match="'group8' is already registered"):
        keras_norms.register("group8", keras_norms.GroupNormalization)


@pytest.mark.parametrize(
    "name, factory",
    [("", keras.layers.Identity), ("  ", keras.layers.Identity), (3, keras.layers.Identity),
     ("x", "not callable")],
)
def test_register_checks_its_arguments(clean_registry, name, factory):
    with pytest.raises(TypeError):
        keras_norms.register(name, factory)
    assert "x" not in keras_norms.names()


def test_the_registry_was_restored():
    """Runs after the tests above (file order): what they registered is gone."""
    assert "group8" not in keras_norms.names()
    assert "dropout" not in keras_norms.names()
    assert type(keras_norms.get("group")) is keras_norms.GroupNormalization


def test_describe_gives_what_each_registered_norm_needs():
    traits = {name: keras_norms.describe(name) for name in ("batch", "group", "instance", "frn",
                                                              "switchable", "layer", "none")}
    assert [n for n, d in traits.items() if d.takes_groups] == ["group"]
    assert [n for n, d in traits.items() if not d.axis_is_channel_axis] == ["frn"]
    assert [n for n, d in traits.items() if d.batch_norm] == ["batch"]
    assert [n for n, d in traits.items() if d.batch_dependent] == ["batch", "switchable"]
    assert [n for n, d in traits.items() if d.per_channel] == ["instance"]
    assert [n for n, d in traits.items() if d.identity] == ["none"]


def test_describe_finds_the_name_of_a_registered_class_and_sees_through_partials():
    import functools

    assert keras_norms.describe(keras_norms.LayerNormalization).name == "layer"
    assert keras_norms.describe(keras.layers.BatchNormalization).batch_norm  # Keras' own
    eight = keras_norms.describe(functools.partial(keras_norms.GroupNormalization, groups=8))
    assert (eight.name, eight.preset) == (None, {"groups": 8})
    assert eight.layer_class is keras_norms.GroupNormalization
    assert eight.layer(channels=64).groups == 8  # the partial's groups are kept
    assert keras_norms.describe("group").layer(channels=64).groups == 32
    assert keras_norms.describe("group").layer(channels=12).groups == 6
    assert keras_norms.describe("group").normalizes_channels_alone(12, groups=12)
    assert not keras_norms.describe("group").normalizes_channels_alone(12, groups=6)


def test_describe_sets_filter_response_axes_from_the_rank():
    layer = keras_norms.describe("frn").layer(channels=5, rank=3)
    x = np.random.default_rng(1).normal(size=(2, 7, 5)).astype("float32")
    nu2 = np.mean(x.astype("float64") ** 2, axis=1, keepdims=True)  # over the 7 positions only
    np.testing.assert_allclose(np.asarray(layer(x)), x / np.sqrt(nu2 + 1e-6), atol=1e-5)


def test_describe_refuses_instances_and_unknown_names():
    with pytest.raises(TypeError, match="layer instance"):
        keras_norms.describe(keras_norms.LayerNormalization())
    with pytest.raises(ValueError, match="Valid names"):
        keras_norms.describe("batchy")
    with pytest.raises(TypeError, match="Received: spec=3"):
        keras_norms.describe(3)
