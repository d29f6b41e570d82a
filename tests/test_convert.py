"""Model tools: convert_norms, freeze/unfreeze/synchronize_batch_norms on whole models.

References: the original model itself (its outputs, its weights) for what must not
change, and float64 NumPy statistics where numbers must. `keras.applications` models
are built with `weights=None` (nothing downloads). recalibrate_batch_norms is in
tests/test_recalibrate.py; synchronization under MirroredStrategy in test_batch.py.
"""

from __future__ import annotations

import re

import keras
import numpy as np
import pytest
import references
from layer_checks import convert_builtin_only, run_litert

import keras_norms
from keras_norms.convert import is_batch_norm


def _randomize(model, seed=0):
    """Non-trivial values for every weight, so that a lost or mixed-up weight shows."""
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        if "variance" in weight.name or weight.name == "count":
            value = rng.uniform(0.5, 2.0, size=weight.shape)
        elif weight.name == "gamma":
            value = rng.normal(1.0, 0.3, size=weight.shape)
        else:
            value = rng.normal(0.0, 0.3, size=weight.shape)
        weight.assign(value.astype(weight.dtype))


def _nested_model():
    """Preprocessing Normalization, Keras batch norms at the top level and in a nested Sequential."""
    inputs = keras.Input((6, 6, 3))
    x = keras.layers.Normalization(axis=-1, mean=[0.5, 1.0, -1.0], variance=[1.0, 4.0, 2.0])(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv")(x)
    x = keras.layers.BatchNormalization(momentum=0.9, name="bn")(x)
    block = keras.Sequential([
        keras.Input((6, 6, 8)),
        keras.layers.Conv2D(8, 3, padding="same", name="inner_conv"),
        keras.layers.BatchNormalization(epsilon=1e-4, name="inner_bn"),
        keras.layers.ReLU(),
    ], name="block")
    x = block(x)
    outputs = keras.layers.Dense(2, name="head")(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs, name="nested")
    _randomize(model)
    return model


def _layers(model):
    """Every layer of `model`, nested ones included, but the models and their inputs."""
    return [layer for layer in model._flatten_layers(include_self=False)
            if not isinstance(layer, (keras.Model, keras.layers.InputLayer))]


def _snapshot(model):
    return [(type(layer).__name__, [w.numpy().copy() for w in layer.weights]) for layer in _layers(model)]


def _assert_unchanged(model, snapshot):
    for (kind, weights), layer in zip(snapshot, _layers(model), strict=True):
        assert type(layer).__name__ == kind
        for before, after in zip(weights, layer.weights, strict=True):
            np.testing.assert_array_equal(after.numpy(), before)


def _images(shape, seed=1):
    return np.random.default_rng(seed).normal(1.0, 2.0, size=shape).astype("float32")


# ----------------------------------------------------------------------------- convert_norms


def test_keras_batch_norm_to_ours_gives_the_same_outputs_and_weights():
    model = _nested_model()
    snapshot = _snapshot(model)
    converted = keras_norms.convert_norms(model, keras_norms.BatchNormalization)
    _assert_unchanged(model, snapshot)
    for old, new in zip(_layers(model), _layers(converted), strict=True):
        assert new.name == old.name
        if is_batch_norm(old):
            assert isinstance(new, keras_norms.BatchNormalization)
            assert (new.momentum, new.epsilon) == (old.momentum, old.epsilon)
        else:
            assert type(new) is type(old)
        for a, b in zip(old.weights, new.weights, strict=True):
            np.testing.assert_array_equal(b.numpy(), a.numpy(), err_msg=f"{old.name}/{a.name}")
    x = _images((4, 6, 6, 3))
    for training in (False, True):
        reference = np.asarray(model(x, training=training))
        np.testing.assert_allclose(converted(x, training=training), reference, atol=1e-5, rtol=1e-5)


def test_convert_to_group_norm_carries_gamma_beta_and_shared_arguments():
    model = _nested_model()
    snapshot = _snapshot(model)
    converted = keras_norms.convert_norms(model, "group", groups=4)
    _assert_unchanged(model, snapshot)
    for old, new in zip(_layers(model), _layers(converted), strict=True):
        if is_batch_norm(old):
            assert isinstance(new, keras_norms.GroupNormalization) and new.groups == 4
            assert (new.name, new.epsilon) == (old.name, old.epsilon)
            np.testing.assert_array_equal(new.gamma.numpy(), old.gamma.numpy())
            np.testing.assert_array_equal(new.beta.numpy(), old.beta.numpy())
        else:  # the preprocessing Normalization among them: untouched
            assert type(new) is type(old)
            for a, b in zip(old.weights, new.weights, strict=True):
                np.testing.assert_array_equal(b.numpy(), a.numpy())
    # The converted model normalizes per example: an example's output does not depend on the others.
    x = _images((3, 6, 6, 3))
    np.testing.assert_allclose(converted(x[:1], training=True), converted(x, training=True)[:1], atol=1e-5)


@pytest.mark.parametrize("to", ["group", "layer", keras_norms.GroupNormalization])
def test_center_and_scale_carry_to_norms_that_take_them_through_kwargs(to):
    model = keras.Sequential([keras.Input((6, 6, 8)), keras.layers.Conv2D(8, 3),
                              keras.layers.BatchNormalization(center=False, scale=False, epsilon=1e-4)])
    groups = 1 if to == "layer" else 4
    converted = keras_norms.convert_norms(model, to, **({} if to == "layer" else {"groups": groups}))
    new = converted.layers[-1]
    assert (new.center, new.scale, new.epsilon) == (False, False, 1e-4) and new.weights == []
    x = np.random.default_rng(0).normal(size=(2, 6, 6, 8)).astype("float32")
    h = keras.ops.convert_to_numpy(converted.layers[0](x)).astype("float64")
    # float64 reference without gamma and beta: layer norm over the channel axis (the batch norm's
    # axis, carried), group norm over each group of channels and the spatial axes.
    axes = (-1,) if to == "layer" else (1, 2, 4)
    grouped = h.reshape(2, 4, 4, groups, 8 // groups)
    mean, var = grouped.mean(axis=axes, keepdims=True), grouped.var(axis=axes, keepdims=True)
    expected = ((grouped - mean) / np.sqrt(var + 1e-4)).reshape(h.shape)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(converted(x)), expected, atol=1e-5)


@pytest.mark.parametrize("name", keras_norms.names())
def test_conversion_to_every_registry_name_builds_and_runs(name):
    model = _nested_model()
    kwargs = {"groups": 2} if name == "group" else {}
    # DyT and Derf replace layer and RMS norms by default: ask for the batch norms.
    match = is_batch_norm if keras_norms.describe(name).elementwise else None
    converted = keras_norms.convert_norms(model, name, match=match, **kwargs)
    kinds = {type(layer) for layer in _layers(converted)}
    assert not any(is_batch_norm(layer) for layer in _layers(converted)) or name == "batch"
    assert type(keras_norms.get(name, **kwargs)) in kinds
    assert np.all(np.isfinite(converted(_images((2, 6, 6, 3)), training=True)))


def test_match_selects_the_layers_and_a_factory_makes_them():
    model = _nested_model()
    made = []

    def factory(name, epsilon, **kwargs):
        # A factory receives the replaced layer's arguments it names (and the base ones with **kwargs).
        made.append(epsilon)
        return keras_norms.LayerNormalization(name=name, epsilon=epsilon, **kwargs)

    converted = keras_norms.convert_norms(model, factory, match=lambda layer: layer.name == "inner_bn")
    kinds = {layer.name: type(layer).__name__ for layer in _layers(converted)}
    assert kinds["inner_bn"] == "LayerNormalization" and kinds["bn"] == "BatchNormalization"
    assert made == [1e-4]


def test_a_preprocessing_normalization_is_never_replaced_even_when_matched():
    model = _nested_model()
    converted = keras_norms.convert_norms(
        model, "layer", match=lambda layer: isinstance(layer, (keras.layers.Normalization,
                                                               keras.layers.BatchNormalization)))
    kinds = [type(layer).__name__ for layer in _layers(converted)]
    assert kinds.count("Normalization") == 1 and kinds.count("LayerNormalization") == 2


@pytest.mark.parametrize(
    ("to", "error", "match"),
    [
        ("dense", ValueError, "to='dense'"),
        (keras.layers.Dense, ValueError, "to=<class"),
        (keras_norms.GroupNormalization(groups=2), ValueError, "to=<GroupNormalization"),
        (3, ValueError, "to=3"),
    ],
    ids=["unknown-name", "not-a-norm-class", "an-instance", "a-number"],
)
def test_to_that_is_not_a_norm_names_it(to, error, match):
    model = _nested_model()
    snapshot = _snapshot(model)
    with pytest.raises(error, match=re.escape(match)):
        keras_norms.convert_norms(model, to)
    _assert_unchanged(model, snapshot)


def test_bad_models_and_match_name_the_argument():
    with pytest.raises(ValueError, match=r"model='unbuilt'.*built=False"):
        keras_norms.convert_norms(keras.Sequential([keras.layers.Dense(2)], name="unbuilt"), "group")
    with pytest.raises(TypeError, match="model="):
        keras_norms.convert_norms(keras.layers.Dense(2), "group")
    with pytest.raises(TypeError, match="match=3"):
        keras_norms.convert_norms(_nested_model(), "group", match=3)


def test_a_match_that_replaces_a_convolution_says_what_no_longer_fits():
    model = _nested_model()
    snapshot = _snapshot(model)
    with pytest.raises(ValueError, match=r"(?s)after replacing \['conv'\]: .*check `match`"):
        keras_norms.convert_norms(model, "layer", match=lambda layer: layer.name == "conv")
    _assert_unchanged(model, snapshot)


def test_a_failed_conversion_leaves_the_model_untouched():
    model = _nested_model()
    snapshot = _snapshot(model)
    with pytest.raises(ValueError, match="groups=5"):
        keras_norms.convert_norms(model, "group", groups=5)  # 5 does not divide 8 channels
    _assert_unchanged(model, snapshot)
    # A norm that cannot even be constructed is named too.
    with pytest.raises(ValueError, match=r"after replacing \['\w+'\]: .*groups=0\. Replace"):
        keras_norms.convert_norms(model, "group", groups=0)
    _assert_unchanged(model, snapshot)
    x = _images((2, 6, 6, 3))
    np.testing.assert_array_equal(model(x), model(x))


# ----------------------------------------------------------------------------- keras.applications


def _application(name, **kwargs):
    builder = getattr(keras.applications, name)
    return builder(weights=None, input_shape=(32, 32, 3), classes=10, **kwargs)


def _check_tflite(model, x):
    content = convert_builtin_only(model, {"x": x})
    (outputs,), max_rank, ops = run_litert(content, {"x": x})
    assert max_rank <= 4, max_rank
    assert not any(op.startswith("FLEX") for op in ops), ops
    np.testing.assert_allclose(outputs, model(x, training=False), atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "to", "kwargs", "export"), [
    ("ResNet50", "group", {}, False), ("MobileNetV2", "layer", {"alpha": 0.35}, True)])
def test_applications_converted_train_and_export(name, to, kwargs, export):
    model = _application(name, **kwargs)
    converted = keras_norms.convert_norms(model, to)
    layers = _layers(converted)
    assert not any(is_batch_norm(layer) for layer in layers)
    assert any(isinstance(layer, keras_norms.get(to).__class__) for layer in layers)
    for old, new in zip(_layers(model), layers, strict=True):
        if isinstance(old, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)):
            for a, b in zip(old.weights, new.weights, strict=True):
                np.testing.assert_array_equal(b.numpy(), a.numpy(), err_msg=old.name)
    converted.compile(optimizer=keras.optimizers.SGD(1e-3), loss="sparse_categorical_crossentropy")
    x = _images((2, 32, 32, 3))
    loss = converted.train_on_batch(x, np.array([1, 7]))
    assert np.isfinite(loss)
    if export:  # ResNet50's 25M weights make its TFLite file slow to write; the exporter's path is the same
        _check_tflite(converted, x[:1])


def test_efficientnet_batch_norms_become_ours_with_the_same_outputs():
    model = _application("EfficientNetB0")
    normalization = [layer for layer in model.layers if type(layer) is keras.layers.Normalization]
    assert normalization, "EfficientNet starts with a preprocessing Normalization"
    converted = keras_norms.convert_norms(model, "batch")
    assert all(isinstance(layer, keras_norms.BatchNormalization) for layer in _layers(converted)
               if is_batch_norm(layer))
    assert [type(layer) for layer in converted.layers].count(keras.layers.Normalization) == len(normalization)
    x = _images((2, 32, 32, 3))
    np.testing.assert_allclose(converted(x, training=False), model(x, training=False), atol=1e-5)


# ----------------------------------------------------------------------------- freeze, synchronize


def test_frozen_resnet_fine_tunes_at_batch_size_2_with_fixed_statistics():
    model = _application("ResNet50")
    _randomize(model, seed=3)
    x = _images((8, 32, 32, 3), seed=4)
    frozen = keras_norms.freeze_batch_norms(model)
    np.testing.assert_allclose(frozen(x[:2], training=False), model(x[:2], training=False), atol=1e-5)
    norms = [layer for layer in _layers(frozen) if is_batch_norm(layer)]
    assert norms and all(isinstance(n, keras_norms.BatchNormalization) and n.freeze_statistics for n in norms)
    before = {id(n): [w.numpy().copy() for w in n.weights] for n in norms}
    frozen.compile(optimizer=keras.optimizers.SGD(1e-2), loss="sparse_categorical_crossentropy")
    frozen.fit(x, np.arange(8) % 10, batch_size=2, epochs=1, verbose=0)
    for norm in norms:
        gamma, beta, mean, variance = before[id(norm)]
        np.testing.assert_array_equal(norm.moving_mean.numpy(), mean)
        np.testing.assert_array_equal(norm.moving_variance.numpy(), variance)
    assert any(not np.array_equal(n.gamma.numpy(), before[id(n)][0]) for n in norms)
    assert any(not np.array_equal(n.beta.numpy(), before[id(n)][1]) for n in norms)

    unfrozen = keras_norms.unfreeze_batch_norms(frozen)
    norm = next(n for n in _layers(unfrozen) if is_batch_norm(n))
    assert not norm.freeze_statistics
    previous = norm.moving_mean.numpy().copy()
    unfrozen(x[:2], training=True)
    assert not np.array_equal(norm.moving_mean.numpy(), previous)


def test_freeze_and_synchronize_reach_conditional_batch_norm_and_spade():
    image = keras.Input((4, 4, 3))
    label = keras.Input((), dtype="int32")
    segmentation = keras.Input((8, 8, 2))
    x = keras_norms.ConditionalBatchNormalization(num_classes=2, name="cbn")(image, label)
    x = keras_norms.SPADE(hidden_channels=4, name="spade")(x, segmentation)
    model = keras.Model([image, label, segmentation], keras.layers.BatchNormalization(name="bn")(x))
    frozen = keras_norms.freeze_batch_norms(model)
    assert all(frozen.get_layer(name).freeze_statistics for name in ("cbn", "spade", "bn"))
    assert frozen.get_layer("spade").normalization.freeze_statistics
    synced = keras_norms.synchronize_batch_norms(model)
    assert all(synced.get_layer(name).synchronized for name in ("cbn", "spade", "bn"))
    assert isinstance(synced.get_layer("bn"), keras_norms.BatchNormalization)
    assert not any(model.get_layer(name).synchronized for name in ("cbn", "spade", "bn"))


@pytest.mark.parametrize("to", ["dyt", "derf"])
def test_layer_and_rms_norms_become_norm_free_and_come_back_with_gamma_and_beta(to):
    """A transformer-style model: Keras' layer norm and our RMS norm become DyT (Derf) by default,
    carrying gamma and beta, computing the new layer's float64 formula; `to="layer"` goes back."""
    rng = np.random.default_rng(0)
    inputs = keras.Input((5, 8))
    hidden = keras.layers.Dense(8, name="dense")(inputs)
    hidden = keras.layers.LayerNormalization(name="ln")(hidden)
    outputs = keras_norms.RMSNormalization(name="rms")(keras.layers.Dense(8, name="dense2")(hidden))
    model = keras.Model(inputs, outputs)
    for weight in model.weights:
        weight.assign(rng.normal(1.0, 0.5, weight.shape).astype("float32"))
    converted = keras_norms.convert_norms(model, to)
    cls = keras_norms.DynamicTanh if to == "dyt" else keras_norms.DynamicErf
    ln, rms = converted.get_layer("ln"), converted.get_layer("rms")
    assert type(ln) is cls and type(rms) is cls
    np.testing.assert_array_equal(ln.gamma.numpy(), model.get_layer("ln").gamma.numpy())
    np.testing.assert_array_equal(ln.beta.numpy(), model.get_layer("ln").beta.numpy())
    np.testing.assert_array_equal(rms.gamma.numpy(), model.get_layer("rms").gamma.numpy())
    np.testing.assert_array_equal(rms.beta.numpy(), np.zeros(8, "float32"))  # RMS norm has no beta

    x = rng.normal(size=(3, 5, 8)).astype("float32")
    dense = model.get_layer("dense")
    h = x.astype(np.float64) @ dense.kernel.numpy() + dense.bias.numpy()
    if to == "dyt":
        h = references.dynamic_tanh(h, 0.5, ln.gamma.numpy(), ln.beta.numpy())
    else:
        h = references.dynamic_erf(h, 0.5, 0.0, ln.gamma.numpy(), ln.beta.numpy())
    dense2 = model.get_layer("dense2")
    h = h @ dense2.kernel.numpy() + dense2.bias.numpy()
    expected = (references.dynamic_tanh(h, 0.5, rms.gamma.numpy()) if to == "dyt"
                else references.dynamic_erf(h, 0.5, 0.0, rms.gamma.numpy()))
    np.testing.assert_allclose(np.asarray(converted(x)), expected, rtol=1e-5, atol=1e-5)

    back = keras_norms.convert_norms(converted, "layer")
    assert type(back.get_layer("ln")) is keras_norms.LayerNormalization
    np.testing.assert_array_equal(back.get_layer("ln").beta.numpy(), model.get_layer("ln").beta.numpy())
    back_rms = keras_norms.convert_norms(converted, "rms")
    assert type(back_rms.get_layer("rms")) is keras_norms.RMSNormalization
    np.testing.assert_array_equal(back_rms.get_layer("rms").gamma.numpy(),
                                  model.get_layer("rms").gamma.numpy())
