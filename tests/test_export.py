"""keras_norms.export: batch-norm folding, SavedModel/TFLite export, manifest, atomicity, CLI.

References are independent of the exporter: folded weights against the NumPy
formula, exported outputs against the Keras model run here, checksums with
hashlib, ops read from the LiteRT interpreter here.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import re
from collections import Counter

import keras
import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter, OpResolverType
from keras_norms.export import (
    ChannelAffine,
    ExportError,
    ParityError,
    UnsupportedOpError,
    export_model,
    fold_batch_norms,
)
from keras_norms.export import _api as export_api
from keras_norms.export import verify as export_verify
from keras_norms.export.calibration import fit_images, load_npz

import keras_norms
from keras_norms import cli

BN_CLASSES = {"ours": keras_norms.BatchNormalization, "keras": keras.layers.BatchNormalization}
# Arithmetic a batch norm in inference leaves in a graph when it is not folded away.
BN_ARITHMETIC = {"RSQRT", "SQRT", "SUB", "DIV"}


def randomize(model, seed=0):
    """Realistic, non-trivial weights: a folding mistake in any of them shows in the outputs."""
    rng = np.random.default_rng(seed)
    for layer in model._flatten_layers(include_self=False):
        for weight in layer.weights:
            if "variance" in weight.name:
                value = rng.uniform(0.5, 2.0, weight.shape)
            elif "gamma" in weight.name:
                value = rng.uniform(0.5, 1.5, weight.shape)
            elif "kernel" in weight.name:
                value = rng.normal(0.0, 1.0 / np.sqrt(np.prod(weight.shape[:-1])), weight.shape)
            else:
                value = rng.normal(0.0, 0.3, weight.shape)
            weight.assign(value.astype("float32"))
    return model


def ops_of(path) -> list[str]:
    interpreter = Interpreter(
        model_path=str(path), experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    )
    return [op["op_name"] for op in interpreter._get_ops_details()]


def run_litert(path, inputs: dict) -> dict:
    """Runs a float `.tflite` file one example at a time (static batch 1), by signature name."""
    runner = Interpreter(model_path=str(path)).get_signature_runner("serving_default")
    count = len(next(iter(inputs.values())))
    results = [runner(**{k: v[i:i + 1] for k, v in inputs.items()}) for i in range(count)]
    return {name: np.concatenate([r[name] for r in results]) for name in results[0]}


def bn_affine(bn):
    """Inference-mode batch norm as x * scale + shift, in float64 NumPy."""
    gamma = bn.gamma.numpy() if bn.scale else 1.0
    beta = bn.beta.numpy() if bn.center else 0.0
    scale = gamma / np.sqrt(bn.moving_variance.numpy().astype(np.float64) + bn.epsilon)
    return scale, beta - bn.moving_mean.numpy() * scale


# ---------------------------------------------------------------------------------------------
# fold_batch_norms (Keras level: no conversion)

FOLDABLE = {
    "conv1d": (lambda: keras.layers.Conv1D(6, 3), (10, 4)),
    "conv2d-nobias": (lambda: keras.layers.Conv2D(6, 3, use_bias=False), (8, 8, 4)),
    "conv3d": (lambda: keras.layers.Conv3D(6, 2), (4, 4, 4, 3)),
    "depthwise": (lambda: keras.layers.DepthwiseConv2D(3, depth_multiplier=2), (8, 8, 4)),
    "dense": (lambda: keras.layers.Dense(6), (5,)),
    "dense-seq": (lambda: keras.layers.Dense(6, use_bias=False), (7, 5)),
}


@pytest.mark.parametrize("bn", list(BN_CLASSES))
@pytest.mark.parametrize("kind", list(FOLDABLE))
def test_fold_into_preceding_layer_matches_numpy_and_keras(kind, bn):
    factory, shape = FOLDABLE[kind]
    model = randomize(keras.Sequential([keras.Input(shape), factory(), BN_CLASSES[bn](epsilon=1e-2)]))
    layer, norm = model.layers
    kernel = layer.kernel.numpy().astype(np.float64)
    bias = layer.bias.numpy() if layer.use_bias else 0.0
    records = []
    folded = fold_batch_norms(model, records=records)

    assert [type(x).__name__ for x in folded.layers] == [type(layer).__name__, "Identity"]
    assert [(r.batch_norm, r.folded_into) for r in records] == [(norm.name, layer.name)]
    scale, shift = bn_affine(norm)
    factor = scale.reshape(kernel.shape[-2:]) if kind == "depthwise" else scale
    np.testing.assert_allclose(folded.layers[0].kernel.numpy(), kernel * factor, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(folded.layers[0].bias.numpy(), bias * scale + shift, rtol=1e-6, atol=1e-6)
    x = np.random.default_rng(1).normal(size=(3, *shape)).astype("float32")
    expected = model(x, training=False).numpy()
    np.testing.assert_allclose(folded(x).numpy(), expected, rtol=0, atol=1e-5)
    # The original model is untouched.
    assert type(model.layers[1]) is BN_CLASSES[bn] and model.layers[0].kernel.numpy() == pytest.approx(kernel)


def _unfoldable_models():
    image = keras.Input((6, 6, 3))
    conv = keras.layers.Conv2D(4, 3, padding="same")(image)
    two_consumers = keras.Model(image, keras.layers.Add()([conv, keras_norms.BatchNormalization()(conv)]))
    sequence = keras.Input((7, 5))
    return {
        "at-the-input": keras.Sequential([keras.Input((6, 6, 3)), keras.layers.BatchNormalization()]),
        "after-activation": keras.Sequential([
            keras.Input((6, 6, 3)), keras.layers.Conv2D(4, 3, activation="relu"),
            keras_norms.BatchNormalization(),
        ]),
        "conv-output-used-twice": two_consumers,
        "not-the-channel-axis": keras.Model(
            sequence, keras_norms.BatchNormalization(axis=1)(keras.layers.Dense(4)(sequence))),
        "channels-first": keras.Sequential([keras.Input((4, 5, 5)), keras_norms.BatchNormalization(axis=1)]),
    }


@pytest.mark.parametrize("kind", list(_unfoldable_models()))
def test_other_batch_norms_become_one_multiply_add(kind):
    model = randomize(_unfoldable_models()[kind])
    norm = next(x for x in model.layers if isinstance(x, BN_CLASSES["ours"] | BN_CLASSES["keras"]))
    records = []
    folded = fold_batch_norms(model, records=records)
    affine = folded.get_layer(norm.name)
    assert isinstance(affine, ChannelAffine) and not affine.trainable_weights
    assert [(r.batch_norm, r.folded_into) for r in records] == [(norm.name, None)]
    scale, shift = bn_affine(norm)
    np.testing.assert_allclose(affine.scale.numpy(), scale, rtol=1e-6)
    np.testing.assert_allclose(affine.shift.numpy(), shift, rtol=1e-6, atol=1e-7)
    x = np.random.default_rng(1).normal(size=(3, *model.inputs[0].shape[1:])).astype("float32")
    np.testing.assert_allclose(folded(x).numpy(), model(x, training=False).numpy(), rtol=0, atol=1e-5)


def test_batch_norm_called_in_training_mode_is_left_alone_and_nested_models_are_folded():
    inner = keras.Sequential([
        keras.Input((6, 6, 4)), keras.layers.Conv2D(4, 1), keras.layers.BatchNormalization(),
    ])
    image = keras.Input((6, 6, 3))
    forced = keras_norms.BatchNormalization(name="forced")(keras.layers.Conv2D(4, 3, padding="same")(image),
                                                           training=True)
    model = randomize(keras.Model(image, inner(forced)))
    folded = fold_batch_norms(model)
    assert type(folded.get_layer("forced")) is keras_norms.BatchNormalization
    assert [type(x).__name__ for x in folded.layers[-1].layers] == ["Conv2D", "Identity"]
    x = np.random.default_rng(2).normal(size=(4, 6, 6, 3)).astype("float32")
    # training=False as in the exported signature (with training=None, Keras lets the forced
    # training=True leak into the layers called after it).
    expected = model(x, training=False).numpy()
    np.testing.assert_allclose(folded(x, training=False).numpy(), expected, rtol=0, atol=1e-5)


def test_fold_refuses_a_subclassed_model():
    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(2)

        def call(self, x):
            return self.dense(x)

    model = Subclassed()
    model(np.zeros((1, 3), "float32"))
    with pytest.raises(ValueError, match="Sequential or functional"):
        fold_batch_norms(model)


# ---------------------------------------------------------------------------------------------
# Converted graphs: no batch-norm arithmetic left


def _sequential_cnn(with_bn: bool):
    bn = [keras_norms.BatchNormalization()] if with_bn else []
    return keras.Sequential([
        keras.Input((8, 8, 3)), keras.layers.Conv2D(8, 3, padding="same"), *bn, keras.layers.ReLU(),
        keras.layers.Conv2D(8, 3, use_bias=False), *[keras_norms.BatchNormalization()] * with_bn,
        keras.layers.ReLU(), keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(4),
    ])


def _functional_cnn(with_bn: bool):
    def maybe_bn(cls, x):
        return cls()(x) if with_bn else x

    image = keras.Input((8, 8, 3), name="image")
    x = maybe_bn(keras.layers.BatchNormalization, image)  # not after a conv: one multiply-add
    x = maybe_bn(keras.layers.BatchNormalization, keras.layers.Conv2D(8, 3)(x))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.ReLU()(x))
    x = maybe_bn(keras_norms.BatchNormalization, keras.layers.Dense(4, use_bias=False)(x))
    return keras.Model(image, x)


@pytest.mark.parametrize("build", [_sequential_cnn, _functional_cnn], ids=["sequential", "functional"])
def test_exported_graph_has_no_batch_norm_arithmetic(build, tmp_path):
    with_bn = randomize(build(True))
    result = export_model(with_bn, tmp_path / "bn", formats=("tflite",))
    without = export_model(randomize(build(False)), tmp_path / "plain", formats=("tflite",), verify=False)
    ops, plain_ops = ops_of(result.paths["model.tflite"]), ops_of(without.paths["model.tflite"])
    assert ops == result.ops["model.tflite"]
    assert not BN_ARITHMETIC & set(ops), ops
    extra = Counter(ops) - Counter(plain_ops)
    if build is _sequential_cnn:
        assert ops == plain_ops  # both batch norms folded into their convs
    else:
        assert extra == Counter({"MUL": 1, "ADD": 1}), (ops, plain_ops)  # the one at the input
        assert sorted((r.batch_norm, r.folded_into is None) for r in result.batch_norms)[0][1] is True
    assert result.parity["model.tflite"]["max_abs_error"] <= 1e-5
    x = np.random.default_rng(3).uniform(-1, 3, (5, 8, 8, 3)).astype("float32")
    name = with_bn.inputs[0]._keras_history.operation.name
    (litert,) = run_litert(result.paths["model.tflite"], {name: x}).values()
    np.testing.assert_allclose(litert, with_bn(x, training=False).numpy(), rtol=0, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# One export with every artefact, shared by the manifest/quantization tests


def _classifier():
    image = keras.Input((8, 8, 3), name="image")
    x = keras.layers.Conv2D(16, 3, padding="same", use_bias=False)(image)
    x = keras.layers.ReLU()(keras_norms.BatchNormalization()(x))
    x = keras.layers.ReLU()(keras_norms.GroupNormalization(groups=4)(x))
    x = keras.layers.Flatten()(keras.layers.MaxPooling2D(2)(x))
    x = keras.layers.Dense(32)(x)  # 8192 weights: large enough for dynamic-range quantization
    return keras.Model(image, keras.layers.Dense(5, name="logits")(x))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = randomize(_classifier())
    rng = np.random.default_rng(4)
    representative = rng.uniform(0, 1, (64, 8, 8, 3)).astype("float32")
    x_eval = rng.uniform(0, 1, (40, 8, 8, 3)).astype("float32")
    y_eval = rng.integers(0, 5, 40)
    directory = tmp_path_factory.mktemp("exported") / "out"
    result = export_model(model, directory, quantize=("float16", "dynamic", "int8"),
                          representative_data=representative, eval_data=(x_eval, y_eval))
    return model, result, representative, (x_eval, y_eval)


def test_export_writes_every_artefact(exported):
    _, result, _, _ = exported
    names = sorted(p.name for p in result.directory.iterdir())
    assert names == sorted(["saved_model", "model.tflite", "model_float16.tflite", "model_dynamic.tflite",
                            "model_int8.tflite", "manifest.json"])
    assert sorted(result.paths) == names
    assert not [p for p in result.directory.parent.iterdir() if p.name.startswith(".")]  # no temp dirs
    table = result.table().splitlines()
    assert table[0].split()[:4] == ["file", "size", "ops", "max"]
    assert {line.split()[0] for line in table[1:]} == {"saved_model/", *names} - {"saved_model"}


def test_manifest_checksums_versions_and_signature(exported):
    model, result, _, _ = exported
    manifest = json.loads((result.directory / "manifest.json").read_text())
    assert manifest == json.loads(json.dumps(result.manifest))
    on_disk = {p.relative_to(result.directory).as_posix(): p for p in result.directory.rglob("*")
               if p.is_file() and p.name != "manifest.json"}
    assert set(manifest["files"]) == set(on_disk)
    assert any(name.startswith("saved_model/") for name in on_disk)
    for name, path in on_disk.items():
        assert manifest["files"][name]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest(), name
        assert manifest["files"][name]["bytes"] == path.stat().st_size
    assert manifest["versions"]["tensorflow"] == tf.__version__
    assert manifest["versions"]["keras"] == keras.__version__
    assert manifest["versions"]["keras_norms"] == keras_norms.__version__
    assert manifest["versions"]["ai_edge_litert"] == importlib.metadata.version("ai-edge-litert")
    assert manifest["model"]["inputs"] == [{"name": "image", "shape": [1, 8, 8, 3], "dtype": "float32"}]
    assert manifest["model"]["outputs"] == [{"name": "logits", "shape": [1, 5], "dtype": "float32"}]
    for name in ("model.tflite", "model_int8.tflite"):
        assert manifest["tflite"][name]["ops"] == ops_of(result.paths[name]) == result.ops[name]
        assert manifest["tflite"][name]["max_tensor_rank"] == 4
    folded = {"batch_norm": model.layers[2].name, "folded_into": model.layers[1].name}
    assert manifest["batch_norms"] == [folded]


def test_float_artefacts_match_keras(exported):
    model, result, representative, _ = exported
    expected = model(representative, training=False).numpy()
    (litert,) = run_litert(result.paths["model.tflite"], {"image": representative}).values()
    np.testing.assert_allclose(litert, expected, rtol=0, atol=1e-5)
    signature = tf.saved_model.load(str(result.paths["saved_model"])).signatures["serving_default"]
    assert set(signature.structured_input_signature[1]) == {"image"}
    saved = np.concatenate([signature(image=tf.constant(x[None]))["logits"].numpy() for x in representative])
    np.testing.assert_allclose(saved, expected, rtol=0, atol=1e-5)
    for name in ("saved_model", "model.tflite"):
        parity = result.parity[name]
        assert parity["max_abs_error"] <= 1e-5
        assert set(parity["by_data"]) == {"random", "representative", "eval"}
        assert parity["by_data"]["representative"]["examples"] == 64


def test_quantized_variants_are_produced_and_reported(exported):
    model, result, representative, (x_eval, y_eval) = exported
    int8 = Interpreter(model_path=str(result.paths["model_int8.tflite"]))
    assert int8.get_input_details()[0]["dtype"] == np.int8
    assert int8.get_output_details()[0]["dtype"] == np.int8
    tensor_types = {
        name: {np.dtype(t["dtype"]).name for t in Interpreter(model_path=str(result.paths[name]))
               .get_tensor_details()}
        for name in ("model_float16.tflite", "model_dynamic.tflite")
    }
    assert "float16" in tensor_types["model_float16.tflite"]
    assert "int8" in tensor_types["model_dynamic.tflite"]
    keras_accuracy = float(np.mean(np.argmax(model(x_eval).numpy(), -1) == y_eval))
    expected = model(representative).numpy()
    for name in ("model_float16.tflite", "model_dynamic.tflite", "model_int8.tflite"):
        parity = result.parity[name]
        assert parity["accuracy"]["keras"] == pytest.approx(keras_accuracy)
        assert parity["accuracy"]["change"] == pytest.approx(parity["accuracy"]["exported"] - keras_accuracy)
        # Random inputs lie outside the calibrated ranges: judge the error on typical inputs.
        error = parity["by_data"]["representative"]["max_abs_error"]
        assert 0 < error < 0.2 * np.abs(expected).max(), (name, error)
        assert parity["max_abs_error"] >= error
    errors = {name: p["by_data"]["representative"]["max_abs_error"] for name, p in result.parity.items()}
    assert errors["model_float16.tflite"] < errors["model_int8.tflite"]
    assert result.manifest["parity"] == result.parity


# ---------------------------------------------------------------------------------------------
# Named inputs, batch sizes


def test_multi_input_model_exports_with_named_inputs(tmp_path):
    image = keras.Input((8, 8, 3), name="image")
    condition = keras.Input((4,), name="condition")
    features = keras.layers.GlobalAveragePooling2D()(
        keras_norms.InstanceNormalization()(keras.layers.Conv2D(6, 3)(image)))
    gate = keras.layers.Dense(6, activation="sigmoid")(condition)
    model = randomize(keras.Model([image, condition], keras.layers.Multiply()([features, gate])))
    rng = np.random.default_rng(5)
    data = {"image": rng.normal(size=(5, 8, 8, 3)).astype("float32"),
            "condition": rng.normal(size=(5, 4)).astype("float32")}
    result = export_model(model, tmp_path / "out", batch_size=2, representative_data=data)
    assert [i["name"] for i in result.manifest["model"]["inputs"]] == ["image", "condition"]
    assert result.manifest["model"]["inputs"][1]["shape"] == [2, 4]
    runner = Interpreter(model_path=str(result.paths["model.tflite"])).get_signature_runner()
    assert set(runner.get_input_details()) == {"image", "condition"}
    expected = model([data["image"], data["condition"]]).numpy()
    litert = np.concatenate([
        next(iter(runner(image=data["image"][i:i + 2], condition=data["condition"][i:i + 2]).values()))
        for i in (0, 2)
    ])
    np.testing.assert_allclose(litert, expected[:4], rtol=0, atol=1e-5)
    assert result.parity["model.tflite"]["by_data"]["representative"]["examples"] == 5  # padded to 6


def test_dynamic_batch(tmp_path):
    model = randomize(keras.Sequential([keras.Input((6, 6, 4)), keras_norms.GroupNormalization(groups=2),
                                        keras.layers.Conv2D(3, 3)]))
    result = export_model(model, tmp_path / "out", batch_size=None, formats=("tflite",))
    assert result.manifest["model"]["inputs"][0]["shape"] == [None, 6, 6, 4]
    interpreter = Interpreter(model_path=str(result.paths["model.tflite"]))
    assert list(interpreter.get_input_details()[0]["shape_signature"]) == [-1, 6, 6, 4]
    runner = interpreter.get_signature_runner()
    (name,) = runner.get_input_details()
    for batch in (3, 5):
        x = np.random.default_rng(batch).normal(size=(batch, 6, 6, 4)).astype("float32")
        (litert,) = runner(**{name: x}).values()
        np.testing.assert_allclose(litert, model(x).numpy(), rtol=0, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# Atomicity and refusals


def _tiny():
    layers = [keras.Input((4,)), keras.layers.Dense(3), keras_norms.BatchNormalization()]
    return randomize(keras.Sequential(layers))


@keras.saving.register_keras_serializable(package="keras_norms_tests")
class Bessel(keras.layers.Layer):
    """An op with no TFLite built-in (it would need Flex)."""

    def call(self, x):
        return tf.math.bessel_i0(x)


def test_unconvertible_op_fails_naming_op_and_layer_and_leaves_nothing(tmp_path):
    inputs = keras.Input((4,))
    hidden = Bessel(name="odd_bessel")(keras.layers.Dense(4)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(2)(hidden))
    with pytest.raises(UnsupportedOpError, match="BesselI0.*'odd_bessel'") as caught:
        export_model(model, tmp_path / "exports" / "out")
    assert caught.value.ops == ["BesselI0"] and caught.value.layers == ["odd_bessel"]
    assert "Flex" in str(caught.value) and list(tmp_path.iterdir()) == []  # parents created are gone too


@keras.saving.register_keras_serializable(package="keras_norms_tests")
class FiveDimensionalGroupNorm(keras.layers.Layer):
    """Group norm the naive way: the image viewed as (N, H, W, groups, C // groups), rank 5."""

    def call(self, x):
        grouped = tf.reshape(x, (-1, *x.shape[1:3], 2, x.shape[-1] // 2))
        mean, variance = tf.nn.moments(grouped, axes=[1, 2, 4], keepdims=True)
        return tf.reshape((grouped - mean) * tf.math.rsqrt(variance + 1e-3), tf.shape(x))


def test_rank_growth_fails_and_conv1d_rank_4_views_pass(tmp_path):
    image = keras.Input((6, 6, 4))
    model = keras.Model(image, FiveDimensionalGroupNorm(name="naive_gn")(keras.layers.Conv2D(4, 1)(image)))
    with pytest.raises(ExportError, match="rank above 4") as caught:
        export_model(model, tmp_path / "out")
    assert "[1, 6, 6, 2, 2]" in str(caught.value)
    assert list(tmp_path.iterdir()) == []
    sequence = randomize(keras.Sequential([keras.Input((10, 4)), keras.layers.Conv1D(6, 3),
                                           keras.layers.BatchNormalization()]))
    result = export_model(sequence, tmp_path / "conv1d", formats=("tflite",))
    ops = ops_of(result.paths["model.tflite"])
    assert "CONV_2D" in ops and not BN_ARITHMETIC & set(ops) and "MUL" not in ops
    assert result.manifest["tflite"]["model.tflite"]["max_tensor_rank"] == 4


def test_failing_verification_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(export_api, "FLOAT32_TOLERANCE", -1.0)
    with pytest.raises(ParityError, match="saved_model differs from the Keras model"):
        export_model(_tiny(), tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_interrupted_export_leaves_nothing(tmp_path, monkeypatch):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(export_verify, "run_tflite", interrupt)
    with pytest.raises(KeyboardInterrupt):
        export_model(_tiny(), tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_existing_directory_is_refused_unless_overwrite(tmp_path):
    directory = tmp_path / "out"
    directory.mkdir()
    (directory / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export_model(_tiny(), directory)
    assert [p.name for p in tmp_path.iterdir()] == ["out"] and (directory / "keep.txt").exists()
    result = export_model(_tiny(), directory, formats=("tflite",), overwrite=True)
    assert sorted(p.name for p in directory.iterdir()) == ["manifest.json", "model.tflite"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"] and result.directory == directory


def _subclassed():
    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(2)

        def call(self, x):
            return self.dense(x)

    model = Subclassed()
    model(np.zeros((1, 3), "float32"))
    return model


EARLY_ERRORS = {
    "unbuilt": (lambda: keras.Sequential([keras.layers.Dense(2)]), {}, "is not built"),
    "no-input-shape": (_subclassed, {}, "has no input shape"),
    "undefined-axes": (lambda: keras.Sequential([keras.Input((None, None, 3)), keras.layers.Conv2D(2, 3)]),
                       {}, "undefined axes"),
    "unknown-quantize": (_tiny, {"quantize": "int4"}, "quantize='int4'"),
    "int8-without-data": (_tiny, {"quantize": "int8"}, "representative_data=None"),
    "quantize-without-tflite": (_tiny, {"quantize": "float16", "formats": ("saved_model",)}, "add 'tflite'"),
    "unknown-format": (_tiny, {"formats": ("onnx",)}, "formats=('onnx',)"),
    "format-string": (_tiny, {"formats": "tflite"}, "formats='tflite'"),
    "no-format": (_tiny, {"formats": ()}, "formats=()"),
    "batch-size-0": (_tiny, {"batch_size": 0}, "batch_size=0"),
    "batch-size-float": (_tiny, {"batch_size": 1.5}, "batch_size=1.5"),
    "batch-size-bool": (_tiny, {"batch_size": True}, "batch_size=True"),
    "representative-shape": (_tiny, {"representative_data": np.zeros((3, 5))}, "shape (examples, 4)"),
    "eval-labels": (_tiny, {"eval_data": (np.zeros((3, 4)), np.zeros(2))}, "3 inputs but 2 labels"),
}


@pytest.mark.parametrize("case", list(EARLY_ERRORS))
def test_bad_arguments_raise_value_error_before_any_work(case, tmp_path):
    build, kwargs, match = EARLY_ERRORS[case]
    with pytest.raises(ValueError, match=re.escape(match)):
        export_model(build(), tmp_path / "out", **kwargs)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------
# Calibration data and the CLI


def test_fit_images_resizes_and_replicates_channels(tmp_path):
    rng = np.random.default_rng(6)
    images = rng.uniform(0, 1, (4, 8, 8, 1)).astype("float32")
    np.testing.assert_array_equal(fit_images(images, (8, 8, 1)), images)
    tiled = fit_images(images, (8, 8, 3))
    assert tiled.shape == (4, 8, 8, 3) and all((tiled[..., c] == images[..., 0]).all() for c in range(3))
    np.testing.assert_array_equal(fit_images(images, (64,)), images.reshape(4, 64))
    constant = fit_images(np.full((2, 8, 8, 1), 0.25, "float32"), (12, 12, 2))
    assert constant.shape == (2, 12, 12, 2) and np.allclose(constant, 0.25)
    with pytest.raises(ValueError, match="npz"):
        fit_images(images, (5, 5, 5, 5))
    np.savez(tmp_path / "calib.npz", x=images, y=np.arange(4))
    x, y = load_npz(tmp_path / "calib.npz", ["image"])
    np.testing.assert_array_equal(x, images)
    np.testing.assert_array_equal(y, np.arange(4))
    with pytest.raises(ValueError, match="missing"):
        load_npz(tmp_path / "calib.npz", ["a", "b"])


@pytest.fixture(scope="module")
def saved_classifier(tmp_path_factory):
    model = randomize(keras.Sequential([
        keras.Input((12, 12, 3)), keras.layers.Conv2D(8, 3, use_bias=False), keras_norms.BatchNormalization(),
        keras.layers.ReLU(), keras_norms.InstanceNormalization(), keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(10),
    ]))
    path = tmp_path_factory.mktemp("cli") / "model.keras"
    model.save(path)
    return path


def test_cli_exports_with_digits_calibration(saved_classifier, tmp_path, capsys):
    out = tmp_path / "out"
    status = cli.main(["export", str(saved_classifier), "--out", str(out), "--quantize", "int8",
                       "--calibration", "digits"])
    printed = capsys.readouterr().out.splitlines()
    assert status == 0, printed
    rows = {line.split()[0]: line.split() for line in printed if line.split()}
    assert {"saved_model/", "model.tflite", "model_int8.tflite", "manifest.json"} <= set(rows)
    assert rows["model.tflite"][3] == str(len(ops_of(out / "model.tflite")))  # op count column
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["parity"]["model.tflite"]["max_abs_error"] <= 1e-5
    assert manifest["parity"]["model_int8.tflite"]["by_data"]["representative"]["examples"] == 256
    assert "accuracy" in manifest["parity"]["model_int8.tflite"]  # 10 outputs: the digits test split
    assert Interpreter(model_path=str(out / "model_int8.tflite")).get_input_details()[0]["dtype"] == np.int8


@pytest.mark.parametrize("arguments, message", [
    (["missing.keras"], "not found"),
    (["{model}", "--quantize", "int8"], "needs --calibration"),
    (["{model}", "--calibration", "nowhere.npz"], "existing .npz file"),
    (["{model}", "--out", "{existing}"], "already exists; pass --overwrite"),
])
def test_cli_errors_are_one_line_with_status_2(arguments, message, saved_classifier, tmp_path, capsys):
    existing = tmp_path / "existing"
    existing.mkdir()
    values = {"model": saved_classifier, "existing": existing}
    argv = ["export", *[a.format(**values) for a in arguments]]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "new")]
    assert cli.main(argv) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("keras-norms export: error:") and message in error[0]
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("arguments", [["--quantize", "int4"], ["--batch-size", "0"]])
def test_cli_rejects_bad_options_with_status_2(arguments, saved_classifier, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["export", str(saved_classifier), "--out", str(tmp_path / "out"), *arguments])
    assert exit_info.value.code == 2


# ---------------------------------------------------------------------------------------------
# The end-to-end check: the paper's CNN on the digits


@pytest.mark.slow
def test_digits_cnn_int8_within_two_points_of_float(tmp_path):
    from keras_norms.study.datasets import digits

    data = digits(seed=0)

    def cnn(with_bn):
        def block(filters, norm):
            return [keras.layers.Conv2D(filters, 3, padding="same", use_bias=False),
                    *([norm] if norm is not None else []), keras.layers.ReLU()]

        return keras.Sequential([
            keras.Input((8, 8, 1)),
            *block(16, keras_norms.BatchNormalization(momentum=0.9) if with_bn else None),
            *block(32, keras_norms.GroupNormalization(groups=4)),
            *block(32, keras_norms.InstanceNormalization()),
            keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(10),
        ])

    keras.utils.set_random_seed(0)
    model = cnn(with_bn=True)
    model.compile(keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(data.x_train, data.y_train, batch_size=32, epochs=8, verbose=0)
    result = export_model(model, tmp_path / "out", quantize="int8", representative_data=data.x_train,
                          eval_data=(data.x_test, data.y_test))
    plain = export_model(randomize(cnn(with_bn=False)), tmp_path / "plain", formats=("tflite",), verify=False)

    ops = ops_of(result.paths["model.tflite"])
    assert not [op for op in ops if op.startswith("Flex")]
    assert ops == ops_of(plain.paths["model.tflite"])  # the batch norm left no op behind
    assert [r.folded_into for r in result.batch_norms] == [model.layers[0].name]

    keras_logits = model.predict(data.x_test, verbose=0)
    name = model.inputs[0]._keras_history.operation.name
    (litert,) = run_litert(result.paths["model.tflite"], {name: data.x_test}).values()
    np.testing.assert_allclose(litert, keras_logits, rtol=0, atol=1e-5)

    int8 = Interpreter(model_path=str(result.paths["model_int8.tflite"]))
    int8.allocate_tensors()
    (input_detail,), (output_detail,) = int8.get_input_details(), int8.get_output_details()
    scale, zero_point = input_detail["quantization"]
    predictions = []
    for image in data.x_test:
        int8.set_tensor(input_detail["index"],
                        np.clip(np.round(image[None] / scale + zero_point), -128, 127).astype(np.int8))
        int8.invoke()
        predictions.append(int(np.argmax(int8.get_tensor(output_detail["index"]))))
    float_accuracy = float(np.mean(np.argmax(keras_logits, -1) == data.y_test))
    int8_accuracy = float(np.mean(np.array(predictions) == data.y_test))
    assert float_accuracy > 0.85
    assert int8_accuracy >= float_accuracy - 0.02, (int8_accuracy, float_accuracy)
    reported = result.parity["model_int8.tflite"]["accuracy"]
    assert reported["keras"] == pytest.approx(float_accuracy)
    assert reported["exported"] == pytest.approx(int8_accuracy)
