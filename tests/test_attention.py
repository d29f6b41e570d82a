"""keras_norms.MultiHeadAttention: QK-norm against a float64 NumPy attention, Keras' layer for
`qk_norm=None`, bounded logits, gradients, saving, bad arguments, graph mode, XLA and TFLite."""

from __future__ import annotations

import re

import keras
import numpy as np
import pytest

import keras_norms

TF = keras.backend.backend() == "tensorflow"
needs_tf = pytest.mark.skipif(not TF, reason="TensorFlow-specific (GradientTape, TFLite)")

#: (qk_norm, qk_norm_per_head)
QK_NORMS = [("rms", True), ("rms", False), ("layer", True), ("layer", False)]
QK_IDS = ["rms-per-head", "rms-across-heads", "layer-per-head", "layer-across-heads"]


# ----------------------------------------------------------------------------- the float64 reference


def _np(tensor) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(tensor), dtype=np.float64)


def _project(x, dense):
    """Keras' query/key/value projection: kernel (dim, num_heads, head_dim), bias (num_heads, head_dim)."""
    y = np.einsum("btd,dnh->btnh", x, _np(dense.kernel))
    return y + _np(dense.bias) if dense.bias is not None else y


def _qk_norm(x, norm, kind, per_head, epsilon):
    """RMS or layer norm of `x` (batch, tokens, num_heads, key_dim), per head or over all heads."""
    axes = (-1,) if per_head else (-2, -1)
    if kind == "rms":
        y = x / np.sqrt(np.mean(np.square(x), axis=axes, keepdims=True) + epsilon)
        return y * _np(norm.gamma)
    centered = x - np.mean(x, axis=axes, keepdims=True)
    y = centered / np.sqrt(np.mean(np.square(centered), axis=axes, keepdims=True) + epsilon)
    return y * _np(norm.gamma) + _np(norm.beta)


def reference_attention(layer, query, value, key=None, mask=None, causal=False):
    """Multi-head attention of `layer`'s weights in float64 NumPy: (output, attention probabilities)."""
    query, value = np.asarray(query, np.float64), np.asarray(value, np.float64)
    key = value if key is None else np.asarray(key, np.float64)
    q = _project(query, layer.query_dense)
    k = _project(key, layer.key_dense)
    v = _project(value, layer.value_dense)
    assert q.shape[-2:] == (layer.num_heads, layer.key_dim)
    if layer.qk_norm is not None:
        q = _qk_norm(q, layer.query_norm, layer.qk_norm, layer.qk_norm_per_head, layer.qk_norm_epsilon)
        k = _qk_norm(k, layer.key_norm, layer.qk_norm, layer.qk_norm_per_head, layer.qk_norm_epsilon)
    logits = np.einsum("btnh,bsnh->bnts", q, k) / np.sqrt(layer.key_dim)
    allowed = np.ones(logits.shape, bool)
    if mask is not None:
        allowed &= np.asarray(mask, bool)[:, None]
    if causal:
        allowed &= np.tril(np.ones(logits.shape[-2:], bool))
    logits = np.where(allowed, logits, -np.inf)
    probabilities = np.exp(logits - logits.max(axis=-1, keepdims=True))
    probabilities /= probabilities.sum(axis=-1, keepdims=True)
    context = np.einsum("bnts,bsnh->btnh", probabilities, v)
    output = np.einsum("btnh,nhd->btd", context, _np(layer.output_dense.kernel))
    if layer.output_dense.bias is not None:
        output = output + _np(layer.output_dense.bias)
    return output, probabilities


def _randomize_norms(layer, rng):
    """Random gamma (and beta) for the QK norms, so that a wrong axis or a swapped norm shows."""
    for norm in (layer.query_norm, layer.key_norm):
        norm.gamma.assign(rng.uniform(0.5, 1.5, size=norm.gamma.shape).astype("float32"))
        if getattr(norm, "beta", None) is not None:
            norm.beta.assign(rng.normal(0.0, 0.5, size=norm.beta.shape).astype("float32"))


def _padding_mask(batch, target, source, lengths):
    """(batch, target, source): each query may attend to the first `lengths[b]` keys only."""
    mask = np.zeros((batch, target, source), bool)
    for b, length in enumerate(lengths):
        mask[b, :, :length] = True
    return mask


def _inputs(rng, batch=3, target=5, source=7, dim=8, cross=False):
    query = rng.normal(size=(batch, target, dim)).astype("float32")
    if not cross:
        return query, query, None
    value = rng.normal(size=(batch, source, 6)).astype("float32")
    key = rng.normal(size=(batch, source, 3)).astype("float32")
    return query, value, key


# ----------------------------------------------------------------------------- against the reference


@pytest.mark.parametrize("masked", [False, True], ids=["no-mask", "padding-mask"])
@pytest.mark.parametrize("cross", [False, True], ids=["self", "cross"])
@pytest.mark.parametrize(("qk_norm", "per_head"), QK_NORMS, ids=QK_IDS)
def test_matches_the_float64_reference(qk_norm, per_head, cross, masked):
    rng = np.random.default_rng(0)
    keras.utils.set_random_seed(0)
    query, value, key = _inputs(rng, cross=cross)
    mask = _padding_mask(3, query.shape[1], value.shape[1], [value.shape[1], 3, 1]) if masked else None
    layer = keras_norms.MultiHeadAttention(num_heads=2, key_dim=4, qk_norm=qk_norm, qk_norm_per_head=per_head)
    layer(query, value, key)
    _randomize_norms(layer, rng)
    expected_gamma = (4,) if per_head else (2, 4)
    assert tuple(layer.query_norm.gamma.shape) == tuple(layer.key_norm.gamma.shape) == expected_gamma
    assert isinstance(layer.query_norm, keras_norms.RMSNormalization if qk_norm == "rms"
                      else keras_norms.LayerNormalization)
    assert layer.query_norm is not layer.key_norm

    output, scores = layer(query, value, key, attention_mask=mask, return_attention_scores=True)
    expected, expected_scores = reference_attention(layer, query, value, key, mask=mask)
    np.testing.assert_allclose(_np(output), expected, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(_np(scores), expected_scores, atol=1e-5, rtol=1e-5)
    # Without the scores, Keras takes its fused dot-product attention path: the same outputs.
    fused = layer(query, value, key, attention_mask=mask)
    np.testing.assert_allclose(_np(fused), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("qk_norm", "per_head"), QK_NORMS, ids=QK_IDS)
def test_causal_mask_matches_the_reference(qk_norm, per_head):
    rng = np.random.default_rng(1)
    keras.utils.set_random_seed(1)
    query, _, _ = _inputs(rng, target=6)
    layer = keras_norms.MultiHeadAttention(2, 4, qk_norm=qk_norm, qk_norm_per_head=per_head)
    layer(query, query)
    _randomize_norms(layer, rng)
    mask = _padding_mask(3, 6, 6, [6, 5, 4])
    for kwargs, reference_mask in [({}, None), ({"attention_mask": mask}, mask)]:
        expected, _ = reference_attention(layer, query, query, mask=reference_mask, causal=True)
        output = layer(query, query, use_causal_mask=True, **kwargs)
        np.testing.assert_allclose(_np(output), expected, atol=1e-5, rtol=1e-5)


def test_qk_norm_epsilon_reaches_the_norms():
    layer = keras_norms.MultiHeadAttention(2, 4, qk_norm="rms", qk_norm_epsilon=0.5)
    x = np.random.default_rng(2).normal(size=(2, 3, 8)).astype("float32") * 0.1
    output = layer(x, x)
    assert layer.query_norm.epsilon == layer.key_norm.epsilon == 0.5
    np.testing.assert_allclose(_np(output), reference_attention(layer, x, x)[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision(policy):
    keras.mixed_precision.set_global_policy(policy)  # the conftest fixture restores float32
    rng = np.random.default_rng(11)
    query, _, _ = _inputs(rng)
    layer = keras_norms.MultiHeadAttention(2, 4, qk_norm="rms")
    output = layer(query, query)
    assert keras.backend.standardize_dtype(output.dtype) == policy.removeprefix("mixed_")
    assert layer.query_norm.compute_dtype == layer.compute_dtype
    assert keras.backend.standardize_dtype(layer.query_norm.gamma.dtype) == "float32"
    tolerance = 2e-2 if policy == "mixed_float16" else 1e-1
    np.testing.assert_allclose(_np(output), reference_attention(layer, query, query)[0], atol=tolerance)


# ----------------------------------------------------------------------------- qk_norm=None is Keras' layer

NONE_CASES = {
    "plain": {},
    "attention-mask": {"attention_mask": _padding_mask(3, 5, 5, [5, 3, 1])},
    "causal": {"use_causal_mask": True},
    "causal-and-mask": {"use_causal_mask": True, "attention_mask": _padding_mask(3, 5, 5, [5, 3, 1])},
    "scores": {"return_attention_scores": True},
    "scores-mask-causal": {"return_attention_scores": True, "use_causal_mask": True,
                           "attention_mask": _padding_mask(3, 5, 5, [5, 3, 1])},
}


def _weight_name(weight) -> str:
    """A weight's path within its layer: "query/kernel", "query_norm/gamma", ..."""
    return weight.path.split("/", 1)[1]


def _pair(*args, **kwargs):
    """A Keras MultiHeadAttention and ours of the same arguments (ours also takes the `qk_norm*` ones)."""
    keras_kwargs = {name: value for name, value in kwargs.items() if not name.startswith("qk_norm")}
    theirs = keras.layers.MultiHeadAttention(*args, **keras_kwargs)
    ours = keras_norms.MultiHeadAttention(*args, **kwargs)
    return theirs, ours


@pytest.mark.parametrize("case", list(NONE_CASES))
def test_without_qk_norm_it_is_keras_layer(case):
    kwargs = NONE_CASES[case]
    rng = np.random.default_rng(3)
    query, _, _ = _inputs(rng)
    theirs, ours = _pair(2, 4)
    theirs(query, query)
    ours(query, query)
    assert ours.query_norm is None and ours.key_norm is None
    assert [tuple(w.shape) for w in ours.weights] == [tuple(w.shape) for w in theirs.weights]
    assert [_weight_name(w) for w in ours.weights] == [_weight_name(w) for w in theirs.weights]
    ours.set_weights(theirs.get_weights())

    expected, got = theirs(query, query, **kwargs), ours(query, query, **kwargs)
    if kwargs.get("return_attention_scores"):
        (expected, expected_scores), (got, scores) = expected, got
        np.testing.assert_allclose(_np(scores), _np(expected_scores), rtol=0, atol=1e-6)
    if kwargs.get("use_causal_mask") and "attention_mask" not in kwargs:
        # Keras 3.15 runs its own class's causal-only attention through the backend's causal kernel,
        # a subclass's through a causal mask tensor: equal up to float rounding.
        np.testing.assert_allclose(_np(got), _np(expected), rtol=0, atol=1e-6)
    else:
        np.testing.assert_array_equal(_np(got), _np(expected))


def test_without_qk_norm_the_config_is_keras_config_plus_three_keys():
    theirs, ours = _pair(2, 4, 3, dropout=0.1, output_shape=5, name="attention")  # value_dim positional
    assert ours.value_dim == 3 and ours.dropout == 0.1
    config = ours.get_config()
    assert {k: v for k, v in config.items() if not k.startswith("qk_norm")} == theirs.get_config()
    assert {k: config[k] for k in config if k.startswith("qk_norm")} == {
        "qk_norm": None, "qk_norm_per_head": True, "qk_norm_epsilon": 1e-6}


def test_keras_arguments_pass_through_with_qk_norm():
    rng = np.random.default_rng(4)
    query = rng.normal(size=(2, 5, 8)).astype("float32")
    layer = keras_norms.MultiHeadAttention(3, 4, value_dim=2, output_shape=6, use_bias=False, qk_norm="rms")
    # With the scores, Keras takes its einsum path: on JAX its fused path fails for value_dim != key_dim
    # (keras.layers.MultiHeadAttention as well, in Keras 3.15).
    output, _ = layer(query, query, return_attention_scores=True)
    assert tuple(output.shape) == (2, 5, 6)
    assert layer.query_dense.bias is None
    expected = reference_attention(layer, query, query)[0]
    np.testing.assert_allclose(_np(output), expected, atol=1e-5, rtol=1e-5)
    if TF:
        np.testing.assert_allclose(_np(layer(query, query)), expected, atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------- bounded logits


@pytest.mark.parametrize(("qk_norm", "per_head"), QK_NORMS, ids=QK_IDS)
def test_qk_norm_bounds_the_logits_of_huge_inputs(qk_norm, per_head):
    """Inputs scaled by 1000 saturate Keras' softmax to one-hot rows; with QK-norm (gamma 1, beta 0) a
    query and a key of one head have norms <= sqrt(key_dim) per head (sqrt(num_heads * key_dim) over
    all heads), so a logit is at most `bound` in absolute value and the probabilities of a row are
    within a factor exp(2 * bound) of each other."""
    num_heads, key_dim, tokens = 2, 4, 7
    rng = np.random.default_rng(5)
    keras.utils.set_random_seed(5)
    x = 1000.0 * rng.normal(size=(4, tokens, 8)).astype("float32")
    theirs, ours = _pair(num_heads, key_dim, qk_norm=qk_norm, qk_norm_per_head=per_head)
    theirs(x, x)
    ours(x, x)
    norms = [keras.ops.convert_to_numpy(w) for w in ours.weights[len(theirs.weights):]]  # gamma 1, beta 0
    ours.set_weights(theirs.get_weights() + norms)  # the same projections

    _, scores = theirs(x, x, return_attention_scores=True)
    saturated = _np(scores).max(axis=-1)
    assert np.mean(saturated > 0.999) > 0.9, "without QK-norm, the rows should be one-hot"

    output, scores = ours(x, x, return_attention_scores=True)
    output, scores = _np(output), _np(scores)
    assert np.all(np.isfinite(output)) and np.all(np.isfinite(scores))
    bound = np.sqrt(key_dim) if per_head else num_heads * key_dim / np.sqrt(key_dim)
    spread = np.log(scores.max(axis=-1)) - np.log(scores.min(axis=-1))
    assert spread.max() <= 2 * bound + 1e-4
    assert scores.max() < 0.999
    assert scores.min() >= np.exp(-2 * bound) / tokens * (1 - 1e-4)


# ----------------------------------------------------------------------------- gradients


@needs_tf
@pytest.mark.parametrize(("qk_norm", "per_head"), QK_NORMS, ids=QK_IDS)
def test_every_weight_gets_a_finite_nonzero_gradient(qk_norm, per_head):
    import tensorflow as tf

    rng = np.random.default_rng(6)
    keras.utils.set_random_seed(6)
    query, value, key = _inputs(rng, cross=True)
    layer = keras_norms.MultiHeadAttention(2, 4, qk_norm=qk_norm, qk_norm_per_head=per_head)
    layer(query, value, key)
    _randomize_norms(layer, rng)
    target = rng.normal(size=(3, 5, 8)).astype("float32")
    mask = _padding_mask(3, 5, 7, [7, 4, 2])
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(query, value, key, attention_mask=mask) * target)
    names = [_weight_name(w) for w in layer.trainable_weights]
    gradients = dict(zip(names, tape.gradient(loss, layer.trainable_weights), strict=True))
    assert {"query_norm/gamma", "key_norm/gamma"} <= set(gradients)
    for name, gradient in gradients.items():
        assert gradient is not None, name
        gradient = gradient.numpy()
        assert np.all(np.isfinite(gradient)), name
        if name == "key_norm/beta":
            # beta adds q . beta to every logit of a row alike: the softmax ignores it.
            np.testing.assert_allclose(gradient, 0.0, atol=1e-5)
        else:
            assert np.any(gradient != 0.0), f"{name} gets a zero gradient"


# ----------------------------------------------------------------------------- saving


@pytest.mark.parametrize(("qk_norm", "per_head"), [(None, True)] + QK_NORMS, ids=["none"] + QK_IDS)
def test_from_config_and_keras_file_round_trip(qk_norm, per_head, tmp_path):
    rng = np.random.default_rng(7)
    keras.utils.set_random_seed(7)
    query, value, key = _inputs(rng, cross=True)
    layer = keras_norms.MultiHeadAttention(2, 4, qk_norm=qk_norm, qk_norm_per_head=per_head,
                                           qk_norm_epsilon=1e-5, name="attention")
    expected = _np(layer(query, value, key))
    if qk_norm is not None:
        _randomize_norms(layer, rng)
        expected = _np(layer(query, value, key))

    copy = keras_norms.MultiHeadAttention.from_config(layer.get_config())
    assert copy.get_config() == layer.get_config()
    copy(query, value, key)
    copy.set_weights(layer.get_weights())
    np.testing.assert_array_equal(_np(copy(query, value, key)), expected)

    inputs = [keras.Input(query.shape[1:]), keras.Input(value.shape[1:]), keras.Input(key.shape[1:])]
    model = keras.Model(inputs, layer(inputs[0], inputs[1], inputs[2]))
    path = tmp_path / "attention.keras"
    keras.saving.save_model(model, path)
    loaded = keras.saving.load_model(path)
    restored = loaded.get_layer("attention")
    assert type(restored) is keras_norms.MultiHeadAttention
    assert restored.qk_norm == qk_norm and restored.qk_norm_per_head == per_head
    assert restored.qk_norm_epsilon == 1e-5
    for saved, kept in zip(layer.weights, restored.weights, strict=True):
        np.testing.assert_array_equal(_np(kept), _np(saved))
    np.testing.assert_array_equal(_np(loaded([query, value, key])), expected)


def test_serialized_under_the_package_name():
    layer = keras_norms.MultiHeadAttention(2, 4, qk_norm="layer")
    serialized = keras.saving.serialize_keras_object(layer)
    assert serialized["registered_name"] == "keras_norms>MultiHeadAttention"
    assert type(keras.saving.deserialize_keras_object(serialized)) is keras_norms.MultiHeadAttention


# ----------------------------------------------------------------------------- bad arguments


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"qk_norm": "batch"}, ValueError,
     'Argument `qk_norm` must be None, "rms" or "layer". Received: qk_norm=\'batch\''),
    ({"qk_norm": "RMS"}, ValueError, "Received: qk_norm='RMS'"),
    ({"qk_norm": 1}, ValueError, "Received: qk_norm=1"),
    ({"qk_norm": True}, ValueError, "Received: qk_norm=True"),
    ({"qk_norm_per_head": "yes"}, TypeError,
     "Argument `qk_norm_per_head` must be a bool. Received: qk_norm_per_head='yes'"),
    ({"qk_norm_per_head": 1}, TypeError, "Received: qk_norm_per_head=1"),
    ({"qk_norm_per_head": None}, TypeError, "Received: qk_norm_per_head=None"),
    ({"qk_norm_epsilon": 0.0}, ValueError, "Argument `qk_norm_epsilon` must be > 0"),
    ({"qk_norm_epsilon": -1e-6}, ValueError, "Received: qk_norm_epsilon=-1e-06"),
    ({"qk_norm_epsilon": float("inf")}, ValueError, "Received: qk_norm_epsilon=inf"),
    ({"qk_norm_epsilon": "1e-6"}, TypeError, "Received: qk_norm_epsilon='1e-6'"),
    ({"qk_norm_epsilon": True}, TypeError, "Received: qk_norm_epsilon=True"),
])
def test_bad_arguments_are_named(kwargs, error, message):
    with pytest.raises(error, match=re.escape(message)):
        keras_norms.MultiHeadAttention(2, 4, **kwargs)


@pytest.mark.parametrize("kwargs", [{"num_heads": 0, "key_dim": 4}, {"num_heads": 2, "key_dim": -1},
                                    {"num_heads": 2, "key_dim": 4, "qk_nrom": "rms"}],
                         ids=["num_heads", "key_dim", "misspelt"])
def test_keras_own_argument_checks_still_apply(kwargs):
    """Whatever Keras' layer refuses (3.10 does not check num_heads and key_dim yet), ours refuses alike."""
    try:
        keras.layers.MultiHeadAttention(**kwargs)
    except Exception as error:
        with pytest.raises(type(error), match=re.escape(str(error))):
            keras_norms.MultiHeadAttention(**kwargs, qk_norm="rms")
    else:
        keras_norms.MultiHeadAttention(**kwargs, qk_norm="rms")


def test_numpy_bool_is_a_bool():
    layer = keras_norms.MultiHeadAttention(2, 4, qk_norm="rms", qk_norm_per_head=np.bool_(False))
    assert layer.qk_norm_per_head is False


# ----------------------------------------------------------------------------- graph mode, XLA, TFLite


def _tiny_model(qk_norm="rms", per_head=True):
    inputs = keras.Input((6, 8))
    x = keras_norms.MultiHeadAttention(2, 4, qk_norm=qk_norm, qk_norm_per_head=per_head, name="attention")(
        inputs, inputs)
    outputs = keras.layers.Dense(1)(keras.layers.GlobalAveragePooling1D()(x))
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize(("qk_norm", "per_head"), [("rms", True), ("layer", False)], ids=["rms", "layer"])
def test_graph_mode_fit_and_jit_compiled_predict(qk_norm, per_head):
    rng = np.random.default_rng(8)
    keras.utils.set_random_seed(8)
    x = rng.normal(size=(8, 6, 8)).astype("float32")
    y = rng.normal(size=(8, 1)).astype("float32")
    model = _tiny_model(qk_norm, per_head)
    layer = model.get_layer("attention")
    gamma = _np(layer.query_norm.gamma)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse", run_eagerly=False, jit_compile=False)
    history = model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert model.optimizer.iterations.numpy() == 2
    assert not np.allclose(_np(layer.query_norm.gamma), gamma), "the QK-norm gamma did not train"

    eager = _np(model(x, training=False))
    model.compile(loss="mse", jit_compile=True)
    compiled = np.asarray(model.predict(x, batch_size=8, verbose=0), np.float64)
    np.testing.assert_allclose(compiled, eager, atol=1e-5, rtol=1e-5)


@needs_tf
def test_tflite_builtin_ops_match_keras():
    import tensorflow as tf

    Interpreter = pytest.importorskip("ai_edge_litert.interpreter").Interpreter
    keras.utils.set_random_seed(9)
    inputs = keras.Input((6, 8))
    layer = keras_norms.MultiHeadAttention(2, 4, qk_norm="rms", name="attention")
    model = keras.Model(inputs, layer(inputs, inputs))
    _randomize_norms(layer, np.random.default_rng(9))

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    content = converter.convert()

    x = np.random.default_rng(10).normal(size=(1, 6, 8)).astype("float32")
    interpreter = Interpreter(model_content=content)
    (input_detail,) = interpreter.get_input_details()
    interpreter.resize_tensor_input(input_detail["index"], x.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(input_detail["index"], x)
    interpreter.invoke()
    (output_detail,) = interpreter.get_output_details()
    output = interpreter.get_tensor(output_detail["index"])
    ops = {op["op_name"] for op in interpreter._get_ops_details()}
    assert not [op for op in ops if op.startswith("Flex") or op == "CUSTOM"], ops
    np.testing.assert_allclose(output, _np(model(x)), atol=1e-5, rtol=0)
