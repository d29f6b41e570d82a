"""Writes the `.keras` files of this folder; run once, with keras-norms 0.1.0 (TensorFlow backend).

tests/test_saved_files.py loads them with the current version and checks that
the outputs are those recorded here: a file saved by 0.1.0 keeps loading, to
the same outputs. Do not re-run it with a later version (that would record the
later version's outputs): add a folder for a new version instead.

    python tests/data/keras_files_0_1_0/make_files.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import keras
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # tests/, for the layer tables

from layer_cases import SPECS  # noqa: E402
from layer_zoo import LAYERS  # noqa: E402

import keras_norms  # noqa: E402


def _randomize(model, rng):
    for weight in model.weights:
        if "float" not in str(weight.dtype):
            continue
        shape = tuple(weight.shape)
        if "variance" in weight.name or "stddev" in weight.name:
            value = rng.uniform(0.5, 2.0, size=shape)
        elif weight.name in ("gamma", "g"):
            value = rng.normal(1.0, 0.3, size=shape)
        else:
            value = rng.normal(0.0, 0.3, size=shape)
        weight.assign(value.astype(weight.dtype))


def _registry_model():
    inputs, outputs, xs = [], [], []
    rng = np.random.default_rng(0)
    for name, spec in SPECS.items():
        case = spec.primary
        inp = keras.Input(case.input_shape[1:], name=f"input_{name}")
        inputs.append(inp)
        outputs.append(keras.layers.Dense(3)(keras_norms.get(name, **case.kwargs)(inp)))
        xs.append(rng.normal(size=case.input_shape).astype("float32"))
    return keras.Model(inputs, outputs), xs


def _zoo_inputs(name, model, rng, size=4):
    condition = LAYERS[name][2]
    shapes = [tuple(i.shape[1:]) for i in model.inputs]
    x = [rng.normal(size=(size, *shapes[0])).astype("float32")]
    if condition == "ids":
        x.append(np.array([0, 2, 1, 2], "int32"))
    elif condition is not None:
        x.append(rng.normal(size=(size, *condition)).astype("float32"))
    return x


def main():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(1)
    models = {"registry": _registry_model()}
    for name, (make_layer, build, _) in LAYERS.items():
        model = build(make_layer())
        models[name] = (model, _zoo_inputs(name, model, rng))
    for name, (model, xs) in models.items():
        _randomize(model, rng)
        model.save(HERE / f"{name}.keras")
        arrays = {f"x{i}": x for i, x in enumerate(xs)}
        for mode, training in (("inference", False), ("training", True)):
            ys = model(xs if len(xs) > 1 else xs[0], training=training)
            for i, y in enumerate(ys if isinstance(ys, (list, tuple)) else [ys]):
                arrays[f"{mode}{i}"] = keras.ops.convert_to_numpy(y)
        np.savez(HERE / f"{name}.npz", **arrays)
        print(name, [w.path for w in model.weights][:2], "...")


if __name__ == "__main__":
    main()
