"""Inference latency of the paper's CNN exported to TFLite with each norm, run by LiteRT (XNNPACK).

The model is `build_model("paper_cnn", norm=...)` at 32x32x3 with batch size 1,
exported by `keras_norms.export.export_model` (batch norm folded into the
convolutions, as for deployment). Latencies are medians of interleaved blocks
of invocations, so all models see the same noise.
"""

from __future__ import annotations

import collections
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.timing import interleaved

NORMS = ("batch", "group", "instance", "layer", "rms", "none")
INPUT_SHAPE = (32, 32, 3)
INVOKES_PER_SAMPLE = 50


def _export(model, directory: Path) -> Path:
    try:
        from keras_norms.export import export_model
    except ImportError:  # the exporter is optional here: convert directly
        import tensorflow as tf

        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        directory.mkdir(parents=True)
        path = directory / "model.tflite"
        path.write_bytes(converter.convert())
        return path
    # Untrained weights on random inputs can differ from Keras by a little more than the
    # exporter's 1e-5 parity bound (group norm over tiny groups); latency is what counts here.
    export_model(model, directory, formats=("tflite",), verify=False)
    return directory / "model.tflite"


def measure(norms=NORMS, *, repeats: int, threads: int) -> dict:
    """`{norm: {"median_ms", "min_ms", "ops"}}` for the CNN with each norm; empty if a piece is missing."""
    import keras

    try:
        from ai_edge_litert.interpreter import Interpreter
        from keras_norms.models import build_model
    except ImportError as error:
        return {"skipped": str(error)}
    rng = np.random.default_rng(0)
    image = rng.normal(size=(1, *INPUT_SHAPE)).astype("float32")
    runners, ops = {}, {}
    with tempfile.TemporaryDirectory() as workdir:
        for norm in norms:
            keras.utils.set_random_seed(0)
            model = build_model("paper_cnn", norm=norm, input_shape=INPUT_SHAPE)
            path = _export(model, Path(workdir) / norm)
            interpreter = Interpreter(model_path=str(path), num_threads=threads)
            interpreter.allocate_tensors()
            interpreter.set_tensor(interpreter.get_input_details()[0]["index"], image)
            ops[norm] = dict(collections.Counter(op["op_name"] for op in interpreter._get_ops_details()))

            def block(interpreter=interpreter):
                start = time.perf_counter()
                for _ in range(INVOKES_PER_SAMPLE):
                    interpreter.invoke()
                return (time.perf_counter() - start) / INVOKES_PER_SAMPLE

            runners[norm] = block
        timings = interleaved(runners, repeats=repeats, warmup=2)
    return {norm: {**{k: v for k, v in timings[norm].items() if k != "samples_ms"}, "ops": ops[norm]}
            for norm in norms}
