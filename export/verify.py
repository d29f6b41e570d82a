"""Parity of the exported artefacts with the Keras model: LiteRT, the reloaded SavedModel, accuracy."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tensorflow as tf
from keras_norms.export.signature import SIGNATURE_KEY, TensorInfo, call_model
from keras_norms.export.tflite import make_interpreter

#: Inputs by signature name, every array with the same number of examples on axis 0.
Batch = dict[str, np.ndarray]


def num_examples(inputs: Batch) -> int:
    return len(next(iter(inputs.values())))


def random_inputs(infos: list[TensorInfo], count: int, seed: int = 0) -> Batch:
    """`count` random examples per input: standard normal floats, small non-negative integers."""
    rng = np.random.default_rng(seed)
    batch = {}
    for info in infos:
        shape = (count, *info.shape[1:])
        if np.issubdtype(np.dtype(info.dtype), np.floating):
            batch[info.name] = rng.normal(size=shape).astype(info.dtype)
        elif info.dtype == "bool":
            batch[info.name] = rng.random(shape) < 0.5
        else:
            batch[info.name] = rng.integers(0, 2, size=shape).astype(info.dtype)
    return batch


def _in_batches(run: Callable[[Batch], dict], inputs: Batch, batch_size: int | None) -> dict:
    """Runs `run` on slices of `batch_size` examples (the last one zero-padded) and concatenates."""
    total = num_examples(inputs)
    step = batch_size or 64
    pieces: dict[str, list] = {}
    for start in range(0, total, step):
        chunk = {k: v[start:start + step] for k, v in inputs.items()}
        size = num_examples(chunk)
        if batch_size and size < batch_size:
            chunk = {k: np.concatenate([v, np.zeros((batch_size - size, *v.shape[1:]), v.dtype)])
                     for k, v in chunk.items()}
        for name, value in run(chunk).items():
            pieces.setdefault(name, []).append(np.asarray(value)[:size])
    return {name: np.concatenate(values) for name, values in pieces.items()}


def run_keras(model, infos: list[TensorInfo], output_names: list[str], inputs: Batch) -> dict:
    """The Keras model's outputs in inference mode, by output name."""

    def run(chunk):
        outputs = call_model(model, [chunk[info.name] for info in infos])
        return {name: np.asarray(t) for name, t in zip(output_names, outputs, strict=True)}

    return _in_batches(run, inputs, None)


def _quantize(value: np.ndarray, detail: dict) -> np.ndarray:
    dtype = np.dtype(detail["dtype"])
    scale, zero_point = detail["quantization"]
    if not np.issubdtype(dtype, np.integer) or scale == 0:
        return value.astype(dtype)
    info = np.iinfo(dtype)
    return np.clip(np.round(value / scale + zero_point), info.min, info.max).astype(dtype)


def _dequantize(value: np.ndarray, detail: dict) -> np.ndarray:
    scale, zero_point = detail["quantization"]
    if not np.issubdtype(np.dtype(detail["dtype"]), np.integer) or scale == 0:
        return value
    return (value.astype(np.float32) - zero_point) * scale


def run_tflite(content: bytes, inputs: Batch, batch_size: int | None) -> dict:
    """Runs a `.tflite` model with LiteRT (default delegates, as deployed) on float inputs.

    Integer-quantized inputs are quantized and outputs dequantized with the
    tensors' own scale and zero point, so the result compares with Keras.
    """
    runner = make_interpreter(content).get_signature_runner(SIGNATURE_KEY)
    input_details, output_details = runner.get_input_details(), runner.get_output_details()

    def run(chunk):
        feed = {name: _quantize(value, input_details[name]) for name, value in chunk.items()}
        outputs = runner(**feed)
        return {name: _dequantize(value, output_details[name]) for name, value in outputs.items()}

    return _in_batches(run, inputs, batch_size)


def run_saved_model(directory: str, inputs: Batch, batch_size: int | None) -> dict:
    """Reloads the SavedModel with `tf.saved_model.load` and runs its serving signature."""
    signature = tf.saved_model.load(directory).signatures[SIGNATURE_KEY]

    def run(chunk):
        outputs = signature(**{name: tf.constant(value) for name, value in chunk.items()})
        return {name: t.numpy() for name, t in outputs.items()}

    return _in_batches(run, inputs, batch_size)


def errors(expected: dict, actual: dict) -> dict:
    """Max absolute error over all outputs, and that error relative to the largest Keras output."""
    max_abs = max(
        float(np.max(np.abs(actual[name].astype(np.float64) - value.astype(np.float64)), initial=0.0))
        for name, value in expected.items()
    )
    largest = max(float(np.max(np.abs(value.astype(np.float64)), initial=0.0)) for value in expected.values())
    return {"max_abs_error": max_abs, "max_rel_error": max_abs / largest if largest > 0 else max_abs}


def accuracy(outputs: dict, output_names: list[str], labels: np.ndarray) -> float:
    """Classification accuracy of the first output (argmax of its last axis) against `labels`.

    `labels` holds class indices, or one-hot rows (then their argmax is used).
    """
    predicted = np.argmax(outputs[output_names[0]], axis=-1)
    labels = np.asarray(labels)
    if labels.ndim == predicted.ndim + 1:
        labels = np.argmax(labels, axis=-1)
    return float(np.mean(predicted == labels.reshape(predicted.shape)))
