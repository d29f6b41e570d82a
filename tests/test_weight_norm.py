"""WeightNormalization against float64 NumPy layers computed with ``g * v / ||v||`` (Salimans and Kingma)."""

from __future__ import annotations

import re
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from layer_checks import (
    assert_arguments_are_attributes,
    assert_close,
    assert_gradients_match,
    convert_builtin_only,
    run_litert,
    weights_of,
)
from references import numerical_gradient

from keras_norms.weight_norm import WeightNormalization

# ----------------------------------------------------------------------------- float64 references


def effective_kernel(v, g, output_axis=-1):
    """``g * v / ||v||``, the norm over every axis but `output_axis`, floored as tf.nn.l2_normalize."""
    v = np.asarray(v, np.float64)
    output_axis %= v.ndim
    axes = tuple(a for a in range(v.ndim) if a != output_axis)
    shape = [-1 if a == output_axis else 1 for a in range(v.ndim)]
    norm = np.sqrt(np.maximum((v**2).sum(axis=axes, keepdims=True), 1e-12))
    return np.asarray(g, np.float64).reshape(shape) * v / norm


def correlate_valid(x, kernel, dilation=1):
    """Stride-1 N-d cross-correlation without padding, channels last: a sum over kernel offsets."""
    x, kernel = np.asarray(x, np.float64), np.asarray(kernel, np.float64)
    spans = [(k - 1) * dilation + 1 for k in kernel.shape[:-2]]
    sizes = [n - s + 1 for n, s in zip(x.shape[1:-1], spans, strict=True)]
    out = np.zeros((x.shape[0], *sizes, kernel.shape[-1]))
    for offset in np.ndindex(*kernel.shape[:-2]):
        window = tuple(slice(o * dilation, o * dilation + n) for o, n in zip(offset, sizes, strict=True))
        out += x[(slice(None), *window)] @ kernel[offset]
    return out


def conv_transpose_2d_valid(x, kernel, stride):
    """Transposed 2D convolution, padding "valid": each input pixel scatters ``kernel[a, b] @ x``."""
    x, kernel = np.asarray(x, np.float64), np.asarray(kernel, np.float64)
    batch, height, width, _ = x.shape
    kh, kw, filters, _ = kernel.shape
    out = np.zeros((batch, (height - 1) * stride + kh, (width - 1) * stride + kw, filters))
    for a, b in np.ndindex(kh, kw):
        rows = slice(a, a + (height - 1) * stride + 1, stride)
        cols = slice(b, b + (width - 1) * stride + 1, stride)
        out[:, rows, cols, :] += x @ kernel[a, b].T
    return out


def _sigmoid(v):
    return 0.5 * (1.0 + np.tanh(v / 2))


def simple_rnn_step(x, state, w, recurrent):
    return [np.tanh(x @ w["kernel"] + state[0] @ recurrent + w["bias"])]


def lstm_step(x, state, w, recurrent):
    h, c = state
    i, f, candidate, o = np.split(x @ w["kernel"] + h @ recurrent + w["bias"], 4, axis=-1)
    c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(candidate)
    return [_sigmoid(o) * np.tanh(c), c]


def gru_step(x, state, w, recurrent):
    """Keras' GRU with reset_after=True: bias rows for the input and the recurrent products."""
    h = state[0]
    x_z, x_r, x_h = np.split(x @ w["kernel"] + w["bias"][0], 3, axis=-1)
    h_z, h_r, h_h = np.split(h @ recurrent + w["bias"][1], 3, axis=-1)
    z, r = _sigmoid(x_z + h_z), _sigmoid(x_r + h_r)
    return [z * h + (1 - z) * np.tanh(x_h + r * h_h)]


def rnn_reference(step, states):
    def reference(x, w):
        w = {name: np.asarray(value, np.float64) for name, value in w.items()}
        x = np.asarray(x, np.float64)
        units = w["recurrent_kernel"].shape[0]
        state = [np.zeros((x.shape[0], units))] * states
        recurrent = effective_kernel(w["recurrent_kernel"], w["g"])
        for t in range(x.shape[1]):
            state = step(x[:, t], state, w, recurrent)
        return state[0]

    return reference


def linear_reference(linear, output_axis=-1):
    """The wrapped Dense/convolution with the effective kernel, bias included, no activation."""

    def reference(x, w):
        out = linear(np.asarray(x, np.float64), effective_kernel(w["kernel"], w["g"], output_axis))
        return out + np.asarray(w["bias"], np.float64) if "bias" in w else out

    return reference


def conv1d_causal(x, kernel):
    """Conv1D with padding="causal" and dilation 2: pad (kernel_size - 1) * 2 steps of the past."""
    past = (kernel.shape[0] - 1) * 2
    return correlate_valid(np.pad(x, [(0, 0), (past, 0), (0, 0)]), kernel, dilation=2)


#: name -> (wrapped layer factory, input shape, float64 ``linear(x, kernel)``: the output without bias
#: and activation (None for RNNs, whose references are RNN_REFERENCES), output-channel axis of the kernel).
CASES = {
    "dense": (lambda **kw: keras.layers.Dense(3, **kw), (6, 5), np.matmul, -1),
    "conv1d": (lambda **kw: keras.layers.Conv1D(3, 3, padding="causal", dilation_rate=2, **kw),
               (3, 8, 2), conv1d_causal, -1),
    "conv2d": (lambda **kw: keras.layers.Conv2D(3, 3, **kw), (2, 5, 5, 2), correlate_valid, -1),
    "conv3d": (lambda **kw: keras.layers.Conv3D(2, 2, **kw), (2, 3, 4, 3, 2), correlate_valid, -1),
    "conv2d_transpose": (lambda **kw: keras.layers.Conv2DTranspose(3, 3, strides=2, **kw), (2, 3, 3, 2),
                         lambda x, k: conv_transpose_2d_valid(x, k, 2), -2),
    "simple_rnn": (lambda **kw: keras.layers.SimpleRNN(3, **kw), (2, 4, 2), None, -1),
    "lstm": (lambda **kw: keras.layers.LSTM(3, **kw), (2, 4, 2), None, -1),
    "gru": (lambda **kw: keras.layers.GRU(3, **kw), (2, 4, 2), None, -1),
}
RNN_REFERENCES = {
    "simple_rnn": rnn_reference(simple_rnn_step, 1),
    "lstm": rnn_reference(lstm_step, 2),
    "gru": rnn_reference(gru_step, 1),
}
LINEAR_CASES = [name for name, case in CASES.items() if case[2] is not None]


def _reference(name):
    _, _, linear, output_axis = CASES[name]
    return RNN_REFERENCES[name] if linear is None else linear_reference(linear, output_axis)


def _to_channels_first(array):
    return np.moveaxis(np.asarray(array), -1, 1)


def _wrapped(name, data_init=False, seed=0, **layer_kwargs):
    """A built wrapper with random weights (g > 0, not ones) and its input; not initialized.

    With ``data_format="channels_first"`` the input is the case's, channels moved to axis 1.
    """
    make, shape, _, _ = CASES[name]
    rng = np.random.default_rng(seed)
    x = rng.normal(size=shape).astype("float32")
    if layer_kwargs.get("data_format") == "channels_first":
        x = _to_channels_first(x)
        shape = x.shape
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # data_init=True with an RNN warns, as in tensorflow-addons
        layer = WeightNormalization(make(**layer_kwargs), data_init=data_init)
    layer.build(shape)
    for variable in layer.trainable_weights:
        value = rng.normal(scale=0.5, size=variable.shape)
        if variable.name == "g":
            value = rng.uniform(0.5, 2.0, size=variable.shape)
        variable.assign(value.astype("float32"))
    return layer, x


def _norm(v, output_axis):
    """``||v||`` per output channel, float64."""
    v = np.asarray(v, np.float64)
    return np.sqrt((v**2).sum(axis=tuple(a for a in range(v.ndim) if a != output_axis % v.ndim)))


def _weights(layer):
    return {name: value for name, value in weights_of(layer).items() if name != "initialized"}


# ----------------------------------------------------------------------------- numerics


@pytest.mark.parametrize("name", list(CASES))
def test_forward_and_gradients_match_the_reference(name):
    layer, x = _wrapped(name)
    layer.initialized.assign(True)
    reference = _reference(name)

    def reference_of(arrays, w):
        return reference(arrays[0], w)

    expected = reference(x, _weights(layer))
    assert_close(layer(x), expected, 2e-5, "inference")
    assert_close(layer(x, training=True), expected, 2e-5, "training (initialized: no change)")
    assert_gradients_match(lambda a: layer(a, training=True), reference_of, [x.astype(np.float64)], layer,
                           atol=5e-5)


@pytest.mark.parametrize("name", list(CASES))
def test_before_initialization_inference_is_the_plain_layer_and_changes_nothing(name):
    layer, x = _wrapped(name, data_init=True)
    layer.g.assign(np.ones(layer.g.shape, "float32"))
    plain = _weights(layer)
    plain["g"] = _norm(layer.v.numpy(), CASES[name][3])
    assert_close(layer(x), _reference(name)(x, plain), 2e-5, "uninitialized inference")
    assert not layer.initialized.numpy()
    np.testing.assert_array_equal(layer.g.numpy(), np.ones(layer.g.shape))


@pytest.mark.parametrize("name", list(CASES))
def test_data_init_false_starts_from_the_plain_layer(name):
    layer, x = _wrapped(name, data_init=False)
    norm = _norm(layer.v.numpy(), CASES[name][3])
    outputs = layer(x, training=True)
    assert layer.initialized.numpy()
    assert_close(layer.g, norm, 1e-6, "g = ||v||")
    plain = {**_weights(layer), "g": norm}
    assert_close(outputs, _reference(name)(x, plain), 2e-5, "first training call")


@pytest.mark.parametrize("name", LINEAR_CASES)
def test_data_init_gives_preactivations_mean_zero_variance_one(name):
    _, _, linear, output_axis = CASES[name]
    layer, x = _wrapped(name, data_init=True, activation="relu")
    g0 = layer.g.numpy().astype(np.float64)
    kernel = layer.v.numpy()
    # The paper's formula, on the batch's pre-activations with the current normalized kernel.
    pre = linear(x.astype(np.float64), effective_kernel(kernel, g0, output_axis))
    axes = tuple(range(pre.ndim - 1))
    scale = 1 / np.sqrt(pre.var(axis=axes) + 1e-10)
    outputs = layer(x, training=True)
    assert layer.initialized.numpy()
    assert_close(layer.g, g0 * scale, 1e-4, "g")
    assert_close(layer.layer.bias, -pre.mean(axis=axes) * scale, 1e-4, "bias")
    after = linear_reference(linear, output_axis)(x, _weights(layer))
    assert_close(after.mean(axis=axes), np.zeros(after.shape[-1]), 1e-5, "mean after init")
    assert_close(after.var(axis=axes), np.ones(after.shape[-1]), 1e-4, "variance after init")
    assert_close(outputs, np.maximum(after, 0), 2e-5, "first output: new g and bias, then the activation")
    layer(x * 3 + 1, training=True)  # initialized: a second batch changes nothing
    assert_close(layer.g, g0 * scale, 1e-4, "g after a second call")


@pytest.mark.parametrize(("name", "mode"), [("simple_rnn", "eager"), ("lstm", "graph"), ("lstm", "xla")])
def test_rnn_data_init_scales_g_by_the_output_deviation_as_tfa(name, mode):
    layer, x = _wrapped(name, data_init=True)
    g0 = layer.g.numpy().astype(np.float64)
    before = RNN_REFERENCES[name](x, _weights(layer))
    scale = np.tile(1 / np.sqrt(before.var(axis=0) + 1e-10), g0.size // before.shape[-1])
    bias = layer.layer.cell.bias.numpy()

    def first_call(inputs):
        return layer(inputs, training=True)

    if mode != "eager":
        first_call = tf.function(first_call, jit_compile=mode == "xla")
    outputs = first_call(x)
    assert_close(layer.g, g0 * scale, 1e-4, "g")
    np.testing.assert_array_equal(layer.layer.cell.bias.numpy(), bias)
    assert_close(outputs, RNN_REFERENCES[name](x, _weights(layer)), 2e-5, "first output uses the new g")


@pytest.mark.data_format
def test_channels_first_convolutions_use_channel_axis_1():
    x = np.random.default_rng(5).normal(size=(3, 2, 7)).astype("float32")
    layer = WeightNormalization(keras.layers.Conv1D(3, 3, data_format="channels_first"))
    layer.build(x.shape)
    pre = correlate_valid(x.transpose(0, 2, 1), effective_kernel(layer.v.numpy(), np.ones(3)))
    scale = 1 / np.sqrt(pre.var(axis=(0, 1)) + 1e-10)
    outputs = layer(x, training=True)
    assert_close(layer.g, scale, 1e-4, "g")
    assert_close(layer.layer.bias, -pre.mean(axis=(0, 1)) * scale, 1e-4, "bias")
    expected = (pre - pre.mean(axis=(0, 1))) * scale
    assert_close(outputs, expected.transpose(0, 2, 1), 2e-5, "channels-first output")


@pytest.mark.data_format
@pytest.mark.parametrize("mode", ["eager", "graph", "xla"])
@pytest.mark.parametrize("name", ["conv1d", "conv2d", "conv3d", "conv2d_transpose"])
def test_channels_first_convolutions_match_the_reference_on_every_machine(name, mode):
    """Channels first runs even where TensorFlow's CPU kernels take NHWC only (no oneDNN)."""
    layer, x = _wrapped(name, data_format="channels_first")
    layer.initialized.assign(True)
    upstream = np.random.default_rng(1).normal(size=layer.compute_output_shape(x.shape)).astype("float32")

    def forward(inputs):
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            outputs = layer(inputs)
            loss = tf.reduce_sum(outputs * upstream)
        return outputs, tape.gradient(loss, inputs)

    if mode != "eager":
        forward = tf.function(forward, jit_compile=mode == "xla")
    outputs, gradient = forward(tf.constant(x))
    reference = _reference(name)

    def channels_first_reference(inputs, weights):
        return _to_channels_first(reference(np.moveaxis(inputs, 1, -1), weights))

    weights = _weights(layer)
    assert_close(outputs, channels_first_reference(x, weights), 2e-5, "channels-first output")
    expected = numerical_gradient(lambda v: channels_first_reference(v, weights), x, upstream)
    assert_close(gradient, expected, 1e-4, "channels-first d/dinput")


def test_data_init_with_an_rnn_warns_as_tfa():
    with pytest.warns(UserWarning, match="data_init=False"):
        WeightNormalization(keras.layers.LSTM(2))


# ----------------------------------------------------------------------------- models


def _model(data_init=True, seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((6, 6, 2), name="image")
    h = WeightNormalization(keras.layers.Conv2D(4, 3, activation="relu"), data_init=data_init)(inputs)
    h = keras.layers.Reshape((4, 16))(h)
    h = WeightNormalization(keras.layers.GRU(4), data_init=False)(h)
    return keras.Model(inputs, WeightNormalization(keras.layers.Dense(2), data_init=data_init)(h))


def _data(count=64, seed=0):
    x = np.random.default_rng(seed).normal(size=(count, 6, 6, 2)).astype("float32")
    return x, np.stack([x[..., 0].mean(axis=(1, 2)), x[..., 1].std(axis=(1, 2))], axis=-1)


def test_graph_mode_fit_initializes_from_the_first_batch_then_lowers_the_loss():
    x, y = _data()
    model = _model()
    conv = model.layers[1]
    g0, kernel = conv.g.numpy().astype(np.float64), conv.v.numpy()
    # One step at learning rate 0: what remains is the data-dependent initialization, in a tf.function.
    model.compile(optimizer=keras.optimizers.Adam(0.0), loss="mse")
    model.fit(x, y, batch_size=64, epochs=1, verbose=0, shuffle=False)
    assert all(layer.initialized.numpy() for layer in model.layers if isinstance(layer, WeightNormalization))
    pre = correlate_valid(x, effective_kernel(kernel, g0))
    scale = 1 / np.sqrt(pre.var(axis=(0, 1, 2)) + 1e-10)
    assert_close(conv.g, g0 * scale, 1e-4, "g after the graph-mode step")
    assert_close(conv.layer.bias, -pre.mean(axis=(0, 1, 2)) * scale, 1e-4, "bias after the graph-mode step")

    model.optimizer.learning_rate.assign(0.01)
    before = model.evaluate(x, y, verbose=0)
    model.fit(x, y, batch_size=16, epochs=8, verbose=0)
    assert model.evaluate(x, y, verbose=0) < 0.7 * before


def test_xla_matches_graph_mode_including_the_initialization():
    x = tf.constant(_data(8, seed=1)[0])
    upstream = tf.constant(np.random.default_rng(2).normal(size=(8, 2)), tf.float32)
    results = []
    for jit_compile in (False, True):
        model = _model(seed=3)

        def step(inputs, model=model):
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(model(inputs, training=True) * upstream)
            return loss, tape.gradient(loss, model.trainable_weights)

        step = tf.function(step, jit_compile=jit_compile)
        first, second = step(x), step(x)  # the first call initializes, the second does not
        results.append((first, second, [w.numpy() for w in model.weights]))
    (graph_first, graph_second, graph_weights), (xla_first, xla_second, xla_weights) = results
    for graph, xla in ((graph_first, xla_first), (graph_second, xla_second)):
        assert_close(xla[0], graph[0], 1e-4, "XLA loss")
        for a, b in zip(xla[1], graph[1], strict=True):
            assert_close(a, b, 1e-4, "XLA gradient")
    for a, b in zip(xla_weights, graph_weights, strict=True):
        assert_close(a, b, 1e-5, "XLA weights")


def test_keras_file_and_config_round_trips(tmp_path):
    x, y = _data(16)
    model = _model()
    model.compile(optimizer="adam", loss="mse")
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    model.save(tmp_path / "wn.keras")
    loaded = keras.saving.load_model(tmp_path / "wn.keras")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    for original, restored in zip(model.layers[1:], loaded.layers[1:], strict=True):
        assert [w.name for w in restored.weights] == [w.name for w in original.weights]
        for a, b in zip(restored.weights, original.weights, strict=True):
            np.testing.assert_array_equal(a.numpy(), b.numpy())

    layer = model.layers[1]
    config = layer.get_config()
    assert config["data_init"] is True and config["layer"]["class_name"] == "Conv2D"
    clone = WeightNormalization.from_config(config)
    clone.build((None, 6, 6, 2))
    assert clone.get_config() == config
    assert_arguments_are_attributes(layer)
    serialized = keras.layers.serialize(layer)
    assert serialized["registered_name"] == "keras_norms>WeightNormalization"
    assert type(keras.layers.deserialize(serialized).layer) is keras.layers.Conv2D


@pytest.mark.parametrize("name", ["dense", "conv2d", "conv2d_transpose", "lstm"])
@pytest.mark.parametrize("data_init", [True, False])
def test_remove_returns_the_plain_layer_with_the_effective_kernel(name, data_init):
    layer, x = _wrapped(name, data_init=data_init)
    layer(x, training=True)
    outputs = layer(x)
    expected_kernel = effective_kernel(layer.v.numpy(), layer.g.numpy(), CASES[name][3])
    plain = layer.remove()
    assert plain is layer.layer and type(plain) is type(CASES[name][0]())
    kernel = plain.cell.recurrent_kernel if name == "lstm" else plain.kernel
    np.testing.assert_allclose(kernel, expected_kernel, rtol=1e-6, atol=1e-6)
    assert_close(plain(x), outputs, 1e-6, "plain layer vs wrapper")
    model = keras.Sequential([keras.Input(x.shape[1:]), plain])
    assert_close(model(x), outputs, 1e-6, "in a new model")


def test_weight_order_and_bad_tfa_weight_lists():
    layer, _ = _wrapped("dense", data_init=True)
    assert [w.name for w in layer.weights] == ["g", "initialized", "kernel", "bias"]
    assert [w.name for w in layer.trainable_weights + layer.non_trainable_weights] == [
        "g", "kernel", "bias", "initialized"]  # tensorflow-addons' order (Keras' legacy .h5 order)
    rnn, _ = _wrapped("lstm")
    assert [w.name for w in rnn.weights] == ["g", "initialized", "kernel", "recurrent_kernel", "bias"]
    g, kernel, bias = (w.numpy() for w in layer.trainable_weights)
    with pytest.raises(ValueError, match="Received: 3 weights"):
        layer.set_tfa_weights([g, kernel, bias])
    with pytest.raises(ValueError, match=re.escape("'kernel' has shape (5, 3)")):
        layer.set_tfa_weights([g + 1, kernel.T, bias, np.array(False)])
    np.testing.assert_array_equal(layer.g.numpy(), g)  # nothing assigned from a bad list


def _write_tfa_h5(path, values):
    """A Keras 2 weights file as tensorflow-addons wrote it for Sequential([WeightNormalization(Dense)])."""
    import h5py

    clone = "weight_normalization/data_dep_init/dense"
    names = ["weight_normalization/g:0", "dense/kernel:0", "dense/bias:0",
             "weight_normalization/initialized:0", f"{clone}/kernel:0", f"{clone}/bias:0"][: len(values)]
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [b"weight_normalization"]
        f.attrs["backend"], f.attrs["keras_version"] = b"tensorflow", b"2.15.0"
        group = f.create_group("weight_normalization")
        group.attrs["weight_names"] = [name.encode() for name in names]
        for name, value in zip(names, values, strict=True):
            group.create_dataset(name, data=value)


@pytest.mark.parametrize("data_init", [False, True])
def test_tfa_h5_weight_files_load(tmp_path, data_init):
    rng = np.random.default_rng(6)
    g, kernel, bias = rng.normal(size=3), rng.normal(size=(5, 3)), rng.normal(size=3)
    values = [g, kernel, bias, np.array(True)] + ([kernel, bias] if data_init else [])
    _write_tfa_h5(tmp_path / "tfa.h5", values)
    wrapper = WeightNormalization(keras.layers.Dense(3), data_init=data_init)
    model = keras.Sequential([keras.Input((5,)), wrapper])
    if data_init:  # tfa also saved its _naked_clone_layer's copies: Keras' loader counts 6 weights, not 4
        with pytest.raises(ValueError, match="Weight count mismatch"):
            model.load_weights(tmp_path / "tfa.h5")
        wrapper.set_tfa_weights(values)  # tfa's order; the clone's copies are dropped
    else:
        model.load_weights(tmp_path / "tfa.h5")
    x = rng.normal(size=(4, 5)).astype("float32")
    assert wrapper.initialized.numpy()
    assert_close(model(x), x @ effective_kernel(kernel, g) + bias, 2e-5, "loaded tfa weights")


# ----------------------------------------------------------------------------- dtypes and export


def test_mixed_bfloat16_computes_the_kernel_in_float32():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    for name in ("dense", "conv2d", "lstm"):
        layer, x = _wrapped(name, data_init=True)
        assert layer.g.dtype == "float32" and layer.v.dtype == "float32" and layer.initialized.dtype == "bool"
        outputs = layer(x * 1e4, training=True)
        assert outputs.dtype == "bfloat16" and np.all(np.isfinite(keras.ops.convert_to_numpy(
            keras.ops.cast(outputs, "float32"))))
        outputs = keras.ops.cast(layer(x), "float32")
        assert_close(outputs, _reference(name)(x, _weights(layer)), 0.1, f"{name} under mixed_bfloat16")
        # The float32 effective kernel rounded once to bfloat16: exactly what the plain layer computes.
        np.testing.assert_array_equal(keras.ops.cast(layer.remove()(x), "float32"), outputs)


def test_converts_to_tflite_builtins_as_the_plain_layers():
    model = _model()
    model = keras.Model(model.input, model.layers[1].output)  # the WeightNormalization(Conv2D) alone
    x, _ = _data(2, seed=5)
    model(x, training=True)  # initialize from data
    content = convert_builtin_only(model, {"image": x})
    (outputs,), max_rank, ops = run_litert(content, {"image": x})
    assert max_rank <= 4 and "CONV_2D" in ops, (max_rank, ops)
    assert not ops & {"SQRT", "RSQRT", "SUM", "SELECT", "SELECT_V2", "MAXIMUM", "WHILE", "IF"}, ops
    assert_close(outputs, model(x), 1e-5, "LiteRT vs Keras")


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(("make", "error", "message"), [
    (lambda: WeightNormalization(np.ones(3)), TypeError, "Received: layer=array"),
    (lambda: WeightNormalization(keras.layers.MaxPooling2D()), ValueError, "Received: layer=MaxPooling2D"),
    (lambda: WeightNormalization(keras.layers.DepthwiseConv2D(3)), ValueError, "layer=DepthwiseConv2D"),
    (lambda: WeightNormalization(keras.layers.Dense(2), data_init="yes"), TypeError, "data_init='yes'"),
    (lambda: WeightNormalization(keras.layers.Dense(2), data_init=1), TypeError, "data_init=1"),
    (lambda: WeightNormalization(keras.layers.Dense(2, activity_regularizer="l2")), ValueError,
     "layer.activity_regularizer="),
    (lambda: WeightNormalization(keras.layers.RNN(keras.layers.StackedRNNCells(
        [keras.layers.SimpleRNNCell(2)])), data_init=False).build((1, 3, 2)), ValueError,
     "needs a `recurrent_kernel` variable in StackedRNNCells"),
])
def test_bad_input_names_the_argument_and_value(make, error, message):
    with pytest.raises(error, match=re.escape(message)):
        make()


def test_tfa_layout_normalizes_a_transposed_convolution_per_input_channel_as_tfa():
    from keras_norms.weight_norm import TfaWeightNormalization

    rng = np.random.default_rng(11)
    x = rng.normal(size=(2, 4, 4, 3)).astype("float32")
    layer = TfaWeightNormalization(keras.layers.Conv2DTranspose(5, 3, strides=2), data_init=False)
    layer(x)
    assert tuple(layer.g.shape) == (3,)  # tfa: one length per slice of the kernel's last axis
    layer.set_tfa_weights([rng.uniform(0.5, 2.0, 3), rng.normal(size=(3, 3, 5, 3)), rng.normal(size=5),
                           np.array(True)])
    kernel = effective_kernel(layer.v.numpy(), layer.g.numpy(), output_axis=-1)
    expected = conv_transpose_2d_valid(x, kernel, stride=2)[:, :9, :9] + layer.layer.bias.numpy()
    assert_close(layer(x), expected, 1e-5, "tfa transposed convolution")
