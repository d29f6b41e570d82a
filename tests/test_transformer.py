"""The transformer classifier: every norm in both placements trains, round-trips and exports to TFLite."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter, OpResolverType
from keras_norms.export import export_model
from keras_norms.models import DEFAULT_INPUT_SHAPES, build_model, model_names
from keras_norms.models.transformer import deepnorm_constants
from sklearn.datasets import load_digits

import keras_norms

#: Small enough that a build, a few graph-mode epochs and a save take a few seconds.
TINY = {"depth": 2, "dim": 16, "heads": 2}
#: Every registry norm except "instance" (the transformer rejects it, see the bad-argument cases).
NORMS = [name for name in keras_norms.names() if name != "instance"] + ["adaln"]
PLACEMENTS = ["pre", "post"]
NORM_CLASSES = {"layer": keras_norms.LayerNormalization, "rms": keras_norms.RMSNormalization,
                "none": keras.layers.Identity, "adaln": keras_norms.AdaptiveLayerNormalization}


def digits(kind: str, count: int = 240):
    """Real data in the three input kinds: 8x8x1 images, 8 rows of 8 features, 64 token ids in 0..16."""
    data = load_digits()
    pixels, labels = data.images[:count], data.target[:count].astype("int32")
    if kind == "image":
        return (pixels / 16.0).astype("float32")[..., None], labels
    if kind == "sequence":
        return (pixels / 16.0).astype("float32"), labels
    return pixels.reshape(count, 64).astype("int32"), labels


SHAPES = {"image": (8, 8, 1), "sequence": (8, 8), "tokens": (64,)}


def build(kind: str, norm: str, placement: str, **options):
    vocabulary = {"vocab_size": 17} if kind == "tokens" else {}
    return build_model("transformer", norm, input_shape=SHAPES[kind], placement=placement,
                       **{**TINY, **vocabulary, **options})


def norm_layers(model, norm: str):
    return [layer for layer in model.layers if isinstance(layer, NORM_CLASSES[norm])]


def test_registered_with_a_default_input_shape():
    assert "transformer" in model_names()
    model = build_model("transformer", "layer")
    assert model.input_shape == (None, *DEFAULT_INPUT_SHAPES["transformer"]) == (None, 32, 32, 3)
    assert model.output_shape == (None, 10)
    assert model.get_layer("patches").output.shape == (None, 16, 64)  # 8x8 patches: a 4x4 grid


@pytest.mark.parametrize(("shape", "tokens"), [((8, 8, 1), 16), ((28, 28, 1), 16), ((30, 20, 3), 24)])
def test_default_patch_size_divides_the_image(shape, tokens):
    model = build_model("transformer", "layer", input_shape=shape, **TINY)
    assert model.get_layer("patches").output.shape == (None, tokens, TINY["dim"])


#: Every norm on images, in pre- and post-norm by turns (where a norm sits in each placement is
#: checked without training, below); the other two input kinds once each.
FIT_CASES = [("image", norm, PLACEMENTS[i % 2])
             for i, norm in enumerate(n for n in NORMS if n not in ("dyt", "derf"))]
FIT_CASES += [("sequence", "layer", "post"), ("tokens", "rms", "pre")]
# The norm-free norms and the other placements, each once.
FIT_CASES += [("image", "dyt", "pre"), ("image", "derf", "post"), ("image", "layer", "peri"),
              ("image", "dyt", "deepnorm")]


@pytest.mark.parametrize(("kind", "norm", "placement"), FIT_CASES, ids=["-".join(c) for c in FIT_CASES])
def test_trains_in_graph_mode_and_round_trips(kind, norm, placement, tmp_path):
    x, y = digits(kind)
    keras.utils.set_random_seed(0)
    model = build(kind, norm, placement, depth=1)
    assert model.input.dtype == ("int32" if kind == "tokens" else "float32")
    model.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    losses = model.fit(x, y, batch_size=60, epochs=4, verbose=0).history["loss"]
    assert not model.run_eagerly
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0], losses

    path = tmp_path / "transformer.keras"
    model.save(path)
    reloaded = keras.models.load_model(path)  # no custom_objects: every layer is registered
    np.testing.assert_array_equal(model(x[:16], training=False), reloaded(x[:16], training=False))


@pytest.mark.parametrize("placement", PLACEMENTS)
@pytest.mark.parametrize("norm", ["layer", "none", "adaln"])
def test_pre_placement_has_one_norm_more_than_post(norm, placement):
    model = build("image", norm, placement, depth=3)
    expected = 2 * 3 + 1 if placement == "pre" else 2 * 3
    assert len(norm_layers(model, norm)) == expected


@pytest.mark.parametrize("placement", PLACEMENTS)
@pytest.mark.parametrize("norm", ["layer", "rms", "adaln"])
def test_norms_sit_on_the_branches_pre_and_on_the_stream_post(norm, placement):
    """With every residual branch silenced (attention and MLP output weights zero), each block is
    ``x + 0``: a pre-norm model must then output ``head(final_norm(x0))``, since no block norm may
    touch the residual stream, and a post-norm model ``head(n_2d(...n_1(x0)))``, every norm in
    turn on the stream. The norms get random per-feature weights, so no two compositions agree."""
    x, _ = digits("image", 8)
    keras.utils.set_random_seed(1)
    model = build("image", norm, placement)
    rng = np.random.default_rng(0)
    norms = norm_layers(model, norm)
    for layer in norms:
        for weight in layer.weights:
            offset = 1.0 if "gamma" in weight.name else 0.0
            weight.assign(offset + rng.normal(0.0, 0.3, weight.shape).astype("float32"))
    for layer in model.layers:
        if isinstance(layer, keras.layers.MultiHeadAttention) or layer.name.endswith("_mlp_output"):
            for weight in layer.weights:
                weight.assign(np.zeros(weight.shape, "float32"))

    x0 = keras.Model(model.input, model.get_layer("position_embedding").output)(x)
    context = keras.ops.mean(x0, axis=1)

    def apply(layer, tensor):
        return layer(tensor, context) if norm == "adaln" else layer(tensor)

    stream = x0
    for layer in norms[-1:] if placement == "pre" else norms:
        stream = apply(layer, stream)
    expected = model.get_layer("logits")(keras.ops.mean(stream, axis=1))
    np.testing.assert_allclose(model(x), expected, rtol=1e-5, atol=1e-5)
    if placement == "pre":  # and the block norms do matter once the branches speak
        silent = [np.asarray(apply(layer, x0)) for layer in norms[:-1]]
        assert all(np.abs(s - np.asarray(x0)).max() > 0.1 for s in silent)


def test_adaln_norms_are_conditioned_on_the_mean_embedded_input():
    model = build("sequence", "adaln", "pre", epsilon=1e-5)
    norms = [layer for layer in model.layers if isinstance(layer, keras_norms.AdaptiveLayerNormalization)]
    assert len(norms) == 2 * TINY["depth"] + 1 and all(layer.epsilon == 1e-5 for layer in norms)
    context = model.get_layer("context")
    assert isinstance(context, keras.layers.GlobalAveragePooling1D)
    assert context.input is model.get_layer("position_embedding").output
    assert all(layer.input[1] is context.output for layer in norms)


def test_group_norm_gets_a_divisor_of_dim_and_options_reach_every_norm():
    model = build("image", "group", "post")
    groups = [layer.groups for layer in model.layers if isinstance(layer, keras_norms.GroupNormalization)]
    assert groups == [8] * 4
    model = build("image", "batch", "pre", momentum=0.8)
    momenta = [layer.momentum for layer in model.layers if isinstance(layer, keras_norms.BatchNormalization)]
    assert momenta == [0.8] * 5


@pytest.mark.parametrize(("options", "error", "message"), [
    ({"placement": "middle"}, ValueError, "placement='middle'"),
    ({"qk_norm": "batch"}, ValueError, "qk_norm='batch'"),
    ({"layer_scale": 0}, ValueError, "layer_scale=0"),
    ({"layer_scale": True}, ValueError, "layer_scale=True"),
    ({"norm": "instance"}, ValueError, "norm='instance'"),
    ({"norm": keras_norms.InstanceNormalization}, ValueError, "just its beta"),
    ({"norm": "group", "groups": 16}, ValueError, "norm='group', groups=16"),
    ({"norm": "group", "groups": 5}, ValueError, "groups=5"),
    ({"norm": "adaln", "zero": True}, ValueError, "zero=True"),
    ({"norm": "batchnorm"}, ValueError, "Valid names: batch, .*, none, .*adaln. Received: norm='batchnorm'"),
    ({"norm": keras_norms.LayerNormalization()}, TypeError, "cannot be shared"),
    ({"heads": 3}, ValueError, "heads=3, dim=16"),
    ({"depth": 0}, ValueError, "depth=0"),
    ({"mlp_ratio": 0}, ValueError, "mlp_ratio=0"),
    ({"patch_size": 3}, ValueError, "patch_size=3"),
    ({"input_shape": (4, 4, 4, 1)}, ValueError, r"input_shape=\(4, 4, 4, 1\)"),
    ({"input_shape": (64,), "vocab_size": 0}, ValueError, "vocab_size=0"),
])
def test_bad_arguments_name_the_argument_and_value(options, error, message):
    arguments = {"norm": "layer", "input_shape": (8, 8, 1), **TINY, **options}
    with pytest.raises(error, match=message):
        build_model("transformer", **arguments)


def ops_of(path) -> list[str]:
    interpreter = Interpreter(
        model_path=str(path), experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    )
    return [op["op_name"] for op in interpreter._get_ops_details()]


@pytest.mark.parametrize(("kind", "norm", "placement", "options"), [
    ("image", "layer", "pre", {}), ("sequence", "adaln", "post", {}), ("tokens", "batch", "pre", {}),
    ("image", "derf", "peri", {"qk_norm": "rms", "layer_scale": 0.1}),
], ids=["image-layer-pre", "sequence-adaln-post", "tokens-batch-pre", "image-derf-peri-qk-layerscale"])
def test_exports_to_tflite_with_builtin_ops_and_parity(kind, norm, placement, options, tmp_path):
    x, _ = digits(kind, 32)
    keras.utils.set_random_seed(2)
    model = build(kind, norm, placement, **options)
    rng = np.random.default_rng(0)
    for layer in model.layers:  # non-trivial frozen statistics for the batch norms
        if isinstance(layer, keras_norms.BatchNormalization):
            layer.moving_mean.assign(rng.normal(0.0, 0.5, layer.moving_mean.shape).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, layer.moving_variance.shape).astype("float32"))
    result = export_model(model, tmp_path / "export", formats=("tflite",), representative_data=x)

    ops = ops_of(result.paths["model.tflite"])
    manifest = json.loads(result.paths["manifest.json"].read_text())
    assert ops == result.ops["model.tflite"] == manifest["tflite"]["model.tflite"]["ops"]
    assert not [op for op in ops if op.startswith("Flex") or op in ("CUSTOM", "DELEGATE")], ops
    assert {"FULLY_CONNECTED", "BATCH_MATMUL", "SOFTMAX", "GELU"} <= set(ops), ops
    assert ("GATHER" in ops) == (kind == "tokens") and ("CONV_2D" in ops) == (kind == "image")
    parity = manifest["parity"]["model.tflite"]
    assert parity["max_abs_error"] <= 1e-5 and set(parity["by_data"]) == {"random", "representative"}


def _silence_branches(model):
    """Zero the attention and MLP output weights: every residual branch then outputs exactly 0."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.MultiHeadAttention) or layer.name.endswith("_mlp_output"):
            for weight in layer.weights:
                weight.assign(np.zeros(weight.shape, "float32"))


def _randomize_norms(model, rng):
    for layer in model.layers:
        if isinstance(layer, (keras_norms.LayerNormalization, keras_norms.DynamicTanh)):
            for weight in layer.weights:
                offset = 1.0 if weight.name in ("gamma", "alpha") else 0.0
                weight.assign(offset + rng.normal(0.0, 0.3, weight.shape).astype("float32"))


@pytest.mark.parametrize("norm", ["layer", "dyt"])
def test_peri_norm_normalizes_each_branch_output_before_the_add(norm):
    """Silenced branches output 0, so a peri-norm block adds its output norm of zeros to the stream
    (beta, for layer norm and DyT), which a pre-norm block would not: the model outputs
    ``head(final_norm(x0 + sum of those)))``."""
    x, _ = digits("image", 8)
    keras.utils.set_random_seed(3)
    model = build("image", norm, "peri")
    depth = TINY["depth"]
    cls = keras_norms.LayerNormalization if norm == "layer" else keras_norms.DynamicTanh
    assert len([layer for layer in model.layers if isinstance(layer, cls)]) == 4 * depth + 1
    _randomize_norms(model, np.random.default_rng(1))
    _silence_branches(model)
    x0 = np.asarray(keras.Model(model.input, model.get_layer("position_embedding").output)(x))
    stream = x0
    for block in range(depth):
        for kind in ("attention", "mlp"):
            output_norm = model.get_layer(f"block{block}_{kind}_output_norm")
            stream = stream + np.asarray(output_norm(np.zeros_like(x0)))
    pooled = np.asarray(model.get_layer("final_norm")(stream)).mean(axis=1)
    expected = np.asarray(model.get_layer("logits")(pooled))
    np.testing.assert_allclose(np.asarray(model(x)), expected, rtol=1e-5, atol=1e-5)
    assert np.abs(stream - x0).max() > 0.1  # the output norms did move the stream


@pytest.mark.parametrize("depth", [1, 3, 6])
def test_deepnorm_constants_follow_the_paper(depth):
    """Wang et al. (2022), Table 1, encoder-only: alpha = (2N)^(1/4), beta = (8N)^(-1/4)."""
    alpha, beta = deepnorm_constants(depth)
    assert alpha == pytest.approx((2 * depth) ** 0.25, rel=1e-12)
    assert beta == pytest.approx((8 * depth) ** -0.25, rel=1e-12)
    assert alpha**4 * beta**4 == pytest.approx(0.25)  # (2N) (8N)^-1


def test_deepnorm_scales_the_stream_by_alpha_before_each_post_norm():
    """With no norm and silenced branches, each of the 2 * depth sublayers multiplies the stream
    by alpha: the model outputs ``head(alpha^(2 depth) x0)``."""
    x, _ = digits("image", 8)
    keras.utils.set_random_seed(4)
    depth = 3
    model = build("image", "none", "deepnorm", depth=depth)
    _silence_branches(model)
    alpha, _ = deepnorm_constants(depth)
    x0 = np.asarray(keras.Model(model.input, model.get_layer("position_embedding").output)(x), np.float64)
    pooled = (alpha ** (2 * depth) * x0).mean(axis=1).astype("float32")
    expected = np.asarray(model.get_layer("logits")(pooled))
    np.testing.assert_allclose(np.asarray(model(x)), expected, rtol=1e-4, atol=1e-4)


def test_deepnorm_draws_value_output_and_mlp_kernels_with_gain_beta():
    """Xavier's normal: std = gain * sqrt(2 / (fan_in + fan_out)); gain beta for the value, output
    and MLP kernels, 1 for queries and keys."""
    keras.utils.set_random_seed(5)
    depth, dim = 6, 64
    model = build("image", "layer", "deepnorm", depth=depth, dim=dim, heads=4)
    _, beta = deepnorm_constants(depth)
    hidden = 2 * dim
    for block in range(depth):
        attention = model.get_layer(f"block{block}_attention")
        expected = [(attention._query_dense.kernel, np.sqrt(2 / (2 * dim))),
                    (attention._key_dense.kernel, np.sqrt(2 / (2 * dim))),
                    (attention._value_dense.kernel, beta * np.sqrt(2 / (2 * dim))),
                    (attention._output_dense.kernel, beta * np.sqrt(2 / (2 * dim))),
                    (model.get_layer(f"block{block}_mlp_hidden").kernel, beta * np.sqrt(2 / (dim + hidden))),
                    (model.get_layer(f"block{block}_mlp_output").kernel, beta * np.sqrt(2 / (dim + hidden)))]
        for kernel, std in expected:
            values = np.asarray(kernel).ravel()
            assert abs(values.mean()) < 4 * std / np.sqrt(values.size)
            assert values.std() == pytest.approx(std, rel=0.06), kernel.path


def test_layer_scale_sits_on_every_branch():
    """LayerScale gammas of zero silence every branch whatever its weights: a pre-norm model then
    outputs ``head(final_norm(x0))``."""
    x, _ = digits("image", 8)
    keras.utils.set_random_seed(6)
    model = build("image", "layer", "pre", layer_scale=1e-4)
    scales = [layer for layer in model.layers if isinstance(layer, keras_norms.LayerScale)]
    assert len(scales) == 2 * TINY["depth"]
    assert all(np.allclose(layer.gamma.numpy(), 1e-4) for layer in scales)
    for layer in scales:
        layer.gamma.assign(np.zeros(layer.gamma.shape, "float32"))
    x0 = keras.Model(model.input, model.get_layer("position_embedding").output)(x)
    pooled = keras.ops.mean(model.get_layer("final_norm")(x0), axis=1)
    np.testing.assert_allclose(model(x), model.get_layer("logits")(pooled), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("qk_norm", ["rms", "layer"])
def test_qk_norm_reaches_every_attention_layer_and_trains(qk_norm):
    x, y = digits("image", 120)
    keras.utils.set_random_seed(7)
    model = build("image", "layer", "pre", qk_norm=qk_norm, depth=1)
    attentions = [layer for layer in model.layers if isinstance(layer, keras.layers.MultiHeadAttention)]
    assert attentions and all(isinstance(layer, keras_norms.MultiHeadAttention) and layer.qk_norm == qk_norm
                              for layer in attentions)
    model.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    losses = model.fit(x, y, batch_size=60, epochs=4, verbose=0).history["loss"]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0], losses
