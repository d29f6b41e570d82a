"""Whole models: the paper's models with each norm, Keras' built-in in its place, and no norm.

The paper asks what normalization costs in compute. Each row times one model
(`keras_norms.models.build_model`) in one mode: a training step with
`train_on_batch`, as `fit` runs it, or `predict_on_batch`, as `predict` runs
each batch (`compile()`'s defaults: on TensorFlow a graph, XLA-compiled only
where the machine has a GPU, since Keras' `jit_compile="auto"` turns XLA off
on CPU-only machines; a `jax.jit` step on JAX; eager on PyTorch), three
ways, interleaved: with keras-norms' norm, with the matching `keras.layers`
norm built into the same places, and with no norm. `python -m benchmarks`
runs it on each backend in a process of its own.
"""

from __future__ import annotations

import argparse
import json
import sys

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


def step(model_name: str, norm, shape, batch_size: int, mode: str = "train"):
    """A compiled training step (`train_on_batch`) or prediction (`predict_on_batch`) of a new model.

    A thunk, already run once, so that it is traced and compiled.
    """
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

    def train_step() -> None:  # returns None: `interleaved` would take a float (the loss) for a time
        model.train_on_batch(x, y)

    def predict() -> None:
        model.predict_on_batch(x)

    run = train_step if mode == "train" else predict
    run()
    return run


def run(norms, *, repeats: int, warmup: int, modes=("train", "predict")) -> list[dict]:
    """One row per model, norm and mode: keras-norms, `keras.layers` and no norm, interleaved."""
    from benchmarks.timing import interleaved

    backend = keras.backend.backend()
    rows = []
    for model_name, (shape, batch_size) in models().items():
        for norm in norms:
            if norm not in KERAS_NORMS:
                continue
            for mode in modes:
                try:
                    contenders = {"keras-norms": step(model_name, norm, shape, batch_size, mode),
                                  "keras": step(model_name, KERAS_NORMS[norm], shape, batch_size, mode),
                                  "no norm": step(model_name, "none", shape, batch_size, mode)}
                except ValueError as error:  # e.g. the transformer refuses instance norm, and says why
                    reason = str(error).splitlines()[0][:90]
                    print(f"model {backend} {model_name:>11} {norm:>8}  skipped: {reason}", flush=True)
                    break
                timings = interleaved(contenders, repeats=repeats, warmup=warmup)
                row = {"model": model_name, "norm": norm, "mode": mode, "backend": backend,
                       "shape": list(shape), "batch_size": batch_size,
                       **{key: {n: t[field] for n, t in timings.items()}
                          for key, field in (("ms", "median_ms"), ("min_ms", "min_ms"),
                                             ("samples_ms", "samples_ms"))}}
                ms = row["ms"]
                print(f"model {backend:>10} {model_name:>11} {norm:>8} {mode:>7}  "
                      + "  ".join(f"{n} {v:7.1f}" for n, v in ms.items())
                      + f"  keras/ours {ms['keras'] / ms['keras-norms']:4.2f}"
                      + f"  ours/none {ms['keras-norms'] / ms['no norm']:4.2f}", file=sys.stderr, flush=True)
                rows.append(row)
                del contenders
    return rows


def main(argv=None) -> None:
    """Prints the rows as JSON lines: `python -m benchmarks` runs this on each backend in its own process."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.model_steps")
    parser.add_argument("--norms", default=",".join(NORMS))
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args(argv)
    for row in run(args.norms.split(","), repeats=args.repeats, warmup=args.warmup):
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
