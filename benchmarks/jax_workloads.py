"""JAX contenders, in a process of their own: `KERAS_BACKEND` is read once, when Keras is imported.

`python -m benchmarks` starts this module with ``KERAS_BACKEND=jax`` and reads
one JSON row per line from it. Each row interleaves keras-norms (fast paths,
and the plain `keras.ops` path) and the Keras built-in layer, every step a
`jax.jit` function of `Layer.stateless_call` (the function `model.fit` runs
under `jit_compile=True`): "forward" and "inference" call the layer with
`training=True` / `False`, "train" returns the output and the gradients with
respect to the input and every trainable weight for a fixed upstream gradient.
"""

from __future__ import annotations

import inspect


def _norms():
    import keras

    import keras_norms

    return {
        "batch": (keras_norms.BatchNormalization, keras.layers.BatchNormalization),
        "group": (lambda **kw: keras_norms.GroupNormalization(groups=32, **kw),
                  lambda **kw: keras.layers.GroupNormalization(groups=32, **kw)),
        # Keras has no instance norm layer; its group norm with one channel per group is one.
        "instance": (keras_norms.InstanceNormalization,
                     lambda **kw: keras.layers.GroupNormalization(groups=-1, **kw)),
        "layer": (keras_norms.LayerNormalization, keras.layers.LayerNormalization),
        "rms": (keras_norms.RMSNormalization, keras.layers.RMSNormalization),
        # The norm-free layers against the layer norm they replace.
        "dyt": (keras_norms.DynamicTanh, keras.layers.LayerNormalization),
        "derf": (keras_norms.DynamicErf, keras.layers.LayerNormalization),
    }


def step(make_layer, shape, *, mode: str, dtype: str, fast: bool = True):
    """A compiled (`jax.jit`) forward or training step of a new layer, as a thunk that waits for it."""
    import jax
    import numpy as np

    from keras_norms import functional as F

    with F.use_fast_paths(fast):
        layer = make_layer(dtype="mixed_bfloat16" if dtype == "bfloat16" else "float32")
        layer.build(shape)
        rng = np.random.default_rng(0)
        x, upstream = (jax.numpy.asarray(rng.normal(size=shape), dtype) for _ in range(2))
        takes_training = "training" in inspect.signature(layer.call).parameters
        kwargs = {"training": mode != "inference"} if takes_training else {}
        trainable = [v.value for v in layer.trainable_variables]
        non_trainable = [v.value for v in layer.non_trainable_variables]

        def forward(trainable, inputs):
            return layer.stateless_call(trainable, non_trainable, inputs, **kwargs)[0]

        if mode == "train":
            def body(trainable, inputs):
                outputs, pullback = jax.vjp(forward, trainable, inputs)
                return outputs, pullback(upstream.astype(outputs.dtype))
        else:
            body = forward
        function = jax.jit(body)
        jax.block_until_ready(function(trainable, x))  # traced (with the fast paths as asked) and compiled
    return lambda: jax.block_until_ready(function(trainable, x))


def contenders(name: str, shape, *, mode: str, dtype: str, plain: bool) -> dict:
    """One row's contenders: keras-norms (fast, and plain if asked) and Keras' built-in, as jitted steps."""
    ours, built_in = _norms()[name]
    found = {"keras-norms": step(ours, shape, mode=mode, dtype=dtype)}
    if plain:
        found["keras-norms plain"] = step(ours, shape, mode=mode, dtype=dtype, fast=False)
    found["keras"] = step(built_in, shape, mode=mode, dtype=dtype)
    if mode == "inference":
        found["x + 1"] = one_pass(shape, dtype=dtype)
    return found


def one_pass(shape, *, dtype: str):
    """A jitted `x + 1`: one read and one write, the least an inference step writing its output costs."""
    import jax
    import numpy as np

    x = jax.numpy.asarray(np.random.default_rng(0).normal(size=shape), dtype)
    function = jax.jit(lambda x: x + 1)
    jax.block_until_ready(function(x))
    return lambda: jax.block_until_ready(function(x))


def main(argv=None) -> None:
    import jax

    from benchmarks import backend_rows

    backend_rows.main("jax", contenders, argv, version=jax.__version__, xla=True)


if __name__ == "__main__":
    main()
