"""Checks shared by the tests of the adaptive, response and weight-standardized layers.

Gradients against central differences of a float64 reference, and TFLite
conversion with built-in ops only plus LiteRT outputs. Small models are
converted directly with `tf.lite.TFLiteConverter` (from a concrete function
whose variables are frozen to constants, as in an exported inference graph)
rather than through `keras_norms.export`, so that these tests test the layers
alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import references as R
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2


def assert_close(actual, expected, atol: float, what: str) -> float:
    """Max abs error of `actual` against `expected` (shapes equal), asserted to be <= `atol`; returned."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    error = float(np.max(np.abs(actual - expected))) if actual.size else 0.0
    assert error <= atol, f"{what}: max abs error {error:.3g} > {atol:g}"
    return error


def weights_of(layer) -> dict[str, np.ndarray]:
    """The layer's weights by name, in float64."""
    return {w.name: np.asarray(w.numpy(), dtype=np.float64) for w in layer.weights}


def assert_gradients_match(
    call: Callable,
    reference: Callable[[Sequence[np.ndarray], dict], np.ndarray],
    arrays: Sequence[np.ndarray],
    layer,
    *,
    seed: int = 0,
    atol: float = 1e-5,
) -> None:
    """The gradients of ``sum(call(*arrays) * upstream)`` with respect to every input array and every
    trainable weight of `layer` match central differences of `reference(arrays, weights)` (float64)."""
    weights = weights_of(layer)
    expected_output = reference(arrays, weights)
    upstream = np.random.default_rng(seed).normal(size=expected_output.shape)
    tensors = [tf.constant(a) for a in arrays]
    with tf.GradientTape() as tape:
        tape.watch(tensors)
        outputs = tf.cast(call(*tensors), tf.float32)
        loss = tf.reduce_sum(outputs * tf.constant(upstream, tf.float32))
    trainable = list(layer.trainable_weights)
    assert trainable or not layer.weights, "the layer has weights but none is trainable"
    grads = tape.gradient(loss, tensors + trainable)
    for i, array in enumerate(arrays):

        def of_input(value, i=i):
            return reference([*arrays[:i], value, *arrays[i + 1:]], weights)

        assert grads[i] is not None, f"no gradient for input {i}"
        assert_close(grads[i], R.numerical_gradient(of_input, array, upstream), atol, f"d/dinput{i}")
    for weight, grad in zip(trainable, grads[len(arrays):], strict=True):

        def of_weight(value, name=weight.name):
            return reference(arrays, {**weights, name: value})

        assert grad is not None, f"no gradient for {weight.name}"
        expected = R.numerical_gradient(of_weight, weights[weight.name], upstream)
        assert_close(grad, expected, atol, f"d/d{weight.name}")


def convert_builtin_only(model, inputs: dict[str, np.ndarray]) -> bytes:
    """`model` as a float32 `.tflite` file with the static shapes of `inputs`, in inference mode.

    The model is called with a dict of the inputs by name if its inputs are a
    dict, else with the one input or a list of the inputs in the order of
    `inputs`; conversion fails on any op that is not a TFLite built-in.
    """
    specs = [tf.TensorSpec(value.shape, tf.float32, name=name) for name, value in inputs.items()]

    def infer(*arrays):
        if isinstance(model.input, dict):
            outputs = model(dict(zip(inputs, arrays, strict=True)), training=False)
        else:
            outputs = model(list(arrays) if len(arrays) > 1 else arrays[0], training=False)
        return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]

    traced = tf.function(infer, input_signature=specs).get_concrete_function()
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [convert_variables_to_constants_v2(traced)], model
    )
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return converter.convert()


def run_litert(content: bytes, inputs: dict[str, np.ndarray]) -> tuple[list[np.ndarray], int, set[str]]:
    """Runs `content` with the LiteRT interpreter on `inputs` (by name).

    Returns:
        The outputs in order, the highest rank of any tensor of the graph,
        and the names of the ops it runs.
    """
    interpreter = Interpreter(model_content=content)
    interpreter.allocate_tensors()
    for detail in interpreter.get_input_details():
        # The converter names inputs "x" or "serving_default_x:0".
        name = detail["name"].removeprefix("serving_default_").split(":")[0]
        interpreter.set_tensor(detail["index"], inputs[name])
    interpreter.invoke()
    outputs = [interpreter.get_tensor(detail["index"]) for detail in interpreter.get_output_details()]
    max_rank = max(len(detail["shape"]) for detail in interpreter.get_tensor_details())
    ops = {op["op_name"] for op in interpreter._get_ops_details()}
    return outputs, max_rank, ops


def assert_arguments_are_attributes(layer) -> None:
    """Every constructor argument of `layer` is an attribute holding the value its config reports."""
    import inspect

    import keras

    config = layer.get_config()
    parameters = inspect.signature(type(layer).__init__).parameters
    for name, parameter in parameters.items():
        if name == "self" or parameter.kind in (parameter.VAR_KEYWORD, parameter.VAR_POSITIONAL):
            continue
        assert hasattr(layer, name), f"{type(layer).__name__} has no attribute `{name}`"
        value = getattr(layer, name)
        if name in config:
            reported = config[name]
            as_config = keras.saving.serialize_keras_object(value) if hasattr(value, "get_config") else value
            if callable(value) and not hasattr(value, "get_config"):  # an activation function
                as_config = keras.activations.serialize(value)
            what = f"{type(layer).__name__}.{name}"
            assert as_config == reported, f"{what}: {as_config!r} != config {reported!r}"
