"""Whole-model training steps: the paper's models with each norm, Keras' built-in in its place, and no norm.

The paper asks what normalization costs in compute. Each row trains one model
(`keras_norms.models.build_model`) with `train_on_batch` as `fit` runs it
(`compile()`'s defaults: on TensorFlow that is an XLA-compiled step when every
layer supports it), three ways, interleaved: with keras-norms' norm, with the
matching `keras.layers` norm built into the same places, and with no norm.
"""

from __future__ import annotations

import keras
import numpy as np
from keras_norms.models import DEFAULT_INPUT_SHAPES, build_model, model_names

#: Model -> (input shape, batch size): the inputs the study trains them on, at a realistic batch size.
MODELS = {"paper_cnn": ((32, 32, 3), 64), "resnet": ((32, 32, 3), 64), "transformer": (None, 64)}
NORMS = ("batch", "group", "instance", "layer", "rms")

#: keras.layers' layer for each norm, built wherever the model puts one (instance norm: Keras' group
#: norm with one channel per group; group norm: the same groups as ours, set by the model).
KERAS_NORMS = {
    "batch": keras.layers.BatchNormalization,
    "group": keras.layers.GroupNormalization,
    "instance": lambda **options: keras.layers.GroupNormalization(groups=-1, **options),
    "layer": keras.layers.LayerNormalization,
    "rms": keras.layers.RMSNormalization,
}


def models() -> dict[str, tuple[tuple[int, ...], int]]:
    """The models of this section that `build_model` knows, with their input shapes and batch sizes."""
    return {name: (shape or DEFAULT_INPUT_SHAPES[name], batch) for name, (shape, batch) in MODELS.items()
            if name in model_names()}


def step(model_name: str, norm, shape, batch_size: int):
    """A compiled training step of a new model (already traced), as a thunk."""
    keras.utils.set_random_seed(0)
    model = build_model(model_name, norm, input_shape=shape, num_classes=10)
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    inputs = model.inputs[0]
    if keras.backend.standardize_dtype(inputs.dtype).startswith("int"):
        x = rng.integers(0, 100, size=(batch_size, *shape)).astype(inputs.dtype)
    else:
        x = rng.normal(size=(batch_size, *shape)).astype("float32")
    y = rng.integers(0, 10, size=(batch_size,))
    model.train_on_batch(x, y)  # traces and compiles

    def train_step() -> None:  # returns None: `interleaved` would take a float (the loss) for a time
        model.train_on_batch(x, y)
    return train_step


def run(norms, *, repeats: int, warmup: int) -> list[dict]:
    """One row per model and norm: keras-norms, `keras.layers` and no norm, interleaved."""
    from benchmarks.timing import interleaved

    rows = []
    for model_name, (shape, batch_size) in models().items():
        for norm in norms:
            if norm not in KERAS_NORMS:
                continue
            try:
                contenders = {"keras-norms": step(model_name, norm, shape, batch_size),
                              "keras": step(model_name, KERAS_NORMS[norm], shape, batch_size),
                              "no norm": step(model_name, "none", shape, batch_size)}
            except ValueError as error:  # e.g. the transformer refuses instance norm, and says why
                reason = str(error).splitlines()[0][:90]
                print(f"model {model_name:>11} {norm:>8}  skipped: {reason}", flush=True)
                continue
            timings = interleaved(contenders, repeats=repeats, warmup=warmup)
            row = {"model": model_name, "norm": norm, "shape": list(shape), "batch_size": batch_size,
                   **{key: {n: t[field] for n, t in timings.items()}
                      for key, field in (("ms", "median_ms"), ("min_ms", "min_ms"),
                                         ("samples_ms", "samples_ms"))}}
            ms = row["ms"]
            print(f"model {model_name:>11} {norm:>8}  " + "  ".join(f"{n} {v:7.1f}" for n, v in ms.items())
                  + f"  keras/ours {ms['keras'] / ms['keras-norms']:4.2f}"
                  + f"  ours/none {ms['keras-norms'] / ms['no norm']:4.2f}", flush=True)
            rows.append(row)
            del contenders
    return rows
