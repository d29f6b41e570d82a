"""TFLite conversion with built-in ops only, quantization, and inspection of the converted graph."""

from __future__ import annotations

import dataclasses
import re
import warnings
from collections import Counter
from collections.abc import Callable, Iterable

import numpy as np
import tensorflow as tf
from keras_norms.export.errors import ExportError, UnsupportedOpError
from keras_norms.export.signature import SIGNATURE_KEY

#: `quantize=` values and the file each one writes (`None`: the float32 model).
QUANTIZATIONS = ("float16", "dynamic", "int8")
FILE_NAMES = {
    None: "model.tflite",
    "float16": "model_float16.tflite",
    "dynamic": "model_dynamic.tflite",
    "int8": "model_int8.tflite",
}
#: Rank 4 is always allowed: TFLite itself runs Conv1D and 1D pooling as their 2D kernels on
#: rank-4 views, and every delegate supports rank 4. What must never happen is rank growth beyond
#: that (a 4D image viewed as 5D), which GPU delegates reject.
ALWAYS_ALLOWED_RANK = 4


def make_interpreter(content: bytes, *, delegates: bool = True):
    """A LiteRT interpreter for `content` (`tf.lite.Interpreter` only if ai-edge-litert is missing).

    With `delegates=False` no default delegate (XNNPACK) is applied, so the op
    list shows the model's own ops.
    """
    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
    except ImportError:  # pragma: no cover - ai-edge-litert comes with the `litert` extra
        Interpreter, OpResolverType = tf.lite.Interpreter, tf.lite.experimental.OpResolverType
    resolver = OpResolverType.AUTO if delegates else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    interpreter = Interpreter(model_content=content, experimental_op_resolver_type=resolver)
    interpreter.allocate_tensors()
    return interpreter


@dataclasses.dataclass(frozen=True)
class TFLiteGraph:
    """What the converted graph holds: its ops (in execution order) and its tensors' shapes.

    Attributes:
        ops: Op names in execution order, e.g. `["CONV_2D", "MEAN", ...]`.
        tensors: `(name, shape_signature)` of every tensor (`-1`: a dynamic axis).
        inputs, outputs: `{"name", "shape", "dtype"}` of the signature's tensors, by signature key.
    """

    ops: list[str]
    tensors: list[tuple[str, tuple[int, ...]]]
    inputs: list[dict]
    outputs: list[dict]

    @property
    def op_counts(self) -> dict[str, int]:
        return dict(sorted(Counter(self.ops).items()))

    @property
    def max_rank(self) -> int:
        return max((len(shape) for _, shape in self.tensors), default=0)

    def tensors_above_rank(self, rank: int) -> list[tuple[str, tuple[int, ...]]]:
        """The tensors whose rank exceeds `rank`."""
        return [(name, shape) for name, shape in self.tensors if len(shape) > rank]

    def dynamic_tensors(self) -> list[tuple[str, tuple[int, ...]]]:
        """The tensors with a dynamic (`-1`) axis."""
        return [(name, shape) for name, shape in self.tensors if -1 in shape]

    def non_builtin_ops(self) -> list[str]:
        """Ops that are not TFLite built-ins (Flex or custom ops); empty for a valid export."""
        return [op for op in self.ops if op.startswith("Flex") or op in ("CUSTOM", "DELEGATE")]


def _signature_tensors(details: dict) -> list[dict]:
    return [
        {"name": key, "shape": [int(d) for d in detail["shape_signature"]],
         "dtype": np.dtype(detail["dtype"]).name}
        for key, detail in details.items()
    ]


def inspect(content: bytes) -> TFLiteGraph:
    """Reads the ops, tensor shapes and signature of a `.tflite` model.

    Examples:
        >>> from keras_norms.export.tflite import inspect
        >>> graph = inspect(open("out/model.tflite", "rb").read())  # doctest: +SKIP
        >>> graph.ops, graph.max_rank  # doctest: +SKIP
        (['CONV_2D', 'MEAN', ...], 4)
    """
    interpreter = make_interpreter(content, delegates=False)
    ops = [op["op_name"] for op in interpreter._get_ops_details()]
    tensors = [
        (t["name"], tuple(int(d) for d in t.get("shape_signature", t["shape"])))
        for t in interpreter.get_tensor_details()
    ]
    runner = interpreter.get_signature_runner(SIGNATURE_KEY)
    return TFLiteGraph(
        ops, tensors, _signature_tensors(runner.get_input_details()),
        _signature_tensors(runner.get_output_details()),
    )


def check_graph(graph: TFLiteGraph, input_rank: int, file_name: str) -> None:
    """Raises `ExportError` for non-built-in ops or tensors of a higher rank than allowed."""
    bad_ops = graph.non_builtin_ops()
    if bad_ops:
        raise UnsupportedOpError(
            f"{file_name} contains ops that are not TFLite built-ins: {', '.join(sorted(set(bad_ops)))}. "
            "Replace the layers that produce them.", sorted(set(bad_ops)), [],
        )
    limit = max(input_rank, ALWAYS_ALLOWED_RANK)
    above = graph.tensors_above_rank(limit)
    if above:
        listed = ", ".join(f"{name} {list(shape)}" for name, shape in above[:5])
        raise ExportError(
            f"{file_name} has {len(above)} tensor(s) of rank above {limit} (the model's input has rank "
            f"{input_rank}; GPU delegates reject rank 5 and more): {listed}. Replace the layer that "
            "reshapes to the higher rank (keras_norms layers never do)."
        )


_OP_PATTERN = re.compile(r"'(?:tf|tfl)\.(\w+)' op")


def _layers_from_scopes(scopes: Iterable[str], layer_names: Iterable[str]) -> list[str]:
    """Keras layer names found in op name scopes like `model_1/my_layer_1/bessel_i0/BesselI0@...`.

    The innermost scope that names a layer wins (a nested model's scope comes
    first); TensorFlow may have added a `_<n>` suffix to make a scope unique.
    """
    names = set(layer_names)
    found = []
    for scope in scopes:
        for part in reversed(scope.split("@", 1)[0].split("/")):
            layer = next((c for c in (part, re.sub(r"_\d+$", "", part)) if c in names), None)
            if layer is not None:
                if layer not in found:
                    found.append(layer)
                break
    return found


def _unsupported_op_error(error: Exception, layer_names: Iterable[str], file_name: str) -> ExportError:
    text = str(error)
    ops, scopes = [], []
    for entry in getattr(error, "errors", None) or []:
        op = getattr(getattr(entry, "operator", None), "name", "")
        if op:
            ops.append(op.split(".", 1)[-1])
        location = getattr(entry, "location", None)
        for call in getattr(location, "call", []) or []:
            scopes.append(call.name)
    ops += _OP_PATTERN.findall(text)
    scopes += re.findall(r'fused\["\w+:", "([^"]+)"\]', text)
    ops = list(dict.fromkeys(ops))
    if not ops:
        first = next((line for line in text.splitlines() if "error" in line.lower()), text[:300])
        return ExportError(f"TFLite conversion of {file_name} failed: {first.strip()}")
    layers = _layers_from_scopes(scopes, layer_names)
    where = f" (from layer {', '.join(repr(n) for n in layers)})" if layers else ""
    return UnsupportedOpError(
        f"TFLite conversion of {file_name} needs op(s) {', '.join(ops)}{where} that are not TFLite "
        "built-ins; keras_norms never enables Flex (SELECT_TF_OPS), which the LiteRT interpreter "
        "cannot run. Replace the layer with built-in operations, or keep it out of the exported model.",
        ops, layers,
    )


def convert(saved_model_dir: str, quantize: str | None = None, *,
            representative: Callable[[], Iterable[dict]] | None = None,
            layer_names: Iterable[str] = ()) -> bytes:
    """Converts the `serving_default` signature of a SavedModel to TFLite, built-in ops only.

    Args:
        saved_model_dir: The SavedModel written by the exporter.
        quantize: `None` (float32), `"float16"` (float16 weights), `"dynamic"`
            (int8 weights, float activations) or `"int8"` (full integer, int8
            input and output; needs `representative`).
        representative: For `"int8"`: a callable returning an iterable of
            `{input name: batch}` dicts to calibrate the activation ranges.
        layer_names: Names of the model's layers, to name the layer an
            unsupported op comes from.

    Returns:
        The `.tflite` flatbuffer.

    Raises:
        UnsupportedOpError: An op has no TFLite built-in (the message names it and its layer).
        ExportError: Any other conversion failure.
    """
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir, signature_keys=[SIGNATURE_KEY])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    converter.allow_custom_ops = False
    if quantize in ("float16", "dynamic", "int8"):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif quantize == "int8":
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    file_name = FILE_NAMES[quantize]
    try:
        with warnings.catch_warnings():
            # int8 calibration runs TensorFlow's own (deprecated) interpreter internally.
            warnings.filterwarnings("ignore", message=r"(?s).*tf\.lite\.Interpreter is deprecated")
            return converter.convert()
    except Exception as error:  # ConverterError, and errors raised while calibrating
        raise _unsupported_op_error(error, layer_names, file_name) from error
