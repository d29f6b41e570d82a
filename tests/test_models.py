"""keras_norms.models: the factories with every norm, and the LayerNormLSTMCell against NumPy."""

from __future__ import annotations

import inspect

import keras
import numpy as np
import pytest
from keras_norms.models import LayerNormLSTMCell, build_model, lenet, model_names, resnet
from references import layer_norm

import keras_norms

#: Tiny inputs and widths: each case builds, takes one graph-mode step and saves in about a second.
TINY = {
    "paper_cnn": ((22, 22, 2), {"width": 4}),
    "lenet": ((16, 16, 1), {}),
    "resnet": ((8, 8, 3), {"depth": 8, "width": 4}),
    "sequence": ((5, 3), {"units": 4}),
}


def _single_input(name: str) -> bool:
    """True for registry norms called on one tensor (conditional norms also take the condition)."""
    layer = keras_norms.get(name)
    required = [p for p in inspect.signature(layer.call).parameters.values()
                if p.default is inspect.Parameter.empty and p.kind is p.POSITIONAL_OR_KEYWORD]
    return len(required) == 1


SINGLE_INPUT_NORMS = [n for n in keras_norms.names() if _single_input(n)]


def test_the_models_are_known_and_the_core_norms_are_covered():
    assert model_names() == ["paper_cnn", "lenet", "resnet", "sequence", "transformer"]
    # The transformer (which refuses norms of one feature per group) has its own tests: test_transformer.py.
    assert set(TINY) == set(model_names()) - {"transformer"}
    assert {"batch", "layer", "group", "instance", "rms", "none"} <= set(SINGLE_INPUT_NORMS)


@pytest.mark.parametrize("norm", SINGLE_INPUT_NORMS)
@pytest.mark.parametrize("name", list(TINY))
def test_every_model_with_every_norm_trains_a_graph_step_and_round_trips(name, norm, tmp_path):
    shape, options = TINY[name]
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(4, *shape)).astype("float32")
    y = np.array([0, 1, 2, 1])
    keras.utils.set_random_seed(0)
    model = build_model(name, norm, input_shape=shape, num_classes=3, **options)
    assert model.output_shape == (None, 3)
    model.compile(optimizer=keras.optimizers.SGD(0.1),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = [w.numpy().copy() for w in model.trainable_weights]
    history = model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert not model.run_eagerly
    assert np.isfinite(history.history["loss"][0])
    changed = [not np.array_equal(b, w.numpy()) for b, w in zip(before, model.trainable_weights, strict=True)]
    assert all(changed[:1]) and sum(changed) >= len(changed) // 2, "one SGD step should move the weights"

    path = tmp_path / f"{name}_{norm}.keras"
    model.save(path)
    reloaded = keras.models.load_model(path)  # no custom_objects: every layer is registered
    np.testing.assert_array_equal(model(x, training=False), reloaded(x, training=False))


def _norm_layers(model, kind):
    return [layer for layer in model._flatten_layers() if isinstance(layer, kind)]


def test_norm_as_class_callable_and_group_options():
    model = build_model("paper_cnn", keras_norms.GroupNormalization, groups=2, input_shape=(22, 22, 1),
                        width=4)
    assert [layer.groups for layer in _norm_layers(model, keras_norms.GroupNormalization)] == [2, 2, 2]

    made = []

    def factory():
        made.append(keras.layers.LayerNormalization(epsilon=1e-5))
        return made[-1]

    model = build_model("lenet", factory, input_shape=(16, 16, 1))
    assert len(made) == 2 and _norm_layers(model, keras.layers.LayerNormalization) == made


def test_group_norm_without_groups_gets_a_divisor_of_each_layers_channels():
    # lenet has 6 and 16 channels; the resnet 4, 8 and 16 (width 4).
    lenet = build_model("lenet", "group")
    assert [layer.groups for layer in _norm_layers(lenet, keras_norms.GroupNormalization)] == [3, 8]
    resnet = build_model("resnet", "group", width=4, input_shape=(8, 8, 3))
    layers = _norm_layers(resnet, keras_norms.GroupNormalization)
    groups = {(layer.groups, layer.gamma.shape[0]) for layer in layers}
    assert groups == {(2, 4), (4, 8), (8, 16)}


def test_batch_norm_options_pass_through():
    model = build_model("resnet", "batch", momentum=0.8, input_shape=(8, 8, 3), width=4)
    momenta = {layer.momentum for layer in _norm_layers(model, keras_norms.BatchNormalization)}
    assert momenta == {0.8}


def test_sequence_puts_layer_norm_in_the_cell_and_other_norms_between_layers():
    ln = build_model("sequence", "layer", input_shape=(5, 3), units=4)
    cells = [layer.cell for layer in ln.layers if isinstance(layer, keras.layers.RNN)]
    assert len(cells) == 2 and all(isinstance(c, LayerNormLSTMCell) for c in cells)
    assert not _norm_layers(ln, keras_norms.BatchNormalization)

    bn = build_model("sequence", "batch", input_shape=(5, 3), units=4)
    kinds = [type(layer).__name__ for layer in bn.layers]
    assert kinds == ["LSTM", "BatchNormalization", "LSTM", "Dense"]

    plain = build_model("sequence", "none", input_shape=(5, 3), units=4, depth=1)
    assert [type(layer).__name__ for layer in plain.layers] == ["LSTM", "Dense"]


@pytest.mark.parametrize(("call", "error", "message"), [
    (lambda: build_model("vgg"), ValueError,
     "Unknown model 'vgg'. Valid names: paper_cnn, lenet, resnet, sequence"),
    (lambda: build_model("lenet", "batchnorm"), ValueError, "Valid names: batch, layer, group"),
    (lambda: build_model("lenet", keras_norms.BatchNormalization()), TypeError, "cannot be shared"),
    # The factories called directly refuse a shared instance too.
    (lambda: lenet(keras_norms.BatchNormalization()), TypeError, "cannot be shared"),
    (lambda: resnet(keras_norms.GroupNormalization(groups=2), depth=8), TypeError, "cannot be shared"),
    (lambda: build_model("lenet", 3), TypeError, "Received: norm=3"),
    (lambda: build_model("lenet", input_shape=(8, 8, 1)), ValueError, "at least 16x16"),
    (lambda: build_model("paper_cnn", input_shape=(20, 20, 3)), ValueError, "at least 22x22"),
    (lambda: build_model("resnet", depth=10), ValueError, "depth=10"),
    (lambda: build_model("sequence", "batch", depth=1), ValueError, "depth >= 2"),
    (lambda: build_model("lenet", num_classes=0), ValueError, "num_classes=0"),
    (lambda: build_model("paper_cnn", "group", groups=5), ValueError, "groups=5"),
])
def test_bad_arguments_name_the_problem(call, error, message):
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        call()


# ----------------------------------------------------------------------------- LayerNormLSTMCell


def _sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def lstm_step_reference(x, h, c, weights, epsilon=1e-3):
    """One LN-LSTM step in float64 (tensorflow-addons' equations, gates in Keras' order i, f, g, o)."""
    w = {k: np.asarray(v, np.float64) for k, v in weights.items()}
    z = (layer_norm(x @ w["kernel"], w["kernel_gamma"], w["kernel_beta"], epsilon=epsilon)
         + layer_norm(h @ w["recurrent_kernel"], w["recurrent_gamma"], w["recurrent_beta"], epsilon=epsilon)
         + w["bias"])
    i, f, g, o = np.split(z, 4, axis=-1)
    c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
    c = layer_norm(c, w["state_gamma"], w["state_beta"], epsilon=epsilon)
    h = _sigmoid(o) * np.tanh(c)
    return h, c


def _random_cell(units=5, features=3, epsilon=1e-3, **kwargs):
    cell = LayerNormLSTMCell(units, norm_epsilon=epsilon, **kwargs)
    cell.build((None, features))
    rng = np.random.default_rng(1)
    names = ["kernel", "recurrent_kernel", "bias", "kernel_gamma", "kernel_beta",
             "recurrent_gamma", "recurrent_beta", "state_gamma", "state_beta"]
    norms = (cell.kernel_norm, cell.recurrent_norm, cell.state_norm)
    variables = [cell.kernel, cell.recurrent_kernel, cell.bias]
    variables += [v for norm in norms for v in (norm.gamma, norm.beta)]
    weights = {}
    for name, variable in zip(names, variables, strict=True):
        value = rng.normal(scale=0.7, size=variable.shape).astype("float32")
        if name.endswith("gamma"):
            value = 1.0 + value / 2
        variable.assign(value)
        weights[name] = value
    return cell, weights


@pytest.mark.parametrize("epsilon", [1e-3, 0.5])
def test_layer_norm_lstm_cell_step_matches_float64_reference(epsilon):
    cell, weights = _random_cell(epsilon=epsilon)
    rng = np.random.default_rng(2)
    x = rng.normal(size=(4, 3)).astype("float32")
    h = rng.normal(size=(4, 5)).astype("float32")
    c = rng.normal(scale=2.0, size=(4, 5)).astype("float32")
    out, (h_new, c_new) = cell(x, [h, c])
    h_ref, c_ref = lstm_step_reference(x, h, c, weights, epsilon)
    np.testing.assert_allclose(out, h_ref, atol=2e-5)
    np.testing.assert_allclose(h_new, h_ref, atol=2e-5)
    np.testing.assert_allclose(c_new, c_ref, atol=2e-5)


def test_layer_norm_lstm_in_rnn_carries_the_normalized_state_over_a_sequence():
    cell, weights = _random_cell()
    x = np.random.default_rng(3).normal(size=(2, 6, 3)).astype("float32")
    outputs = keras.layers.RNN(cell, return_sequences=True)(x)
    h, c = np.zeros((2, 5)), np.zeros((2, 5))
    for t in range(6):
        h, c = lstm_step_reference(x[:, t], h, c, weights)
        np.testing.assert_allclose(outputs[:, t], h, atol=5e-5)


def test_layer_norm_lstm_cell_config_weights_and_dropout():
    cell, _ = _random_cell(dropout=0.5, recurrent_dropout=0.5, norm_gamma_initializer="zeros")
    config = cell.get_config()
    tfa_keys = {"units", "norm_gamma_initializer", "norm_beta_initializer", "norm_epsilon", "dropout"}
    assert tfa_keys <= set(config)  # tensorflow-addons' config keys
    clone = LayerNormLSTMCell.from_config(config)
    assert clone.get_config() == config
    assert len(cell.weights) == 9  # kernel, recurrent kernel, bias, and gamma/beta of three norms
    clone.build((None, 3))
    assert np.all(clone.state_norm.gamma.numpy() == 0.0)  # norm_gamma_initializer reached the norms

    # Dropout acts in training only: inference matches the cell without dropout.
    x = np.random.default_rng(4).normal(size=(8, 7, 3)).astype("float32")
    rnn = keras.layers.RNN(cell)
    no_dropout = LayerNormLSTMCell(5)
    plain = keras.layers.RNN(no_dropout)
    plain.build(x.shape)
    no_dropout.set_weights(cell.get_weights())
    np.testing.assert_allclose(rnn(x, training=False), plain(x), atol=1e-6)
    assert not np.allclose(rnn(x, training=True), plain(x), atol=1e-3)


def test_layer_norm_lstm_cell_rejects_bad_epsilon():
    with pytest.raises(ValueError, match="epsilon=0"):
        LayerNormLSTMCell(4, norm_epsilon=0)
