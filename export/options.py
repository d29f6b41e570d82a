"""The arguments of `export_model`, checked before any work, and the input data they carry."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import keras
import numpy as np
from keras_norms.export import signature, tflite, verify

FORMATS = ("saved_model", "tflite")
#: Examples of `representative_data` used for int8 calibration (more examples give tighter, less
#: noisy activation ranges: on the digits CNN, 1024 instead of 256 halved the accuracy loss of
#: group/instance norm) and for verification.
MAX_CALIBRATION = 1024
MAX_REPRESENTATIVE = 256


@dataclasses.dataclass(frozen=True)
class ExportPlan:
    """Checked arguments of `export_model`: what to write, the signature, the data sets."""

    formats: tuple[str, ...]
    quantizations: tuple[str, ...]
    inputs: list[signature.TensorInfo]
    output_names: list[str]
    batch_size: int | None
    calibration: verify.Batch | None
    representative: verify.Batch | None
    eval_inputs: verify.Batch | None
    eval_labels: np.ndarray | None


def _check_formats(formats) -> tuple[str, ...]:
    if isinstance(formats, str) or not isinstance(formats, Sequence) or not formats:
        raise ValueError(
            f"Argument `formats` must be a non-empty tuple of {FORMATS}, e.g. formats=('tflite',). "
            f"Received: formats={formats!r}"
        )
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or len(set(formats)) != len(formats):
        raise ValueError(
            f"Argument `formats` takes each of {FORMATS} at most once. Received: formats={formats!r}"
        )
    return tuple(formats)


def _check_quantize(quantize, formats) -> tuple[str, ...]:
    if quantize is None:
        return ()
    values = (quantize,) if isinstance(quantize, str) else quantize
    if not isinstance(values, Sequence) or not values or any(v not in tflite.QUANTIZATIONS for v in values):
        raise ValueError(
            f"Argument `quantize` must be None, one of {tflite.QUANTIZATIONS} or a tuple of them. "
            f"Received: quantize={quantize!r}"
        )
    if "tflite" not in formats:
        raise ValueError(
            f"quantize={quantize!r} writes TFLite files; add 'tflite' to `formats`. "
            f"Received: formats={formats!r}"
        )
    return tuple(dict.fromkeys(values))


def _check_batch_size(batch_size) -> int | None:
    if batch_size is None:
        return None
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(
            "Argument `batch_size` must be a positive int (a static batch), or None to keep a dynamic "
            f"batch. Received: batch_size={batch_size!r}"
        )
    return int(batch_size)


def _as_batch(data, infos: list[signature.TensorInfo], argument: str) -> verify.Batch:
    """`data` (an array, a list of arrays in input order, or a dict by input name) as a Batch."""
    names = [info.name for info in infos]
    if isinstance(data, dict):
        if set(data) != set(names):
            raise ValueError(
                f"Argument `{argument}` must have one entry per model input, keyed {names}. "
                f"Received keys: {sorted(data)}"
            )
        arrays = [data[name] for name in names]
    elif isinstance(data, (list, tuple)) and len(infos) > 1:
        if len(data) != len(infos):
            raise ValueError(
                f"Argument `{argument}` must hold one array per model input ({len(infos)}: {names}). "
                f"Received {len(data)} arrays."
            )
        arrays = list(data)
    else:
        if len(infos) > 1:
            raise ValueError(
                f"The model has {len(infos)} inputs {names}: pass `{argument}` as a dict keyed by input "
                "name or a list of arrays in that order."
            )
        arrays = [data[0] if isinstance(data, (list, tuple)) and len(data) == 1 else data]
    batch = {}
    for info, array in zip(infos, arrays, strict=True):
        array = np.asarray(array)
        if array.ndim != len(info.shape) or tuple(array.shape[1:]) != tuple(info.shape[1:]):
            raise ValueError(
                f"Argument `{argument}` for input {info.name!r} must have shape (examples, "
                f"{', '.join(str(d) for d in info.shape[1:])}). Received shape {array.shape}"
            )
        batch[info.name] = array.astype(info.dtype)
    counts = {len(a) for a in batch.values()}
    if len(counts) != 1 or 0 in counts:
        raise ValueError(
            f"Argument `{argument}` must hold the same, non-zero number of examples for every input. "
            f"Received: {({k: len(v) for k, v in batch.items()})}"
        )
    return batch


def make_plan(model, formats, quantize, representative_data, batch_size, eval_data) -> ExportPlan:
    """Every argument check, before any work."""
    if not isinstance(model, keras.Model):
        raise ValueError(f"Argument `model` must be a keras.Model. Received: model={model!r}")
    if not model.built:
        raise ValueError(
            f"Model {model.name!r} is not built: give it a `keras.Input(shape)` (or call it on data) "
            "before exporting."
        )
    formats = _check_formats(formats)
    quantizations = _check_quantize(quantize, formats)
    batch_size = _check_batch_size(batch_size)
    inputs = signature.model_inputs(model, batch_size)
    if "int8" in quantizations and representative_data is None:
        raise ValueError(
            "quantize='int8' calibrates activation ranges on `representative_data`: pass a few hundred "
            "typical inputs (e.g. training images). Received: representative_data=None"
        )
    calibration = representative = None
    if representative_data is not None:
        calibration = _as_batch(representative_data, inputs, "representative_data")
        calibration = {k: v[:MAX_CALIBRATION] for k, v in calibration.items()}
        representative = {k: v[:MAX_REPRESENTATIVE] for k, v in calibration.items()}
    eval_inputs = eval_labels = None
    if eval_data is not None:
        if not isinstance(eval_data, (list, tuple)) or len(eval_data) != 2:
            raise ValueError(
                "Argument `eval_data` must be a pair (x, y) of inputs and class labels. "
                f"Received: {type(eval_data).__name__}"
            )
        eval_inputs = _as_batch(eval_data[0], inputs, "eval_data")
        eval_labels = np.asarray(eval_data[1])
        if len(eval_labels) != verify.num_examples(eval_inputs):
            raise ValueError(
                f"`eval_data` has {verify.num_examples(eval_inputs)} inputs but {len(eval_labels)} labels."
            )
    return ExportPlan(formats, quantizations, inputs, signature.model_output_names(model), batch_size,
                 calibration, representative, eval_inputs, eval_labels)
