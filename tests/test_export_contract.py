"""Contract item 5, for every registry layer: TFLite/LiteRT.

A small model holding the layer is exported with `keras_norms.export.export_model`
(fold_batch_norm=False, so the layer's own graph is what gets converted), and the
`.tflite` file is checked here independently of the exporter's own checks:
built-in ops only (read from the flatbuffer's operator codes: no Flex, no custom
op), static shapes, no tensor of a higher rank than the input, and LiteRT output
equal to the Keras output within 1e-5.
"""

from __future__ import annotations

import keras
import layer_cases
import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.interpreter import Interpreter, OpResolverType
from keras_norms.export import export_model

import keras_norms

# (case id, constructor kwargs, input shape with the static batch of 1). Images are NHWC
# (1, 8, 8, 16) unless channels-first; sequences (1, 10, 16) for the per-example norms.
CASES = {
    "batch": [("batch-nhwc", {}, (1, 8, 8, 16))],
    "layer": [("layer-seq", {}, (1, 10, 16))],
    "group": [
        ("group-nhwc", {"groups": 4}, (1, 8, 8, 16)),
        ("group-nchw", {"groups": 4, "axis": 1}, (1, 16, 8, 8)),
        ("group-rank2", {"groups": 4}, (1, 16)),
    ],
    "instance": [
        ("instance-nhwc", {}, (1, 8, 8, 16)),
        ("instance-nchw", {"axis": 1}, (1, 16, 8, 8)),
    ],
    "rms": [("rms-seq", {}, (1, 10, 16))],
    "frn": [("frn-nhwc", {}, (1, 8, 8, 16))],
    "switchable": [
        ("switchable-nhwc", {}, (1, 8, 8, 16)),
        ("switchable-nchw", {"axis": 1}, (1, 16, 8, 8)),
    ],
    "none": [("none-image", {}, (1, 8, 8, 16))],
}


def _derived_cases(name: str) -> list[tuple]:
    """For a registry name without an entry above: the inference cases of its contract spec."""
    spec = layer_cases.SPECS.get(name)
    cases = [c for c in spec.cases if not c.training] if spec is not None else []
    return [(f"{c.id}-derived", c.kwargs, (1, *c.input_shape[1:])) for c in cases[:2]]


CASE_LIST = [(name, *case) for name in keras_norms.names()
             for case in CASES.get(name) or _derived_cases(name)]


def test_every_registry_layer_has_a_tflite_case():
    missing = [name for name in keras_norms.names() if not CASES.get(name) and not _derived_cases(name)]
    assert not missing, (
        f"add a TFLite case to CASES in {__file__} (or an inference case to tests/layer_cases.py) "
        f"for: {missing}"
    )


def _randomize(layer, rng):
    """Non-trivial weights, so that a dropped gamma, beta or statistic shows in the outputs."""
    for weight in layer.weights:
        if "variance" in weight.name:
            value = rng.uniform(0.5, 2.0, weight.shape)
        elif "gamma" in weight.name:
            value = rng.uniform(0.5, 1.5, weight.shape)
        else:
            value = rng.normal(0.0, 0.5, weight.shape)
        weight.assign(value.astype("float32"))


@pytest.fixture(scope="module", params=CASE_LIST, ids=[case[1] for case in CASE_LIST])
def converted(request, tmp_path_factory):
    name, case_id, kwargs, shape = request.param
    rng = np.random.default_rng(0)
    inputs = keras.Input(shape[1:], batch_size=shape[0], name="x")
    layer = keras_norms.get(name, **kwargs)
    model = keras.Model(inputs, layer(inputs))
    _randomize(layer, rng)
    directory = tmp_path_factory.mktemp(case_id) / "export"
    export_model(model, directory, formats=("tflite",), fold_batch_norm=False)
    content = (directory / "model.tflite").read_bytes()
    # Inputs off-centre and wide, where naive statistics lose precision.
    x = rng.normal(2.0, 3.0, (4, *shape[1:])).astype("float32")
    return model, content, x, shape


def _operator_codes(content: bytes) -> list[tuple[int, str]]:
    model = schema.Model.GetRootAs(content, 0)
    codes = []
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        custom = code.CustomCode()
        codes.append((builtin, custom.decode() if custom else ""))
    return codes


def test_builtin_ops_only(converted):
    _, content, _, _ = converted
    codes = _operator_codes(content)
    custom = [name for builtin, name in codes if builtin == schema.BuiltinOperator.CUSTOM]
    assert not custom, f"custom/Flex ops in the graph: {custom}"
    interpreter = Interpreter(
        model_content=content,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    ops = [op["op_name"] for op in interpreter._get_ops_details()]
    assert not [op for op in ops if op.startswith("Flex") or op == "CUSTOM"], ops


def test_static_shapes_and_no_rank_growth(converted):
    _, content, _, shape = converted
    interpreter = Interpreter(model_content=content)
    interpreter.allocate_tensors()
    tensors = interpreter.get_tensor_details()
    dynamic = [t["name"] for t in tensors if -1 in list(t["shape_signature"])]
    assert not dynamic, f"tensors with a dynamic shape: {dynamic}"
    too_high = [(t["name"], list(t["shape"])) for t in tensors if len(t["shape"]) > len(shape)]
    assert not too_high, f"tensors of rank above the input's {len(shape)}: {too_high}"
    (detail,) = interpreter.get_input_details()
    assert list(detail["shape"]) == list(shape)


def test_litert_matches_keras(converted):
    model, content, x, _ = converted
    runner = Interpreter(model_content=content).get_signature_runner("serving_default")
    (output_name,) = runner.get_output_details()
    litert = np.concatenate([runner(x=example[None])[output_name] for example in x])
    expected = np.asarray(model(x, training=False))
    assert litert.shape == expected.shape
    np.testing.assert_allclose(litert, expected, rtol=0, atol=1e-5)
    assert np.abs(expected).max() > 0.1  # not a trivially zero output
