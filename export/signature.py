"""The serving signature: named inputs and outputs, a frozen inference graph, the SavedModel."""

from __future__ import annotations

import dataclasses
import re

import keras
import tensorflow as tf
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

SIGNATURE_KEY = "serving_default"


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    """One named input or output of the exported signature (`None` in `shape`: a dynamic axis)."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str

    def to_json(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}


def _signature_name(name: str) -> str:
    # Signature keys become TensorFlow op names: letters, digits and `_.-`, not starting with `_-`.
    name = re.sub(r"[^A-Za-z0-9_.\-]", "_", str(name)) or "tensor"
    return name if re.match(r"[A-Za-z0-9.]", name) else f"t{name}"


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    unique = []
    for name in names:
        candidate = name
        while candidate in seen:
            seen[name] += 1
            candidate = f"{name}_{seen[name]}"
        seen[candidate] = 0
        unique.append(candidate)
    return unique


def _graph(model: keras.Model):
    return getattr(model, "_functional", None) if isinstance(model, keras.Sequential) else model


def _names(struct, tensors) -> list[str]:
    """Dict keys when `struct` is a dict of tensors, else the producing layers' names."""
    if isinstance(struct, dict) and all(isinstance(k, str) for k in struct):
        return _unique([_signature_name(k) for k in sorted(struct)])
    return _unique([_signature_name(t._keras_history.operation.name) for t in tensors])


def model_inputs(model: keras.Model, batch_size: int | None) -> list[TensorInfo]:
    """The model's inputs as the exported signature has them: named, with `batch_size` as batch axis.

    Raises:
        ValueError: The model has no symbolic inputs (a subclassed model), or an
            input has an undefined axis other than the batch, or a fixed batch
            size other than `batch_size`.
    """
    inputs = getattr(model, "inputs", None)
    if not inputs:
        raise ValueError(
            f"Model {model.name!r} has no input shape (a subclassed model, or one built without "
            "`keras.Input`): export needs a Sequential or functional model with `keras.Input(shape)`, "
            "e.g. `keras.Model(inputs, model(inputs))` with `inputs = keras.Input(shape)`."
        )
    names = _names(getattr(_graph(model), "_inputs_struct", None), inputs)
    infos = []
    for name, tensor in zip(names, inputs, strict=True):
        shape = tuple(tensor.shape)
        if any(d is None for d in shape[1:]):
            raise ValueError(
                f"Input {name!r} of model {model.name!r} has undefined axes: shape {shape}. TFLite "
                "export needs every axis but the batch defined: build the model with "
                "`keras.Input(shape=...)` giving all sizes."
            )
        if shape[0] is not None and shape[0] != batch_size:
            raise ValueError(
                f"Input {name!r} of model {model.name!r} has a fixed batch size {shape[0]}; pass "
                f"batch_size={shape[0]}. Received: batch_size={batch_size!r}"
            )
        dtype = keras.backend.standardize_dtype(tensor.dtype)
        infos.append(TensorInfo(name, (batch_size, *shape[1:]), dtype))
    return infos


def model_output_names(model: keras.Model) -> list[str]:
    """Names of the model's outputs, in the order of `keras.tree.flatten(model(...))`."""
    graph = _graph(model)
    return _names(getattr(graph, "_outputs_struct", None), keras.tree.flatten(graph.outputs))


def call_model(model: keras.Model, flat_inputs: list):
    """Calls `model` in inference mode on inputs given in the order of `model.inputs`; flat outputs."""
    struct = getattr(_graph(model), "_inputs_struct", None)
    if struct is not None:
        inputs = keras.tree.pack_sequence_as(struct, list(flat_inputs))
    else:
        inputs = flat_inputs[0] if len(flat_inputs) == 1 else list(flat_inputs)
    return keras.tree.flatten(model(inputs, training=False))


def frozen_serving_function(model: keras.Model, inputs: list[TensorInfo], output_names: list[str]):
    """A concrete function with named inputs and outputs, and every variable a constant.

    The model runs in inference mode, so batch norm uses its moving statistics,
    which become graph constants like every other weight.
    """
    specs = [tf.TensorSpec(info.shape, info.dtype, name=info.name) for info in inputs]

    def infer(*tensors):
        return call_model(model, tensors)

    traced = tf.function(infer, input_signature=specs).get_concrete_function()
    frozen = convert_variables_to_constants_v2(traced)

    def serve(*tensors):
        outputs = frozen(*tensors)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        return {name: tf.identity(t, name=name) for name, t in zip(output_names, outputs, strict=True)}

    return tf.function(serve, input_signature=specs).get_concrete_function()


def write_saved_model(function, directory: str) -> None:
    """Writes a SavedModel whose `serving_default` signature is `function`.

    The signature is an inference graph with constant weights, so custom gradients (SiLU's,
    say) are not saved: their captured variables were frozen and cannot be serialized.
    """
    options = tf.saved_model.SaveOptions(experimental_custom_gradients=False)
    tf.saved_model.save(tf.Module(), directory, signatures={SIGNATURE_KEY: function}, options=options)
